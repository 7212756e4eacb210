"""Volume file names: the suffixes of volume files, and the name a result gets."""

from __future__ import annotations

import os
from pathlib import Path

from .volume import Volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")
VOLUME_SUFFIXES = (".npz", *NIFTI_SUFFIXES)


def volume_suffix(path: Path) -> str:
    """The volume suffix of ``path`` (``.nii.gz``, ``.nii``, ``.npz``, any case) or ''."""
    lower = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if lower.endswith(s)), "")


def volume_stem(path: Path) -> str:
    """The file name without its volume suffix (``a.nii.gz`` -> ``a``)."""
    suffix = volume_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def output_path(save_dir: str | os.PathLike, like: Volume, suffix: str) -> Path:
    """``<save_dir>/<name>_<suffix><ext>`` with ``ext`` matching ``like``'s format.

    ``.npz`` for npz input, ``.nii`` / ``.nii.gz`` as the NIfTI input, and
    ``.nii.gz`` for DICOM input (DICOM is not written). An empty ``suffix``
    gives ``<name><ext>``.
    """
    if like.fmt == "npz":
        ext = ".npz"
    elif like.fmt == "nifti" and volume_suffix(like.path) == ".nii":
        ext = ".nii"
    else:
        ext = ".nii.gz"
    return Path(save_dir) / f"{like.name}{'_' + suffix if suffix else ''}{ext}"
