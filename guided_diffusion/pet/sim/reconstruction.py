"""OSEM reconstruction with attenuation and additive background.

Data model, per sinogram bin: ``y ~ Poisson(a * (A x) + b)`` with ``A`` the
projector's system matrix (line integrals in mm), ``a`` a multiplicative factor
(attenuation, detector efficiency, count scale) and ``b`` the expected
scatter-plus-randoms counts. One OSEM sub-iteration on subset ``s`` (an
interleaved set of angles) is

    x <- x / (A_s^T a_s) * A_s^T (a_s * y_s / (a_s * A_s x + b_s)),

which keeps ``x`` non-negative. Images are stacks of transaxial slices
``(nx, ny, *batch)``; all batch columns (slices, noise realisations) are
reconstructed together by one sparse matrix product per projection.
"""

from __future__ import annotations

import numpy as np

from .projector import ParallelProjector


def osem(
    projector: ParallelProjector,
    sinogram: np.ndarray,
    factors: np.ndarray,
    background: np.ndarray,
    iterations: int,
    subsets: int,
) -> np.ndarray:
    """Ordered-subsets expectation maximisation.

    Args:
        projector: the geometry; the sinogram is ``(n_angles, n_bins)`` per column.
        sinogram: measured counts ``y``, shape ``(n_angles, n_bins, *batch)``.
        factors: multiplicative factors ``a`` (> 0), shape ``(n_angles, n_bins, ...)``
            with trailing axes broadcastable to ``batch``.
            A factor shared by several columns (e.g. one attenuation sinogram
            for many noise realisations, shape ``(..., n_slices, 1)``) costs one
            sensitivity image instead of one per column.
        background: expected additive counts ``b`` (>= 0), shaped like ``factors``.
        iterations: full passes over the data.
        subsets: number of interleaved angle subsets (1 gives MLEM).

    Returns:
        float32 images ``(nx, ny, *batch)`` in the units that make ``a * A x``
        counts (e.g. counts per mm of path if ``a`` is the attenuation alone).
        Pixels outside the field of view are zero.
    """
    if iterations < 1 or not 1 <= subsets <= projector.n_angles:
        raise ValueError(f"need iterations >= 1 and 1 <= subsets <= {projector.n_angles}, got {iterations}, {subsets}")
    y = np.asarray(sinogram, dtype=np.float32)
    a = np.asarray(factors, dtype=np.float32)
    b = np.asarray(background, dtype=np.float32)
    batch = y.shape[2:]

    sensitivities = []
    for s in range(subsets):
        a_s = _subset_rows(a, projector, s, subsets)
        sensitivities.append(projector.subset_back(a_s, s, subsets))
    # Pixels no ray of a subset reaches (outside the field of view) stay zero.
    inverse_sens = [np.divide(1, sens, out=np.zeros_like(sens), where=sens > 0) for sens in sensitivities]

    x = _uniform_start(projector, y, a, b)
    x *= sum(sensitivities) > 0
    for _ in range(iterations):
        for s in range(subsets):
            a_s = _subset_rows(a, projector, s, subsets)
            y_s = _subset_rows(y, projector, s, subsets)
            b_s = _subset_rows(b, projector, s, subsets)
            expected = a_s * projector.subset_forward(x, s, subsets) + b_s
            # Bins with no counts contribute nothing; guard 0/0 where nothing is expected either.
            ratio = np.divide(y_s, expected, out=np.zeros_like(expected), where=expected > 0)
            x *= projector.subset_back(a_s * ratio, s, subsets) * inverse_sens[s]
    return x.reshape(projector.nx, projector.ny, *batch)


def _subset_rows(array: np.ndarray, projector: ParallelProjector, index: int, subsets: int) -> np.ndarray:
    return np.ascontiguousarray(array[projector.subset_angles(index, subsets)])


def _uniform_start(projector: ParallelProjector, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A uniform image per column whose expected trues match the measured net counts."""
    row_sums = projector.forward(np.ones((projector.nx, projector.ny), np.float32))
    unit_trues = (a * row_sums.reshape(*row_sums.shape, *[1] * (a.ndim - 2))).sum(axis=(0, 1))
    net = np.maximum((y - b).sum(axis=(0, 1)), 1e-6)
    level = np.broadcast_to(net / unit_trues, y.shape[2:]).astype(np.float32)
    return np.broadcast_to(level, (projector.nx, projector.ny, *level.shape)).copy()

