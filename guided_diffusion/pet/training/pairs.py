"""Training pairs on disk: finding them, checking them, and caching them for memory-mapped reads.

Layout of a data folder (searched recursively; names starting with ``.`` are skipped):

* ``*.npz`` with ``arr_0`` of shape (2, X, Y, Z) = (low dose, full dose) in SUV,
  and optionally ``lesions`` (X, Y, Z), as written by ``scripts/make_phantoms.py``;
* manifests ``pairs.csv`` (header ``low_dose,full_dose[,dose_fraction,subject,lesions]``)
  or ``pairs.json`` (a list of objects with the same keys). Paths are relative to
  the manifest's folder (or absolute) and name any volume ``read_volume`` reads
  (``.nii``, ``.nii.gz``, single-volume ``.npz``, DICOM directories, and any format
  registered in :data:`guided_diffusion.pet.io.FORMATS`); several rows may share
  one full-dose file. ``.npz`` files named by a manifest are not pairs themselves.

Every volume is checked once (readable, 3 axes, finite, both volumes of a pair
on one grid; grids from the headers through ``survey_volume``, voxels through
``read_volume``, so every registered format trains), brought onto the model grid (:mod:`guided_diffusion.pet.io.grid`:
RAS orientation, ``model_voxel_size`` mm voxels) and stored as a float32
``.npy`` (X, Y, Z) in a cache folder, keyed by the source's path, size and
modification time and by the grid, so another voxel size builds new entries.
Training then reads crops through memory maps, so no more than one volume is
ever held in memory, and later runs skip the decompression, the resampling and
the checks. ``.npz`` files without an ``affine`` have 1.65 mm voxels, as
everywhere in the project.

Lesion masks travel with their pairs where given (the optional ``lesions``
column, or the ``lesions`` array of a pair ``.npz``: non-zero inside lesions, on
the pair's grid): brought onto the model grid by nearest neighbour, they are
cached as the (N, 3) indices of their lesion voxels, from which crops can be
centred on lesions (:mod:`.crops`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import UserError
from ..intensity import check_plausible_suv
from ..io import read_volume, survey_volume
from ..io.grid import SAME_SIZE_MM, GridMapping, plan_grid
from ..io.npz import npz_affine, npz_shapes, read_npz_array
from ..io.reorient import reorientation
from ..io.volume import DEFAULT_VOXEL_SIZE, validated, voxel_spacing

MANIFEST_NAMES = ("pairs.csv", "pairs.json")
MANIFEST_KEYS = ("low_dose", "full_dose")
#: The optional manifest column, and ``.npz`` array, of a pair's lesion mask.
LESIONS_KEY = "lesions"
#: Voxel centres of the two volumes of a pair may differ by this much (mm).
SAME_GRID_MM = 0.01
Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class PairEntry:
    """One (low dose, full dose) pair as found on disk.

    ``index`` is None when ``low`` and ``full`` are separate volumes, or
    ``(0, 1)``: both live in one ``.npz`` file's ``arr_0`` (2, X, Y, Z) (and its lesion
    mask, if any, in its ``lesions``). ``lesions`` is the lesion mask volume of a
    manifest row (None: not given). ``name`` identifies the pair in messages.
    """

    name: str
    low: Path
    full: Path
    index: tuple[int, int] | None = None
    lesions: Path | None = None


@dataclass(frozen=True)
class CachedPair:
    """A checked pair on the model grid: two float32 ``.npy`` files (X, Y, Z) in SUV, of equal ``shape``, and
    where the pair has a lesion mask, an int32 ``.npy`` (N, 3) of the model-grid indices of its lesion voxels."""

    name: str
    low: Path
    full: Path
    shape: Shape3
    lesion_voxels: Path | None = None

    def open(self) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (low, full) arrays (X, Y, Z), read-only; nothing is loaded yet."""
        return np.load(self.low, mmap_mode="r"), np.load(self.full, mmap_mode="r")

    def open_lesion_voxels(self) -> np.ndarray | None:
        """The memory-mapped (N, 3) indices of the lesion voxels (N may be 0), or None: no lesion mask."""
        return None if self.lesion_voxels is None else np.load(self.lesion_voxels, mmap_mode="r")


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
        lesions = path.parent / str(row[LESIONS_KEY]).strip() if row.get(LESIONS_KEY) else None
        for volume in (low, full, lesions):
            if volume is not None and not volume.exists():
                raise UserError(f"{path}: entry {number} names {volume}, which does not exist")
        entries.append(PairEntry(f"{path} entry {number}", low, full, lesions=lesions))
    return entries


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """This rank's share, round robin; every item for every rank when there are fewer items than ranks."""
    return list(items) if len(items) < world_size else list(items[rank::world_size])


