"""Image-quality tables: several denoised versions of one volume against full dose."""

from __future__ import annotations

import numpy as np

from .metrics import nrmse, psnr, roi_stats, ssim


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


def lesion_quantitation(images: dict[str, np.ndarray], lesions: np.ndarray) -> dict:
    """Lesion SUVmax and SUVmean of each image, averaged over the lesions.

    Args:
        images: name -> (X, Y, Z) SUV volume.
        lesions: (X, Y, Z) integer map, lesion i > 0 where ``lesions == i``.

    Returns:
        ``{"num_lesions": n, name: {"suv_max": ..., "suv_mean": ...}, ...}`` (means over lesions).
    """
    ids = [int(i) for i in np.unique(lesions) if i]
    table: dict = {"num_lesions": len(ids)}
    if not ids:
        return table
    for name, image in images.items():
        stats = [roi_stats(image, lesions == i) for i in ids]
        table[name] = {"suv_max": float(np.mean([s["max"] for s in stats])),
                       "suv_mean": float(np.mean([s["mean"] for s in stats]))}
    return table
