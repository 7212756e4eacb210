"""Sliding-window patch planning and blending for volumes of any shape.

A volume of shape (X, Y, Z) is zero-padded at the end of each axis (PET
background is ~0 SUV, and 0 maps to 0 in the model range), cut into
overlapping boxes of ``patch_size``, and the per-box results are blended back
with smooth, strictly positive weights. Cropping ``[:X, :Y, :Z]`` undoes the
padding. Like MONAI's ``sliding_window_inference``, every choice is an
explicit argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

Shape3 = tuple[int, int, int]
Box = tuple[slice, slice, slice]

#: Smallest Gaussian weight relative to the centre, so that every voxel of a
#: patch counts and a voxel covered only by patch borders is still defined.
GAUSSIAN_FLOOR = 1e-3
#: Gaussian width as a fraction of the patch size (MONAI's default).
GAUSSIAN_SIGMA_SCALE = 0.125
BLEND_MODES = ("linear", "gaussian")


def _triple(value: int | Sequence[int], name: str) -> Shape3:
    """Broadcast an int to three axes and check the values are integers."""
    values = (value,) * 3 if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise UserError(f"{name} must be one integer or three (X, Y, Z), got {value!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def axis_starts(length: int, patch: int, min_overlap: int) -> list[int]:
    """Start indices of the fewest patches that cover ``length`` with overlap.

    Neighbouring patches overlap by at least ``min_overlap`` voxels; starts are
    spread as evenly as integers allow, the first is 0 and the last is
    ``length - patch`` (flush with the end). If ``length <= patch`` the answer
    is ``[0]`` (the caller pads the axis up to the patch).
    """
    if patch < 1 or length < 1:
        raise UserError(f"patch size ({patch}) and volume length ({length}) must be positive")
    if not 0 <= min_overlap < patch:
        raise UserError(f"overlap {min_overlap} must be >= 0 and smaller than the patch size {patch}")
    if length <= patch:
        return [0]
    span = length - patch
    # n patches at stride span/(n-1) overlap by patch - stride >= min_overlap.
    n = 1 + -(-span // (patch - min_overlap))
    # Integer steps are floor or ceil of span/(n-1) <= patch - min_overlap.
    return [i * span // (n - 1) for i in range(n)]


def pad_shape(shape: Sequence[int], patch_size: Sequence[int], multiple: Sequence[int] = (1, 1, 1)) -> Shape3:
    """Shape (X, Y, Z) after padding: at least ``patch_size``, rounded up to ``multiple``.

    ``multiple`` is per axis, e.g. (8, 8, 1) when the network halves the two
    in-plane axes three times.
    """
    shape, patch_size, multiple = _triple(shape, "shape"), _triple(patch_size, "patch size"), _triple(multiple, "multiple")
    if min(multiple) < 1:
        raise UserError(f"size multiple must be positive, got {multiple}")
    return tuple(-(-max(s, p) // m) * m for s, p, m in zip(shape, patch_size, multiple))  # type: ignore[return-value]


def pad_volume(array: np.ndarray, target_shape: Sequence[int]) -> np.ndarray:
    """Zero-pad a (X, Y, Z) array at the end of each axis up to ``target_shape``."""
    target_shape = _triple(target_shape, "target shape")
    if array.ndim != 3 or any(s > t for s, t in zip(array.shape, target_shape)):
        raise ValueError(f"cannot pad an array of shape {array.shape} to {target_shape}")
    return np.pad(array, [(0, t - s) for s, t in zip(array.shape, target_shape)], mode="constant")


def crop_volume(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Undo :func:`pad_volume`: the leading ``shape`` corner of a (X, Y, Z) array."""
    x, y, z = _triple(shape, "shape")
    return array[:x, :y, :z]


@dataclass(frozen=True)
class PatchPlan:
    """How a volume is padded and tiled.

    Attributes:
        shape: original volume shape (X, Y, Z).
        padded_shape: shape after :func:`pad_volume`; boxes index this.
        patch_size: size of every box, per axis (clipped to ``padded_shape``).
        overlap: minimum overlap between neighbouring boxes, per axis.
        starts: corner (x0, y0, z0) of each box.
    """

    shape: Shape3
    padded_shape: Shape3
    patch_size: Shape3
    overlap: Shape3
    starts: tuple[Shape3, ...]

    @property
    def boxes(self) -> list[Box]:
        """Each box as a tuple of slices into the padded volume."""
        return [tuple(slice(s, s + p) for s, p in zip(start, self.patch_size)) for start in self.starts]  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.starts)


