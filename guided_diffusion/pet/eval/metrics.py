"""Image-quality metrics for denoised PET volumes against a full-dose reference.

Inputs are arrays of equal shape (usually (X, Y, Z) in SUV); values are
computed in float64. A shape mismatch raises ValueError.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

#: Default SSIM window (voxels per side); shrunk to fit small volumes.
SSIM_WINDOW = 7


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: pred {pred.shape} vs ref {ref.shape}")
    return pred, ref


def _range(ref: np.ndarray, data_range: float | None) -> float:
    data_range = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range} (is the reference constant?)")
    return data_range


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``.

    Args:
        pred, ref: arrays of the same shape.
        data_range: peak value; default ``max(ref) - min(ref)`` over the voxels evaluated.
        mask: optional boolean array of the same shape; only its voxels count.

    Returns:
        PSNR in dB; ``inf`` when pred equals ref.
    """
    pred, ref = _pair(pred, ref)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != ref.shape:
            raise ValueError(f"shapes differ: mask {mask.shape} vs ref {ref.shape}")
        if not mask.any():
            raise ValueError("mask is empty")
        pred, ref = pred[mask], ref[mask]
    data_range = _range(ref, data_range)
    mse = float(np.mean((pred - ref) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity over the volume (3D windows, skimage's defaults).

    The window is ``SSIM_WINDOW`` voxels per side, or the largest odd size that
    fits the smallest axis (at least 3). ``data_range`` defaults to
    ``max(ref) - min(ref)``.
    """
    pred, ref = _pair(pred, ref)
    window = min(SSIM_WINDOW, min(ref.shape) - (1 - min(ref.shape) % 2))
    if window < 3:
        raise ValueError(f"SSIM needs every axis >= 3 voxels, got shape {ref.shape}")
    return float(structural_similarity(pred, ref, data_range=_range(ref, data_range), win_size=window))


def nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Normalised RMSE: ``sqrt(mean((pred - ref)**2)) / sqrt(mean(ref**2))``.

    Normalised by the RMS of the reference (not its range or mean), so 0 is
    perfect and 1 is as large an error as predicting all zeros.
    """
    pred, ref = _pair(pred, ref)
    ref_rms = float(np.sqrt(np.mean(ref**2)))
    if ref_rms == 0:
        raise ValueError("reference is all zeros; NRMSE is undefined")
    return float(np.sqrt(np.mean((pred - ref) ** 2)) / ref_rms)


def roi_stats(volume: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Statistics of ``volume`` inside a region (e.g. a lesion), in the volume's units.

    Returns:
        ``{"mean", "max", "std", "voxels"}``; ``std`` is the population standard
        deviation (ddof=0), ``voxels`` the number of voxels in the mask.
    """
    volume = np.asarray(volume, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if volume.shape != mask.shape:
        raise ValueError(f"shapes differ: volume {volume.shape} vs mask {mask.shape}")
    values = volume[mask]
    if values.size == 0:
        raise ValueError("mask is empty")
    return {"mean": float(values.mean()), "max": float(values.max()), "std": float(values.std()), "voxels": float(values.size)}
