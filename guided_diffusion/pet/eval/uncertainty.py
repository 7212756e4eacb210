"""Does the ensemble's standard deviation predict the actual error?

``scripts/test.py --num_ensemble K`` writes the voxel-wise mean of K samples and
their standard deviation (SD). These statistics ask whether large SD marks
large error, and whether the SD has the right size, inside the body:

- ``sd_mean``: mean SD (SUV); ``rmse``: root-mean-square error of the mean (SUV);
- ``rmse_over_sd``: ``rmse / sqrt(mean(SD**2))``; 1 when the SD has the size of
  the error, above 1 when the ensemble is over-confident;
- ``sd_error_correlation``: Spearman rank correlation of SD and ``|error|``;
- ``coverage_2sd``: fraction of voxels with ``|error| <= 2 SD`` (about 0.95
  for Gaussian errors of that SD).

The error of a sample mean of K posterior draws has, at best, variance
``SD**2 (1 + 1/K)``-like size only against the truth; against a noisy full-dose
reference its own noise adds in, so the statistics are reported against any
reference given (the full dose, and in simulations the noiseless truth too).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

#: The statistics :func:`uncertainty_statistics` returns, in order.
UNCERTAINTY_COLUMNS = ("sd_mean", "rmse", "rmse_over_sd", "sd_error_correlation", "coverage_2sd")


def uncertainty_statistics(
    mean: np.ndarray, sd: np.ndarray, reference: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """Calibration of the ensemble SD against the error of the ensemble mean.

    Args:
        mean: (X, Y, Z) ensemble mean in SUV.
        sd: (X, Y, Z) ensemble standard deviation in SUV (>= 0).
        reference: (X, Y, Z) the image the error is taken against, in SUV.
        mask: (X, Y, Z) boolean, the voxels counted (e.g. the body).

    Returns:
        The values named in ``UNCERTAINTY_COLUMNS`` (see the module docstring);
        ``rmse_over_sd`` and the correlation are NaN when the SD is zero everywhere.

    Raises:
        ValueError: shapes differ, the mask is empty, or SD is negative.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (mean, sd, reference)]
    mask = np.asarray(mask, dtype=bool)
    if any(a.shape != mask.shape for a in arrays):
        raise ValueError(f"shapes differ: {[a.shape for a in arrays]} and mask {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    mean, sd, reference = (a[mask] for a in arrays)
    if (sd < 0).any():
        raise ValueError("standard deviations must be >= 0")
    error = np.abs(mean - reference)
    rms_sd = float(np.sqrt(np.mean(sd**2)))
    constant = rms_sd == 0 or np.ptp(sd) == 0 or np.ptp(error) == 0
    return {
        "sd_mean": float(sd.mean()),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "rmse_over_sd": float(np.sqrt(np.mean(error**2)) / rms_sd) if rms_sd > 0 else float("nan"),
        "sd_error_correlation": float("nan") if constant else float(spearmanr(sd, error).statistic),
        "coverage_2sd": float(np.mean(error <= 2 * sd)),
    }
