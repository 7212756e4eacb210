"""Gaussian filtering with the width given as a FWHM in mm, as scanners and papers state it.

The simulator uses it for the scanner resolution, the scatter kernel and the
reconstruction post-filter; the evaluation uses it as the baseline denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

#: FWHM of a Gaussian divided by its standard deviation: 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def fwhm_to_sigma(fwhm_mm: float, spacing_mm: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """Standard deviation in voxels, one per axis, of a Gaussian of ``fwhm_mm``.

    Args:
        fwhm_mm: full width at half maximum in mm.
        spacing_mm: voxel spacing in mm, one value or ``ndim`` values.
        ndim: number of axes.

    Returns:
        ``FWHM / (2 sqrt(2 ln 2)) / spacing`` per axis, in voxels.
    """
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (ndim,))
    return tuple(float(s) for s in fwhm_mm / FWHM_PER_SIGMA / spacing)


def gaussian_smooth(volume: np.ndarray, fwhm_mm: float, voxel_size: float | Sequence[float]) -> np.ndarray:
    """Smooth a volume with an isotropic Gaussian of the given FWHM.

    Args:
        volume: ``(X, Y, Z)`` array; edges are extended by their nearest values
            (a volume cut through the body must not darken at its ends).
        fwhm_mm: full width at half maximum in mm; 0 returns a float32 copy.
        voxel_size: voxel size in mm, one value or one per axis.

    Returns:
        float32 array of the same shape, smoothed with :func:`fwhm_to_sigma` voxels per axis.

    Raises:
        ValueError: ``fwhm_mm`` is negative.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if fwhm_mm < 0:
        raise ValueError(f"fwhm_mm must be >= 0, got {fwhm_mm}")
    if fwhm_mm == 0:
        return volume.copy()
    return gaussian_filter(volume, sigma=fwhm_to_sigma(fwhm_mm, voxel_size, volume.ndim), mode="nearest")
