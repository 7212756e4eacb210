import numpy as np
import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.patches import (
    PatchBlender,
    axis_starts,
    blend_weights,
    crop_volume,
    pad_shape,
    pad_volume,
    plan_patches,
)


@pytest.mark.parametrize("length", [1, 5, 16, 17, 31, 64, 70, 97])
@pytest.mark.parametrize("patch,overlap", [(16, 0), (16, 4), (16, 8), (16, 15), (7, 3)])
def test_axis_starts_cover_with_overlap_and_fewest_patches(length, patch, overlap):
    starts = axis_starts(length, patch, overlap)
    if length <= patch:
        assert starts == [0]
        return
    assert starts[0] == 0 and starts[-1] == length - patch
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (patch - gaps >= overlap).all()
    assert gaps.max() - gaps.min() <= 1  # evenly spread
    # One patch fewer would need a stride larger than patch - overlap.
    if len(starts) > 2:
        assert (length - patch) / (len(starts) - 2) > patch - overlap


def test_axis_starts_examples():
    assert axis_starts(10, 4, 0) == [0, 3, 6]
    assert axis_starts(8, 4, 0) == [0, 4]
    assert axis_starts(9, 4, 2) == [0, 1, 3, 5]


def test_axis_starts_rejects_overlap_not_below_patch():
    with pytest.raises(UserError, match="overlap"):
        axis_starts(40, 8, 8)


def test_pad_shape_and_crop():
    assert pad_shape((5, 7, 3), (8, 8, 8), (1, 1, 1)) == (8, 8, 8)
    assert pad_shape((37, 45, 70), (16, 16, 16), (8, 8, 1)) == (40, 48, 70)
    a = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    padded = pad_volume(a, (8, 8, 4))
    assert padded.shape == (8, 8, 4) and padded[5:].sum() == 0 and padded[:, :, 3].sum() == 0
    np.testing.assert_array_equal(crop_volume(padded, a.shape), a)
    with pytest.raises(ValueError):
        pad_volume(a, (4, 8, 8))


def test_plan_covers_padded_volume_and_clips_patch():
    plan = plan_patches((5, 7, 3), (16, 16, 16), 4, multiple=(4, 4, 1))
    assert plan.padded_shape == (16, 16, 16) and plan.patch_size == (16, 16, 16) and len(plan) == 1
    plan = plan_patches((37, 45, 70), (16, 16, 32), (4, 4, 8), multiple=(8, 8, 1))
    assert plan.padded_shape == (40, 48, 70)
    count = np.zeros(plan.padded_shape, int)
    for box in plan.boxes:
        count[box] += 1
        assert count[box].shape == plan.patch_size
    assert count.min() >= 1


def test_plan_rejects_patch_not_multiple_of_network_factor():
    with pytest.raises(UserError, match="multiple of 8"):
        plan_patches((64, 64, 64), (20, 16, 16), 4, multiple=(8, 8, 1))
    with pytest.raises(UserError, match="overlap"):
        plan_patches((64, 64, 64), 16, 16)


@pytest.mark.parametrize("mode", ["linear", "gaussian"])
def test_blend_weights_positive_symmetric_and_peaked_in_the_middle(mode):
    w = blend_weights((9, 12, 5), mode, (3, 4, 2))
    assert w.shape == (9, 12, 5) and w.min() > 0 and w.max() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1])
    for profile in (w[:, 6, 2], w[4, :, 2], w[4, 6, :]):
        half = profile[: (len(profile) + 1) // 2]
        assert (np.diff(half) >= 0).all()


def test_linear_weights_ramp_over_overlap():
    w = blend_weights((10, 1, 1), "linear", (3, 0, 0))[:, 0, 0]
    np.testing.assert_allclose(w, [0.25, 0.5, 0.75, 1, 1, 1, 1, 0.75, 0.5, 0.25])


def test_blend_weights_unknown_mode():
    with pytest.raises(UserError, match="linear"):
        blend_weights((4, 4, 4), "cosine")


@pytest.mark.parametrize("mode", ["linear", "gaussian"])
@pytest.mark.parametrize(
    "shape,patch,overlap,multiple",
    [
        ((37, 45, 70), (16, 16, 32), (4, 8, 8), (8, 8, 1)),
        ((5, 7, 3), (8, 8, 8), 2, (4, 4, 1)),
        ((33, 16, 97), (16, 16, 24), (0, 0, 0), (1, 1, 1)),
        ((33, 16, 97), (8, 8, 16), (7, 3, 15), (2, 2, 1)),
    ],
)
def test_blender_stitches_input_exactly(mode, shape, patch, overlap, multiple):
    rng = np.random.default_rng(1)
    volume = rng.random(shape, dtype=np.float32) * 10
    plan = plan_patches(shape, patch, overlap, multiple)
    padded = pad_volume(volume, plan.padded_shape)
    blender = PatchBlender(plan, mode)
    for i, box in enumerate(plan.boxes):
        blender.add(i, padded[box])
    result = blender.result()
    assert result.shape == shape and result.dtype == np.float32
    np.testing.assert_allclose(result, volume, rtol=1e-6, atol=1e-6)


def test_blender_averages_disagreeing_patches_smoothly():
    plan = plan_patches((1, 1, 24), (1, 1, 16), (0, 0, 8))
    blender = PatchBlender(plan, "linear")
    blender.add(0, np.zeros((1, 1, 16)))
    blender.add(1, np.ones((1, 1, 16)))
    line = blender.result()[0, 0]
    assert line[:8].max() == 0 and line[16:].min() == 1
    assert (np.diff(line) >= 0).all() and 0 < line[12] < 1


def test_blender_rejects_missing_duplicate_and_misshaped_patches():
    plan = plan_patches((20, 8, 8), 8, 2)
    blender = PatchBlender(plan)
    blender.add(0, np.ones(plan.patch_size))
    with pytest.raises(ValueError, match="twice"):
        blender.add(0, np.ones(plan.patch_size))
    with pytest.raises(ValueError, match="shape"):
        blender.add(1, np.ones((8, 8, 7)))
    with pytest.raises(RuntimeError, match="never added"):
        blender.result()
