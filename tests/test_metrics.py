import math

import numpy as np
import pytest

from guided_diffusion.pet.eval.metrics import nrmse, psnr, roi_stats, ssim


def test_psnr_hand_computed():
    ref = np.array([0.0, 1.0, 2.0, 4.0])
    pred = ref + np.array([1.0, -1.0, 0.0, 0.0])  # MSE = 0.5, range = 4
    assert psnr(pred, ref) == pytest.approx(10 * math.log10(16 / 0.5))
    assert psnr(pred, ref, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.5))
    assert psnr(ref, ref) == math.inf


def test_psnr_mask_uses_only_masked_voxels():
    ref = np.array([0.0, 1.0, 2.0, 4.0])
    pred = np.array([0.0, 2.0, 2.0, 9.0])
    mask = np.array([True, True, True, False])  # MSE = 1/3, range 2
    assert psnr(pred, ref, mask=mask) == pytest.approx(10 * math.log10(4 / (1 / 3)))
    with pytest.raises(ValueError, match="empty"):
        psnr(pred, ref, mask=np.zeros(4, bool))


def test_nrmse_hand_computed():
    ref = np.array([3.0, 4.0])  # RMS = sqrt(12.5)
    pred = np.array([3.0, 6.0])  # RMSE = sqrt(2)
    assert nrmse(pred, ref) == pytest.approx(math.sqrt(2) / math.sqrt(12.5))
    assert nrmse(np.zeros(2), ref) == pytest.approx(1.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    ref = rng.random((12, 10, 9))
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(ref + rng.normal(0, 0.3, ref.shape), ref) < 0.9
    assert ssim(ref[:5, :4, :3], ref[:5, :4, :3]) == pytest.approx(1.0)  # window shrinks to 3


def test_roi_stats():
    volume = np.arange(8, dtype=float).reshape(2, 2, 2)
    mask = np.zeros((2, 2, 2), bool)
    mask[0, 0, :] = True  # values 0 and 1
    assert roi_stats(volume, mask) == {"mean": 0.5, "max": 1.0, "std": 0.5, "voxels": 2.0}
    with pytest.raises(ValueError, match="empty"):
        roi_stats(volume, np.zeros_like(mask))


@pytest.mark.parametrize("metric", [psnr, ssim, nrmse, roi_stats])
def test_shape_mismatch(metric):
    with pytest.raises(ValueError, match="shapes differ"):
        metric(np.ones((4, 4, 4)), np.ones((4, 4, 5)))
