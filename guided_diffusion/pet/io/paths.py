"""Volume file names: which paths hold volumes, and the name a result gets."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ...errors import UserError
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


def _is_dicom_dir(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() and p.suffix.lower() == ".dcm" for p in path.iterdir())


def _is_volume(path: Path) -> bool:
    return (path.is_file() and volume_suffix(path) != "") or _is_dicom_dir(path)


def list_volumes(spec: str | os.PathLike) -> list[Path]:
    """Volumes named by ``spec``, sorted.

    ``spec`` is a file; a directory (non-recursive: its ``.npz`` / ``.nii`` /
    ``.nii.gz`` files, its sub-directories holding ``.dcm`` files as DICOM
    series, and itself if it holds ``.dcm`` files); or a glob pattern.
    DICOM files must end in ``.dcm`` to be found this way.

    Raises:
        UserError: nothing matches.
    """
    path = Path(spec)
    if path.is_file():
        found = [path]
    elif path.is_dir():
        found = [p for p in path.iterdir() if _is_volume(p)] + ([path] if _is_dicom_dir(path) else [])
    else:
        found = [Path(p) for p in glob.glob(str(spec), recursive=True) if _is_volume(Path(p))]
    if not found:
        raise UserError(
            f"{spec}: no volumes found; give a .npz/.nii/.nii.gz file, a directory holding them "
            "or DICOM series (*.dcm), or a glob pattern"
        )
    return sorted(found)
