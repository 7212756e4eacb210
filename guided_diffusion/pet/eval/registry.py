"""The evaluation's metrics in one table, :data:`METRICS`: what ``scripts/evaluate.py`` scores, writes and draws.

:data:`METRICS` maps a metric's name to a :class:`Metric`. It is the only list
of metrics: the columns of ``metrics.csv`` and of the per-case tables
(``cases/<case>__<method>.csv``), the columns of ``summary.md`` and the
figures all follow it, in its order. Two kinds:

* a *result metric* gives one value per (case, method): the ``metrics.csv``
  column named by its key, in ``summary.md`` when ``summarised``, drawn in the
  figures named in ``figures``;
* a *per-region metric* (``region_columns`` set) gives, for each organ and
  lesion of the case, a dict of those columns: columns of the per-case tables.
  Per-region metrics are scored first, so a result metric can summarise their
  columns (e.g. ``lesion_cr``, :func:`~.case_metrics.lesion_mean` of
  ``contrast_recovery``).

Adding a metric:

1. Write its scorer ``score(case, result, regions)``, in :mod:`.case_metrics`
   or a module of its own: ``case`` is the prepared
   :class:`~.case_reference.CaseReference` (``case.reference``, the masks,
   ``case.voxel_size``), ``result`` the (X, Y, Z) SUV volume, ``regions`` the
   per-case table rows. Return a number (NaN where undefined) or, for a
   per-region metric, one dict of its columns per row of ``regions``. Raise
   ValueError for a result it cannot score; the script reports it in one line
   naming the files.
2. Add one line to :data:`METRICS` where its column should appear, e.g.
   ``"mae": Metric(mae, "MAE", "SUV", higher_is_better=False, figures=(VS_DOSE,))``.

Nothing else lists metrics: ``metrics.csv``, the per-case tables,
``summary.md`` and ``figures/<name>_vs_dose.png`` follow the table
(``tests/test_metric_registry.py`` runs a toy metric end to end). Describe it
in README.md, *Evaluating results*. The PET domain is numpy: no torch here.

Which reference a metric is scored against is the second dimension of every
table, :data:`REFERENCES`: the full dose (:data:`FULL_DOSE`, the paper's; its
columns keep the metrics' names) and, when given, the noiseless
reconstruction of simulated data (:data:`CLEAN`; columns ``<name>_clean``).
A metric scores against each reference given, except the columns it marks
``reference_free`` (values of the result alone, written once). Lesion
summaries average the lesions visible in one reference, the same for every
column set (:func:`visibility_reference`; the per-case tables keep every lesion,
marked ``visible``), and come per size bin as well
(:data:`~.regions.LESION_SIZE_BINS`: ``lesion_suvmax_bias_pct_small``, the
signed mean, ``lesion_suvmax_abs_error_pct_large``, the mean absolute error, ...). The column
functions below take the references of a run; their default, the full dose
alone, gives the tables of a run without ``--clean``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import case_metrics as scorers
from .regions import LESION_SIZE_BINS, SUV_COLUMNS, SUV_RESULT_COLUMNS

#: The figure of a metric against dose (``figures/<name>_vs_dose.png``, drawn when the cases have a dose column).
VS_DOSE = "vs_dose"


@dataclass(frozen=True)
class Metric:
    """One entry of :data:`METRICS`.

    Attributes:
        score: ``score(case, result, regions)`` -> a value (result metric) or one dict per region row
            (per-region metric); see the module's docstring.
        title: its name on figure axes (e.g. "PSNR"); default the column name.
        unit: its unit ("dB", "%", "SUV"; "" for a ratio or a count), shown after the title.
        higher_is_better: True or False; None when neither (best at a target, e.g. 0 % error or a contrast
            recovery of 1, or not a quality at all, e.g. a count).
        summarised: shown in summary.md as mean ± sample SD per group (False: metrics.csv only).
        figures: the figures that draw it: :data:`VS_DOSE`.
        region_columns: a per-region metric's columns, in order; empty for a result metric.
        reference_free: the columns (a result metric: its name; a per-region metric: some of its
            region columns) that do not read the reference, e.g. the result's own liver CV: written once,
            unsuffixed, however many references are given.
    """

    score: Callable[..., Any]
    title: str = ""
    unit: str = ""
    higher_is_better: bool | None = None
    summarised: bool = True
    figures: tuple[str, ...] = ()
    region_columns: tuple[str, ...] = ()
    reference_free: tuple[str, ...] = ()

    def columns(self, name: str, reference: Reference) -> tuple[str, ...]:
        """Its columns against ``reference`` (``name`` is its key in :data:`METRICS`): every column against
        the full dose; against another reference those that read it, with its suffix."""
        own = self.region_columns or (name,)
        if reference == FULL_DOSE:
            return own
        return tuple(column + reference.suffix for column in own if column not in self.reference_free)


@dataclass(frozen=True)
class Reference:
    """A volume results are scored against: a dimension of every metric that reads the reference.

    Attributes:
        name: its key: the ``--cases`` column of its file ("reference" is the full dose's, "clean" the
            noiseless reconstruction's).
        suffix: appended to the names of the columns scored against it ("" for the full dose).
        title: how the summary's headings name it (figures' axes name it by ``name``).
    """

    name: str
    suffix: str
    title: str


#: The full-dose reconstruction: the paper's reference; its columns keep the metrics' names.
FULL_DOSE = Reference("reference", "", "the full dose (the paper's reference)")
#: The noiseless reconstruction of a simulated subject (``subjectNNN_clean.nii.gz``): the fair reference, as the
#: low dose's noise is nested in the full dose's (README, "Nested noise").
CLEAN = Reference("clean", "_clean", "the noiseless reconstruction")
#: Every reference, in the order of the tables' columns (the full dose first).
REFERENCES: tuple[Reference, ...] = (FULL_DOSE, CLEAN)


def lesion_size_bin_metrics() -> dict[str, Metric]:
    """For each lesion size bin (:data:`~.regions.LESION_SIZE_BINS`): the number of lesions scored
    (``lesion_count_<bin>``) and the mean SUVmax error over them, signed (``lesion_suvmax_bias_pct_<bin>``) and
    absolute (``lesion_suvmax_abs_error_pct_<bin>``), in %."""
    metrics: dict[str, Metric] = {}
    for size_bin, title in LESION_SIZE_BINS.items():
        metrics[f"lesion_count_{size_bin}"] = Metric(scorers.lesion_count(size_bin), f"lesions {title}",
                                                     summarised=False, reference_free=(f"lesion_count_{size_bin}",))
        metrics[f"lesion_suvmax_bias_pct_{size_bin}"] = Metric(
            scorers.lesion_mean("suvmax_error_pct", size_bin=size_bin), f"lesion SUVmax bias {title}", "%",
            figures=(VS_DOSE,))
        metrics[f"lesion_suvmax_abs_error_pct_{size_bin}"] = Metric(
            scorers.lesion_mean("suvmax_error_pct", absolute=True, size_bin=size_bin),
            f"lesion SUVmax |error| {title}", "%", higher_is_better=False)
    return metrics


#: Every metric, by name, in the order of the tables' columns. Per-region metrics first: result metrics read them.
METRICS: dict[str, Metric] = {
    "suv": Metric(scorers.region_suv, "SUVmean, SUVmax, TLA", region_columns=SUV_COLUMNS,
                  reference_free=SUV_RESULT_COLUMNS),
    "contrast_recovery": Metric(scorers.region_contrast_recovery, "contrast recovery",
                                region_columns=("contrast_recovery",)),
    "psnr": Metric(scorers.psnr, "PSNR", "dB", higher_is_better=True, figures=(VS_DOSE,)),
    "psnr_body": Metric(scorers.psnr_body, "PSNR in the body", "dB", higher_is_better=True),
    "psnr_challenge": Metric(scorers.psnr_challenge, "PSNR (UDPET)", "dB", higher_is_better=True),
    "ssim": Metric(scorers.ssim, "SSIM", higher_is_better=True, figures=(VS_DOSE,)),
    "ssim_challenge": Metric(scorers.ssim_challenge, "SSIM (UDPET)", higher_is_better=True),
    "nrmse": Metric(scorers.nrmse, "NRMSE", higher_is_better=False, figures=(VS_DOSE,)),
    "nrmse_challenge": Metric(scorers.nrmse_challenge, "NRMSE (UDPET)", higher_is_better=False),
    "liver_cv": Metric(scorers.liver_cv, "liver CV", reference_free=("liver_cv",)),  # best near the reference's
    "liver_cv_reference": Metric(scorers.liver_cv_reference, "liver CV of the reference", summarised=False),
    "lesion_count": Metric(scorers.lesion_count(), "lesions", summarised=False, reference_free=("lesion_count",)),
    "lesion_suvmax_error_pct": Metric(scorers.lesion_mean("suvmax_error_pct"), "lesion SUVmax error", "%",
                                      figures=(VS_DOSE,)),
    "lesion_suvmean_error_pct": Metric(scorers.lesion_mean("suvmean_error_pct"), "lesion SUVmean error", "%"),
    "lesion_tla_error_pct": Metric(scorers.lesion_mean("tla_error_pct"), "lesion TLA error", "%"),
    "lesion_suvmax_abs_error_pct": Metric(scorers.lesion_mean("suvmax_error_pct", absolute=True),
                                          "lesion SUVmax |error|", "%", higher_is_better=False),
    "lesion_suvmean_abs_error_pct": Metric(scorers.lesion_mean("suvmean_error_pct", absolute=True),
                                           "lesion SUVmean |error|", "%", higher_is_better=False),
    "lesion_tla_abs_error_pct": Metric(scorers.lesion_mean("tla_error_pct", absolute=True),
                                       "lesion TLA |error|", "%", higher_is_better=False),
    **lesion_size_bin_metrics(),
    "lesion_cr": Metric(scorers.lesion_mean("contrast_recovery"), "lesion contrast recovery"),
}


def result_metrics() -> dict[str, Metric]:
    """The result metrics of :data:`METRICS`, in order: the metrics.csv columns."""
    return {name: metric for name, metric in METRICS.items() if not metric.region_columns}


def region_metrics() -> dict[str, Metric]:
    """The per-region metrics of :data:`METRICS`, in order."""
    return {name: metric for name, metric in METRICS.items() if metric.region_columns}


def result_columns(references: Sequence[Reference] = (FULL_DOSE,)) -> tuple[str, ...]:
    """The metrics.csv columns of the result metrics: every one against the full dose, then against each
    further reference those that read it (suffixed), in order."""
    return tuple(column for reference in references for name, metric in result_metrics().items()
                 for column in metric.columns(name, reference))


def scored_region_columns(references: Sequence[Reference] = (FULL_DOSE,)) -> tuple[str, ...]:
    """The per-region metrics' columns of the per-case tables, per reference as :func:`result_columns`."""
    return tuple(column for reference in references for name, metric in region_metrics().items()
                 for column in metric.columns(name, reference))


