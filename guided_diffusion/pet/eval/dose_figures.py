"""Figures of a metric against dose: one line per method (mean ± SD over cases), one panel per scanner/tracer."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction

from matplotlib.figure import Figure

from ...atomic import atomic_write
from .registry import axis_label
from .reports import format_cell, grouped, mean_sd, numeric


def dose_value(text: object) -> float:
    """A dose cell as a number: ``1/20``, ``0.05``, ``1-20`` (the simulator's file label for 1/20); NaN otherwise."""
    text = format_cell(text).strip()
    if re.fullmatch(r"1-\d+", text):
        text = text.replace("-", "/")
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return math.nan


def metric_vs_dose_figure(path: str | os.PathLike, rows: Sequence[Mapping], metric: str,
                          panel_keys: Sequence[str] = (), label: str | None = None) -> bool:
    """Write a PNG of ``metric`` against the ``dose`` column: a line per method, a panel per ``panel_keys`` group.

    Each point is the mean over the rows (cases) of one method at one dose, with
    the sample SD as error bar. Doses that read as numbers (:func:`dose_value`)
    are placed by value (log axis when all lie in (0, 1]); otherwise the dose
    labels are categories in order of appearance. The y axis is ``label``, by
    default the metric's :func:`~.registry.axis_label`.

    Returns:
        False (nothing written) when no row has a value for ``metric``.
    """
    rows = [r for r in rows if not math.isnan(_finite_or_nan(r.get(metric)))]
    if not rows:
        return False
    labels = list(dict.fromkeys(format_cell(r.get("dose")) for r in rows))
    values = [dose_value(d) for d in labels]
    by_value = not any(math.isnan(v) for v in values)
    if by_value:
        position = dict(zip(labels, values))
    else:
        position = {d: float(i) for i, d in enumerate(labels)}
    panels = grouped(rows, panel_keys)
    colours = {method: f"C{i % 10}" for i, method in enumerate(grouped(rows, ["method"]))}  # one per method everywhere
    fig = Figure(figsize=(4.6 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, members) in zip(axes, panels.items()):
        for method, method_rows in grouped(members, ["method"]).items():
            by_dose = grouped(method_rows, ["dose"])
            points = sorted((position[d[0]], *mean_sd(r.get(metric) for r in rs)[:2]) for d, rs in by_dose.items())
            xs, means, sds = zip(*points)
            ax.errorbar(xs, means, yerr=[0.0 if math.isnan(s) else s for s in sds], marker="o", capsize=3,
                        color=colours[method], label=method[0])
        if by_value and all(0 < v <= 1 for v in values):
            ax.set_xscale("log")
        if not by_value:
            ax.set_xticks(list(position.values()), list(position))
        ax.set_xlabel("dose fraction" if by_value else "dose")
        ax.set_ylabel(label or axis_label(metric))
        if panel_keys:
            ax.set_title(", ".join(f"{k} {v}" for k, v in zip(panel_keys, panel)), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return True


def _finite_or_nan(value: object) -> float:
    """The value as a finite float, NaN when missing or infinite (an infinite PSNR has no place on an axis)."""
    number = numeric(value)
    return number if math.isfinite(number) else math.nan
