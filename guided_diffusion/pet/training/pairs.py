"""Training pairs on disk: finding them, checking them, and caching them for memory-mapped reads.

Layout of a data folder (searched recursively; names starting with ``.`` are skipped):

* ``*.npz`` with ``arr_0`` of shape (2, X, Y, Z) = (low dose, full dose) in SUV,
  as written by ``scripts/make_phantoms.py``;
* manifests ``pairs.csv`` (header ``low_dose,full_dose[,dose_fraction,subject]``)
  or ``pairs.json`` (a list of objects with the same keys). Paths are relative to
  the manifest's folder (or absolute) and name any volume ``read_volume`` reads
  (``.nii``, ``.nii.gz``, single-volume ``.npz``, DICOM directories); several rows
  may share one full-dose file. ``.npz`` files named by a manifest are not pairs
  themselves.

Every volume is checked once (readable, 3 axes, finite, pair shapes equal) and
stored as a float32 ``.npy`` (X, Y, Z) in a cache folder, keyed by the source's
path, size and modification time. Training then reads crops through memory
maps, so no more than one volume is ever held in memory, and later runs
skip the decompression and the checks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import UserError
from ..io import read_volume

MANIFEST_NAMES = ("pairs.csv", "pairs.json")
MANIFEST_KEYS = ("low_dose", "full_dose")
Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class PairEntry:
    """One (low dose, full dose) pair as found on disk.

    ``index`` is None when ``low`` and ``full`` are separate volumes, or
    ``(0, 1)``: both live in one ``.npz`` file's ``arr_0`` (2, X, Y, Z).
    ``name`` identifies the pair in messages.
    """

    name: str
    low: Path
    full: Path
    index: tuple[int, int] | None = None


@dataclass(frozen=True)
class CachedPair:
    """A checked pair: two float32 ``.npy`` files (X, Y, Z) in SUV, of equal ``shape``."""

    name: str
    low: Path
    full: Path
    shape: Shape3

    def open(self) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (low, full) arrays (X, Y, Z), read-only; nothing is loaded yet."""
        return np.load(self.low, mmap_mode="r"), np.load(self.full, mmap_mode="r")