def summary_columns(reference: Reference = FULL_DOSE) -> tuple[str, ...]:
    """The columns of ``reference``'s tables in summary.md, in order: each summarised result metric against it
    (a reference-free one as it is)."""
    return tuple(name if name in metric.reference_free else name + reference.suffix
                 for name, metric in result_metrics().items() if metric.summarised)


def summary_order(references: Sequence[Reference]) -> list[Reference]:
    """The references in the order summary.md shows them: the further ones (the noiseless reconstruction, the
    fair score of simulated data) first, the full dose (the paper's) last."""
    return sorted(references, key=lambda reference: reference == FULL_DOSE)


def visibility_reference(references: Sequence[Reference]) -> Reference:
    """The reference of ``references`` lesions are judged visible in, for the columns of all of them: the one
    summary.md shows first (the noiseless reconstruction when given, else the full dose)."""
    return summary_order(references)[0]


def figure_columns(figure: str, references: Sequence[Reference] = (FULL_DOSE,)) -> tuple[str, ...]:
    """The metrics.csv columns drawn in ``figure`` (e.g. :data:`VS_DOSE`), in order (per reference)."""
    return tuple(column for reference in references for name, metric in result_metrics().items()
                 if figure in metric.figures for column in metric.columns(name, reference))


def axis_label(name: str) -> str:
    """A column's axis label: its metric's title and unit, e.g. "PSNR (dB)", and the reference unless it is the
    full dose ("PSNR vs clean (dB)"); the name itself when it is not registered."""
    for reference in REFERENCES:
        key = name[:len(name) - len(reference.suffix)] if name.endswith(reference.suffix) else None
        metric = METRICS.get(key) if key else None
        if metric is None or not metric.title:
            continue
        title = metric.title if reference == FULL_DOSE else f"{metric.title} vs {reference.name}"
        return f"{title} ({metric.unit})" if metric.unit else title
    return name
