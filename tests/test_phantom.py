"""The whole-body phantom against facts that do not come from its code.

Uptake and attenuation are checked against published values written out here,
lesion volumes against the volume of a sphere, and the layout against anatomy
(head up, liver on the patient's right, a left-right symmetric body outline).
"""

import math

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from guided_diffusion.errors import UserError
from guided_diffusion.pet.sim.phantom import LABELS, make_phantom

SEEDS = (7, 8, 9)

# Typical SUVmean of normal adult organs in FDG PET, wide enough to hold the spread of
# published normal values (e.g. Zincirkeser et al., J Int Med Res 2007, "Standardized
# uptake values of normal organs on 18F-FDG PET and CT imaging"; the liver and blood pool
# as in PERCIST, Wahl et al., J Nucl Med 2009). Myocardium, kidneys and bladder vary most
# (fasting, urine).
TYPICAL_FDG_SUV = {
    "fat": (0.1, 0.6),
    "muscle": (0.4, 1.3),
    "lungs": (0.3, 0.9),
    "bone": (0.3, 1.2),
    "bone_marrow": (1.0, 3.0),
    "blood_pool": (1.0, 2.5),
    "liver": (1.3, 3.2),
    "spleen": (1.2, 2.8),
    "brain": (5.0, 13.0),
    "myocardium": (1.0, 15.0),
    "kidneys": (2.0, 12.0),
    "bladder": (5.0, 80.0),
}

# Linear attenuation at 511 keV in 1/mm: water 0.0096 (NIST XCOM mass attenuation
# 0.0969 cm^2/g at 511 keV); fat is lighter (about 0.9 g/cm^3), inflated lung about
# 0.25-0.35 g/cm^3, bone from spongy to cortical (1.2-1.9 g/cm^3).
MU_511_PER_MM = {
    "liver": (0.0093, 0.0101),
    "muscle": (0.0093, 0.0101),
    "fat": (0.0080, 0.0093),
    "lungs": (0.0015, 0.0040),
    "bone": (0.0110, 0.0190),
}


@pytest.fixture(scope="module")
def phantoms():
    """Whole bodies at 8 mm voxels, one per seed in ``SEEDS``."""
    return {seed: make_phantom(seed, voxel_size=8.0) for seed in SEEDS}


@pytest.fixture(scope="module")
def phantom(phantoms):
    return phantoms[SEEDS[0]]


def _organ(phantom, name: str) -> np.ndarray:
    """Voxels of organ ``name`` outside lesions."""
    return (phantom.labels == LABELS[name]) & (phantom.lesion_mask == 0)


def test_same_seed_same_phantom_other_seed_differs(phantom):
    again = make_phantom(SEEDS[0], voxel_size=8.0)
    other = make_phantom(SEEDS[1], voxel_size=8.0)
    for name in ("activity", "mu", "labels", "lesion_mask", "affine"):
        np.testing.assert_array_equal(getattr(phantom, name), getattr(again, name), err_msg=name)
    assert phantom.lesions == again.lesions
    assert phantom.activity.shape != other.activity.shape or not np.array_equal(phantom.activity, other.activity)


def test_every_organ_is_present_and_only_the_body_has_activity(phantoms):
    for phantom in phantoms.values():
        assert set(np.unique(phantom.labels)) == set(LABELS.values())
        assert {phantom.label_names[v] for v in LABELS.values()} == set(LABELS)
        air = phantom.labels == 0
        assert np.all(phantom.activity[air] == 0) and np.all(phantom.mu[air] == 0)
        assert np.all(phantom.activity[~air] > 0) and np.all(phantom.mu[~air] > 0)
        assert phantom.activity.dtype == phantom.mu.dtype == np.float32


def test_organ_uptake_is_typical_of_fdg(phantoms):
    for seed, phantom in phantoms.items():
        median = {name: float(np.median(phantom.activity[_organ(phantom, name)])) for name in TYPICAL_FDG_SUV}
        for name, (low, high) in TYPICAL_FDG_SUV.items():
            assert low <= median[name] <= high, (seed, name, median[name])
        # The Deauville and PERCIST references rely on liver > mediastinal blood pool.
        assert median["liver"] > median["blood_pool"] > median["muscle"] > median["fat"], seed
        assert median["brain"] > median["liver"] and median["bladder"] > median["liver"], seed


def test_organs_are_nearly_uniform_but_not_flat(phantom):
    # A texture of a few percent, far below the organs' contrast with each other.
    cv = np.std(phantom.activity[_organ(phantom, "liver")]) / np.mean(phantom.activity[_organ(phantom, "liver")])
    assert 0.005 < cv < 0.1