def find_pairs(data_dir: str | Path, flag: str = "--data_dir") -> list[PairEntry]:
    """Every pair under ``data_dir``, sorted by name (manifests first, then pair ``.npz`` files).

    Raises:
        UserError: the folder is missing, holds no pairs, or a manifest is malformed.
    """
    root = Path(data_dir)
    if not str(data_dir) or not root.is_dir():
        raise UserError(f"{flag} {data_dir!r} is not a folder; give the folder holding the training pairs")
    visible = sorted(p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    entries: list[PairEntry] = []
    for manifest in (p for p in visible if p.name in MANIFEST_NAMES and p.is_file()):
        entries += _read_manifest(manifest)
    named = {path.resolve() for entry in entries for path in (entry.low, entry.full)}
    for path in visible:
        if path.suffix.lower() == ".npz" and path.is_file() and path.resolve() not in named:
            entries.append(PairEntry(str(path), path, path, (0, 1)))
    if not entries:
        raise UserError(
            f"{flag} {data_dir}: no training pairs found; expected .npz files with arr_0 of shape "
            "(2, X, Y, Z) = (low, full) or a pairs.csv / pairs.json manifest"
        )
    return entries


def _read_manifest(path: Path) -> list[PairEntry]:
    """Rows of a ``pairs.csv`` / ``pairs.json`` manifest as pairs (paths resolved against its folder)."""
    try:
        text = path.read_text(encoding="utf-8")
        rows = json.loads(text) if path.suffix == ".json" else list(csv.DictReader(text.splitlines()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read the manifest ({err})")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: the manifest lists no pairs; expected rows with {', '.join(MANIFEST_KEYS)}")
    entries = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or any(not row.get(key) for key in MANIFEST_KEYS):
            raise UserError(
                f"{path}: entry {number} lacks {' or '.join(MANIFEST_KEYS)}; "
                "the header must be low_dose,full_dose,dose_fraction,subject"
            )
        low, full = (path.parent / str(row[key]).strip() for key in MANIFEST_KEYS)
        for volume in (low, full):
            if not volume.exists():
                raise UserError(f"{path}: entry {number} names {volume}, which does not exist")
        entries.append(PairEntry(f"{path} entry {number}", low, full))
    return entries


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """This rank's share, round robin; every item for every rank when there are fewer items than ranks."""
    return list(items) if len(items) < world_size else list(items[rank::world_size])


def prepare_pairs(entries: Sequence[PairEntry], cache_dir: str | Path, patch_size: Shape3) -> list[CachedPair]:
    """Check every pair and cache its volumes as ``.npy`` in ``cache_dir`` (one volume in memory at a time).

    A pair smaller than ``patch_size`` on some axis is kept: its crops are
    padded with zeros (SUV 0, i.e. air), and one warning names such pairs.

    Raises:
        UserError: naming the file, for unreadable files, wrong shapes, pairs whose
            volumes differ in shape, NaN/inf or all-zero volumes.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    pairs = []
    for entry in entries:
        if entry.index is None:
            low, full = _cached_volume(entry.low, cache), _cached_volume(entry.full, cache)
        else:
            low, full = _cached_npz_pair(entry.low, cache)
        low_shape, full_shape = (np.load(p, mmap_mode="r").shape for p in (low, full))
        if low_shape != full_shape:
            raise UserError(
                f"{entry.name}: low dose {entry.low} has shape {low_shape} but full dose {entry.full} has "
                f"shape {full_shape}; both volumes of a pair must share one grid"
            )
        pairs.append(CachedPair(entry.name, low, full, tuple(int(s) for s in full_shape)))
    small = [p.name for p in pairs if any(s < c for s, c in zip(p.shape, patch_size))]
    if small:
        warnings.warn(
            f"{len(small)} training pair(s) are smaller than --patch_size {patch_size} on some axis "
            f"(first: {small[0]}); their crops are padded with zeros",
            stacklevel=2,
        )
    return pairs


def _cache_name(source: Path, cache: Path, tag: str) -> Path:
    """Cache file for ``source``: changes when the file is replaced or edited (path, size, mtime)."""
    info = source.stat()
    key = f"{source.resolve()}|{info.st_size}|{info.st_mtime_ns}|{tag}"
    return cache / f"{source.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}-{tag}.npy"


def _save(target: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32))

    # Atomic: ranks sharing a file may write the same cache entry; readers see a whole file.
    atomic_write(target, write)


def _cached_volume(source: Path, cache: Path) -> Path:
    """A single volume (any format ``read_volume`` reads), checked and cached."""
    target = _cache_name(source, cache, "volume")
    if not target.exists():
        _save(target, read_volume(source).data)
    return target


def _cached_npz_pair(source: Path, cache: Path) -> tuple[Path, Path]:
    """The two halves of a pair ``.npz`` (``arr_0`` (2, X, Y, Z)), checked and cached."""
    low, full = _cache_name(source, cache, "low"), _cache_name(source, cache, "full")
    if low.exists() and full.exists():
        return low, full
    try:
        with np.load(source, allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                raise UserError(f"{source}: no array arr_0 (keys: {', '.join(npz.files) or 'none'}); "
                                "a pair file holds arr_0 of shape (2, X, Y, Z) = (low, full)")
            data = npz["arr_0"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"{source}: cannot read as .npz ({err}); check the file is complete")
    if data.ndim != 4 or data.shape[0] != 2 or min(data.shape) == 0:
        raise UserError(
            f"{source}: arr_0 has shape {data.shape}; a pair file needs (2, X, Y, Z) = (low dose, full dose). "
            "Single volumes belong in a pairs.csv manifest"
        )
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise UserError(f"{source}: arr_0 holds {data.dtype}, not real numbers; save it as float32")
    for i, label in enumerate(("low dose", "full dose")):
        _check_values(data[i], f"{source} arr_0[{i}] ({label})")
    _save(low, data[0])
    _save(full, data[1])
    return low, full


def _check_values(volume: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(volume)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(f"{source}: {int(bad.sum())} voxels are NaN or infinite (first at index {where}); "
                        "fix or mask them (e.g. set them to 0)")
    if not volume.any():
        raise UserError(f"{source}: every voxel is zero; check that this is the right file")
