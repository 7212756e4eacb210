"""Reading, surveying and writing a volume whatever its format, through the registry (:mod:`.registry`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import UserError
from .discovery import source_for_path
from .registry import result_format, volume_format, volume_suffix
from .source import ReadOptions, VolumeInfo, VolumeSource
from .units import UnitOptions
from .volume import DEFAULT_VOXEL_SIZE, Volume


def _source(source: VolumeSource | str | os.PathLike) -> VolumeSource:
    return source if isinstance(source, VolumeSource) else source_for_path(Path(source))


def read_volume(source: VolumeSource | str | os.PathLike, npz_key: str | None = None,
                default_voxel_size: float = DEFAULT_VOXEL_SIZE, units: UnitOptions | None = None) -> Volume:
    """Read a PET volume (X, Y, Z) in SUV with its geometry.

    Args:
        source: an entry of :func:`~.discovery.list_volumes`, or a path: a file of a
            registered format (``.npz``, ``.nii``, ``.nii.gz``, ...), a DICOM file (its
            series, from the files beside it), or a folder holding exactly one DICOM
            PET series (in it or below).
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
    source = _source(source)
    return volume_format(source.kind).read(source, ReadOptions(npz_key, default_voxel_size, units or UnitOptions()))


def survey_volume(source: VolumeSource | str | os.PathLike, npz_key: str | None = None,
                  default_voxel_size: float = DEFAULT_VOXEL_SIZE, units: UnitOptions | None = None) -> VolumeInfo:
    """The name, format, shape (X, Y, Z) and affine that :func:`read_volume` would give, from the headers.

    NIfTI, npz and DICOM read no voxels; a format without a ``survey`` is read
    whole. The arguments are :func:`read_volume`'s.

    Raises:
        UserError: the file is missing or unreadable, or its header says the
            volume is not 3D or is empty (checks of the voxels wait for the read).
    """
    source = _source(source)
    fmt = volume_format(source.kind)
    options = ReadOptions(npz_key, default_voxel_size, units or UnitOptions())
    if fmt.survey is not None:
        return fmt.survey(source, options)
    volume = fmt.read(source, options)
    return VolumeInfo(source, volume.shape, volume.affine)


def write_volume(path: str | os.PathLike, data: np.ndarray, like: Volume, overwrite: bool = False) -> Path:
    """Atomically write ``data`` (X, Y, Z) in ``like``'s format and geometry; return the path.

    npz: ``arr_0`` (float32) plus ``affine``. NIfTI: ``like``'s affine and header,
    float32 without scaling. DICOM input: NIfTI with ``like``'s affine (the
    format's ``results_as``).

    Every format's writer goes through here, so none publishes NaN or infinite voxels.

    Raises:
        UserError: shape differs from ``like``, the suffix of ``path`` does not
            match the format, ``data`` holds NaN or infinite voxels, or ``path``
            exists and ``overwrite`` is false.
    """
    path = Path(path)
    data = np.asarray(data, dtype=np.float32)
    if data.shape != like.data.shape:
        raise UserError(f"{path}: result shape {data.shape} differs from the input {like.path} shape {like.data.shape}")
    fmt = result_format(like.fmt)
    if volume_suffix(path) not in fmt.suffixes:
        raise UserError(f"{path}: must end in {' or '.join(fmt.suffixes)} to match the input {like.path}")
    non_finite = data.size - int(np.count_nonzero(np.isfinite(data)))
    if non_finite:
        raise UserError(f"{path}: {non_finite:,} of {data.size:,} voxels of the result are NaN or infinite; "
                        "the model's output is not finite: a diverged model? Nothing written")
    return atomic_write(path, lambda tmp: fmt.write(tmp, data, like), overwrite=overwrite)