def data_voxel_size(entries: Sequence[PairEntry]) -> float:
    """The voxel size (mm) the training volumes share: the smallest edge of their common voxel.

    Voxel edges are compared in RAS order (left-right, posterior-anterior,
    feet-head), to ``SAME_SIZE_MM``; a volume's orientation does not matter.
    Only file headers are read (formats without a header survey are read whole).

    Raises:
        UserError: two volumes differ in voxel size; the message names them and ``--model_voxel_size``.
    """
    first: tuple[Path, np.ndarray] | None = None
    for entry in entries:
        for path, (shape, affine) in _entry_geometry(entry):
            edges = voxel_spacing(reorientation(shape, affine).canonical_affine)
            if first is None:
                first = (path, edges)
            elif np.abs(edges - first[1]).max() > SAME_SIZE_MM:
                raise UserError(
                    f"the training volumes differ in voxel size: {_mm(first[1])} in {first[0]}, {_mm(edges)} in "
                    f"{path}; choose the model's grid with --model_voxel_size MM (e.g. {first[1].min():g})"
                )
    if first is None:
        raise UserError("no training volumes to take the voxel size from; give --model_voxel_size MM")
    return float(first[1].min())


def _mm(edges: np.ndarray) -> str:
    return " x ".join(f"{e:g}" for e in edges) + " mm"


