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
from .registry import VolumeFormat
from .source import ReadOptions, VolumeInfo, VolumeSource
from .volume import Volume, check_fits_in_memory, checked_affine, checked_shape, validated

#: What reading an ``.npz`` may raise when the file is truncated or not an ``.npz``.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _unreadable(path: Path, exc: Exception) -> UserError:
    return UserError(f"{path}: cannot read as .npz ({exc}); check the file is complete and not corrupt")


def _missing_key(path: Path, key: str, keys: list[str]) -> UserError:
    return UserError(f"{path}: no array named {key!r}; keys present: {', '.join(keys) or 'none'}; choose one with --npz_key")


def _affine(npz: np.lib.npyio.NpzFile, path: Path, default_voxel_size: float) -> np.ndarray:
    """The file's ``affine``, or the axis-aligned grid of ``default_voxel_size`` mm voxels."""
    if "affine" in npz.files:
        return checked_affine(npz["affine"], f"{path} ['affine']")
    if not default_voxel_size > 0:
        raise UserError(f"default voxel size must be positive, got {default_voxel_size}")
    return np.diag([default_voxel_size] * 3 + [1.0])


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in the ``.npz`` ``path``, from their ``.npy`` headers (no voxels decompressed).

    Raises:
        UserError: the file is missing, truncated or not an ``.npz``.
    """
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shapes[member.removesuffix(".npy")] = tuple(read_header(f)[0])
    except NPZ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return shapes


def npz_affine(path: Path, default_voxel_size: float) -> np.ndarray:
    """The checked ``affine`` of the ``.npz`` ``path`` (only that array is read), or the default grid."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _affine(npz, path, default_voxel_size)
    except NPZ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def read_npz_array(path: Path, key: str, default_voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Array ``key`` of the ``.npz`` ``path`` as stored (not checked) and the checked affine (:func:`npz_affine`).

    Raises:
        UserError: the file is unreadable, has no array ``key``, one too big for the memory
            available (:func:`.volume.check_fits_in_memory`, from its header) or a bad ``affine``.
    """
    shapes = npz_shapes(path)
    if key not in shapes:
        raise _missing_key(path, key, list(shapes))
    check_fits_in_memory(shapes[key], path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key], _affine(npz, path, default_voxel_size)
    except NPZ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def read_npz(source: VolumeSource, options: ReadOptions) -> Volume:
    """Read the (X, Y, Z) array ``options.npz_key`` (default ``arr_0``) of ``source.path`` as SUV, with its affine."""
    data, affine = read_npz_array(source.path, options.npz_key or "arr_0", options.default_voxel_size)
    return Volume(validated(data, source.path), affine, "npz", source.path, source.name)


def survey_npz(source: VolumeSource, options: ReadOptions) -> VolumeInfo:
    """Shape and affine of an ``.npz`` volume from the array's header and the small ``affine`` array; refused if
    too big to read."""
    key, shapes = options.npz_key or "arr_0", npz_shapes(source.path)
    if key not in shapes:
        raise _missing_key(source.path, key, list(shapes))
    check_fits_in_memory(shapes[key], source.path)
    return VolumeInfo(source, checked_shape(shapes[key], source.path), npz_affine(source.path, options.default_voxel_size))


def write_npz(path: Path, data: np.ndarray, like: Volume) -> None:
    """Write float32 ``data`` (X, Y, Z) as ``arr_0`` with ``like``'s ``affine`` to ``path`` (compressed)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, arr_0=data, affine=like.affine)


NPZ_FORMAT = VolumeFormat("npz", read_npz, suffixes=(".npz",), write=write_npz, survey=survey_npz)
