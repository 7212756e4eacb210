"""``.npz`` volumes: the array under ``arr_0`` (the paper's code) or a chosen key, and an optional ``affine``.

Without an ``affine`` (4x4) the grid is axis-aligned with ``default_voxel_size``
mm voxels (1.65 mm, the paper's data).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ...errors import UserError
from .paths import volume_stem
from .volume import Volume, checked_affine, validated


def read_npz(path: Path, npz_key: str | None, default_voxel_size: float) -> Volume:
    """Read the (X, Y, Z) array ``npz_key`` (default ``arr_0``) of ``path`` as SUV, with its affine."""
    key = npz_key or "arr_0"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise UserError(
                    f"{path}: no array named {key!r}; keys present: {', '.join(npz.files) or 'none'}; "
                    "choose one with --npz_key"
                )
            data = npz[key]
            affine = npz["affine"] if "affine" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"{path}: cannot read as .npz ({exc}); check the file is complete and not corrupt") from exc
    if affine is None:
        if not default_voxel_size > 0:
            raise UserError(f"default voxel size must be positive, got {default_voxel_size}")
        affine = np.diag([default_voxel_size] * 3 + [1.0])
    return Volume(validated(data, path), checked_affine(affine, f"{path} ['affine']"), "npz", path, volume_stem(path))


def write_npz(path: Path, data: np.ndarray, like: Volume) -> None:
    """Write float32 ``data`` (X, Y, Z) as ``arr_0`` with ``like``'s ``affine`` to ``path`` (compressed)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, arr_0=data, affine=like.affine)
