"""NIfTI volumes (``.nii`` / ``.nii.gz``), read and written with nibabel; affine and header kept.

Values are SUV, or Bq/ml converted to SUV as :mod:`.units` decides.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from ...errors import UserError
from .registry import VolumeFormat
from .source import ReadOptions, VolumeInfo, VolumeSource
from .units import nifti_units
from .volume import Volume, check_fits_in_memory, checked_affine, checked_shape, validated

#: NIfTI file suffixes; a result of another format's input gets the first.
NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: What nibabel may raise for a truncated or corrupt file.
NIFTI_ERRORS = (OSError, ValueError, EOFError, zlib.error, ImageFileError)


def _unreadable(path: Path, exc: Exception) -> UserError:
    # nibabel's messages may run over several lines ("... - could the file be damaged?"): one line here.
    reason = "; ".join(line.strip(" -") for line in str(exc).splitlines() if line.strip(" -"))
    return UserError(f"{path}: cannot read as NIfTI ({reason}); check the file is complete and not corrupt")


def _load(path: Path) -> nib.Nifti1Image:
    """The image with its header; the voxels stay on disk until asked for."""
    try:
        return nib.load(path)
    except NIFTI_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def read_nifti(source: VolumeSource, options: ReadOptions) -> Volume:
    """Read ``source.path`` as an (X, Y, Z) float32 SUV volume with its affine and a copy of its header.

    ``options.units`` says whether the values are SUV or Bq/ml (:func:`.units.nifti_units`);
    ``source_units``, ``to_suv`` and ``suv_record`` of the result say what was done.
    """
    path = source.path
    image = _load(path)
    check_fits_in_memory(image.shape, path)
    try:
        # get_fdata applies scl_slope/scl_inter, used with integer storage.
        data = image.get_fdata(dtype=np.float32)
    except NIFTI_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    data = validated(data, path)
    source_units, to_suv, record = nifti_units(data, path, options.units)
    if to_suv != 1.0:
        data = (data * np.float32(to_suv)).astype(np.float32)
    return Volume(data, checked_affine(image.affine, str(path)), "nifti", path, source.name,
                  image.header.copy(), source_units, to_suv, record)


def survey_nifti(source: VolumeSource, options: ReadOptions) -> VolumeInfo:
    """Shape and affine of a NIfTI volume from its header (nibabel reads no voxels); refused if too big to read."""
    image = _load(source.path)
    check_fits_in_memory(image.shape, source.path)
    return VolumeInfo(source, checked_shape(image.shape, source.path), checked_affine(image.affine, str(source.path)))


def write_nifti(path: Path, data: np.ndarray, like: Volume) -> None:
    """Write float32 ``data`` (X, Y, Z) to ``path`` with ``like``'s affine and NIfTI header (or a fresh mm header)."""
    header = like.header.copy() if like.fmt == "nifti" and like.header is not None else None
    image = nib.Nifti1Image(data, like.affine, header=header)
    image.set_data_dtype(np.float32)
    if header is None:
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(like.affine, code=1)
        image.set_sform(like.affine, code=1)
    nib.save(image, path)


NIFTI_FORMAT = VolumeFormat("nifti", read_nifti, suffixes=NIFTI_SUFFIXES, write=write_nifti, survey=survey_nifti)