def prepare_pairs(
    entries: Sequence[PairEntry], cache_dir: str | Path, patch_size: Shape3, model_voxel_size: float = 0.0,
) -> list[CachedPair]:
    """Check every pair, bring it onto the model grid and cache its volumes as ``.npy`` in ``cache_dir``.

    One volume is in memory at a time. A pair smaller than ``patch_size`` (on the
    model grid) on some axis is kept: its crops are padded with zeros (SUV 0,
    i.e. air), and one warning names such pairs. A pair's lesion mask, where it
    has one, is cached as the indices of its lesion voxels on the model grid.

    Args:
        model_voxel_size: isotropic voxel size of the model grid in mm; 0 keeps each
            volume's voxels (reoriented to RAS only).

    Raises:
        UserError: naming the file, for unreadable files, wrong shapes, pairs whose
            volumes (or lesion masks) lie on different grids, NaN/inf or all-zero volumes.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    pairs = []
    for entry in entries:
        (_, (low_shape, low_affine)), (_, (full_shape, full_affine)) = _entry_geometry(entry)
        if low_shape != full_shape:
            raise UserError(
                f"{entry.name}: low dose {entry.low} has shape {low_shape} but full dose {entry.full} has "
                f"shape {full_shape}; both volumes of a pair must share one grid"
            )
        if np.abs(low_affine - full_affine).max() > SAME_GRID_MM:
            raise UserError(
                f"{entry.name}: low dose {entry.low} and full dose {entry.full} have different affines "
                f"({low_affine[:3].tolist()} vs {full_affine[:3].tolist()}); both volumes of a pair must share one grid"
            )
        grid = plan_grid(full_shape, full_affine, model_voxel_size)
        if entry.index is None:
            low, full = _cached_volume(entry.low, cache, grid), _cached_volume(entry.full, cache, grid)
            lesions = None if entry.lesions is None else _cached_lesion_voxels(entry, cache, grid, full_affine)
        else:
            low, full = _cached_npz_pair(entry.low, cache, grid)
            lesions = _cached_npz_lesion_voxels(entry.low, cache, grid, full_shape)
        pairs.append(CachedPair(entry.name, low, full, grid.model_shape, lesions))
    small = [p.name for p in pairs if any(s < c for s, c in zip(p.shape, patch_size))]
    if small:
        warnings.warn(
            f"{len(small)} training pair(s) are smaller than --patch_size {patch_size} on some axis "
            f"(first: {small[0]}); their crops are padded with zeros",
            stacklevel=2,
        )
    return pairs


def _entry_geometry(entry: PairEntry) -> list[tuple[Path, tuple[Shape3, np.ndarray]]]:
    """(path, (shape (X, Y, Z), 4x4 affine)) of the low and the full dose volume of ``entry``."""
    if entry.index is not None:
        geometry = _npz_pair_geometry(entry.low)
        return [(entry.low, geometry), (entry.full, geometry)]
    return [(path, _volume_geometry(path)) for path in (entry.low, entry.full)]


def _volume_geometry(path: Path) -> tuple[Shape3, np.ndarray]:
    """Shape and affine of a single volume of any registered format, from its headers (:func:`survey_volume`)."""
    info = survey_volume(path)
    return info.shape, info.affine


def _npz_pair_geometry(source: Path) -> tuple[Shape3, np.ndarray]:
    """Shape (X, Y, Z) and affine of a pair ``.npz`` from its headers (``arr_0`` (2, X, Y, Z), optional ``affine``)."""
    shapes = npz_shapes(source)
    if "arr_0" not in shapes:
        raise UserError(f"{source}: no array arr_0 (keys: {', '.join(shapes) or 'none'}); "
                        "a pair file holds arr_0 of shape (2, X, Y, Z) = (low, full)")
    shape = shapes["arr_0"]
    if len(shape) != 4 or shape[0] != 2 or min(shape) == 0:
        raise UserError(
            f"{source}: arr_0 has shape {shape}; a pair file needs (2, X, Y, Z) = (low dose, full dose). "
            "Single volumes belong in a pairs.csv manifest"
        )
    return tuple(shape[1:]), npz_affine(source, DEFAULT_VOXEL_SIZE)  # type: ignore[return-value]


def _cache_name(source: Path, cache: Path, tag: str) -> Path:
    """Cache file for ``source`` and ``tag``: changes when the file is replaced or edited (path, size, mtime)."""
    info = source.stat()
    key = f"{source.resolve()}|{info.st_size}|{info.st_mtime_ns}|{tag}"
    return cache / f"{source.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}-{tag}.npy"


def _save(target: Path, array: np.ndarray, dtype: type = np.float32) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=dtype))

    # Atomic: ranks sharing a file may write the same cache entry; readers see a whole file.
    atomic_write(target, write)


def _cached_volume(source: Path, cache: Path, grid: GridMapping) -> Path:
    """A single volume (any format ``read_volume`` reads), checked, on the model grid and cached."""
    target = _cache_name(source, cache, f"volume-{grid.key}")
    if not target.exists():
        _save(target, grid.to_model(check_plausible_suv(read_volume(source).data, source)))
    return target


def _cached_npz_pair(source: Path, cache: Path, grid: GridMapping) -> tuple[Path, Path]:
    """The two halves of a pair ``.npz`` (``arr_0`` (2, X, Y, Z)), checked, on the model grid and cached."""
    low, full = (_cache_name(source, cache, f"{half}-{grid.key}") for half in ("low", "full"))
    if low.exists() and full.exists():
        return low, full
    data, _ = read_npz_array(source, "arr_0", DEFAULT_VOXEL_SIZE)
    halves = [check_plausible_suv(validated(data[i], name), name)
              for i, name in enumerate((f"{source} arr_0[0] (low dose)", f"{source} arr_0[1] (full dose)"))]
    for target, half in zip((low, full), halves):
        _save(target, grid.to_model(half))
    return low, full


def _save_lesion_voxels(target: Path, mask: np.ndarray, grid: GridMapping) -> None:
    """Cache the model-grid indices (N, 3) of the non-zero voxels of an input-grid lesion ``mask``."""
    _save(target, np.argwhere(grid.labels_to_model(np.asarray(mask) > 0)), np.int32)


def _cached_lesion_voxels(entry: PairEntry, cache: Path, grid: GridMapping, full_affine: np.ndarray) -> Path:
    """The lesion voxels of a manifest row's ``lesions`` volume, which must lie on its full dose's grid."""
    source = entry.lesions
    shape, affine = _volume_geometry(source)
    if shape != grid.input_shape or np.abs(affine - full_affine).max() > SAME_GRID_MM:
        raise UserError(f"{entry.name}: the lesion mask {source} (shape {shape}) does not lie on the grid of the full "
                        f"dose {entry.full} (shape {grid.input_shape}); give the mask on the pair's grid")
    target = _cache_name(source, cache, f"lesion-voxels-{grid.key}")
    if not target.exists():
        _save_lesion_voxels(target, read_volume(source).data, grid)
    return target


def _cached_npz_lesion_voxels(source: Path, cache: Path, grid: GridMapping, shape: Shape3) -> Path | None:
    """The lesion voxels of a pair ``.npz``'s ``lesions`` array (X, Y, Z), or None when it has none."""
    shapes = npz_shapes(source)
    if LESIONS_KEY not in shapes:
        return None
    if shapes[LESIONS_KEY] != shape:
        raise UserError(f"{source}: its lesions array has shape {shapes[LESIONS_KEY]} but its pair {shape}; "
                        "the lesion mask must lie on the pair's grid")
    target = _cache_name(source, cache, f"lesion-voxels-{grid.key}")
    if not target.exists():
        _save_lesion_voxels(target, read_npz_array(source, LESIONS_KEY, DEFAULT_VOXEL_SIZE)[0], grid)
    return target
