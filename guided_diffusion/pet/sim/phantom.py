"""A parametric whole-body phantom for FDG and other tracers, randomised from a seed.

The body runs from mid-thigh to the top of the head and is built from
ellipses and ellipsoids evaluated on coordinate grids (no per-voxel loops):
per-slice elliptical cross-sections for the trunk, neck, shoulders and the two
thighs, an ellipsoidal head, and ellipsoidal or tubular organs. Each tissue has
an uptake (SUV) drawn from the tracer's ranges (``tracers.py``, FDG by default)
and a linear attenuation coefficient at 511 keV (1/mm); a smooth random field
of a few percent gives organs a texture, and spherical lesions are added in
the liver, lungs, spleen, red marrow and soft tissue.

This module draws the phantom and its uptake, attenuation, texture and
lesions; the parts live beside it: the organ labels (``labels.py``), the body
outline (``body.py``), the large organs, skeleton and aorta (``anatomy.py``),
the small structures (``small_organs.py``) and the shapes rasterised on the
voxel grid (``voxel_shapes.py``).

Random streams: the body, the large organs, FDG uptake of the large organs,
attenuation, texture and lesions come from ``default_rng(seed)`` in the order of
the phantom's first version, so FDG phantoms of old seeds keep all of it. The
small structures added later (salivary and lacrimal glands, pituitary,
adrenals, lymph nodes) come from a stream of their own, and every other uptake
draw (theirs, and all of a non-FDG tracer's) from a third; all three are
independent of the noise stream of ``simulation.py``. One seed therefore gives
the same anatomy and lesions for every tracer.

Geometry (RAS+ world coordinates in mm, as nibabel uses them): arrays are
``(X, Y, Z)``; ``+X`` points to the patient's right, ``+Y`` anterior and ``+Z``
superior, so the head is at high ``Z`` and the thighs at ``Z = 0``. The slice
centre is ``x = y = 0``; ``z`` is the height above the bottom of the full
head-to-thigh model, so a shortened slab keeps its position in the affine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from ...errors import UserError
from .anatomy import draw_organs, paint_labels
from .body import Body
from .labels import LABEL_NAMES, LABELS
from .small_organs import draw_small_organs, paint_small_organs
from .tracers import TracerPreset, get_tracer
from .voxel_shapes import Grid, ellipsoid

#: Tissues whose FDG uptake is drawn from the main stream, in its order (the first version's organs).
_MAIN_STREAM_ORGANS = ("fat", "muscle", "bone", "bone_marrow", "brain", "lungs", "myocardium", "blood_pool",
                       "liver", "spleen", "kidneys", "bladder")
#: Spawn keys of the streams drawn from the seed (key 0 is the noise of ``simulation.py``).
_SMALL_ORGAN_STREAM = 1
_UPTAKE_STREAM = 2

#: Linear attenuation coefficients at 511 keV (1/mm); ranges are drawn per subject.
MU_SOFT_TISSUE = 0.0096
MU_FAT = 0.0088
MU_MARROW = 0.0110
MU_LUNG_RANGE = (0.0025, 0.0030)
MU_BONE_RANGE = (0.0130, 0.0170)

#: Lesion draws: diameter (mm) log-uniform in this range (SUV from the tracer); organs and their weights.
LESION_DIAMETER_MM = (5.0, 30.0)
LESION_ORGANS: dict[str, float] = {"liver": 0.3, "lungs": 0.25, "bone_marrow": 0.2, "muscle": 0.15, "spleen": 0.1}

#: Air kept around the body in-plane, and the smallest field of view, when the matrix size is chosen (mm).
INPLANE_MARGIN_MM = 25.0
MIN_FOV_MM = 500.0


class Lesion(NamedTuple):
    """One spherical lesion; ``centre_mm`` is in world (affine) coordinates."""

    centre_mm: tuple[float, float, float]
    centre_voxel: tuple[int, int, int]
    diameter_mm: float
    suv: float
    organ: str


@dataclass
class Phantom:
    """A phantom on an ``(X, Y, Z)`` grid of isotropic voxels.

    Attributes:
        activity: float32 SUV (the noiseless truth).
        mu: float32 linear attenuation at 511 keV in 1/mm.
        labels: uint8 organ labels, see ``label_names``.
        label_names: label value -> organ name.
        lesion_mask: uint16, 0 outside lesions, ``i`` inside ``lesions[i - 1]``.
        lesions: the lesions, in drawing order.
        voxel_size: edge length of a voxel in mm.
        affine: 4x4 voxel-index -> RAS+ mm.
        seed: the seed the phantom was drawn from.
        tracer: name of the tracer preset of ``activity``.
    """

    activity: np.ndarray
    mu: np.ndarray
    labels: np.ndarray
    label_names: dict[int, str]
    lesion_mask: np.ndarray
    lesions: list[Lesion]
    voxel_size: float
    affine: np.ndarray
    seed: int
    tracer: str = "fdg"


def make_phantom(
    seed: int,
    voxel_size: float = 1.65,
    axial_extent_mm: float | None = None,
    matrix_size: int | None = None,
    tracer: str | TracerPreset = "fdg",
) -> Phantom:
    """Draw a whole-body phantom.

    Args:
        seed: seeds the numpy Generators; equal seeds give identical phantoms, and
            the same anatomy and lesions whatever the tracer.
        voxel_size: isotropic voxel edge in mm.
        axial_extent_mm: length of the slab along ``Z``; ``None`` keeps the whole
            head-to-thigh body (about 100-110 cm). A shorter slab is centred on
            the liver (clipped to the body), the organ used to judge noise.
        matrix_size: in-plane size ``X = Y`` in voxels; ``None`` fits the body
            plus a 25 mm margin into the field-of-view disk inscribed in the
            slice, with a field of view of at least 50 cm (arms are up, out of the field).
        tracer: a name in :data:`~guided_diffusion.pet.sim.tracers.TRACERS` or a preset;
            it sets the uptake (SUV) of every tissue and of the lesions.

    Returns:
        A :class:`Phantom`; arrays are ``(X, Y, Z)`` with the head at high ``Z``.

    Raises:
        UserError: non-positive sizes, a ``matrix_size`` too small for the body, or an unknown tracer.
    """
    preset = get_tracer(tracer)
    if not voxel_size > 0:
        raise UserError(f"voxel size must be positive, got {voxel_size} mm")
    if axial_extent_mm is not None and not axial_extent_mm > 0:
        raise UserError(f"axial extent must be positive, got {axial_extent_mm} mm")
    rng = np.random.default_rng(seed)
    body = Body(rng)
    organs = draw_organs(rng, body)
    grid = _make_grid(body, organs["liver"][0][0][2], voxel_size, axial_extent_mm, matrix_size)

    labels = paint_labels(grid, body, organs)
    fdg = get_tracer("fdg")
    main_suv = {name: _draw(rng, fdg.suv_ranges[name]) for name in _MAIN_STREAM_ORGANS}
    mu_by_label = _draw_mu(rng)
    lookup_mu = np.array([mu_by_label[LABEL_NAMES[v]] for v in sorted(LABEL_NAMES)], np.float32)

    texture = 1 + rng.uniform(0.03, 0.06) * _smooth_field(rng, labels.shape, voxel_size, corr_mm=12.0)
    mu = lookup_mu[labels]
    lesion_mask, lesions = _add_lesions(rng, grid, labels, mu, fdg.lesion_suv)
    # The main stream ends here; small structures go where no lesion is.
    paint_small_organs(labels, grid, draw_small_organs(_stream(seed, _SMALL_ORGAN_STREAM), body), lesion_mask)

    uptake_rng = _stream(seed, _UPTAKE_STREAM)
    is_fdg = preset == fdg
    suv = {}
    for value in sorted(LABEL_NAMES)[1:]:
        name = LABEL_NAMES[value]
        keep = is_fdg and name in main_suv
        suv[name] = main_suv[name] if keep else _draw(uptake_rng, preset.suv_ranges[name])
    if not is_fdg:
        lesions = [lesion._replace(suv=_draw(uptake_rng, preset.lesion_suv)) for lesion in lesions]
    lookup_suv = np.array([suv.get(LABEL_NAMES[v], 0.0) for v in sorted(LABEL_NAMES)], np.float32)
    lookup_lesion = np.array([0.0, *(lesion.suv for lesion in lesions)], np.float32)
    activity = np.where(lesion_mask > 0, lookup_lesion[lesion_mask], lookup_suv[labels]) * texture

    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = grid.x[0], grid.y[0], grid.z[0]
    return Phantom(
        activity=activity.astype(np.float32),
        mu=mu.astype(np.float32),
        labels=labels,
        label_names=dict(LABEL_NAMES),
        lesion_mask=lesion_mask,
        lesions=lesions,
        voxel_size=float(voxel_size),
        affine=affine,
        seed=int(seed),
        tracer=preset.name,
    )


def _stream(seed: int, key: int) -> np.random.Generator:
    """An independent Generator spawned from ``seed`` (``key`` as ``SeedSequence.spawn`` numbers children)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def _draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One value in ``bounds``: log-uniform if they span more than a factor 3, else uniform."""
    low, high = bounds
    if high / low > 3:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _draw_mu(rng: np.random.Generator) -> dict[str, float]:
    """Linear attenuation at 511 keV (1/mm) of every tissue name; lungs and bone drawn per subject."""
    mu = {name: MU_SOFT_TISSUE for name in LABEL_NAMES.values()}
    mu.update(air=0.0, fat=MU_FAT, bone_marrow=MU_MARROW)
    mu["lungs"] = float(rng.uniform(*MU_LUNG_RANGE))
    mu["bone"] = float(rng.uniform(*MU_BONE_RANGE))
    return mu


def _make_grid(
    body: Body, z_liver: float, voxel_size: float, axial_extent_mm: float | None, matrix_size: int | None
) -> Grid:
    """The phantom's voxel grid (centres in world mm) for ``make_phantom``'s sizes.

    The slab is ``axial_extent_mm`` long (the whole body if ``None``), centred on
    the liver's height ``z_liver`` (mm) and clipped to the body; in-plane it
    holds ``matrix_size`` voxels, or fits the body as ``make_phantom`` describes.
    """
    full = body.full_length
    extent = full if axial_extent_mm is None else float(axial_extent_mm)
    nz = max(1, round(extent / voxel_size))
    length = nz * voxel_size
    start = 0.0 if length >= full else float(np.clip(z_liver - length / 2, 0.0, full - length))
    z = start + (np.arange(nz) + 0.5) * voxel_size

    radius = body.max_radius(z)
    if matrix_size is None:
        fov = max(2 * (radius + INPLANE_MARGIN_MM), MIN_FOV_MM)
        n = math.ceil(fov / voxel_size / 2) * 2
    else:
        n = int(matrix_size)
        if n * voxel_size / 2 < radius:
            raise UserError(
                f"matrix size {n} x {voxel_size} mm = {n * voxel_size:.0f} mm is too small for this body "
                f"(needs at least {math.ceil(2 * radius / voxel_size)}); raise it or leave it unset"
            )
    centres = (np.arange(n) - (n - 1) / 2) * voxel_size
    return Grid(centres, centres.copy(), z)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], voxel_size: float, corr_mm: float) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with ~``corr_mm`` correlation length.

    Drawn on a coarse grid (spacing ``corr_mm / 2``), smoothed there and
    linearly interpolated to the voxel grid, which costs a few passes over the
    volume whatever its size.
    """
    spacing = corr_mm / 2
    coarse_shape = tuple(math.ceil(n * voxel_size / spacing) + 2 for n in shape)
    field = gaussian_filter(rng.standard_normal(coarse_shape), sigma=1.0, mode="wrap")
    field = (field - field.mean()) / field.std()
    for axis, n in enumerate(shape):
        position = np.arange(n) * voxel_size / spacing
        low = np.floor(position).astype(np.int64)
        weight = (position - low).astype(np.float32)
        shape_w = [1, 1, 1]
        shape_w[axis] = n
        weight = weight.reshape(shape_w)
        field = np.take(field, low, axis=axis) * (1 - weight) + np.take(field, low + 1, axis=axis) * weight
        field = field.astype(np.float32)
    return field


