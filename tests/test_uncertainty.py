"""Ensemble-SD calibration statistics against hand-computed cases."""

import numpy as np
import pytest

from guided_diffusion.pet.eval.uncertainty import UNCERTAINTY_COLUMNS, uncertainty_statistics


def test_calibrated_gaussian_errors_give_ratio_one_and_95_percent_coverage():
    rng = np.random.default_rng(0)
    shape = (40, 40, 40)
    reference = np.full(shape, 2.0)
    sd = rng.uniform(0.1, 1.0, shape)
    mean = reference + sd * rng.standard_normal(shape)
    stats = uncertainty_statistics(mean, sd, reference, np.ones(shape, bool))
    assert list(stats) == list(UNCERTAINTY_COLUMNS)
    assert stats["rmse_over_sd"] == pytest.approx(1.0, abs=0.02)
    assert stats["coverage_2sd"] == pytest.approx(0.954, abs=0.01)
    assert stats["sd_error_correlation"] > 0.3  # larger SD, larger |error|
    assert stats["sd_mean"] == pytest.approx(sd.mean())


def test_overconfident_ensemble_and_hand_computed_values():
    reference = np.zeros((2, 2, 1))
    mean = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    sd = np.array([[[1.0], [1.0]], [[1.0], [3.0]]])
    stats = uncertainty_statistics(mean, sd, reference, np.ones_like(reference, bool))
    assert stats["rmse"] == pytest.approx(np.sqrt(30 / 4))
    assert stats["rmse_over_sd"] == pytest.approx(np.sqrt(30 / 4) / np.sqrt(12 / 4))
    assert stats["coverage_2sd"] == pytest.approx(3 / 4)  # 1 and 2 <= 2, 4 <= 6; 3 > 2
    # Ranks of |error| 1, 2, 3, 4 and of SD 2, 2, 2, 4 (ties share the mean rank): r = 3 / sqrt(5 * 3).
    assert stats["sd_error_correlation"] == pytest.approx(3 / np.sqrt(15))


def test_mask_selects_voxels_and_zero_sd_gives_nan():
    mean = np.ones((3, 3, 3))
    reference = np.zeros((3, 3, 3))
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    stats = uncertainty_statistics(mean, np.zeros_like(mean), reference, mask)
    assert stats["rmse"] == 1.0 and stats["coverage_2sd"] == 0.0
    assert np.isnan(stats["rmse_over_sd"]) and np.isnan(stats["sd_error_correlation"])
    with pytest.raises(ValueError, match="empty"):
        uncertainty_statistics(mean, mean, reference, np.zeros_like(mask))
    with pytest.raises(ValueError, match="shapes"):
        uncertainty_statistics(mean, mean[:2], reference, mask)
    with pytest.raises(ValueError, match=">= 0"):
        uncertainty_statistics(mean, -np.ones_like(mean), reference, np.ones_like(mask))
