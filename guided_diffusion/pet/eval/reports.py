"""Evaluation reports: CSV tables and the Markdown summary (mean ± SD per method and per group, per reference).

Rows are dicts of column -> value; numbers are written with 6 significant
digits, NaN (undefined, e.g. no liver) as an empty cell, infinity as ``inf``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ...atomic import atomic_write_text


def format_cell(value: object) -> str:
    """A CSV cell: floats with 6 significant digits, NaN/None empty, anything else as ``str``."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def csv_text(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    """CSV text with a header of ``columns`` and one line per row (missing keys empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_cell(row.get(column)) for column in columns])
    return out.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], columns: Sequence[str], overwrite: bool = False) -> None:
    """Write :func:`csv_text` to ``path`` atomically (refusing an existing file unless ``overwrite``)."""
    atomic_write_text(path, csv_text(rows, columns), overwrite=overwrite)


def numeric(value: object) -> float:
    """A cell as a float: numbers as they are, numeric text parsed, anything else (or empty) NaN."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def mean_sd(values: Iterable[object]) -> tuple[float, float, int]:
    """(mean, sample SD with ddof 1, count) of the non-NaN values; SD NaN below two values or with an infinity."""
    data = np.array([v for v in map(numeric, values) if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan, 0
    if not np.isfinite(data).all() or data.size < 2:
        return float(data.mean()), math.nan, int(data.size)
    return float(data.mean()), float(data.std(ddof=1)), int(data.size)


def _mean_sd_text(values: Iterable[object]) -> str:
    mean, sd, count = mean_sd(values)
    if count == 0:
        return ""
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:#.4g}" if math.isnan(sd) else f"{mean:#.4g} ± {sd:.2g}"


def grouped(rows: Sequence[Mapping], keys: Sequence[str]) -> dict[tuple, list[Mapping]]:
    """Rows by the values of ``keys``, groups in order of first appearance."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(format_cell(row.get(key)) for key in keys), []).append(row)
    return groups


def markdown_table(rows: Sequence[Mapping], keys: Sequence[str], metrics: Sequence[str]) -> str:
    """A Markdown table: one line per group of ``keys``, its row count ``n`` and mean ± SD of each metric."""
    lines = ["| " + " | ".join([*keys, "n", *metrics]) + " |", "|" + " --- |" * (len(keys) + 1 + len(metrics))]
    for values, members in grouped(rows, keys).items():
        cells = [*values, str(len(members)), *(_mean_sd_text(m.get(metric) for m in members) for metric in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(rows: Sequence[Mapping], group_keys: Sequence[str], metrics: Sequence[str],
                     notes: Sequence[str] = ()) -> str:
    """The summary: mean ± SD (sample SD over (case, method) rows) per method, then per method and group keys.

    Metrics without any value (e.g. ``liver_cv`` without labels) are left out.

    Args:
        rows: metrics rows (``method``, the group keys, the metrics).
        group_keys: grouping columns (e.g. scanner, tracer, dose) present in the rows.
        metrics: candidate metric columns, in order.
        notes: lines added under the title (definitions, counts).
    """
    return _summary(rows, group_keys, {"": metrics}, notes)


def summary_by_reference(rows: Sequence[Mapping], group_keys: Sequence[str],
                         sections: Mapping[str, Sequence[str]], notes: Sequence[str] = ()) -> str:
    """:func:`summary_markdown` with the tables of each reference under its own headings.

    Args:
        sections: the title of each reference (e.g. "the noiseless reconstruction") -> its metric columns,
            in the order to show (the one to read first first). Headings read "Against <title>: per method".
    """
    return _summary(rows, group_keys, sections, notes)


def _summary(rows: Sequence[Mapping], group_keys: Sequence[str], sections: Mapping[str, Sequence[str]],
             notes: Sequence[str]) -> str:
    parts = ["# Evaluation summary\n", *(f"{note}\n" for note in notes if note)]
    for title, metrics in sections.items():
        shown = [m for m in metrics if any(not math.isnan(numeric(row.get(m))) for row in rows)]
        against = f"Against {title}: per method" if title else "Per method"
        parts += [f"## {against}\n", markdown_table(rows, ["method"], shown)]
        if group_keys:
            parts += [f"## {against} x {' x '.join(group_keys)}\n",
                      markdown_table(rows, ["method", *group_keys], shown)]
    return "\n".join(parts)
