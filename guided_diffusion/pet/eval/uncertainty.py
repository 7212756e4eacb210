"""Does the ensemble's standard deviation predict the actual error?

``scripts/test.py --num_ensemble K`` writes the voxel-wise mean of K samples and
their standard deviation (SD). These statistics ask whether large SD marks
large error, and whether the SD has the right size, inside the body:

- ``sd_mean``: mean SD (SUV); ``rmse``: root-mean-square error of the mean (SUV);
- ``rmse_over_sd``: ``rmse / sqrt(mean(SD**2))``; 1 when the SD has the size of
  the error, above 1 when the ensemble is over-confident;
- ``sd_error_correlation``: Spearman rank correlation of SD and ``|error|``;
- ``coverage_2sd``: fraction of voxels with ``|error| <= 2 SD`` (about 0.95
  for Gaussian errors of that SD; for K members see below).

What a calibrated ensemble scores (:func:`calibrated_targets`) depends on K.
Assume the K members and the reference are K + 1 independent draws from the
same Gaussian predictive distribution N(mu, sigma**2) at each voxel (the
reference is "one more draw": for the noiseless truth this is what a calibrated
posterior means; a noisy full-dose reference adds its own noise and sits above
the target). Then the ensemble mean's error ``mean - reference`` has variance
``sigma**2 (1 + 1/K)``, the SD (ddof = 1) has ``E[SD**2] = sigma**2`` and is
independent of that error, so

- ``rmse_over_sd`` -> ``sqrt(1 + 1/K)`` over many voxels (1.22 for K = 2, 1 as K grows);
- ``(mean - reference) / (SD sqrt(1 + 1/K))`` follows Student's t with K - 1
  degrees of freedom, so ``coverage_2sd`` -> ``P(|t_(K-1)| <= 2 / sqrt(1 + 1/K))``
  (0.65 for K = 2, 0.83 for K = 4, 0.954 as K grows).

(An ensemble centred on the truth, members = truth + noise of SD sigma, would
instead give ``sqrt(1/K)`` and ``P(|t_(K-1)| <= 2 sqrt(K))``: that is not a
calibrated predictive distribution and is not the target.)

Calibration: ``benchmarks/calibrate_uncertainty.py`` fits one factor c on
validation cases (:func:`required_factors`, :func:`fit_factor`) so that
``mean +- 2 c SD`` covers 95 % of body voxels; ``scripts/test.py`` multiplies the
SD map it writes by the factor in the model's card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.stats import spearmanr
from scipy.stats import t as student_t

#: The statistics :func:`uncertainty_statistics` returns, in order.
UNCERTAINTY_COLUMNS = ("sd_mean", "rmse", "rmse_over_sd", "sd_error_correlation", "coverage_2sd")
#: The half-width, in SDs, of the interval whose coverage is scored and calibrated.
INTERVAL_SDS = 2.0
#: The fraction of body voxels the calibrated interval ``mean +- 2 c SD`` covers.
CALIBRATION_COVERAGE = 0.95


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
    mean, sd, reference = _masked(mean, sd, reference, mask)
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


def calibrated_targets(num_members: int) -> dict[str, float]:
    """What :func:`uncertainty_statistics` gives, over many voxels, for a calibrated ensemble of ``num_members``.

    Assumes the members and the reference are independent draws of one Gaussian
    predictive distribution per voxel, and the SD has ddof = 1 (see the module docstring).

    Returns:
        ``{"rmse_over_sd": sqrt(1 + 1/K), "coverage_2sd": P(|t_(K-1)| <= 2 / sqrt(1 + 1/K))}``.

    Raises:
        ValueError: ``num_members`` < 2 (one member has no SD).
    """
    if num_members < 2:
        raise ValueError(f"an ensemble needs at least 2 members for an SD, got {num_members}")
    inflation = math.sqrt(1 + 1 / num_members)
    coverage = 2 * student_t.cdf(INTERVAL_SDS / inflation, df=num_members - 1) - 1
    return {"rmse_over_sd": inflation, "coverage_2sd": float(coverage)}


def with_targets(stats: Mapping[str, float], num_members: int) -> dict[str, str]:
    """Each statistic as text, with the calibrated target of K = ``num_members`` beside those that have one:
    ``{"rmse_over_sd": "1.410 (target for K = 2: 1.225)", "rmse": "0.120", ...}``."""
    targets = calibrated_targets(num_members)
    return {name: f"{value:.3f}" + (f" (target for K = {num_members}: {targets[name]:.3f})" if name in targets else "")
            for name, value in stats.items()}


def required_factors(mean: np.ndarray, sd: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per voxel of ``mask``, the smallest factor c with ``|mean - reference| <= 2 c SD``.

    Args:
        mean, sd, reference: (X, Y, Z) in SUV, as for :func:`uncertainty_statistics`.
        mask: (X, Y, Z) boolean, the voxels counted.

    Returns:
        1D float64 array, one value per voxel of the mask (0 where the error is 0,
        inf where the SD is 0 and the error is not).

    Raises:
        ValueError: shapes differ, the mask is empty, or SD is negative.
    """
    mean, sd, reference = _masked(mean, sd, reference, mask)
    error = np.abs(mean - reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(error == 0, 0.0, error / (INTERVAL_SDS * sd))


def fit_factor(required: np.ndarray, coverage: float = CALIBRATION_COVERAGE) -> float:
    """The smallest factor whose interval ``mean +- 2 c SD`` covers ``coverage`` of the voxels.

    Args:
        required: :func:`required_factors` of every voxel fitted on (pooled over cases).
        coverage: the fraction to cover, in (0, 1).

    Returns:
        c: a voxel's own required factor, so at least ``coverage`` of them have ``required <= c``;
        inf when the SD is zero where more than ``1 - coverage`` of the errors are not.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    return float(np.quantile(np.asarray(required, dtype=np.float64), coverage, method="inverted_cdf"))


def _masked(mean: np.ndarray, sd: np.ndarray, reference: np.ndarray,
            mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The voxels of ``mask`` of each volume as float64, checked (see :func:`uncertainty_statistics`)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (mean, sd, reference)]
    mask = np.asarray(mask, dtype=bool)
    if any(a.shape != mask.shape for a in arrays):
        raise ValueError(f"shapes differ: {[a.shape for a in arrays]} and mask {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    mean, sd, reference = (a[mask] for a in arrays)
    if (sd < 0).any():
        raise ValueError("standard deviations must be >= 0")
    return mean, sd, reference
