"""The built-in metrics of :mod:`.registry`, as scorers of one result against its prepared case.

Every scorer is called ``score(case, result, regions)``: ``case`` the
:class:`~.case_reference.CaseReference`, ``result`` the (X, Y, Z) SUV volume,
``regions`` the result's per-case table rows so far (the case's regions with the
columns of every per-region metric). A result metric returns one value (NaN
when undefined); a per-region metric returns one dict of its columns per row of
``regions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import metrics
from .case_reference import CaseReference
from .regions import contrast_recoveries, suv_statistics
from .regions import liver_cv as liver_cv_of

Regions = Sequence[Mapping[str, object]]


def psnr(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The paper's PSNR (dB), whole volume, SUV clipped to ``[0, case.suv_clip]``."""
    return metrics.psnr_paper(result, case.reference, suv_clip=case.suv_clip)


def psnr_body(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The paper's PSNR (dB) with the MSE inside the body mask; NaN when the mask is empty."""
    if not case.body.any():
        return math.nan
    return metrics.psnr_paper(result, case.reference, mask=case.body, suv_clip=case.suv_clip)


def psnr_challenge(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The UDPET challenge's PSNR (dB)."""
    return metrics.psnr_challenge(result, case.reference)


def ssim(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The paper's SSIM, SUV clipped to ``[0, case.suv_clip]``."""
    return metrics.ssim_paper(result, case.reference, suv_clip=case.suv_clip)


def ssim_challenge(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The UDPET challenge's SSIM."""
    return metrics.ssim_challenge(result, case.reference)


def nrmse(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """RMSE / RMS of the reference."""
    return metrics.nrmse(result, case.reference)


def nrmse_challenge(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The UDPET challenge's NRMSE: RMSE / (max - min) of the reference."""
    return metrics.nrmse_challenge(result, case.reference)


def liver_cv(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The result's liver CV (:func:`~.regions.liver_cv`); NaN without a liver."""
    if case.liver is None:
        return math.nan
    return liver_cv_of(result, case.liver, case.lesions, case.voxel_size, case.liver_margin_mm)


def liver_cv_reference(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
    """The reference's liver CV (computed once per case); NaN without a liver."""
    return case.liver_cv_reference


def scored_lesions(regions: Regions, size_bin: str | None = None) -> list[Mapping[str, object]]:
    """The lesion rows of ``regions`` that lesion summaries average: the visible ones (``visible`` True, judged in
    the reference of :func:`~.registry.visibility_reference`), of ``size_bin`` when given (a key of
    :data:`~.regions.LESION_SIZE_BINS`)."""
    return [r for r in regions if r["kind"] == "lesion" and r.get("visible") is True
            and (size_bin is None or r.get("size_bin") == size_bin)]


def lesion_count(size_bin: str | None = None) -> Callable[[CaseReference, np.ndarray, Regions], int | float]:
    """A scorer: the number of lesions scored (:func:`scored_lesions`, of ``size_bin`` when given); NaN without a
    lesion map."""
    def score(case: CaseReference, result: np.ndarray, regions: Regions) -> int | float:
        return math.nan if case.lesions is None else len(scored_lesions(regions, size_bin))

    return score


def lesion_mean(column: str, absolute: bool = False,
                size_bin: str | None = None) -> Callable[[CaseReference, np.ndarray, Regions], float]:
    """A scorer: the mean over the lesions scored (:func:`scored_lesions`, of ``size_bin`` when given) of a
    per-region ``column`` (of its absolute value when ``absolute``), finite values only; NaN when there are none."""
    def score(case: CaseReference, result: np.ndarray, regions: Regions) -> float:
        values = [float(r.get(column, math.nan)) for r in scored_lesions(regions, size_bin)]
        finite = [abs(v) if absolute else v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    return score


def region_suv(case: CaseReference, result: np.ndarray, regions: Regions) -> list[dict]:
    """Per region: SUVmean, SUVmax (and TLA for lesions) of result and reference with errors in %."""
    return suv_statistics(result, case.reference, case.organs, case.lesions, regions)


def region_contrast_recovery(case: CaseReference, result: np.ndarray, regions: Regions) -> list[dict]:
    """Per lesion: contrast recovery against its background shell."""
    return contrast_recoveries(result, case.reference, regions, case.shells)
