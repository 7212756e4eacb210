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
from .paths import volume_stem
from .units import UnitOptions, nifti_units
from .volume import Volume, checked_affine, validated


def read_nifti(path: Path, units: UnitOptions) -> Volume:
    """Read ``path`` as an (X, Y, Z) float32 SUV volume with its affine and a copy of its header.

    ``units`` says whether the values are SUV or Bq/ml (:func:`.units.nifti_units`);
    ``source_units``, ``to_suv`` and ``suv_record`` of the result say what was done.
    """
    try:
        image = nib.load(path)
        # get_fdata applies scl_slope/scl_inter, used with integer storage.
        data = image.get_fdata(dtype=np.float32)
    except (OSError, ValueError, EOFError, zlib.error, ImageFileError) as exc:
        raise UserError(f"{path}: cannot read as NIfTI ({exc}); check the file is complete and not corrupt") from exc
    data = validated(data, path)
    source_units, to_suv, record = nifti_units(data, path, units)
    if to_suv != 1.0:
        data = (data * np.float32(to_suv)).astype(np.float32)
    return Volume(data, checked_affine(image.affine, str(path)), "nifti", path, volume_stem(path),
                  image.header.copy(), source_units, to_suv, record)


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