def _add_lesions(
    rng: np.random.Generator,
    grid: Grid,
    labels: np.ndarray,
    mu: np.ndarray,
    suv_range: tuple[float, float],
) -> tuple[np.ndarray, list[Lesion]]:
    """Draw spherical lesions, paint them into ``mu`` in place; return their mask and list.

    A later lesion covers an earlier one where they overlap.
    """
    lesion_mask = np.zeros(labels.shape, np.uint16)
    lesions: list[Lesion] = []
    counts = np.bincount(labels.ravel(), minlength=len(LABEL_NAMES))
    present = [name for name in LESION_ORGANS if counts[LABELS[name]] > 0]
    if not present:
        return lesion_mask, lesions
    weights = np.array([LESION_ORGANS[name] for name in present])
    body = labels > 0
    for _ in range(int(rng.integers(3, 9))):
        organ = present[int(rng.choice(len(present), p=weights / weights.sum()))]
        candidates = np.flatnonzero(labels == LABELS[organ])
        index = np.unravel_index(candidates[rng.integers(len(candidates))], labels.shape)
        centre = (float(grid.x[index[0]]), float(grid.y[index[1]]), float(grid.z[index[2]]))
        diameter = _draw(rng, LESION_DIAMETER_MM)
        suv = _draw(rng, suv_range)
        radius = diameter / 2
        region = ellipsoid(grid, centre, (radius, radius, radius))
        if region is None:
            continue
        # Every lesion holds at least its centre voxel, and none leaves the body.
        region.mask[tuple(int(i) - s.start for i, s in zip(index, region.box))] = True
        mask = region.mask & body[region.box]
        mu[region.box][mask] = np.maximum(mu[region.box][mask], MU_SOFT_TISSUE)
        lesion_mask[region.box][mask] = len(lesions) + 1
        lesions.append(Lesion(centre, tuple(int(i) for i in index), diameter, suv, organ))
    return lesion_mask, lesions
