"""Scoring a denoised simulated case against its full dose, beside the low dose and the Gaussian baseline."""

from __future__ import annotations

import numpy as np

from ..sim.cases import EvaluationCase
from .baselines import best_gaussian_filter
from .tables import lesion_quantitation, quality_table


def score_against_full_dose(case: EvaluationCase, denoised: np.ndarray) -> dict:
    """Compare the low dose, the best Gaussian filter and ``denoised`` (X, Y, Z, SUV) with the full dose.

    Returns:
        ``{"gaussian_fwhm_mm": ..., "metrics": {name: {"psnr", "ssim", "nrmse", "psnr_body"}},
        "lesions": {...}}`` for the names "low_dose", "gaussian" and "denoised"; lesion
        statistics also list "full_dose" and "truth".
    """
    fwhm, gaussian = best_gaussian_filter(case.low, case.full, case.voxel_size)
    images = {"low_dose": case.low, "gaussian": gaussian, "denoised": denoised}
    return {
        "gaussian_fwhm_mm": fwhm,
        "metrics": quality_table(images, case.full, mask=case.labels > 0),
        "lesions": lesion_quantitation({**images, "full_dose": case.full, "truth": case.truth}, case.lesions),
    }
