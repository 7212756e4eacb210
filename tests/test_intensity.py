import numpy as np
import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.intensity import model_to_suv, restore_saturated, suv_to_model


def test_suv_to_model_clips_and_scales():
    suv = np.array([-1.0, 0.0, 4.0, 16.0, 30.0])
    np.testing.assert_allclose(suv_to_model(suv), [0.0, 0.0, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(suv_to_model(suv, suv_max=8.0), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert suv_to_model(suv).dtype == np.float32


def test_model_to_suv_inverts_inside_range_and_drops_negatives():
    suv = np.linspace(0, 16, 33).reshape(3, 11)
    np.testing.assert_allclose(model_to_suv(suv_to_model(suv)), suv, rtol=1e-6)
    np.testing.assert_allclose(model_to_suv(np.array([-0.1, 0.5, 1.1]), 10.0), [0.0, 5.0, 11.0], rtol=1e-6)


def test_restore_saturated_keeps_hot_input_voxels():
    input_suv = np.array([1.0, 15.0, 16.0, 40.0])
    denoised = np.array([1.5, 14.0, 15.9, 16.0])
    np.testing.assert_allclose(restore_saturated(denoised, input_suv, 16.0), [1.5, 14.0, 15.9, 40.0])
    with pytest.raises(ValueError, match="shapes differ"):
        restore_saturated(denoised, input_suv[:3], 16.0)


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_suv_max_names_flag(bad):
    for call in (lambda: suv_to_model(np.ones(3), bad), lambda: model_to_suv(np.ones(3), bad)):
        with pytest.raises(UserError, match="--suv_max"):
            call()
