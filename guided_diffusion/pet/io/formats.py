"""Reading and writing a volume file whatever its format: ``.npz``, NIfTI, or a DICOM series."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import UserError
from .dicom import read_dicom
from .discovery import VolumeSource, source_for_path
from .nifti import read_nifti, write_nifti
from .npz import read_npz, write_npz
from .paths import NIFTI_SUFFIXES, volume_suffix
from .units import UnitOptions
from .volume import DEFAULT_VOXEL_SIZE, Volume


def read_volume(source: VolumeSource | str | os.PathLike, npz_key: str | None = None,
                default_voxel_size: float = DEFAULT_VOXEL_SIZE, units: UnitOptions | None = None) -> Volume:
    """Read a PET volume (X, Y, Z) in SUV with its geometry.

    Args:
        source: an entry of :func:`~.discovery.list_volumes`, or a path: a ``.npz``,
            ``.nii`` or ``.nii.gz`` file, a DICOM file (its series, from the files
            beside it), or a folder holding exactly one DICOM PET series (in it or below).
        npz_key: array name inside an ``.npz`` (default ``arr_0``).
        default_voxel_size: isotropic voxel size (mm) for ``.npz`` files without an ``affine``.
        units: how to read units (NIfTI: SUV or Bq/ml; DICOM: only ``allow_uncorrected``
            applies, the Units tag decides; npz is SUV); default ``UnitOptions()``.

    Returns:
        the Volume, named ``source.name`` (the file stem for a plain file path).

    Raises:
        UserError: the file is missing, unreadable, has the wrong shape, is
            empty or all zero, holds NaN/inf voxels, or SUV cannot be computed.
    """
    units = units or UnitOptions()
    if not isinstance(source, VolumeSource):
        source = source_for_path(Path(source))
    if source.kind == "dicom":
        return read_dicom(source.files, source.path, source.name, source.series_uid or "", units.allow_uncorrected)
    if source.kind == "npz":
        volume = read_npz(source.path, npz_key, default_voxel_size)
    else:
        volume = read_nifti(source.path, units)
    return dataclasses.replace(volume, name=source.name)


def write_volume(path: str | os.PathLike, data: np.ndarray, like: Volume, overwrite: bool = False) -> Path:
    """Atomically write ``data`` (X, Y, Z) in ``like``'s format and geometry; return the path.

    npz: ``arr_0`` (float32) plus ``affine``. NIfTI: ``like``'s affine and header,
    float32 without scaling. DICOM input: NIfTI with ``like``'s affine.

    Raises:
        UserError: shape differs from ``like``, the suffix of ``path`` does not
            match the format, or ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    data = np.asarray(data, dtype=np.float32)
    if data.shape != like.data.shape:
        raise UserError(f"{path}: result shape {data.shape} differs from the input {like.path} shape {like.data.shape}")
    suffix = volume_suffix(path)
    expected = (".npz",) if like.fmt == "npz" else NIFTI_SUFFIXES
    if suffix not in expected:
        raise UserError(f"{path}: must end in {' or '.join(expected)} to match the input {like.path}")
    write = write_npz if like.fmt == "npz" else write_nifti
    return atomic_write(path, lambda tmp: write(tmp, data, like), overwrite=overwrite)
