"""Volume file names: the suffix of a volume file, and the name a result gets.

Suffixes are those of the registered formats (:mod:`.registry`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .nifti import NIFTI_SUFFIXES
from .registry import result_format, volume_stem, volume_suffix
from .source import VolumeInfo
from .volume import Volume

__all__ = ["NIFTI_SUFFIXES", "output_path", "result_suffix", "volume_stem", "volume_suffix"]


def result_suffix(like: Volume | VolumeInfo) -> str:
    """The suffix of a result file of ``like``: the input's own when the result is in its format, else the first.

    ``.npz`` for npz input, ``.nii`` / ``.nii.gz`` as the NIfTI input, and
    ``.nii.gz`` for DICOM input (written as NIfTI). ``like`` may be the volume
    or its survey: the answer is the same.
    """
    fmt = result_format(like.fmt)
    own = volume_suffix(like.path)
    return own if fmt.name == like.fmt and own in fmt.suffixes else fmt.suffixes[0]


def output_path(save_dir: str | os.PathLike, like: Volume | VolumeInfo, suffix: str) -> Path:
    """``<save_dir>/<name>_<suffix><ext>`` with ``ext`` the :func:`result_suffix` of ``like``.

    An empty ``suffix`` gives ``<name><ext>``.
    """
    return Path(save_dir) / f"{like.name}{'_' + suffix if suffix else ''}{result_suffix(like)}"
