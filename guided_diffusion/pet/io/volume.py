"""The in-memory volume: voxels in SUV with their geometry, and the checks every reader applies.

Conventions:
    * Arrays are (X, Y, Z) with Z axial (for axial acquisitions), float32, in SUV.
    * ``affine`` is a 4x4 float64 map from voxel indices to world millimetres in
      RAS+ (nibabel's convention): ``world = affine @ [i, j, k, 1]``.
"""

from __future__ import annotations

import math
import os
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
        fmt: the name of its format in :data:`.registry.FORMATS` ("npz", "nifti", "dicom", ...).
        path: the file (or DICOM directory) read.
        name: the source's name: the file stem without its volume suffix (a series name for DICOM).
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
        return tuple(voxel_spacing(self.affine).tolist())  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (X, Y, Z) in voxels."""
        return tuple(self.data.shape)  # type: ignore[return-value]


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm along the array's three axes: the norms of a 4x4 affine's first three columns.

    Returns:
        float64 array of shape (3,), mm per voxel along axes 0, 1, 2 (whatever their direction).
    """
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


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


def validated(data: np.ndarray, source: Path | str) -> np.ndarray:
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
    data = np.ascontiguousarray(data.reshape(checked_shape(data.shape, source)), dtype=np.float32)
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


def checked_shape(shape: tuple[int, ...], source: Path | str) -> tuple[int, int, int]:
    """``shape`` without its length-1 axes beyond three (leading ones first), checked to be 3D and non-empty.

    This is the shape :func:`validated` gives an array of ``shape``, so a header
    alone tells the shape of the volume read.

    Raises:
        UserError: naming ``source``, when the shape is not 3 axes or is empty.
    """
    shape = tuple(int(n) for n in shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise UserError(f"{source}: volume has shape {shape}; expected 3 axes (X, Y, Z) after dropping length-1 axes")
    if 0 in shape:
        raise UserError(f"{source}: volume of shape {shape} is empty")
    return shape  # type: ignore[return-value]


def available_memory() -> int | None:
    """Bytes of memory free for this process: MemAvailable of /proc/meminfo, else the physical memory; at most a
    cgroup (v2) limit's headroom; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        return min(free, int(limit) - used) if limit != "max" else free
    except (OSError, ValueError):
        return free


def _gib(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB"


def check_fits_in_memory(shape: tuple[int, ...], source: Path | str, bytes_per_voxel: int = 4) -> None:
    """Refuse, before reading, a volume whose header claims more voxels than memory can hold.

    Args:
        shape: the array shape a header states (any number of axes).
        source: the file, named in the message.
        bytes_per_voxel: bytes of each voxel once read (4: float32).

    Raises:
        UserError: naming ``source``, its shape and the bytes needed, when they exceed
            :func:`available_memory`.
    """
    needed = math.prod(int(n) for n in shape) * bytes_per_voxel
    available = available_memory()
    if available is not None and needed > available:
        raise UserError(
            f"{source}: its header gives shape {tuple(int(n) for n in shape)}, {_gib(needed)} to read, more than the "
            f"{_gib(available)} of memory available; check that the header is right (a damaged or wrong file?), "
            "or run where more memory is free"
        )


def checked_affine(affine: np.ndarray, source: str) -> np.ndarray:
    """``affine`` as a float64 4x4 array; UserError naming ``source`` unless finite and invertible."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UserError(f"{source}: affine must be a finite, invertible 4x4 matrix, got shape {affine.shape}")
    return affine