def test_attenuation_at_511_kev(phantoms):
    for seed, phantom in phantoms.items():
        for name, (low, high) in MU_511_PER_MM.items():
            values = phantom.mu[_organ(phantom, name)]
            assert low <= values.min() and values.max() <= high, (seed, name, values.min(), values.max())


def test_whole_body_geometry(phantom):
    x, y, z = phantom.activity.shape
    size = phantom.voxel_size
    # A clinical whole-body field of view is at least 50 cm across; vertex to mid-thigh of an adult is about 1 m.
    assert x == y and x * size >= 500
    assert 950 <= z * size <= 1150
    np.testing.assert_allclose(phantom.affine[:3, :3], np.diag([size] * 3))
    # RAS+: in-plane voxel centres symmetric about the scanner axis.
    np.testing.assert_allclose(phantom.affine[:2, 3], -(x - 1) / 2 * size)


def _centre(phantom, name: str) -> np.ndarray:
    return np.array(np.nonzero(phantom.labels == LABELS[name])).mean(axis=1)


def test_anatomy_head_up_liver_on_the_right(phantoms):
    for phantom in phantoms.values():
        c = {name: _centre(phantom, name) for name in ("brain", "lungs", "liver", "spleen", "myocardium", "bladder")}
        # +Z is superior: brain above lungs above liver above bladder.
        assert c["brain"][2] > c["lungs"][2] > c["liver"][2] > c["bladder"][2]
        # +X is the patient's right: the liver is right of the heart, the spleen left of it.
        assert c["liver"][0] > c["myocardium"][0] > c["spleen"][0]


def test_body_outline_is_left_right_symmetric(phantom):
    body = phantom.labels > 0
    mirrored = body[::-1]
    dice = 2 * np.sum(body & mirrored) / (body.sum() + mirrored.sum())
    assert dice > 0.99
    # Paired organs, one on each side (+X is the right): kidneys of comparable size (8 mm voxels
    # and normal variation allow up to a factor 2); the right lung is the larger, as the heart
    # takes room on the left.
    half = phantom.labels.shape[0] // 2
    kidneys = phantom.labels == LABELS["kidneys"]
    assert 0.5 < kidneys[half:].sum() / kidneys[:half].sum() < 2
    lungs = phantom.labels == LABELS["lungs"]
    assert lungs[half:].sum() > lungs[:half].sum() > 0


def test_lesions_are_hot_spots_inside_the_body(phantoms):
    for phantom in phantoms.values():
        assert len(phantom.lesions) >= 1
        mask = phantom.lesion_mask
        assert np.all(phantom.labels[mask > 0] > 0)
        for i, lesion in enumerate(phantom.lesions, start=1):
            centre = np.linalg.solve(phantom.affine, [*lesion.centre_mm, 1.0])[:3]
            np.testing.assert_allclose(centre, lesion.centre_voxel, atol=1e-6)
            assert phantom.labels[lesion.centre_voxel] == LABELS[lesion.organ]
            own = mask == i
            if own.any():  # a later lesion may cover an earlier one
                assert abs(np.median(phantom.activity[own]) / lesion.suv - 1) < 0.15
                # FDG-avid lesions are hotter than the organ they sit in.
                assert np.median(phantom.activity[own]) > np.median(phantom.activity[_organ(phantom, lesion.organ)])


def test_lesion_volume_is_that_of_a_sphere_of_its_diameter():
    voxel = 2.0
    checked = 0
    for seed in (11, 13, 19):
        phantom = make_phantom(seed, voxel_size=voxel, axial_extent_mm=200)
        body = phantom.labels > 0
        index = np.indices(body.shape, sparse=True)
        for i, lesion in enumerate(phantom.lesions, start=1):
            radius = lesion.diameter_mm / 2
            if radius < 5:  # too few voxels to measure a volume
                continue
            # Only whole lesions: apart from the others, inside the slab and inside the body.
            if any(math.dist(lesion.centre_mm, other.centre_mm) < radius + other.diameter_mm / 2 + voxel
                   for other in phantom.lesions if other is not lesion):
                continue
            distance = np.sqrt(sum(((index[k] - lesion.centre_voxel[k]) * voxel) ** 2 for k in range(3)))
            ball = distance <= radius + voxel
            z_margin = (radius + voxel) / voxel
            if not (z_margin <= lesion.centre_voxel[2] < body.shape[2] - z_margin and body[ball].all()):
                continue
            volume = np.sum(phantom.lesion_mask == i) * voxel**3
            assert volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.2), (seed, lesion)
            checked += 1
    assert checked >= 5


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
