"""2D parallel-beam projector for stacks of transaxial slices.

This models a scanner after single-slice rebinning: every transaxial slice is
projected on its own by the same sparse system matrix ``A`` of shape
``(n_angles * n_bins, nx * ny)``, so a whole volume is projected by one sparse
matrix product with an ``(nx * ny, n_slices)`` array.

Geometry, in the image plane (``x`` along the first array axis, ``y`` along the
second, both in mm with the origin at the centre of the slice):

- angle ``k`` is ``theta_k = k * pi / n_angles``;
- bin ``j`` lies at ``s_j = (j - (n_bins - 1) / 2) * bin_width`` along the
  detector axis ``(cos theta, sin theta)``;
- the ray of ``(k, j)`` is the line ``s_j * (cos theta, sin theta) + t * (-sin theta, cos theta)``.

The field of view is the disk inscribed in the image; pixels outside it are
neither seen nor reconstructed. A sinogram value is the line integral of the
image along its ray, so projecting an image in units ``U`` gives ``U * mm``
(an attenuation map in 1/mm projects to dimensionless attenuation path
lengths).

Matrix entries come from sampling each ray at half-pixel steps and spreading
every sample over its four neighbouring pixels with bilinear weights times the
step length in mm.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

# Rays are built a few angles at a time to bound the temporary COO arrays.
_ANGLES_PER_BLOCK = 8


@dataclass(eq=False)
class ParallelProjector:
    """Sparse 2D parallel-beam system matrix for ``nx x ny`` slices.

    Attributes:
        nx, ny: slice size in pixels (array axes 0 and 1).
        voxel_size: in-plane pixel size in mm.
        n_angles: projection angles over [0, pi).
        n_bins: radial bins per angle.
        bin_width: radial bin width in mm.
        matrix: CSR float32, shape ``(n_angles * n_bins, nx * ny)``; row
            ``k * n_bins + j`` is ray (angle ``k``, bin ``j``), column
            ``ix * ny + iy`` is pixel ``(ix, iy)``; entries in mm.
        matrix_t: the transpose of ``matrix`` stored as CSR (fast back projection).
    """

    nx: int
    ny: int
    voxel_size: float
    n_angles: int
    n_bins: int
    bin_width: float
    matrix: sp.csr_matrix
    matrix_t: sp.csr_matrix
    _subsets: dict[int, list[tuple[sp.csr_matrix, sp.csr_matrix]]] = field(default_factory=dict, repr=False)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(n_angles, n_bins)``."""
        return self.n_angles, self.n_bins

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Line integrals of ``images`` of shape ``(nx, ny, *batch)``.

        Returns:
            float32 sinograms of shape ``(n_angles, n_bins, *batch)``, image units times mm.
        """
        return _apply(self.matrix, images, (self.nx, self.ny), self.sinogram_shape)

    def back(self, sinograms: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`forward`: ``(n_angles, n_bins, *batch)`` -> ``(nx, ny, *batch)``."""
        return _apply(self.matrix_t, sinograms, self.sinogram_shape, (self.nx, self.ny))

    def subset_angles(self, index: int, n_subsets: int) -> np.ndarray:
        """Angle indices of ordered subset ``index``: every ``n_subsets``-th angle from ``index``."""
        return np.arange(index, self.n_angles, n_subsets)

    def subset_forward(self, images: np.ndarray, index: int, n_subsets: int) -> np.ndarray:
        """:meth:`forward` restricted to the angles of one subset: ``(n_subset_angles, n_bins, *batch)``."""
        a_s, _ = self._subset_matrices(n_subsets)[index]
        n_s = len(self.subset_angles(index, n_subsets))
        return _apply(a_s, images, (self.nx, self.ny), (n_s, self.n_bins))

    def subset_back(self, sinograms: np.ndarray, index: int, n_subsets: int) -> np.ndarray:
        """Adjoint of :meth:`subset_forward`: ``(n_subset_angles, n_bins, *batch)`` -> ``(nx, ny, *batch)``."""
        _, a_s_t = self._subset_matrices(n_subsets)[index]
        n_s = len(self.subset_angles(index, n_subsets))
        return _apply(a_s_t, sinograms, (n_s, self.n_bins), (self.nx, self.ny))

    def _subset_matrices(self, n_subsets: int) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
        # Only the latest partition is kept: each costs as much memory as the full matrix.
        if n_subsets not in self._subsets:
            self._subsets.clear()
            bins = np.arange(self.n_bins)
            parts = []
            for index in range(n_subsets):
                rows = (self.subset_angles(index, n_subsets)[:, None] * self.n_bins + bins).ravel()
                a_s = self.matrix[rows]
                parts.append((a_s, a_s.T.tocsr()))
            self._subsets[n_subsets] = parts
        return self._subsets[n_subsets]


