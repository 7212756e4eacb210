"""Scoring one result against its prepared reference: the metrics row and the per-case region rows.

:func:`score_result` runs every metric of :data:`.registry.METRICS` on one
result against a :class:`~.case_reference.CaseReference` (built once per case
by :func:`~.case_reference.prepare_reference`). The metrics' definitions are in
the README, *Evaluating results*, and in :mod:`.case_metrics`.
"""

from __future__ import annotations

import math

import numpy as np

from .case_reference import CaseReference
from .regions import REGION_KEYS
from .registry import region_metrics, result_metrics

#: The column after the metrics in a metrics row: how the body mask was made (``CaseReference.body_rule``).
BODY_MASK_COLUMN = "body_mask"


def metric_columns() -> tuple[str, ...]:
    """The columns of a metrics row, in order (besides case, method and grouping keys): every result metric's,
    then :data:`BODY_MASK_COLUMN`."""
    return (*result_metrics(), BODY_MASK_COLUMN)


def region_columns() -> tuple[str, ...]:
    """The columns of a region row, in order: the region's name and size, then every per-region metric's."""
    return (*REGION_KEYS, *(column for metric in region_metrics().values() for column in metric.region_columns))


def score_result(case: CaseReference, result: np.ndarray) -> tuple[dict, list[dict]]:
    """Score one (X, Y, Z) SUV result against a prepared reference.

    Returns:
        (the metrics row: :func:`metric_columns` -> value, NaN where undefined;
        the region rows: :func:`region_columns` -> value, one per organ label and lesion).

    Raises:
        ValueError: the result is not on the reference's shape, or a metric cannot score it.
    """
    if result.shape != case.reference.shape:
        raise ValueError(f"shapes differ: result {result.shape} vs reference {case.reference.shape}")
    regions = [dict(region) for region in case.regions]
    for metric in region_metrics().values():
        for region, values in zip(regions, metric.score(case, result, regions), strict=True):
            region.update(values)
    row = {name: metric.score(case, result, regions) for name, metric in result_metrics().items()}
    row[BODY_MASK_COLUMN] = case.body_rule
    return row, [{key: region.get(key, math.nan) for key in region_columns()} for region in regions]
