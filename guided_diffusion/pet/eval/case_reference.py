"""A full-dose reference prepared once for every result of a case: its masks, regions and reference values.

:func:`prepare_reference` builds a :class:`CaseReference`; the metrics of
:mod:`.registry` score each result against it (:func:`.case_scores.score_result`).
:func:`with_reference` scores the same regions against another volume of the
case (the noiseless reconstruction of a simulated subject). Each prepared
reference marks which lesions are visible in it; :func:`.case_scores.score_result`
takes the marks of the reference lesions are judged in
(:func:`~.registry.visibility_reference`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .metrics import PAPER_SUV_CLIP
from .regions import (
    BODY_THRESHOLD_SUV,
    LIVER_MARGIN_MM,
    VISIBILITY_RATIO,
    body_mask,
    lesion_shells,
    liver_cv,
    organ_map,
    region_index,
    split_lesions,
    with_visibility,
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
        organs: the organ map without lesion voxels (:func:`~.regions.organ_map`), or None without labels.
        regions: one row per organ and lesion naming it (:func:`~.regions.region_index`), the per-case table's rows,
            lesions marked ``visible`` in this reference (:func:`~.regions.with_visibility`).
        visibility_ratio: a lesion is visible when its SUVmax is at least this multiple of its background's mean.
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
    organs: np.ndarray | None = None
    regions: list[dict] = field(default_factory=list)
    visibility_ratio: float = VISIBILITY_RATIO

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in ml."""
        return float(np.prod(self.voxel_size)) / 1000.0


def prepare_reference(reference: np.ndarray, voxel_size: Sequence[float], labels: np.ndarray | None = None,
                      lesions: np.ndarray | None = None, label_names: Mapping[int, str] | None = None,
                      liver_label: int | None = None, suv_clip: float = PAPER_SUV_CLIP,
                      liver_margin_mm: float = LIVER_MARGIN_MM,
                      body_threshold: float = BODY_THRESHOLD_SUV,
                      visibility_ratio: float = VISIBILITY_RATIO) -> CaseReference:
    """Prepare a reference and its regions for :func:`~.case_scores.score_result`.

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
        visibility_ratio: a lesion is visible in this reference when its SUVmax is at least this multiple of
            its background shell's mean (:func:`~.regions.lesion_visible`).
    """
    lesions = None if lesions is None else split_lesions(lesions)
    body, rule = body_mask(reference, labels, body_threshold)
    liver = None
    if labels is not None and liver_label is not None and (labels == liver_label).any():
        liver = labels == liver_label
    voxel_size = tuple(float(v) for v in voxel_size)
    organs = None if labels is None else organ_map(labels, lesions)
    case = CaseReference(np.asarray(reference, dtype=np.float32), voxel_size, labels, lesions,
                         dict(label_names or {}), liver, body, rule,
                         lesion_shells(lesions, body) if lesions is not None else {},
                         suv_clip=suv_clip, liver_margin_mm=liver_margin_mm, organs=organs,
                         visibility_ratio=visibility_ratio)
    regions = region_index(organs, lesions, sorted(case.shells), case.label_names, case.voxel_ml)
    case.regions = with_visibility(regions, case.reference, case.shells, visibility_ratio)
    if liver is not None:
        case.liver_cv_reference = liver_cv(reference, liver, lesions, voxel_size, liver_margin_mm)
    return case


def with_reference(case: CaseReference, reference: np.ndarray) -> CaseReference:
    """``case`` with another (X, Y, Z) SUV reference on its grid, e.g. the noiseless reconstruction.

    The masks, regions and lesion shells stay those of ``case`` (made from its
    labels, or its reference's threshold), so the region rows of both references
    match one to one; the reference's own values (its liver CV, which lesions are
    visible in it) are recomputed.

    Raises:
        ValueError: ``reference`` is not on ``case``'s shape.
    """
    reference = np.asarray(reference, dtype=np.float32)
    if reference.shape != case.reference.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs the full dose's {case.reference.shape}")
    cv = math.nan if case.liver is None else liver_cv(reference, case.liver, case.lesions, case.voxel_size,
                                                      case.liver_margin_mm)
    regions = with_visibility(case.regions, reference, case.shells, case.visibility_ratio)
    return replace(case, reference=reference, liver_cv_reference=cv, regions=regions)
