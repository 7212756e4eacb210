"""Reading and writing a volume file whatever its format: ``.npz``, NIfTI, or a DICOM series directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import UserError
from .dicom import read_dicom
from .nifti import read_nifti, write_nifti
from .npz import read_npz, write_npz
from .paths import NIFTI_SUFFIXES, volume_suffix
from .volume import DEFAULT_VOXEL_SIZE, Volume


def read_volume(path: str | os.PathLike, npz_key: str | None = None, default_voxel_size: float = DEFAULT_VOXEL_SIZE) -> Volume:
    """Read a PET volume (X, Y, Z) in SUV with its geometry.

    Args:
        path: ``.npz``, ``.nii``, ``.nii.gz`` file, or a DICOM series directory.
        npz_key: array name inside an ``.npz`` (default ``arr_0``).
        default_voxel_size: isotropic voxel size (mm) for ``.npz`` files without an ``affine``.

    Raises:
        UserError: the file is missing, unreadable, has the wrong shape, is
            empty or all zero, holds NaN/inf voxels, or SUV cannot be computed.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        return read_dicom(path)
    suffix = volume_suffix(path)
    if suffix == ".npz":
        return read_npz(path, npz_key, default_voxel_size)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(path)
    raise UserError(f"{path}: unknown volume format; use .npz, .nii, .nii.gz or a DICOM series directory")


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