def _apply(matrix: sp.csr_matrix, data: np.ndarray, in_shape: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    if data.shape[:2] != in_shape:
        raise ValueError(f"expected leading shape {in_shape}, got {data.shape}")
    batch = data.shape[2:]
    flat = np.ascontiguousarray(data).reshape(in_shape[0] * in_shape[1], -1)
    out = matrix @ flat
    return np.asarray(out, dtype=np.float32).reshape(*out_shape, *batch)


def default_sampling(nx: int, ny: int) -> tuple[int, int]:
    """Default ``(n_angles, n_bins)`` for an ``nx x ny`` slice.

    Bins are one pixel wide and span the field-of-view disk; the number of
    angles is about half the ``pi/2 * n_bins`` of full angular sampling, like
    clinical scanners (e.g. 168 angles for 400 bins), which keeps OSEM fast.
    """
    n_bins = min(nx, ny)
    return math.ceil(math.pi / 4 * n_bins), n_bins


@functools.lru_cache(maxsize=2)
def get_projector(
    nx: int,
    ny: int,
    voxel_size: float,
    n_angles: int | None = None,
    n_bins: int | None = None,
) -> ParallelProjector:
    """The projector for one geometry, built once and cached.

    Args:
        nx, ny: slice size in pixels.
        voxel_size: in-plane pixel size in mm.
        n_angles, n_bins: sinogram sampling; ``None`` takes :func:`default_sampling`.
            Bins always span the field-of-view diameter ``min(nx, ny) * voxel_size``.
    """
    default_angles, default_bins = default_sampling(nx, ny)
    n_angles = default_angles if n_angles is None else int(n_angles)
    n_bins = default_bins if n_bins is None else int(n_bins)
    if min(nx, ny, n_angles, n_bins) < 1 or not voxel_size > 0:
        raise ValueError(f"bad geometry: {nx}x{ny} pixels of {voxel_size} mm, {n_angles} angles, {n_bins} bins")
    radius = min(nx, ny) * voxel_size / 2
    bin_width = 2 * radius / n_bins
    matrix = _build_matrix(nx, ny, voxel_size, n_angles, n_bins, bin_width, radius)
    return ParallelProjector(nx, ny, float(voxel_size), n_angles, n_bins, bin_width, matrix, matrix.T.tocsr())


def _build_matrix(
    nx: int, ny: int, voxel_size: float, n_angles: int, n_bins: int, bin_width: float, radius: float
) -> sp.csr_matrix:
    step = voxel_size / 2
    n_steps = math.ceil(2 * radius / step) + 1
    t = (np.arange(n_steps) - (n_steps - 1) / 2) * step
    s = (np.arange(n_bins) - (n_bins - 1) / 2) * bin_width
    # Pixels whose centre lies in the field-of-view disk.
    cx = (np.arange(nx) - (nx - 1) / 2) * voxel_size
    cy = (np.arange(ny) - (ny - 1) / 2) * voxel_size
    in_fov = (cx[:, None] ** 2 + cy[None, :] ** 2) <= radius**2

    blocks = []
    for first in range(0, n_angles, _ANGLES_PER_BLOCK):
        angles = np.arange(first, min(first + _ANGLES_PER_BLOCK, n_angles))
        theta = angles * math.pi / n_angles
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        # Sample points, shape (angles, bins, steps), in fractional pixel indices.
        px = (s[None, :, None] * cos - t[None, None, :] * sin) / voxel_size + (nx - 1) / 2
        py = (s[None, :, None] * sin + t[None, None, :] * cos) / voxel_size + (ny - 1) / 2
        on_chord = np.broadcast_to((s[:, None] ** 2 + t[None, :] ** 2) <= radius**2, px.shape)
        rows = (angles[:, None, None] - first) * n_bins + np.arange(n_bins)[None, :, None]
        rows = np.broadcast_to(rows, px.shape)[on_chord]
        px, py = px[on_chord], py[on_chord]
        ix0, iy0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        fx, fy = px - ix0, py - iy0
        corners = []
        for dx, wx in ((0, 1 - fx), (1, fx)):
            for dy, wy in ((0, 1 - fy), (1, fy)):
                ix, iy = ix0 + dx, iy0 + dy
                ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
                ok[ok] = in_fov[ix[ok], iy[ok]]
                corners.append((rows[ok], ix[ok] * ny + iy[ok], (wx * wy * step)[ok]))
        r, c, w = (np.concatenate(parts) for parts in zip(*corners))
        block = sp.csr_matrix((w.astype(np.float32), (r, c)), shape=(len(angles) * n_bins, nx * ny))
        block.sum_duplicates()
        blocks.append(block)
    matrix = sp.vstack(blocks, format="csr", dtype=np.float32)
    matrix.eliminate_zeros()
    return matrix
