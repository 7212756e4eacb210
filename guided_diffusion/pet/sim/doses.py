"""Dose fractions: the default levels, reading them from flags, and naming them in file names.

A dose fraction is the share of the full-dose counts kept, in (0, 1]: 1/20 keeps 5 %.
"""

from __future__ import annotations

from fractions import Fraction

from ...errors import UserError

#: The dose fractions of the low-dose challenge data (full, 1/2, ... 1/100).
DEFAULT_DOSE_FRACTIONS: tuple[float, ...] = (1.0, 1 / 2, 1 / 4, 1 / 10, 1 / 20, 1 / 50, 1 / 100)


def parse_dose_fractions(text: str, flag: str) -> list[float]:
    """Read a comma list of dose fractions: ``"1,1/2,0.05"`` -> ``[1.0, 0.5, 0.05]``.

    Each item is a fraction (``1/20``) or a decimal (``0.05``) in (0, 1].

    Args:
        text: the flag's value.
        flag: the flag's name (e.g. ``"--dose_levels"``), for messages.

    Returns:
        the distinct fractions, largest first.

    Raises:
        UserError: naming ``flag``, for an unreadable item or one outside (0, 1].
    """
    levels = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(Fraction(item))
        except (ValueError, ZeroDivisionError):
            raise UserError(f"{flag}: cannot read {item!r}; write fractions like 1/20 or 0.05") from None
        if not 0 < value <= 1:
            raise UserError(f"{flag}: {item} is not in (0, 1]")
        levels.append(value)
    return sorted(set(levels), reverse=True)


def parse_dose_fraction(text: str, flag: str) -> float:
    """Read one dose fraction (``1/20`` or ``0.05``) as :func:`parse_dose_fractions` does.

    Raises:
        UserError: naming ``flag``, for an unreadable value, one outside (0, 1], or a list.
    """
    levels = parse_dose_fractions(text, flag)
    if len(levels) != 1:
        raise UserError(f"{flag}: give one dose fraction (like 1/20 or 0.05), got {text!r}")
    return levels[0]


def dose_label(fraction: float) -> str:
    """File-name label of a dose fraction: ``1-20`` for 1/20, ``0.3`` otherwise, ``1`` for full dose."""
    inverse = Fraction(1 / fraction).limit_denominator(1000)
    if inverse.denominator == 1 and abs(float(inverse) * fraction - 1) < 1e-6:
        return "1" if inverse == 1 else f"1-{inverse.numerator}"
    return f"{fraction:g}"
