"""The phantom's large-scale anatomy: fat and muscle of the body, the large organs, the skeleton and the aorta.

Organs are ellipsoids drawn per subject at model positions ``(x, y, depth below
the vertex)`` in mm, with ``x`` to the patient's right; the spine and the aorta
follow the trunk along the depth. Everything is painted as organ labels
(``labels.py``) on an ``(X, Y, Z)`` voxel grid in world mm.
"""

from __future__ import annotations

import numpy as np

from .body import Body
from .labels import LABELS
from .voxel_shapes import Ellipsoid, Grid, Region, ellipsoid, tube

# Vertebral body radius (mm) along the depth; discs every _VERTEBRA_PITCH mm.
_SPINE_PROFILE = np.array([(200, 11), (330, 14), (600, 17), (800, 21), (900, 20)])
_VERTEBRA_PITCH = 28.0
_DISC_MM = 5.0


def draw_organs(rng: np.random.Generator, body: Body) -> dict[str, list[Ellipsoid]]:
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


def _paint(labels: np.ndarray, region: Region | None, name: str, within: np.ndarray | None = None) -> None:
    """Set ``labels`` to ``name`` inside ``region`` (and inside ``within`` if given)."""
    if region is None:
        return
    mask = region.mask if within is None else region.mask & within[region.box]
    labels[region.box][mask] = LABELS[name]


def paint_labels(grid: Grid, body: Body, organs: dict[str, list[Ellipsoid]]) -> np.ndarray:
    """The uint8 label volume ``(X, Y, Z)`` of the body, its large organs, skeleton and aorta.

    ``organs`` is :func:`draw_organs`'s result; later tissues cover earlier ones,
    and every organ is clipped to the lean (non-fat) body.
    """
    labels = np.zeros((len(grid.x), len(grid.y), len(grid.z)), np.uint8)
    head_centre, head_axes = body.head()
    offset = body.thigh_offset()
    for with_fat, name in ((True, "fat"), (False, "muscle")):
        _paint(labels, tube(grid, 0.0, 0.0, *body.trunk(grid.z, with_fat)), name)
        for side in (1, -1):
            _paint(labels, tube(grid, side * offset, 0.0, *body.thigh(grid.z, with_fat)), name)
    _paint(labels, ellipsoid(grid, head_centre, head_axes), "muscle")
    # Organs are clipped to the lean body so that none pokes through fat or skin.
    lean = labels == LABELS["muscle"]

    brain_centre, brain_axes = organs["brain"][0]
    _paint(labels, ellipsoid(grid, brain_centre, brain_axes, shrink_mm=-6.0), "bone", lean)
    _paint(labels, ellipsoid(grid, brain_centre, brain_axes), "brain", lean)
    for centre, axes in organs["lungs"]:
        _paint(labels, ellipsoid(grid, centre, axes), "lungs", lean)
    heart_centre, heart_axes = organs["heart"][0]
    _paint(labels, ellipsoid(grid, heart_centre, heart_axes), "myocardium", lean)
    _paint(labels, ellipsoid(grid, heart_centre, heart_axes, shrink_mm=10.0), "blood_pool", lean)
    for name in ("liver", "spleen", "kidneys", "bladder"):
        for centre, axes in organs[name]:
            _paint(labels, ellipsoid(grid, centre, axes), name, lean)

    _paint_spine_and_aorta(labels, grid, body, lean)
    for centre, axes in organs["iliac"]:
        _paint(labels, ellipsoid(grid, centre, axes), "bone", lean)
        _paint(labels, ellipsoid(grid, centre, axes, shrink_mm=3.0), "bone_marrow", lean)
    femur_present = (body.thigh(grid.z, with_fat=False)[0] > 0) & (body.depth_of(grid.z) > 900)
    for side in (1, -1):
        # Femoral shafts: cortical bone around fatty (yellow) marrow.
        _paint(labels, tube(grid, side * offset * 0.95, 0.0, 15.0 * femur_present, 15.0 * femur_present), "bone",
               lean)
        _paint(labels, tube(grid, side * offset * 0.95, 0.0, 10.0 * femur_present, 10.0 * femur_present), "fat",
               lean)
    return labels


def _spine_axis(body: Body, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertebral body radius and the ``y`` of its centre (mm) at heights ``z`` (mm); both of ``z``'s shape."""
    p = _SPINE_PROFILE
    radius = np.interp(body.depth_of(z), p[:, 0], p[:, 1]) * body.width
    _, lean_b = body.trunk(z, with_fat=False)
    return radius, -0.5 * lean_b


def aorta_centre(body: Body, z: np.ndarray) -> tuple[float, np.ndarray]:
    """``x`` and ``y`` (mm) of the descending aorta's axis, left-anterior of the spine, at heights ``z`` (mm).

    ``x`` is one number; ``y`` has ``z``'s shape.
    """
    radius, centre_y = _spine_axis(body, z)
    return -22.0 * body.width, centre_y + radius + 16.0


def _paint_spine_and_aorta(labels: np.ndarray, grid: Grid, body: Body, lean: np.ndarray) -> None:
    """Paint vertebrae (bone around marrow, soft-tissue discs) and the aorta into ``labels``, within ``lean``."""
    d = body.depth_of(grid.z)
    p = _SPINE_PROFILE
    in_spine = (d >= p[0, 0]) & (d <= p[-1, 0])
    # Intervertebral discs are soft tissue; vertebral bodies have a cortical shell around red marrow.
    vertebra = in_spine & (np.mod(d - p[0, 0], _VERTEBRA_PITCH) >= _DISC_MM)
    radius, centre_y = _spine_axis(body, grid.z)
    _paint(labels, tube(grid, 0.0, centre_y, radius * vertebra, radius * vertebra), "bone", lean)
    core = np.maximum(radius - 2.5, 0) * vertebra
    _paint(labels, tube(grid, 0.0, centre_y, core, core), "bone_marrow", lean)
    aorta = ((d >= 420) & (d <= 820)) * 12.0
    _paint(labels, tube(grid, *aorta_centre(body, grid.z), aorta, aorta), "blood_pool", lean)