def plan_patches(
    shape: Sequence[int],
    patch_size: int | Sequence[int],
    min_overlap: int | Sequence[int],
    multiple: int | Sequence[int] = (1, 1, 1),
) -> PatchPlan:
    """Plan the boxes that tile a (X, Y, Z) volume.

    Args:
        shape: volume shape (X, Y, Z) in voxels.
        patch_size: box size per axis (or one int for all); clipped to the padded shape.
        min_overlap: minimum overlap in voxels between neighbouring boxes, < patch_size.
        multiple: each padded axis is a multiple of this (network down-sampling).

    Returns:
        A :class:`PatchPlan`; boxes are in C order of their starts (x slowest, z fastest).
    """
    shape = _triple(shape, "volume shape")
    patch_size = _triple(patch_size, "patch size")
    min_overlap = _triple(min_overlap, "overlap")
    multiple = _triple(multiple, "multiple")
    if min(shape) < 1:
        raise UserError(f"volume shape {shape} has an empty axis")
    for p, o in zip(patch_size, min_overlap):
        if not 0 <= o < p:
            raise UserError(f"overlap {min_overlap} must be >= 0 and smaller than the patch size {patch_size} on every axis")
    padded = pad_shape(shape, patch_size, multiple)
    patch = tuple(min(p, s) for p, s in zip(patch_size, padded))
    for axis, (p, s, m) in enumerate(zip(patch, padded, multiple)):
        if p % m:
            raise UserError(
                f"patch size {p} along axis {'XYZ'[axis]} is not a multiple of {m}, which the network needs; "
                f"choose a patch size divisible by {m}"
            )
    overlap = tuple(min(o, p - 1) for o, p in zip(min_overlap, patch))
    per_axis = [axis_starts(s, p, o) for s, p, o in zip(padded, patch, overlap)]
    starts = tuple((x, y, z) for x in per_axis[0] for y in per_axis[1] for z in per_axis[2])
    return PatchPlan(shape=shape, padded_shape=padded, patch_size=patch, overlap=overlap, starts=starts)  # type: ignore[arg-type]


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1D weights rising linearly over ``overlap`` voxels at each end, 1 inside; all > 0."""
    i = np.arange(size, dtype=np.float64)
    return np.minimum(1.0, np.minimum(i + 1, size - i) / (overlap + 1))


def _gaussian(size: int) -> np.ndarray:
    """1D Gaussian centred on the patch, sigma = 0.125 * size."""
    sigma = GAUSSIAN_SIGMA_SCALE * size
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.exp(-0.5 * (i / sigma) ** 2)


def blend_weights(patch_size: Sequence[int], mode: str = "linear", overlap: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Smooth, strictly positive weights of shape ``patch_size`` (float64, max 1).

    Args:
        patch_size: (px, py, pz).
        mode: "linear": weights ramp from ``1/(overlap+1)`` up to 1 across the
            ``overlap`` voxels at each face, so a patch fades out where its
            neighbour fades in (the paper's blending). "gaussian": MONAI-style
            product of Gaussians with sigma = 0.125 * patch size, floored at
            ``GAUSSIAN_FLOOR``.
        overlap: ramp width per axis for "linear" (ignored by "gaussian").
    """
    patch_size = _triple(patch_size, "patch size")
    overlap = _triple(overlap, "overlap")
    if mode == "linear":
        axes = [_ramp(p, min(o, p - 1)) for p, o in zip(patch_size, overlap)]
    elif mode == "gaussian":
        axes = [_gaussian(p) for p in patch_size]
    else:
        raise UserError(f"blend mode {mode!r} is unknown; use one of {', '.join(BLEND_MODES)}")
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    if mode == "gaussian":
        # Even sizes put the peak between voxels; rescale so the largest weight is 1.
        weights = np.maximum(weights / weights.max(), GAUSSIAN_FLOOR)
    return weights


class PatchBlender:
    """Accumulate per-box results and return their weighted mean.

    Accumulators are float64 so that stitching is exact to float32 round-off;
    they hold two arrays of the padded shape (rank 0 only in MPI runs).
    """

    def __init__(self, plan: PatchPlan, mode: str = "linear") -> None:
        self.plan = plan
        self.weights = blend_weights(plan.patch_size, mode, plan.overlap)
        self._boxes = plan.boxes
        self._sum = np.zeros(plan.padded_shape, dtype=np.float64)
        self._weight_sum = np.zeros(plan.padded_shape, dtype=np.float64)
        self._added: set[int] = set()

    def add(self, box_index: int, patch: np.ndarray) -> None:
        """Add the result for box ``box_index``; ``patch`` has shape ``plan.patch_size``."""
        if not 0 <= box_index < len(self._boxes):
            raise IndexError(f"box index {box_index} out of range for a plan of {len(self._boxes)} boxes")
        if box_index in self._added:
            raise ValueError(f"box {box_index} was added twice")
        if tuple(patch.shape) != self.plan.patch_size:
            raise ValueError(f"patch shape {patch.shape} differs from the plan's {self.plan.patch_size}")
        box = self._boxes[box_index]
        self._sum[box] += self.weights * patch
        self._weight_sum[box] += self.weights
        self._added.add(box_index)

    def result(self) -> np.ndarray:
        """Weighted mean of all boxes, cropped to the original shape; float32 (X, Y, Z)."""
        missing = len(self._boxes) - len(self._added)
        if missing:
            raise RuntimeError(f"{missing} of {len(self._boxes)} boxes were never added")
        return crop_volume(self._sum / self._weight_sum, self.plan.shape).astype(np.float32)
