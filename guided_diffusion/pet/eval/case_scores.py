"""Scoring results of one case against its full-dose reference: the metrics row and the region rows.

A :class:`CaseReference` holds what every result of a case is compared with
(the reference, its regions, masks computed once); :func:`score_result`
scores one result against it. Definitions (README, *Evaluating results*):

* ``psnr``: the paper's, :func:`~.metrics.psnr_paper` (peak = max SUV of the
  unclipped reference, MSE of the volumes clipped to [0, 16] SUV, whole volume);
  ``psnr_body`` the same with the MSE inside the body mask;
* ``psnr_challenge``, ``ssim_challenge``, ``nrmse_challenge``: the UDPET challenge's;
* ``ssim``: the paper's, :func:`~.metrics.ssim_paper` (clipped to [0, 16], data_range 16);
* ``nrmse``: RMSE / RMS of the reference, :func:`~.metrics.nrmse`;
* ``liver_cv`` (result) and ``liver_cv_reference``: :func:`~.regions.liver_cv`;
* ``lesion_*``: means over lesions of the per-lesion errors (percent) and contrast recovery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .metrics import PAPER_SUV_CLIP, nrmse, nrmse_challenge, psnr_challenge, psnr_paper, ssim_challenge, ssim_paper
from .regions import BODY_THRESHOLD_SUV, LIVER_MARGIN_MM, body_mask, lesion_shells, liver_cv, region_rows, split_lesions

#: The columns of a metrics row, in order (besides case, method and grouping keys).
METRIC_COLUMNS = (
    "psnr", "psnr_body", "psnr_challenge", "ssim", "ssim_challenge", "nrmse", "nrmse_challenge",
    "liver_cv", "liver_cv_reference", "lesion_count",
    "lesion_suvmax_error_pct", "lesion_suvmean_error_pct", "lesion_tla_error_pct",
    "lesion_suvmax_abs_error_pct", "lesion_suvmean_abs_error_pct", "lesion_tla_abs_error_pct", "lesion_cr",
    "body_mask",
)

#: The columns of a region row, in order.
REGION_COLUMNS = (
    "region", "kind", "label", "voxels", "volume_ml",
    "suvmean_result", "suvmean_reference", "suvmean_error_pct",
    "suvmax_result", "suvmax_reference", "suvmax_error_pct",
    "tla_result", "tla_reference", "tla_error_pct", "contrast_recovery",
)


@dataclass
class CaseReference:
    """A full-dose reference with its regions, prepared once for all results of a case.

    Build it with :func:`prepare_reference`.

    Attributes:
        reference: (X, Y, Z) SUV, float32.
        voxel_size: (x, y, z) mm.
        labels: organ label map or None; lesions: lesion ids per voxel or None.
        label_names: organ names by label value.
        liver: boolean liver mask, or None when there is no liver label.
        body: boolean body mask; body_rule: how it was made ("labels > 0" or "reference > 0.1 SUV").
        shells: each lesion's box, mask and background shell.
        liver_cv_reference: liver CV of the reference (NaN without a liver).
    """

    reference: np.ndarray
    voxel_size: tuple[float, float, float]
    labels: np.ndarray | None
    lesions: np.ndarray | None
    label_names: dict[int, str]
    liver: np.ndarray | None
    body: np.ndarray
    body_rule: str
    shells: dict = field(default_factory=dict)
    liver_cv_reference: float = float("nan")
    suv_clip: float = PAPER_SUV_CLIP
    liver_margin_mm: float = LIVER_MARGIN_MM

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in ml."""
        return float(np.prod(self.voxel_size)) / 1000.0


def prepare_reference(reference: np.ndarray, voxel_size: Sequence[float], labels: np.ndarray | None = None,
                      lesions: np.ndarray | None = None, label_names: Mapping[int, str] | None = None,
                      liver_label: int | None = None, suv_clip: float = PAPER_SUV_CLIP,
                      liver_margin_mm: float = LIVER_MARGIN_MM,
                      body_threshold: float = BODY_THRESHOLD_SUV) -> CaseReference:
    """Prepare a reference and its regions for :func:`score_result`.

    Args:
        reference: (X, Y, Z) full-dose SUV.
        voxel_size: (x, y, z) in mm (for the liver margin and volumes in ml).
        labels: optional organ label map (0 = outside the body).
        lesions: optional lesion map: integer ids, or a binary mask split into connected lesions.
        label_names: organ names by label value.
        liver_label: the liver's label value; None: no liver CV.
        suv_clip: the paper's SUV clip for ``psnr``, ``psnr_body`` and ``ssim``.
        liver_margin_mm: liver erosion margin for the CV.
        body_threshold: SUV threshold of the body mask when there are no labels.
    """
    lesions = None if lesions is None else split_lesions(lesions)
    body, rule = body_mask(reference, labels, body_threshold)
    liver = None
    if labels is not None and liver_label is not None and (labels == liver_label).any():
        liver = labels == liver_label
    voxel_size = tuple(float(v) for v in voxel_size)
    case = CaseReference(np.asarray(reference, dtype=np.float32), voxel_size, labels, lesions,
                         dict(label_names or {}), liver, body, rule,
                         lesion_shells(lesions, body) if lesions is not None else {},
                         suv_clip=suv_clip, liver_margin_mm=liver_margin_mm)
    if liver is not None:
        case.liver_cv_reference = liver_cv(reference, liver, lesions, voxel_size, liver_margin_mm)
    return case


def score_result(case: CaseReference, result: np.ndarray) -> tuple[dict, list[dict]]:
    """Score one (X, Y, Z) SUV result against a prepared reference.

    Returns:
        (the metrics row: :data:`METRIC_COLUMNS` -> value, NaN where undefined;
        the region rows: :data:`REGION_COLUMNS` -> value, one per organ label and lesion).
    """
    ref = case.reference
    if result.shape != ref.shape:
        raise ValueError(f"shapes differ: result {result.shape} vs reference {ref.shape}")
    row: dict = {
        "psnr": psnr_paper(result, ref, suv_clip=case.suv_clip),
        "psnr_body": psnr_paper(result, ref, mask=case.body, suv_clip=case.suv_clip) if case.body.any() else math.nan,
        "psnr_challenge": psnr_challenge(result, ref),
        "ssim": ssim_paper(result, ref, suv_clip=case.suv_clip),
        "ssim_challenge": ssim_challenge(result, ref),
        "nrmse": nrmse(result, ref),
        "nrmse_challenge": nrmse_challenge(result, ref),
        "liver_cv": math.nan, "liver_cv_reference": case.liver_cv_reference,
    }
    if case.liver is not None:
        row["liver_cv"] = liver_cv(result, case.liver, case.lesions, case.voxel_size, case.liver_margin_mm)
    regions = region_rows(result, ref, case.voxel_ml, case.labels, case.lesions, case.label_names, case.body,
                          case.shells)
    lesions = [r for r in regions if r["kind"] == "lesion"]
    row["lesion_count"] = len(lesions) if case.lesions is not None else math.nan
    for name in ("suvmax", "suvmean", "tla"):
        errors = [r[f"{name}_error_pct"] for r in lesions]
        row[f"lesion_{name}_error_pct"] = _mean(errors)
        row[f"lesion_{name}_abs_error_pct"] = _mean([abs(e) for e in errors])
    row["lesion_cr"] = _mean([r["contrast_recovery"] for r in lesions])
    row["body_mask"] = case.body_rule
    return {key: row[key] for key in METRIC_COLUMNS}, [{key: r.get(key, math.nan) for key in REGION_COLUMNS}
                                                       for r in regions]


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
