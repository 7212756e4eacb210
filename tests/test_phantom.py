"""The whole-body phantom: reproducibility, anatomy, uptake, attenuation, lesions."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from guided_diffusion.errors import UserError
from guided_diffusion.pet.phantom import (
    LABELS,
    LESION_DIAMETER_MM,
    LESION_SUV,
    MU_BONE_RANGE,
    MU_LUNG_RANGE,
    MU_SOFT_TISSUE,
    SUV_RANGES,
    make_phantom,
)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(7, voxel_size=8.0)


def test_same_seed_same_phantom_other_seed_differs(phantom):
    again = make_phantom(7, voxel_size=8.0)
    other = make_phantom(8, voxel_size=8.0)
    np.testing.assert_array_equal(phantom.activity, again.activity)
    np.testing.assert_array_equal(phantom.labels, again.labels)
    assert phantom.lesions == again.lesions
    assert phantom.activity.shape != other.activity.shape or not np.array_equal(phantom.activity, other.activity)


def test_whole_body_geometry(phantom):
    x, y, z = phantom.activity.shape
    assert phantom.activity.dtype == phantom.mu.dtype == np.float32
    assert x == y and x * phantom.voxel_size >= 500
    assert 1000 <= z * phantom.voxel_size <= 1120
    np.testing.assert_allclose(np.diag(phantom.affine)[:3], phantom.voxel_size)
    # Head at high Z: the brain lies above the liver, which lies above the bladder.
    centre_z = {name: np.nonzero(phantom.labels == LABELS[name])[2].mean() for name in ("brain", "liver", "bladder")}
    assert centre_z["brain"] > centre_z["liver"] > centre_z["bladder"]
    # +X is the patient's right: liver right of the spleen and the heart.
    centre_x = {name: np.nonzero(phantom.labels == LABELS[name])[0].mean() for name in ("liver", "spleen", "myocardium")}
    assert centre_x["liver"] > centre_x["myocardium"] > centre_x["spleen"]


def test_organs_present_with_uptake_in_range(phantom):
    outside_lesions = phantom.lesion_mask == 0
    for name, (low, high) in SUV_RANGES.items():
        voxels = phantom.activity[(phantom.labels == LABELS[name]) & outside_lesions]
        assert voxels.size > 0, name
        # The texture modulates uptake by a few percent around the organ value.
        assert low * 0.9 <= np.median(voxels) <= high * 1.1, name
    assert np.all(phantom.activity[phantom.labels == 0] == 0)
    assert phantom.label_names[LABELS["liver"]] == "liver"


def test_attenuation_values(phantom):
    mu, labels = phantom.mu, phantom.labels
    outside_lesions = phantom.lesion_mask == 0
    assert np.all(mu[labels == 0] == 0)
    assert np.allclose(mu[(labels == LABELS["liver"]) & outside_lesions], MU_SOFT_TISSUE)
    lung = mu[(labels == LABELS["lungs"]) & outside_lesions]
    assert MU_LUNG_RANGE[0] <= lung.min() and lung.max() <= MU_LUNG_RANGE[1]
    bone = mu[(labels == LABELS["bone"]) & outside_lesions]
    assert MU_BONE_RANGE[0] <= bone.min() and bone.max() <= MU_BONE_RANGE[1]


def test_lesions_inside_body_and_listed(phantom):
    assert len(phantom.lesions) >= 1
    mask = phantom.lesion_mask
    assert np.all(phantom.labels[mask > 0] > 0)
    assert set(np.unique(mask)) - {0} <= set(range(1, len(phantom.lesions) + 1))
    for i, lesion in enumerate(phantom.lesions, start=1):
        assert LESION_DIAMETER_MM[0] <= lesion.diameter_mm <= LESION_DIAMETER_MM[1]
        assert LESION_SUV[0] <= lesion.suv <= LESION_SUV[1]
        centre = np.linalg.solve(phantom.affine, [*lesion.centre_mm, 1.0])[:3]
        np.testing.assert_allclose(centre, lesion.centre_voxel, atol=1e-6)
        assert phantom.labels[lesion.centre_voxel] == LABELS[lesion.organ]
        own = mask == i
        if own.any():  # a later lesion may cover an earlier one
            assert abs(np.median(phantom.activity[own]) / lesion.suv - 1) < 0.15


def test_short_slab_is_centred_on_liver_and_any_voxel_size():
    slab = make_phantom(3, voxel_size=5.0, axial_extent_mm=60)
    assert slab.activity.shape[2] == 12
    assert (slab.labels == LABELS["liver"]).any()
    body = binary_dilation(slab.labels > 0)
    assert not body[[0, -1]].any() and not body[:, [0, -1]].any()


def test_matrix_size_given_and_too_small():
    assert make_phantom(3, voxel_size=8.0, axial_extent_mm=40, matrix_size=70).activity.shape[:2] == (70, 70)
    with pytest.raises(UserError, match="matrix size"):
        make_phantom(3, voxel_size=8.0, axial_extent_mm=40, matrix_size=20)
