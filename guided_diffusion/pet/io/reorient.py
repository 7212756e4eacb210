"""Reorientation to the model's axes by axis permutation and flips only: exact and invertible.

The model's (canonical) orientation is nibabel's RAS: array axis 0 runs from the
patient's left to right, axis 1 from posterior to anterior, axis 2 from feet to
head, so the third axis, the network's axial axis, is the head-foot axis
whatever the file stored (axial, coronal or sagittal slices; DICOM's LPS
order). Volumes already in RAS order are returned as they are.

Oblique volumes (direction cosines not along the world axes) are not rotated:
each array axis goes to the world axis it is closest to
(:func:`nibabel.orientations.io_orientation`), and the canonical affine keeps
the tilt, so positions stay exact. :attr:`Reorientation.obliquity_deg` says how
far the axes are from the world's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt2axcodes,
    ornt_transform,
)

from .volume import voxel_spacing

#: The model's orientation, as nibabel axis codes.
CANONICAL = ("R", "A", "S")

Shape3 = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class Reorientation:
    """The permutation and flips between an input grid and the canonical (RAS) grid.

    Attributes:
        shape: input array shape (X, Y, Z) in voxels.
        affine: input 4x4 voxel -> world map (mm, RAS+).
        transform: nibabel orientation (3, 2) taking input axes to canonical ones.
    """

    shape: Shape3
    affine: np.ndarray
    transform: np.ndarray

    @property
    def codes(self) -> str:
        """The input's axis codes, e.g. ``"RAS"`` (axial NIfTI), ``"LPS"`` (axial DICOM), ``"LIP"`` (coronal DICOM)."""
        return "".join(ornt2axcodes(io_orientation(self.affine)))

    @property
    def canonical_shape(self) -> Shape3:
        """Shape (X, Y, Z) of the canonical array in voxels: ``shape`` permuted."""
        order = self.transform[:, 0].astype(int)
        shape = [0, 0, 0]
        for axis, target in enumerate(order):
            shape[target] = self.shape[axis]
        return tuple(shape)  # type: ignore[return-value]

    @property
    def canonical_affine(self) -> np.ndarray:
        """4x4 voxel -> world map (mm, RAS+) of the canonical array; the same world points as the input."""
        return self.affine @ inv_ornt_aff(self.transform, self.shape)

    @property
    def obliquity_deg(self) -> float:
        """Largest angle (degrees) between a canonical array axis and its world axis; 0 for unrotated grids."""
        affine = self.canonical_affine
        cosines = np.abs(np.diag(affine[:3, :3])) / voxel_spacing(affine)
        return float(np.degrees(np.arccos(np.clip(cosines.min(), 0.0, 1.0))))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """The input-grid ``array`` (``shape``) in canonical order (``canonical_shape``); a view, values untouched."""
        _check_shape(array, self.shape, "input")
        return apply_orientation(array, self.transform)

    def to_input(self, array: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_canonical`: a canonical ``array`` back in the input's axis order (a view)."""
        _check_shape(array, self.canonical_shape, "canonical")
        return apply_orientation(array, ornt_transform(axcodes2ornt(CANONICAL), io_orientation(self.affine)))


def reorientation(shape: Shape3, affine: np.ndarray) -> Reorientation:
    """The reorientation of an (X, Y, Z) grid of ``shape`` voxels with 4x4 ``affine`` (mm, RAS+) to RAS."""
    affine = np.asarray(affine, dtype=np.float64)
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(CANONICAL))
    return Reorientation(tuple(int(n) for n in shape), affine, transform)  # type: ignore[arg-type]


def _check_shape(array: np.ndarray, expected: Shape3, grid: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"array of shape {array.shape} is not on the {grid} grid {expected}")
