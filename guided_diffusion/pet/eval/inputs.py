"""What an evaluation compares: label maps read beside SUV volumes, and the check that all share one grid.

SUV volumes are read by :func:`guided_diffusion.pet.io.read_volume` (NIfTI,
npz, DICOM series) and refused when a voxel is physically impossible
(:func:`read_scored_volume`). Label maps (organs, lesions) are NIfTI or npz files of
non-negative integers on the reference's grid; they are not PET, so no units
apply and an all-zero map (no lesions) is allowed.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from ...errors import UserError
from ..intensity import check_plausible_suv
from ..io import UnitOptions, Volume, read_volume
from ..io.paths import volume_suffix
from ..sim.phantom import LABEL_NAMES

#: Grids agree when every corner voxel's centre is within this fraction of the smallest voxel edge.
GRID_TOLERANCE_VOXELS = 0.1

#: Organ names of the simulator's label maps (``scripts/make_phantoms.py``), the default; 9 is the liver.
SIMULATOR_LABEL_NAMES: dict[int, str] = {value: name for value, name in LABEL_NAMES.items() if value > 0}


def read_scored_volume(path: str | Path, npz_key: str | None = None, units: UnitOptions | None = None) -> Volume:
    """A volume an evaluation compares (a reference or a result), read by ``read_volume`` (arguments as there).

    Raises:
        UserError: as ``read_volume``, and naming the file when a voxel lies beyond the
            physically possible SUV (:func:`~guided_diffusion.pet.intensity.check_plausible_suv`):
            one corrupt voxel would otherwise set a metric's range (a reference with one
            3e38 voxel scores any result near 790 dB).
    """
    volume = read_volume(path, npz_key=npz_key, units=units)
    check_plausible_suv(volume.data, volume.path)
    return volume


def read_label_map(path: str | Path, npz_key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an integer (X, Y, Z) label map and its affine (None for an npz without ``affine``).

    Float storage is accepted when every value is a whole number (NIfTI scaling
    or float32 files); length-1 axes beyond three are dropped as for volumes.

    Raises:
        UserError: naming the file: missing, unreadable, not 3D, NaN/inf,
            negative or fractional values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (label maps are .nii, .nii.gz or .npz files)")
    suffix = volume_suffix(path)
    affine = None
    try:
        if suffix == ".npz":
            key = npz_key or "arr_0"
            with np.load(path, allow_pickle=False) as npz:
                if key not in npz.files:
                    raise UserError(f"{path}: no array named {key!r}; keys present: {', '.join(npz.files) or 'none'}")
                data = npz[key]
                affine = np.asarray(npz["affine"], dtype=np.float64) if "affine" in npz.files else None
        elif suffix in (".nii", ".nii.gz"):
            image = nib.load(path)
            # The proxy applies scl_slope / scl_inter and keeps integer storage integer when unscaled.
            data, affine = np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)
        else:
            raise UserError(f"{path}: unknown label map format; use .nii, .nii.gz or .npz")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, ImageFileError) as exc:
        raise UserError(f"{path}: cannot read the label map ({exc}); check the file is complete and not corrupt") from exc
    return _integer_labels(np.asarray(data), path), affine


def _integer_labels(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3 or data.size == 0:
        raise UserError(f"{path}: label map has shape {data.shape}; expected 3 axes (X, Y, Z)")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise UserError(f"{path}: label map values of type {data.dtype} are not numbers")
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise UserError(f"{path}: label map holds NaN or infinite values; labels are whole numbers >= 0")
        if not np.array_equal(data, np.round(data)):
            raise UserError(f"{path}: label map holds fractional values; labels are whole numbers >= 0 "
                            "(resample label maps with nearest-neighbour interpolation)")
    if data.min(initial=0) < 0:
        raise UserError(f"{path}: label map holds negative values; labels are whole numbers >= 0")
    return np.ascontiguousarray(data, dtype=np.int64)


def read_label_names(path: str | Path) -> dict[int, str]:
    """Organ names by label value from a JSON object such as ``{"1": "spleen", "5": "liver"}``.

    An object with a ``label_names`` entry (the ``manifest.json`` of
    ``scripts/make_phantoms.py``) is read from that entry.

    Raises:
        UserError: the file is missing, not JSON, or not a mapping of whole numbers to names.
    """
    path = Path(path)
    example = '{"5": "liver", "1": "spleen"}'
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read label names ({exc}); write a JSON object like {example}") from exc
    if isinstance(names, dict) and isinstance(names.get("label_names"), dict):
        names = names["label_names"]
    try:
        return {int(key): str(value) for key, value in names.items()}
    except (AttributeError, ValueError):
        raise UserError(f"{path}: label names must map whole numbers to names, like {example}") from None


def liver_label(names: dict[int, str]) -> int | None:
    """The label value named "liver" (any case) in ``names``, or None."""
    return next((value for value, name in names.items() if name.strip().lower() == "liver"), None)


def check_same_grid(reference: Volume, other_path: Path, other_shape: tuple[int, ...],
                    other_affine: np.ndarray | None, what: str) -> None:
    """Refuse a volume or map whose grid differs from the reference's.

    Shapes must be equal and, when ``other_affine`` is known, every corner
    voxel's centre must map to the same world point to within
    :data:`GRID_TOLERANCE_VOXELS` of the smallest voxel edge.

    Raises:
        UserError: naming both files, both shapes or the largest corner distance.
    """
    if tuple(other_shape) != tuple(reference.shape):
        raise UserError(f"{what} {other_path} has shape {tuple(other_shape)} but the reference {reference.path} has "
                        f"{tuple(reference.shape)}; both must be on the same grid (resample one onto the other)")
    if other_affine is None:
        return
    corners = np.array([[i, j, k, 1.0] for i in (0, other_shape[0] - 1) for j in (0, other_shape[1] - 1)
                        for k in (0, other_shape[2] - 1)]).T
    distance = float(np.max(np.linalg.norm((reference.affine @ corners - other_affine @ corners)[:3], axis=0)))
    tolerance = GRID_TOLERANCE_VOXELS * min(reference.voxel_size)
    if not distance <= tolerance:
        raise UserError(f"{what} {other_path} and the reference {reference.path} have the same shape but different "
                        f"geometry (affines differ: a corner is {distance:.3g} mm apart, tolerance {tolerance:.3g} mm); "
                        "both must be on the same grid")
