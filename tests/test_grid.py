"""The model grid: reorientation to RAS (exact) and resampling to the model's voxel size and back.

The phantom is a smooth function of world position (mm), so every grid samples
the same object: a body (an ellipsoid with a soft edge, SUV 1) holding three
Gaussian hot spots (SUV 4-7, FWHM 9-14 mm), about the smoothness of clinical
whole-body PET. Sampled on an input grid and on the planned model grid (through
``model_affine``), it checks where the model grid lies, not only that the way
back undoes the way there.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io.grid import plan_grid
from guided_diffusion.pet.io.reorient import reorientation
from guided_diffusion.pet.io.volume import voxel_spacing

FOV_MM = np.array([48.0, 40.0, 52.0])
CENTRE_MM = np.array([5.0, -3.0, 100.0])
SEMI_AXES_MM = np.array([14.0, 10.0, 17.0])
HOT_SPOTS = [(3.0, (5, 2, 6), 4.0), (5.0, (-6, -3, -8), 4.0), (2.0, (0, 3, -2), 6.0)]  # (SUV above body, centre, sigma mm)


def phantom(world: np.ndarray) -> np.ndarray:
    """SUV at world points (..., 3) in mm."""
    offset = world - CENTRE_MM
    radius = np.sqrt(((offset / SEMI_AXES_MM) ** 2).sum(-1))
    body = 1 / (1 + np.exp((radius - 1) * 6))  # edge 2-3 mm wide
    spots = sum(a * np.exp(-((offset - c) ** 2).sum(-1) / (2 * s * s)) for a, c, s in HOT_SPOTS)
    return body * (1 + spots)


def world_points(shape, affine: np.ndarray) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]


def in_body(world: np.ndarray) -> np.ndarray:
    """The body and 5 mm around it: where the activity is counted."""
    return np.sqrt((((world - CENTRE_MM) / SEMI_AXES_MM) ** 2).sum(-1)) < 1.4


def scan(voxel_size, orientation: str):
    """(array, affine) of the phantom: voxels (X, Y, Z) of ``voxel_size`` mm, axial (RAS) or coronal DICOM (LIP)."""
    size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    shape = np.round(FOV_MM / size).astype(int)
    affine = np.diag([*size, 1.0])
    affine[:3, 3] = CENTRE_MM - size * (shape - 1) / 2
    if orientation == "coronal":
        # DICOM coronal slices: rows along the patient's left, columns head to feet, slices anterior to posterior.
        to_axial = np.array([[-1, 0, 0, shape[0] - 1], [0, 0, -1, shape[1] - 1], [0, -1, 0, shape[2] - 1], [0, 0, 0, 1]])
        affine, shape = affine @ to_axial, shape[[0, 2, 1]]
    shape = tuple(int(n) for n in shape)
    return phantom(world_points(shape, affine)).astype(np.float32), affine


INPUTS = {"4x4x2 mm": (4.0, 4.0, 2.0), "2 mm": 2.0, "1.65 mm": 1.65}


@pytest.mark.parametrize("orientation", ["axial", "coronal"])
@pytest.mark.parametrize("model_mm", [4.0, 1.65])
@pytest.mark.parametrize("voxels", INPUTS)
def test_there_and_back_keeps_activity_and_values(voxels, model_mm, orientation):
    volume, affine = scan(INPUTS[voxels], orientation)
    mapping = plan_grid(volume.shape, affine, model_mm)
    on_model = mapping.to_model(volume)
    back = mapping.to_input(on_model)

    assert back.shape == volume.shape and back.dtype == np.float32
    assert np.allclose(mapping.model_affine[:3, :3], np.diag([model_mm] * 3))
    body = in_body(world_points(volume.shape, affine))
    assert abs(back[body].sum() / volume[body].sum() - 1) < 0.01  # total activity in the body
    error = np.abs(back - volume)[body]
    assert error.mean() < 0.04 * volume[body].mean() and error.max() < 0.15 * volume.max()
    assert back.min() >= 0 and on_model.min() >= 0
    # The model grid is where model_affine says: compared with the phantom sampled there directly.
    truth = phantom(world_points(mapping.model_shape, mapping.model_affine))
    assert np.abs(on_model - truth).max() < 0.1 * truth.max()
    model_body = in_body(world_points(mapping.model_shape, mapping.model_affine))
    assert abs(on_model[model_body].sum() * model_mm ** 3 / (volume[body].sum() * np.prod(np.broadcast_to(INPUTS[voxels], 3))) - 1) < 0.01


def test_a_finer_model_grid_loses_almost_nothing():
    volume, affine = scan(2.0, "axial")
    mapping = plan_grid(volume.shape, affine, 1.65)
    truth = phantom(world_points(mapping.model_shape, mapping.model_affine))
    assert np.abs(mapping.to_model(volume) - truth).max() < 0.01 * truth.max()
    assert np.abs(mapping.to_input(mapping.to_model(volume)) - volume).max() < 0.01 * volume.max()


@pytest.mark.parametrize("voxels,model_mm", list(itertools.product(INPUTS, [4.0, 1.65])))
def test_centre_of_activity_stays_in_place(voxels, model_mm):
    volume, affine = scan(INPUTS[voxels], "coronal")
    mapping = plan_grid(volume.shape, affine, model_mm)
    on_model = mapping.to_model(volume)

    def centre(array, grid_affine):
        return (world_points(array.shape, grid_affine) * array[..., None]).sum((0, 1, 2)) / array.sum()

    assert np.abs(centre(on_model, mapping.model_affine) - centre(volume, affine)).max() < 0.05  # mm


def test_model_grid_covers_the_input_extent():
    volume, affine = scan((4.0, 4.0, 2.0), "axial")  # 48 x 40 x 52 mm
    mapping = plan_grid(volume.shape, affine, 1.65)
    assert mapping.model_shape == (30, 25, 32)  # ceil(extent / 1.65)
    assert np.allclose(mapping.model_affine @ [14.5, 12, 15.5, 1], affine @ [5.5, 4.5, 12.5, 1])  # centres agree


def test_coronal_and_sagittal_scans_get_the_head_foot_axis_last():
    axial, axial_affine = scan(2.0, "axial")
    coronal, coronal_affine = scan(2.0, "coronal")
    to_model = plan_grid(coronal.shape, coronal_affine, 0)
    assert to_model.reorientation.codes == "LIP" and to_model.describe()["model"]["orientation"] == "RAS"
    assert np.array_equal(to_model.to_model(coronal), axial)  # exact: permutation and flips only
    assert np.allclose(to_model.model_affine, axial_affine)
    # NIfTI with the head-foot axis first (S, R, A).
    sagittal_affine = axial_affine[:, [2, 0, 1, 3]]
    sagittal = np.ascontiguousarray(np.transpose(axial, (2, 0, 1)))
    mapping = plan_grid(sagittal.shape, sagittal_affine, 0)
    assert mapping.reorientation.codes == "SRA" and np.array_equal(mapping.to_model(sagittal), axial)
    assert np.array_equal(mapping.to_input(axial), sagittal)


@pytest.mark.parametrize("voxels,model_mm", [((4.0, 4.0, 2.0), 0), (4.0, 4.0004)])
def test_zero_or_the_input_voxel_size_is_the_identity(voxels, model_mm):
    volume, affine = scan(voxels, "axial")
    mapping = plan_grid(volume.shape, affine, model_mm)
    assert not mapping.resamples and mapping.model_shape == volume.shape
    on_model = mapping.to_model(volume)
    assert np.array_equal(on_model, volume) and np.shares_memory(on_model, volume)  # not even a copy
    assert np.array_equal(mapping.to_input(volume), volume)
    assert np.array_equal(mapping.model_affine, affine)


def test_input_grid_comes_back_exactly_for_any_orientation():
    volume, affine = scan(2.0, "coronal")
    mapping = plan_grid(volume.shape, affine, 4.0)
    result = mapping.to_input(np.ones(mapping.model_shape, np.float32))
    assert result.shape == volume.shape and result.flags.c_contiguous and np.allclose(result, 1.0)
    grids = json.loads(json.dumps(mapping.describe()))  # JSON-able
    assert grids["input"] == {"shape": list(volume.shape), "voxel_size_mm": [2.0, 2.0, 2.0],
                              "affine": affine.tolist(), "orientation": "LIP"}
    assert grids["model"]["shape"] == [12, 10, 13] and grids["model"]["voxel_size_mm"] == [4.0, 4.0, 4.0]
    assert grids["model_voxel_size_mm"] == 4.0 and grids["resampled"] is True


def test_oblique_volume_takes_its_closest_axes_and_keeps_its_tilt():
    volume, affine = scan(2.0, "axial")
    angle = np.radians(10)
    tilt = np.array([[1, 0, 0, 0], [0, np.cos(angle), -np.sin(angle), 0], [0, np.sin(angle), np.cos(angle), 0],
                     [0, 0, 0, 1]])
    oblique = tilt @ affine[:, [2, 0, 1, 3]]  # head-foot axis first, tilted 10 degrees about left-right
    array = np.ascontiguousarray(np.transpose(volume, (2, 0, 1)))
    mapping = plan_grid(array.shape, oblique, 0)
    assert mapping.reorientation.codes == "SRA" and mapping.reorientation.obliquity_deg == pytest.approx(10)
    assert np.array_equal(mapping.to_model(array), volume)
    assert np.allclose(mapping.model_affine, tilt @ affine)
    resampled = plan_grid(array.shape, oblique, 4.0)
    assert np.allclose(resampled.model_affine[:3, :3], tilt[:3, :3] * 4.0)


def test_voxel_spacing_is_the_edge_length_along_each_array_axis():
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.0, 3.0, 1.5])[:, [2, 0, 1]]  # axes permuted, then rotated
    spacing = voxel_spacing(affine)
    assert spacing.shape == (3,) and np.allclose(spacing, [1.5, 2.0, 3.0])


def test_shrinking_is_antialiased():
    # Finest possible detail: alternating SUV 0 / 2 along every axis at 1.65 mm. A 4 mm voxel should hold about the mean.
    index = np.indices((29, 24, 32)).sum(0)
    volume = (2.0 * (index % 2)).astype(np.float32)
    mapping = plan_grid(volume.shape, np.diag([1.65, 1.65, 1.65, 1.0]), 4.0)
    assert np.abs(mapping.to_model(volume) - 1.0).max() < 0.15


def test_reorientation_round_trip_is_exact():
    rng = np.random.default_rng(0)
    for codes_affine in (np.diag([-2.0, -2.0, 3.0, 1.0]), np.array([[0, 0, -2, 0], [3, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]])):
        array = rng.random((5, 6, 7)).astype(np.float32)
        orient = reorientation(array.shape, codes_affine)
        canonical = orient.to_canonical(array)
        assert canonical.shape == orient.canonical_shape
        assert np.array_equal(orient.to_input(canonical), array)
        # The same voxel, at the same world point, in both grids.
        voxel = np.array([1, 2, 3, 1])
        world = codes_affine @ voxel
        canonical_index = np.rint(np.linalg.solve(orient.canonical_affine, world)[:3]).astype(int)
        assert canonical[tuple(canonical_index)] == array[1, 2, 3]
        assert np.allclose(orient.canonical_affine @ [*canonical_index, 1], world)


@pytest.mark.parametrize("size", [-1.0, float("nan"), float("inf")])
def test_bad_voxel_size_is_a_user_error(size):
    with pytest.raises(UserError, match="--model_voxel_size"):
        plan_grid((4, 4, 4), np.eye(4), size)


def test_arrays_on_the_wrong_grid_are_refused():
    mapping = plan_grid((8, 8, 8), np.eye(4), 2.0)
    with pytest.raises(ValueError, match="model grid"):
        mapping.to_input(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="input grid"):
        mapping.to_model(np.zeros((4, 4, 4), np.float32))
