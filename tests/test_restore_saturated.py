"""--keep_saturated: one rule for every model kind (a network's and the Gaussian filter's), off by default.

The default follows benchmarks/restore_saturated.py (docs/restore_saturated.csv): against the clean
reconstruction, putting the noisy input back above --suv_max cost every method PSNR and lesion SUVmax accuracy.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from denoise_helpers import denoising_script
from test_denoise import Divisor, IdentitySampler

from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.model_kinds.base import network_denoiser
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.filters import gaussian_smooth

SUV_MAX = 16.0
HOT = (6, 6, 6)


def run_settings(keep_saturated: bool) -> SimpleNamespace:
    """The parts of a run's settings that the network denoiser and the Gaussian kind read."""
    flags = {"keep_saturated": keep_saturated, "patch_axial": 8, "max_patch_inplane": 16, "patch_overlap": 2,
             "blend": "linear"}
    return SimpleNamespace(flags=flags, sampling=SamplingOptions(), suv_max=SUV_MAX, data_scale=SUV_MAX,
                           gaussian_fwhm_mm=6.0)


def volume_with_a_hot_voxel() -> np.ndarray:
    """A (12, 12, 12) SUV volume near 2 with one voxel of SUV 40, above the clip."""
    suv = np.random.default_rng(0).uniform(1.0, 3.0, (12, 12, 12)).astype(np.float32)
    suv[HOT] = 40.0
    return suv


def network_result(suv: np.ndarray, keep_saturated: bool) -> np.ndarray:
    """A network kind's result through the run's wiring, with a predictor that returns its input."""
    denoiser = network_denoiser(Divisor(4), IdentitySampler(), run_settings(keep_saturated))
    return denoiser.denoise(suv, "v").mean


def gaussian_result(suv: np.ndarray, keep_saturated: bool) -> np.ndarray:
    """The Gaussian kind's result through the run's wiring."""
    method = MODEL_KINDS["gaussian"].prepare(run_settings(keep_saturated))
    return method.denoise(suv, np.full(3, 2.0), "v", 0)[0].mean


@pytest.mark.parametrize("result", [network_result, gaussian_result], ids=["network", "gaussian"])
def test_every_kind_keeps_the_saturated_input_only_when_asked(result):
    suv = volume_with_a_hot_voxel()
    kept, plain = result(suv, True), result(suv, False)
    assert kept[HOT] == pytest.approx(40.0)
    assert plain[HOT] < SUV_MAX + 1e-4
    others = np.ones(suv.shape, bool)
    others[HOT] = False
    np.testing.assert_array_equal(kept[others], plain[others])


def test_the_gaussian_kind_filters_unchanged_without_the_restore():
    suv = volume_with_a_hot_voxel()
    np.testing.assert_allclose(gaussian_result(suv, False), gaussian_smooth(suv, 6.0, 2.0), atol=1e-6)


def test_keep_saturated_is_off_by_default():
    args = denoising_script().create_argparser().parse_args([])
    assert args.keep_saturated is False
