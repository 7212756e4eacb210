"""What the benchmark scripts share: shape flags and fixed-width console tables of rows (lists of dicts)."""

from __future__ import annotations

from guided_diffusion.errors import UserError


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a fixed-width text table; ``columns`` are (header, key, format) triples."""
    cells = [[header for header, _, _ in columns]]
    cells += [[fmt.format(row[key]) for _, key, fmt in columns] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in cells)


def parse_shape(value: str, flag: str) -> tuple[int, int, int]:
    """'a,b,c' -> three positive ints, or a UserError naming ``flag``."""
    try:
        shape = tuple(int(v) for v in value.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"{flag} takes three positive integers like 96,192,288, got {value!r}")
    return shape
