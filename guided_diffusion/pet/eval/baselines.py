"""Reference denoisers to compare the diffusion model against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..filters import gaussian_smooth
from .metrics import psnr

#: FWHM candidates (mm) searched for the best Gaussian filter; up to 20 mm, since at 1/100 dose the best
#: width on the simulated data exceeds 12 mm.
DEFAULT_FWHM_GRID_MM = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0)


def best_gaussian_filter(
    low: np.ndarray,
    full: np.ndarray,
    voxel_size: float | Sequence[float],
    fwhm_grid_mm: Sequence[float] = DEFAULT_FWHM_GRID_MM,
) -> tuple[float, np.ndarray]:
    """The Gaussian post-filter of ``low`` with the highest PSNR against ``full``.

    An oracle choice (it looks at the full-dose image), so it is the strongest
    version of this baseline.

    Args:
        low, full: (X, Y, Z) SUV volumes of the same shape.
        voxel_size: mm, one value or one per axis.
        fwhm_grid_mm: FWHM values to try.

    Returns:
        (best FWHM in mm, the filtered volume, float32).
    """
    best_fwhm, best_image, best_score = 0.0, np.asarray(low, np.float32), -np.inf
    for fwhm in fwhm_grid_mm:
        image = gaussian_smooth(low, fwhm, voxel_size)
        score = psnr(image, full)
        if score > best_score:
            best_fwhm, best_image, best_score = float(fwhm), image, score
    return best_fwhm, best_image
