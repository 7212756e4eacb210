"""The in-memory volume: voxels in SUV with their geometry, and the checks every reader applies.

Conventions:
    * Arrays are (X, Y, Z) with Z axial (for axial acquisitions), float32, in SUV.
    * ``affine`` is a 4x4 float64 map from voxel indices to world millimetres in
      RAS+ (nibabel's convention): ``world = affine @ [i, j, k, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError

#: Voxel edge (mm) of the paper's data, used for ``.npz`` files without an affine.
DEFAULT_VOXEL_SIZE = 1.65


@dataclass(eq=False)
class Volume:
    """A volume and what is needed to write a result in the same format and geometry.

    Attributes:
        data: float32 array (X, Y, Z) in SUV.
        affine: 4x4 float64 voxel -> world (mm, RAS+).
        fmt: "npz", "nifti" or "dicom".
        path: the file (or DICOM directory) read.
        name: file stem without ``.npz`` / ``.nii`` / ``.nii.gz`` (directory name for DICOM).
        header: the nibabel header for NIfTI input, a :class:`DicomSource` for DICOM input, else None.
        source_units: the units the file stored: "SUV", "BQML" (Bq/ml) or "CNTS" (Philips counts).
        to_suv: factor from the stored units to SUV: a scalar, or one value per Z slice
            (shape (Z,)) when slices differ (DICOM decay correction NONE);
            ``data = stored * to_suv``, so a result goes back to the stored units by dividing.
        suv_record: how SUV was computed, for the sidecar (weight, dose, times, delay,
            half-life, factor, their sources); None when the file was SUV already.
    """

    data: np.ndarray
    affine: np.ndarray
    fmt: str
    path: Path
    name: str
    header: Any = None
    source_units: str = "SUV"
    to_suv: float | np.ndarray = 1.0
    suv_record: dict[str, Any] | None = field(default=None)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths (mm) along X, Y, Z, from the affine's column norms."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (X, Y, Z) in voxels."""
        return tuple(self.data.shape)  # type: ignore[return-value]


@dataclass(eq=False)
class DicomSource:
    """What a DICOM result needs from its source series (``Volume.header`` of DICOM input).

    Attributes:
        datasets: one pydicom ``Dataset`` per array slice, in array Z order, headers
            only (pixel data dropped); for an enhanced multi-frame input, one
            classic-style dataset per frame built from its functional groups.
        files: the source files, sorted (one per dataset for classic series).
        series_uid: the source SeriesInstanceUID.
    """

    datasets: list[Any]
    files: list[Path]
    series_uid: str


def validated(data: np.ndarray, source: Path) -> np.ndarray:
    """Squeeze singleton axes beyond three, cast to float32 and check the values.

    Leading length-1 axes (e.g. (1, X, Y, Z) from the paper's npz files) and
    trailing ones (e.g. NIfTI (X, Y, Z, 1)) are dropped.

    Returns:
        a C-contiguous float32 (X, Y, Z) array.

    Raises:
        UserError: naming ``source``, when the voxels are not real numbers, the
            array is not 3D, empty, all zero, or holds NaN/inf.
    """
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise UserError(f"{source}: voxel type {data.dtype} is not real numbers; save the volume as float32")
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UserError(f"{source}: volume has shape {data.shape}; expected 3 axes (X, Y, Z) after dropping length-1 axes")
    if data.size == 0:
        raise UserError(f"{source}: volume of shape {data.shape} is empty")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{source}: {int(bad.sum())} voxels are NaN or infinite (first at index {where}); "
            "fix or mask them (e.g. set them to 0) in the input file"
        )
    if not data.any():
        raise UserError(f"{source}: every voxel is zero; check that this is the right file")
    return data


def checked_affine(affine: np.ndarray, source: str) -> np.ndarray:
    """``affine`` as a float64 4x4 array; UserError naming ``source`` unless finite and invertible."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UserError(f"{source}: affine must be a finite, invertible 4x4 matrix, got shape {affine.shape}")
    return affine
