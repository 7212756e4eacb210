"""Image-quality tables: several denoised versions of one volume against full dose."""

from __future__ import annotations

import numpy as np

from .metrics import nrmse, psnr, ssim


def quality_table(candidates: dict[str, np.ndarray], full: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """PSNR (dB), SSIM and NRMSE of each candidate against ``full``.

    Args:
        candidates: name -> (X, Y, Z) SUV volume, e.g. low dose, Gaussian filter, denoised.
        full: the full-dose (X, Y, Z) reference in SUV.
        mask: optional body mask; PSNR is then also reported inside it ("psnr_body").

    Returns:
        ``{name: {"psnr": ..., "ssim": ..., "nrmse": ...[, "psnr_body": ...]}}``; PSNR uses
        the reference's range (max - min) as peak.
    """
    table = {}
    for name, image in candidates.items():
        row = {"psnr": psnr(image, full), "ssim": ssim(image, full), "nrmse": nrmse(image, full)}
        if mask is not None:
            row["psnr_body"] = psnr(image, full, mask=mask)
        table[name] = row
    return table
