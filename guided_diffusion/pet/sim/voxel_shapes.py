"""Ellipses and ellipsoids rasterised on a phantom's voxel grid, evaluated only inside their bounding box.

Coordinates are world mm (RAS+, as in ``phantom.py``); a grid is given by the
voxel centres along each axis, and a shape comes back as the box of voxel
indices it touches and a boolean mask over that box.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: An axis-aligned ellipsoid: centre ``(x, y, z)`` and semi-axes, both in world mm.
Ellipsoid = tuple[tuple[float, float, float], tuple[float, float, float]]


class Grid(NamedTuple):
    """Voxel centres (mm) along each axis of an ``(X, Y, Z)`` volume, ascending."""

    x: np.ndarray  # (X,) voxel centres in mm
    y: np.ndarray  # (Y,)
    z: np.ndarray  # (Z,)


class Region(NamedTuple):
    """Voxels of a shape: the index box it lies in and a boolean mask of the box's shape."""

    box: tuple[slice, slice, slice]
    mask: np.ndarray  # bool, shape of the box


def tube(grid: Grid, cx, cy, a, b) -> Region | None:
    """Voxels inside the per-slice ellipse ``((x-cx)/a)^2 + ((y-cy)/b)^2 <= 1``.

    ``cx, cy, a, b`` are scalars or per-slice arrays of shape ``(Z,)`` in mm;
    slices with ``a`` or ``b`` <= 0 are empty. Only the bounding box is evaluated.
    Returns ``None`` when no voxel centre is inside.
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
    return Region((sx, sy, sz), (u * u + v * v <= 1) & on)


def _index_range(centres: np.ndarray, low: float, high: float) -> slice:
    """Indices of the ascending voxel ``centres`` (mm) within ``[low, high]`` mm."""
    return slice(int(np.searchsorted(centres, low, "left")), int(np.searchsorted(centres, high, "right")))


def ellipsoid(grid: Grid, centre, semi_axes, shrink_mm: float = 0.0) -> Region | None:
    """Voxels of an axis-aligned ellipsoid whose semi-axes are reduced by ``shrink_mm``.

    ``centre`` and ``semi_axes`` are ``(x, y, z)`` in mm; a negative ``shrink_mm``
    grows the ellipsoid. Returns ``None`` when it is empty.
    """
    (cx, cy, cz), (ax, by, cz_axis) = centre, semi_axes
    ax, by, cz_axis = ax - shrink_mm, by - shrink_mm, cz_axis - shrink_mm
    if min(ax, by, cz_axis) <= 0:
        return None
    f = np.sqrt(np.clip(1 - ((grid.z - cz) / cz_axis) ** 2, 0, None))
    return tube(grid, cx, cy, ax * f, by * f)
