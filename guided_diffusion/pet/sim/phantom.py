"""A parametric whole-body phantom for FDG and other tracers, randomised from a seed.

The body runs from mid-thigh to the top of the head and is built from
ellipses and ellipsoids evaluated on coordinate grids (no per-voxel loops):
per-slice elliptical cross-sections for the trunk, neck, shoulders and the two
thighs, an ellipsoidal head, and ellipsoidal or tubular organs. Each tissue has
an uptake (SUV) drawn from the tracer's ranges (``tracers.py``, FDG by default)
and a linear attenuation coefficient at 511 keV (1/mm); a smooth random field
of a few percent gives organs a texture, and spherical lesions are added in
the liver, lungs, spleen, red marrow and soft tissue.

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
from .tracers import TracerPreset, get_tracer

#: Organ label values and their names (0 is air outside the body).
LABEL_NAMES: dict[int, str] = {
    0: "air",
    1: "fat",
    2: "muscle",
    3: "bone",
    4: "bone_marrow",
    5: "brain",
    6: "lungs",
    7: "myocardium",
    8: "blood_pool",
    9: "liver",
    10: "spleen",
    11: "kidneys",
    12: "bladder",
    13: "salivary_glands",  # parotid and submandibular
    14: "lacrimal_glands",
    15: "pituitary",
    16: "adrenals",
    17: "lymph_nodes",  # small nodes along the para-aortic and iliac chains
}
LABELS: dict[str, int] = {name: value for value, name in LABEL_NAMES.items()}

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

#: Length of the model from mid-thigh to the vertex before height scaling, and air above the head (mm).
MODEL_LENGTH_MM = 1060.0
TOP_MARGIN_MM = 10.0
#: Air kept around the body in-plane, and the smallest field of view, when the matrix size is chosen (mm).
INPLANE_MARGIN_MM = 25.0
MIN_FOV_MM = 500.0

# Lean (muscle) cross-section of the neck and trunk along the depth below the vertex:
# depth (mm), semi-axis left-right, semi-axis anterior-posterior, relative fat thickness.
_TRUNK_PROFILE = np.array(
    [
        (190, 48, 50, 0.3),
        (300, 55, 55, 0.4),
        (330, 120, 80, 0.6),
        (360, 175, 100, 0.8),
        (400, 165, 105, 1.0),
        (560, 155, 110, 1.0),
        (650, 145, 105, 1.3),
        (780, 145, 100, 1.3),
        (860, 160, 100, 1.2),
        (955, 165, 95, 1.0),
    ]
)
# Thighs: depth range, centre offset from the midline and lean semi-axes at top and bottom.
_THIGH_DEPTH = (930.0, MODEL_LENGTH_MM)
_THIGH_OFFSET = 85.0
_THIGH_AXES = ((72.0, 75.0), (62.0, 64.0))
# Vertebral body radius (mm) along the depth; discs every _VERTEBRA_PITCH mm.
_SPINE_PROFILE = np.array([(200, 11), (330, 14), (600, 17), (800, 21), (900, 20)])
_VERTEBRA_PITCH = 28.0
_DISC_MM = 5.0


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


class _Grid(NamedTuple):
    x: np.ndarray  # (X,) voxel centres in mm
    y: np.ndarray  # (Y,)
    z: np.ndarray  # (Z,)


class _Region(NamedTuple):
    box: tuple[slice, slice, slice]
    mask: np.ndarray  # bool, shape of the box


class _Body:
    """Random body habitus and the mapping from model depth to world coordinates."""

    def __init__(self, rng: np.random.Generator):
        self.height = rng.uniform(0.95, 1.04)
        self.width = rng.uniform(0.9, 1.12)
        self.depth = rng.uniform(0.9, 1.15)
        self.fat_mm = rng.uniform(6.0, 28.0)
        self.z_vertex = MODEL_LENGTH_MM * self.height

    @property
    def full_length(self) -> float:
        return self.z_vertex + TOP_MARGIN_MM

    def z_of(self, depth: float | np.ndarray) -> float | np.ndarray:
        return self.z_vertex - np.asarray(depth) * self.height

    def depth_of(self, z: np.ndarray) -> np.ndarray:
        return (self.z_vertex - z) / self.height

    def trunk(self, z: np.ndarray, with_fat: bool) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (a, b) of the neck/trunk cross-section per slice; 0 where absent."""
        d = self.depth_of(z)
        p = _TRUNK_PROFILE
        a = np.interp(d, p[:, 0], p[:, 1]) * self.width
        b = np.interp(d, p[:, 0], p[:, 2]) * self.depth
        if with_fat:
            fat = np.interp(d, p[:, 0], p[:, 3]) * self.fat_mm
            a, b = a + fat, b + fat
        present = (d >= p[0, 0]) & (d <= p[-1, 0])
        return a * present, b * present

    def thigh(self, z: np.ndarray, with_fat: bool) -> tuple[np.ndarray, np.ndarray]:
        d = self.depth_of(z)
        frac = np.clip((d - _THIGH_DEPTH[0]) / (_THIGH_DEPTH[1] - _THIGH_DEPTH[0]), 0, 1)
        (a0, b0), (a1, b1) = _THIGH_AXES
        fat = 0.8 * self.fat_mm if with_fat else 0.0
        a = (a0 + (a1 - a0) * frac) * self.width + fat
        b = (b0 + (b1 - b0) * frac) * self.depth + fat
        present = d >= _THIGH_DEPTH[0]
        return a * present, b * present

    def thigh_offset(self) -> float:
        return _THIGH_OFFSET * self.width

    def head(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Centre and semi-axes of the head ellipsoid (world mm)."""
        return (0.0, 0.0, float(self.z_of(110.0))), (78.0, 96.0, 110.0 * self.height)

    def max_radius(self, z: np.ndarray) -> float:
        """Largest in-plane distance of the body outline from the slice centre over ``z``."""
        a, b = self.trunk(z, with_fat=True)
        ta, _ = self.thigh(z, with_fat=True)
        radius = max(np.max(np.maximum(a, b)), np.max(np.where(ta > 0, self.thigh_offset() + ta, 0)))
        (_, _, hz), (ha, hb, hc) = self.head()
        if np.any(np.abs(z - hz) < hc):
            radius = max(radius, ha, hb)
        return float(radius)


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
    body = _Body(rng)
    organs = _draw_organs(rng, body)
    grid = _make_grid(body, organs["liver"][0][0][2], voxel_size, axial_extent_mm, matrix_size)

    labels = _paint_labels(grid, body, organs)
    fdg = get_tracer("fdg")
    main_suv = {name: _draw(rng, fdg.suv_ranges[name]) for name in _MAIN_STREAM_ORGANS}
    mu_by_label = _draw_mu(rng)
    lookup_mu = np.array([mu_by_label[LABEL_NAMES[v]] for v in sorted(LABEL_NAMES)], np.float32)

    texture = 1 + rng.uniform(0.03, 0.06) * _smooth_field(rng, labels.shape, voxel_size, corr_mm=12.0)
    mu = lookup_mu[labels]
    lesion_mask, lesions = _add_lesions(rng, grid, labels, mu, fdg.lesion_suv)
    # The main stream ends here; small structures go where no lesion is.
    _paint_small_organs(labels, grid, _draw_small_organs(_stream(seed, _SMALL_ORGAN_STREAM), body), lesion_mask)

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
    low, high = bounds
    if high / low > 3:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _draw_mu(rng: np.random.Generator) -> dict[str, float]:
    mu = {name: MU_SOFT_TISSUE for name in LABEL_NAMES.values()}
    mu.update(air=0.0, fat=MU_FAT, bone_marrow=MU_MARROW)
    mu["lungs"] = float(rng.uniform(*MU_LUNG_RANGE))
    mu["bone"] = float(rng.uniform(*MU_BONE_RANGE))
    return mu


Ellipsoid = tuple[tuple[float, float, float], tuple[float, float, float]]


def _draw_organs(rng: np.random.Generator, body: _Body) -> dict[str, list[Ellipsoid]]:
    """Organ ellipsoids (centre, semi-axes) in world mm, jittered per subject.

    Model positions are (x, y, depth below vertex) with x to the patient's right.
    """

    def place(x: float, y: float, depth: float, axes: tuple[float, float, float]) -> Ellipsoid:
        jitter = rng.normal(0.0, 4.0, size=3)
        scale = rng.uniform(0.9, 1.1)
        centre = (x * body.width + jitter[0], y * body.depth + jitter[1], float(body.z_of(depth)) + jitter[2])
        return centre, (axes[0] * scale, axes[1] * scale, axes[2] * scale * body.height)

    fill = rng.uniform(0.7, 1.2)
    return {
        "brain": [((0.0, -6.0, float(body.z_of(85.0))), (63.0, 78.0, 70.0 * body.height))],
        "lungs": [place(side * 78, -5, 470, (58, 80, 130)) for side in (1, -1)],
        "heart": [place(-25, 30, 545, (55, 48, 62))],
        "liver": [place(55, 10, 640, (85, 78, 80))],
        "spleen": [place(-95, -40, 630, (28, 48, 55))],
        "kidneys": [place(68, -50, 735, (28, 32, 55)), place(-68, -50, 720, (28, 32, 55))],
        "bladder": [place(0, 40, 900, (42 * fill, 35 * fill, 35 * fill))],
        "iliac": [place(side * 105, -25, 830, (15, 50, 55)) for side in (1, -1)],
    }


def _make_grid(
    body: _Body, z_liver: float, voxel_size: float, axial_extent_mm: float | None, matrix_size: int | None
) -> _Grid:
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
    return _Grid(centres, centres.copy(), z)


def _tube(grid: _Grid, cx, cy, a, b) -> _Region | None:
    """Voxels inside the per-slice ellipse ``((x-cx)/a)^2 + ((y-cy)/b)^2 <= 1``.

    ``cx, cy, a, b`` are scalars or per-slice arrays of shape ``(Z,)`` in mm;
    slices with ``a`` or ``b`` <= 0 are empty. Only the bounding box is evaluated.
    """
    cx, cy, a, b = (np.broadcast_to(np.asarray(v, np.float64), grid.z.shape) for v in (cx, cy, a, b))
    present = (a > 0) & (b > 0)
    if not present.any():
        return None
    zs = np.flatnonzero(present)
    sz = slice(zs[0], zs[-1] + 1)
    sx = _index_range(grid.x, (cx - a)[present].min(), (cx + a)[present].max())
    sy = _index_range(grid.y, (cy - b)[present].min(), (cy + b)[present].max())
    if sx.start >= sx.stop or sy.start >= sy.stop:
        return None
    on = present[sz]
    a_safe, b_safe = np.where(on, a[sz], 1.0), np.where(on, b[sz], 1.0)
    u = ((grid.x[sx, None, None] - cx[None, None, sz]) / a_safe).astype(np.float32)
    v = ((grid.y[None, sy, None] - cy[None, None, sz]) / b_safe).astype(np.float32)
    return _Region((sx, sy, sz), (u * u + v * v <= 1) & on)


def _index_range(centres: np.ndarray, low: float, high: float) -> slice:
    return slice(int(np.searchsorted(centres, low, "left")), int(np.searchsorted(centres, high, "right")))


def _ellipsoid(grid: _Grid, centre, semi_axes, shrink_mm: float = 0.0) -> _Region | None:
    """Voxels of an axis-aligned ellipsoid whose semi-axes are reduced by ``shrink_mm``."""
    (cx, cy, cz), (ax, by, cz_axis) = centre, semi_axes
    ax, by, cz_axis = ax - shrink_mm, by - shrink_mm, cz_axis - shrink_mm
    if min(ax, by, cz_axis) <= 0:
        return None
    f = np.sqrt(np.clip(1 - ((grid.z - cz) / cz_axis) ** 2, 0, None))
    return _tube(grid, cx, cy, ax * f, by * f)


def _paint(labels: np.ndarray, region: _Region | None, name: str, within: np.ndarray | None = None) -> None:
    """Set ``labels`` to ``name`` inside ``region`` (and inside ``within`` if given)."""
    if region is None:
        return
    mask = region.mask if within is None else region.mask & within[region.box]
    labels[region.box][mask] = LABELS[name]


def _paint_labels(grid: _Grid, body: _Body, organs: dict[str, list[Ellipsoid]]) -> np.ndarray:
    labels = np.zeros((len(grid.x), len(grid.y), len(grid.z)), np.uint8)
    head_centre, head_axes = body.head()
    offset = body.thigh_offset()
    for with_fat, name in ((True, "fat"), (False, "muscle")):
        _paint(labels, _tube(grid, 0.0, 0.0, *body.trunk(grid.z, with_fat)), name)
        for side in (1, -1):
            _paint(labels, _tube(grid, side * offset, 0.0, *body.thigh(grid.z, with_fat)), name)
    _paint(labels, _ellipsoid(grid, head_centre, head_axes), "muscle")
    # Organs are clipped to the lean body so that none pokes through fat or skin.
    lean = labels == LABELS["muscle"]

    brain_centre, brain_axes = organs["brain"][0]
    _paint(labels, _ellipsoid(grid, brain_centre, brain_axes, shrink_mm=-6.0), "bone", lean)
    _paint(labels, _ellipsoid(grid, brain_centre, brain_axes), "brain", lean)
    for centre, axes in organs["lungs"]:
        _paint(labels, _ellipsoid(grid, centre, axes), "lungs", lean)
    heart_centre, heart_axes = organs["heart"][0]
    _paint(labels, _ellipsoid(grid, heart_centre, heart_axes), "myocardium", lean)
    _paint(labels, _ellipsoid(grid, heart_centre, heart_axes, shrink_mm=10.0), "blood_pool", lean)
    for name in ("liver", "spleen", "kidneys", "bladder"):
        for centre, axes in organs[name]:
            _paint(labels, _ellipsoid(grid, centre, axes), name, lean)

    _paint_spine_and_aorta(labels, grid, body, lean)
    for centre, axes in organs["iliac"]:
        _paint(labels, _ellipsoid(grid, centre, axes), "bone", lean)
        _paint(labels, _ellipsoid(grid, centre, axes, shrink_mm=3.0), "bone_marrow", lean)
    femur_present = (body.thigh(grid.z, with_fat=False)[0] > 0) & (body.depth_of(grid.z) > 900)
    for side in (1, -1):
        # Femoral shafts: cortical bone around fatty (yellow) marrow.
        _paint(labels, _tube(grid, side * offset * 0.95, 0.0, 15.0 * femur_present, 15.0 * femur_present), "bone",
               lean)
        _paint(labels, _tube(grid, side * offset * 0.95, 0.0, 10.0 * femur_present, 10.0 * femur_present), "fat",
               lean)
    return labels


def _spine_axis(body: _Body, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertebral body radius and the ``y`` of its centre (mm) at heights ``z``."""
    p = _SPINE_PROFILE
    radius = np.interp(body.depth_of(z), p[:, 0], p[:, 1]) * body.width
    _, lean_b = body.trunk(z, with_fat=False)
    return radius, -0.5 * lean_b


def _aorta_centre(body: _Body, z: np.ndarray) -> tuple[float, np.ndarray]:
    """``x`` and ``y`` (mm) of the descending aorta's axis, left-anterior of the spine, at heights ``z``."""
    radius, centre_y = _spine_axis(body, z)
    return -22.0 * body.width, centre_y + radius + 16.0


def _paint_spine_and_aorta(labels: np.ndarray, grid: _Grid, body: _Body, lean: np.ndarray) -> None:
    d = body.depth_of(grid.z)
    p = _SPINE_PROFILE
    in_spine = (d >= p[0, 0]) & (d <= p[-1, 0])
    # Intervertebral discs are soft tissue; vertebral bodies have a cortical shell around red marrow.
    vertebra = in_spine & (np.mod(d - p[0, 0], _VERTEBRA_PITCH) >= _DISC_MM)
    radius, centre_y = _spine_axis(body, grid.z)
    _paint(labels, _tube(grid, 0.0, centre_y, radius * vertebra, radius * vertebra), "bone", lean)
    core = np.maximum(radius - 2.5, 0) * vertebra
    _paint(labels, _tube(grid, 0.0, centre_y, core, core), "bone_marrow", lean)
    aorta = ((d >= 420) & (d <= 820)) * 12.0
    _paint(labels, _tube(grid, *_aorta_centre(body, grid.z), aorta, aorta), "blood_pool", lean)


def _draw_small_organs(rng: np.random.Generator, body: _Body) -> dict[str, list[Ellipsoid]]:
    """Glands, adrenals and lymph nodes (centre, semi-axes in world mm), jittered per subject.

    Model positions are (x, y, depth below vertex) as in :func:`_draw_organs`; the
    head and neck keep their size in mm as the head does, the trunk scales with the body.
    """

    def place(x: float, y: float, depth: float, axes: tuple[float, float, float], trunk: bool) -> Ellipsoid:
        jitter = rng.normal(0.0, 2.0, size=3)
        scale = rng.uniform(0.85, 1.15)
        sx, sy = (body.width, body.depth) if trunk else (1.0, 1.0)
        centre = (x * sx + jitter[0], y * sy + jitter[1], float(body.z_of(depth)) + jitter[2])
        return centre, (axes[0] * scale, axes[1] * scale, axes[2] * scale * body.height)

    sides = (1, -1)
    organs = {
        # Parotids in front of the ears, submandibular glands under the jaw.
        "salivary_glands": [place(side * 40, 0, 176, (11, 18, 22), False) for side in sides]
        + [place(side * 28, 30, 200, (10, 13, 9), False) for side in sides],
        # Upper outer corner of each orbit.
        "lacrimal_glands": [place(side * 30, 78, 108, (9, 5, 5), False) for side in sides],
        # Below the brain, in the sella.
        "pituitary": [place(0, 12, 163, (6, 5, 4), False)],
        # Above and medial to the kidneys, the left one higher.
        "adrenals": [place(side * 38, -60, 672 if side > 0 else 657, (6, 12, 15), True) for side in sides],
    }
    nodes = []
    for _ in range(int(rng.integers(4, 9))):
        radius = float(rng.uniform(2.5, 5.0))  # 5-10 mm across
        if rng.random() < 0.5:  # para-aortic: left of the aorta or between it and the vena cava
            depth = float(rng.uniform(700, 810))
            z = np.array([body.z_of(depth)])
            x, y = _aorta_centre(body, z)
            x = x + float(rng.choice((-18.0, 24.0)))
            y = float(y[0]) + float(rng.uniform(-8, 8))
        else:  # along the common and external iliac vessels, towards the groin
            t, side = float(rng.uniform()), float(rng.choice(sides))
            depth = 830 + 70 * t
            x, y = side * (30 + 40 * t) * body.width, (-25 + 25 * t) * body.depth
        nodes.append(((x, y, float(body.z_of(depth))), (radius, radius, radius)))
    organs["lymph_nodes"] = nodes
    return organs


def _paint_small_organs(labels: np.ndarray, grid: _Grid, organs: dict[str, list[Ellipsoid]],
                        lesion_mask: np.ndarray) -> None:
    """Paint small structures over soft tissue (muscle) outside lesions, in place.

    A structure smaller than a voxel still takes the voxel at its centre, unless
    that voxel is air, fat, an organ or a lesion (soft tissue, or the bone or
    brain a coarse voxel at the skull base may hold, are taken), so that each
    exists at coarse voxel sizes.
    """
    muscle = LABELS["muscle"]
    replaceable = {muscle, LABELS["bone"], LABELS["brain"]}
    spacing = float(grid.x[1] - grid.x[0])
    for name, shapes in organs.items():
        value = LABELS[name]
        for centre, axes in shapes:
            region = _ellipsoid(grid, centre, axes)
            if region is not None:
                box = labels[region.box]
                box[region.mask & (box == muscle) & (lesion_mask[region.box] == 0)] = value
            index = tuple(int(np.floor((c - axis[0]) / spacing + 0.5)) for c, axis in zip(centre, grid))
            inside = all(0 <= i < len(axis) for i, axis in zip(index, grid))
            if inside and labels[index] in replaceable and lesion_mask[index] == 0:
                labels[index] = value


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
    grid: _Grid,
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
        region = _ellipsoid(grid, centre, (radius, radius, radius))
        if region is None:
            continue
        # Every lesion holds at least its centre voxel, and none leaves the body.
        region.mask[tuple(int(i) - s.start for i, s in zip(index, region.box))] = True
        mask = region.mask & body[region.box]
        mu[region.box][mask] = np.maximum(mu[region.box][mask], MU_SOFT_TISSUE)
        lesion_mask[region.box][mask] = len(lesions) + 1
        lesions.append(Lesion(centre, tuple(int(i) for i in index), diameter, suv, organ))
    return lesion_mask, lesions
