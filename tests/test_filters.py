"""The Gaussian filter given by its FWHM in mm (the simulator's post-filter and the baseline denoiser)."""

import numpy as np
import pytest

from guided_diffusion.pet.filters import fwhm_to_sigma, gaussian_smooth


def test_gaussian_smooth_keeps_mean_and_shape():
    volume = np.random.default_rng(0).random((10, 12, 6)).astype(np.float32)
    smooth = gaussian_smooth(volume, 8.0, 2.0)
    assert smooth.shape == volume.shape and smooth.dtype == np.float32
    assert smooth.std() < volume.std()
    np.testing.assert_allclose(smooth.mean(), volume.mean(), rtol=0.02)
    np.testing.assert_array_equal(gaussian_smooth(volume, 0.0, 2.0), volume)


@pytest.mark.parametrize("voxel_size", [(0.5, 0.5, 0.5), (0.25, 0.5, 1.0)])
def test_point_spread_has_the_requested_fwhm_in_mm(voxel_size):
    # The width at half maximum of a smoothed point, measured along each axis in mm, is the FWHM asked for.
    fwhm_mm, n = 6.0, 81
    point = np.zeros((n, n, n), np.float32)
    point[n // 2, n // 2, n // 2] = 1.0
    spread = gaussian_smooth(point, fwhm_mm, voxel_size)
    for axis, spacing in enumerate(voxel_size):
        profile = np.moveaxis(spread, axis, 0)[:, n // 2, n // 2]
        above = np.flatnonzero(profile >= profile.max() / 2)
        # Linear interpolation of the two half-maximum crossings.
        half = profile.max() / 2
        left = above[0] - (profile[above[0]] - half) / (profile[above[0]] - profile[above[0] - 1])
        right = above[-1] + (profile[above[-1]] - half) / (profile[above[-1]] - profile[above[-1] + 1])
        assert (right - left) * spacing == pytest.approx(fwhm_mm, rel=0.03), axis


def test_fwhm_to_sigma_per_axis():
    # sigma = FWHM / 2.3548 for a Gaussian, in voxels of each axis.
    assert fwhm_to_sigma(2.3548200450309493, (1.0, 0.5), 2) == pytest.approx((1.0, 2.0))
    assert fwhm_to_sigma(4.0, 2.0, 3) == pytest.approx((0.8493218,) * 3)


def test_negative_fwhm_is_refused():
    with pytest.raises(ValueError, match="fwhm_mm"):
        gaussian_smooth(np.ones((2, 2, 2)), -1.0, 1.0)
