"""Scoring one result against its prepared references: the metrics row and the per-case region rows.

:func:`score_result` runs every metric of :data:`.registry.METRICS` on one
result against a :class:`~.case_reference.CaseReference` (built once per case
by :func:`~.case_reference.prepare_reference`), the full dose, and against
each further reference given (:func:`~.case_reference.with_reference`, e.g.
the noiseless reconstruction), whose columns carry its suffix. Which lesions
are visible (the lesion summaries' lesions) is judged once, in the reference of
:func:`~.registry.visibility_reference`, for every column set. The metrics'
definitions are in the README, *Evaluating results*, and in :mod:`.case_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .case_reference import CaseReference
from .regions import REGION_KEYS
from .registry import (
    FULL_DOSE,
    Reference,
    region_metrics,
    result_columns,
    result_metrics,
    scored_region_columns,
    visibility_reference,
)

#: The column after the metrics in a metrics row: how the body mask was made (``CaseReference.body_rule``).
BODY_MASK_COLUMN = "body_mask"


def metric_columns(references: Sequence[Reference] = (FULL_DOSE,)) -> tuple[str, ...]:
    """The columns of a metrics row, in order (besides case, method and grouping keys): every result metric's
    against each reference (:func:`~.registry.result_columns`), then :data:`BODY_MASK_COLUMN`."""
    return (*result_columns(references), BODY_MASK_COLUMN)


def region_columns(references: Sequence[Reference] = (FULL_DOSE,)) -> tuple[str, ...]:
    """The columns of a region row, in order: the region's name and size, then every per-region metric's against
    each reference (:func:`~.registry.scored_region_columns`)."""
    return (*REGION_KEYS, *scored_region_columns(references))


def score_result(case: CaseReference, result: np.ndarray,
                 further: Mapping[Reference, CaseReference] | None = None) -> tuple[dict, list[dict]]:
    """Score one (X, Y, Z) SUV result against a prepared full-dose reference and any further references.

    Args:
        case: the full dose, prepared.
        result: the (X, Y, Z) SUV result.
        further: reference -> the case against it (:func:`~.case_reference.with_reference` of ``case``: the same
            regions), e.g. ``{CLEAN: ...}``.

    Returns:
        (the metrics row: :func:`metric_columns` of the references -> value, NaN where undefined;
        the region rows: :func:`region_columns` of the references -> value, one per organ label and lesion,
        lesions marked ``visible`` in the reference of :func:`~.registry.visibility_reference`).

    Raises:
        ValueError: the result is not on the reference's shape, or a metric cannot score it.
    """
    if result.shape != case.reference.shape:
        raise ValueError(f"shapes differ: result {result.shape} vs reference {case.reference.shape}")
    references = {FULL_DOSE: case, **(further or {})}
    row: dict = {}
    named = references[visibility_reference(list(references))].regions
    regions = [dict(region) for region in named]
    for reference, against in references.items():
        reference_row, reference_regions = _score(against, result, reference, named)
        row.update(reference_row)
        for region, scored in zip(regions, reference_regions, strict=True):
            region.update(scored)
    row[BODY_MASK_COLUMN] = case.body_rule
    columns = region_columns(list(references))
    return ({key: row[key] for key in metric_columns(list(references))},
            [{key: region.get(key, math.nan) for key in columns} for region in regions])


def _score(case: CaseReference, result: np.ndarray, reference: Reference,
           named: Sequence[Mapping]) -> tuple[dict, list[dict]]:
    """Every metric that reads ``reference`` against it (``case``): a metrics row and region rows, under
    ``reference``'s column names (:meth:`~.registry.Metric.columns`). ``named``: the region rows to score (the
    case's, with the lesions' ``visible`` marks of the judging reference)."""
    regions = [dict(region) for region in named]
    for metric in region_metrics().values():
        for region, values in zip(regions, metric.score(case, result, regions), strict=True):
            region.update(values)
    row = {column: metric.score(case, result, regions)
           for name, metric in result_metrics().items() for column in metric.columns(name, reference)}
    kept = set(scored_region_columns((reference,)))
    return row, [{column + reference.suffix: value for column, value in region.items()
                  if column + reference.suffix in kept} for region in regions]
