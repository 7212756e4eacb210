"""How noisy is a PET volume? A robust estimate of its voxel noise, in SUV.

The warm start of the sampler (``--start_timestep auto``) needs to know how
much noise the input carries: a 1/100-dose image must be diffused further
before the reverse process than a 1/4-dose one. Reconstructed PET noise is
spatially correlated and grows with activity, so no estimate is exact; this
one only has to rise monotonically with the noise and be insensitive to edges
and hot spots, which the median absolute deviation of a high-pass residual is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_erosion

from ..errors import UserError
from .filters import gaussian_smooth

#: FWHM (mm) of the smoothing whose residual is the high-pass image.
HIGH_PASS_FWHM_MM = 8.0
#: Voxels count as body when the smoothed image exceeds this fraction of its mean (air is excluded).
BODY_FRACTION_OF_MEAN = 0.5
#: Voxels are clipped to this percentile range before anything is measured (see :func:`clip_outliers`), so a
#: few absurd ones (a hot pixel, a corrupt value) move neither the body mask's mean nor the high-pass residual.
OUTLIER_PERCENTILE = 99.9
#: MAD -> standard deviation for Gaussian noise.
MAD_TO_SD = 1.4826


def estimate_noise_sd(suv: np.ndarray, voxel_size: float | Sequence[float]) -> float:
    """Robust standard deviation of the high-frequency part of ``suv`` inside the body, in SUV.

    The volume is first clipped by :func:`clip_outliers` (one voxel at 1e6 SUV
    would otherwise lift the mean above the whole body, and the mask with it).
    Then ``residual = clipped - gaussian_smooth(clipped, HIGH_PASS_FWHM_MM)``;
    the estimate is ``MAD_TO_SD * median(|residual - median(residual)|)`` over
    body voxels (where the smoothed image exceeds ``BODY_FRACTION_OF_MEAN`` of its
    mean, eroded by 1.5 smoothing FWHMs so the skin's edge stays out; a volume too
    small for that keeps its uneroded body). The median ignores organ edges and
    lesions, which are few; it still includes the smooth texture of organs, so a
    noise-free image gives a small positive value.

    Args:
        suv: ``(X, Y, Z)`` volume in SUV.
        voxel_size: mm, one value or one per axis.

    Returns:
        The noise SD in SUV (>= 0).

    Raises:
        UserError: the volume is not 3D, holds NaN/inf, or has no body voxels.
    """
    suv = np.asarray(suv, dtype=np.float32)
    if suv.ndim != 3:
        raise UserError(f"noise estimate needs an (X, Y, Z) volume, got shape {suv.shape}")
    if not np.isfinite(suv).all():
        raise UserError("noise estimate: the volume holds NaN or infinite values")
    suv = clip_outliers(suv)
    smooth = gaussian_smooth(suv, HIGH_PASS_FWHM_MM, voxel_size)
    spacing = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    margin = np.ceil(1.5 * HIGH_PASS_FWHM_MM / spacing).astype(int)
    body = smooth > BODY_FRACTION_OF_MEAN * float(smooth.mean())
    if not body.any():
        raise UserError("noise estimate: no voxel above half the mean; is the volume empty?")
    inner = binary_erosion(body, structure=np.ones(tuple(2 * margin + 1), bool))
    body = inner if inner.any() else body
    residual = (suv - smooth)[body].astype(np.float64)
    return float(MAD_TO_SD * np.median(np.abs(residual - np.median(residual))))


def clip_outliers(suv: np.ndarray) -> np.ndarray:
    """``suv`` clipped to the ``OUTLIER_PERCENTILE`` range of its values, as float32 of the same shape.

    The top is that percentile of the positive voxels (so air, however much of
    the volume it fills, does not lower it); the bottom is the complementary
    percentile of all voxels, or 0 when that is positive (so air is never
    raised). So a tail of absurd voxels (up to 0.1 % of the positive voxels
    above, of all voxels below) is flattened; in a normal volume only the peaks
    of the hottest organs are, which the median of the residual does not see.
    """
    positive = suv[suv > 0]
    top = float(np.percentile(positive, OUTLIER_PERCENTILE)) if positive.size else 0.0
    bottom = min(0.0, float(np.percentile(suv, 100.0 - OUTLIER_PERCENTILE)))
    return np.clip(suv, bottom, top).astype(np.float32)
