"""Reading and writing PET volumes together with their geometry.

Conventions:
    * Arrays are (X, Y, Z) with Z axial (for axial acquisitions), float32, in SUV.
    * ``affine`` is a 4x4 float64 map from voxel indices to world millimetres in
      RAS+ (nibabel's convention): ``world = affine @ [i, j, k, 1]``.

Formats:
    * ``.npz``: the array under ``arr_0`` (the paper's code) or a chosen key,
      optional ``affine`` (4x4). Without it the grid is axis-aligned with
      ``default_voxel_size`` mm voxels (1.65 mm, the paper's data).
    * ``.nii`` / ``.nii.gz``: read and written with nibabel; affine and header kept.
      Values are assumed to be SUV already.
    * DICOM series directory: read with pydicom and converted to SUV
      (body weight). Writing DICOM is out of scope: results of a DICOM input
      are written as NIfTI (``.nii.gz``) with the same affine.
"""

from __future__ import annotations

import glob
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from nibabel.filebasedimages import ImageFileError
from pydicom.errors import InvalidDicomError

from ..atomic import atomic_write
from ..errors import UserError

DEFAULT_VOXEL_SIZE = 1.65
NIFTI_SUFFIXES = (".nii.gz", ".nii")
VOLUME_SUFFIXES = (".npz", *NIFTI_SUFFIXES)
# DICOM patient coordinates are LPS; flipping x and y gives RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SECONDS_PER_DAY = 86400.0


@dataclass(eq=False)
class Volume:
    """A volume and what is needed to write a result in the same format and geometry.

    Attributes:
        data: float32 array (X, Y, Z) in SUV.
        affine: 4x4 float64 voxel -> world (mm, RAS+).
        fmt: "npz", "nifti" or "dicom".
        path: the file (or DICOM directory) read.
        name: file stem without ``.npz`` / ``.nii`` / ``.nii.gz`` (directory name for DICOM).
        header: the nibabel header for NIfTI input, else None.
    """

    data: np.ndarray
    affine: np.ndarray
    fmt: str
    path: Path
    name: str
    header: Any = None

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths (mm) along X, Y, Z, from the affine's column norms."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (X, Y, Z) in voxels."""
        return tuple(self.data.shape)  # type: ignore[return-value]


def _suffix(path: Path) -> str:
    """The volume suffix of ``path`` (``.nii.gz``, ``.nii``, ``.npz``) or ''."""
    lower = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if lower.endswith(s)), "")


def _stem(path: Path) -> str:
    suffix = _suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _validated(data: np.ndarray, source: Path) -> np.ndarray:
    """Squeeze singleton axes beyond three, cast to float32 and check the values.

    Leading length-1 axes (e.g. (1, X, Y, Z) from the paper's npz files) and
    trailing ones (e.g. NIfTI (X, Y, Z, 1)) are dropped.
    """
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise UserError(f"{source}: voxel type {data.dtype} is not real numbers; save the volume as float32")
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UserError(f"{source}: volume has shape {data.shape}; expected 3 axes (X, Y, Z) after dropping length-1 axes")
    if data.size == 0:
        raise UserError(f"{source}: volume of shape {data.shape} is empty")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{source}: {int(bad.sum())} voxels are NaN or infinite (first at index {where}); "
            "fix or mask them (e.g. set them to 0) in the input file"
        )
    if not data.any():
        raise UserError(f"{source}: every voxel is zero; check that this is the right file")
    return data


def _checked_affine(affine: np.ndarray, source: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UserError(f"{source}: affine must be a finite, invertible 4x4 matrix, got shape {affine.shape}")
    return affine


def _read_npz(path: Path, npz_key: str | None, default_voxel_size: float) -> Volume:
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
    return Volume(_validated(data, path), _checked_affine(affine, f"{path} ['affine']"), "npz", path, _stem(path))


def _read_nifti(path: Path) -> Volume:
    try:
        image = nib.load(path)
        # get_fdata applies scl_slope/scl_inter, used with integer storage.
        data = image.get_fdata(dtype=np.float32)
    except (OSError, ValueError, EOFError, zlib.error, ImageFileError) as exc:
        raise UserError(f"{path}: cannot read as NIfTI ({exc}); check the file is complete and not corrupt") from exc
    return Volume(
        _validated(data, path), _checked_affine(image.affine, str(path)), "nifti", path, _stem(path), image.header.copy()
    )


# --------------------------------------------------------------------------- DICOM


def _time_of(value: Any, directory: Path) -> float:
    """Seconds since midnight of a DICOM TM (``HHMMSS.FFFFFF``, ``HHMM``, ``HH:MM:SS``)."""
    text = str(value).strip().replace(":", "")
    if not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d*)?)?)?", text):
        raise UserError(f"{directory}: {value!r} is not a DICOM time (HHMMSS.FFFFFF)")
    return int(text[:2]) * 3600 + int(text[2:4] or 0) * 60 + float(text[4:] or 0)


def _require(ds: Any, keyword: str, tag: str, directory: Path, why: str) -> Any:
    value = getattr(ds, keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise UserError(
            f"{directory}: DICOM tag {keyword} {tag} is missing; it is needed {why}. "
            "Add the tag, or convert the series to a NIfTI file in SUV with another tool"
        )
    return value


def _read_series(directory: Path) -> list[Any]:
    """All DICOM image slices of a directory (non-recursive), one series only."""
    slices = []
    for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError:
            continue  # not DICOM (e.g. a README next to the slices)
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise UserError(f"{file}: cannot read as DICOM ({exc}); check the file is complete") from exc
        if "PixelData" in ds:
            slices.append(ds)
    if not slices:
        raise UserError(f"{directory}: no DICOM image files found; pass a directory holding one PET series")
    series = {getattr(ds, "SeriesInstanceUID", None) for ds in slices}
    if len(series) > 1:
        raise UserError(f"{directory}: holds {len(series)} DICOM series; put each series in its own directory")
    return slices


def _dicom_geometry(slices: list[Any], directory: Path) -> tuple[list[Any], np.ndarray]:
    """Sort slices along the slice normal and build the RAS affine for (X=column, Y=row, Z=slice)."""
    first = slices[0]
    orientation = np.asarray(_require(first, "ImageOrientationPatient", "(0020,0037)", directory, "for geometry"), float)
    spacing = np.asarray(_require(first, "PixelSpacing", "(0028,0030)", directory, "for geometry"), float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    for ds in slices:
        _require(ds, "ImagePositionPatient", "(0020,0032)", directory, "to order the slices")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns) or not np.allclose(
            np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-4
        ):
            raise UserError(f"{directory}: slices differ in size or orientation; is more than one series here?")
    slices = sorted(slices, key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in slices])
    if len(slices) > 1:
        gaps = np.diff(positions @ normal)
        if gaps.min() <= 1e-3:
            raise UserError(f"{directory}: two slices share a position; is more than one series or frame here?")
        if gaps.max() - gaps.min() > 0.01 * gaps.mean():
            raise UserError(
                f"{directory}: slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm; are slices missing?"
            )
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        thickness = float(getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", None) or 1.0)
        step = normal * thickness
    affine = np.eye(4)
    # Array X runs along a row (column index, spacing[1]); Y down the columns (row index, spacing[0]).
    affine[:3, 0] = row_dir * spacing[1]
    affine[:3, 1] = col_dir * spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return slices, LPS_TO_RAS @ affine


def _suv_factors(slices: list[Any], directory: Path) -> np.ndarray:
    """Per-slice factor from the stored units to SUV body weight (g/ml).

    ``SUV = activity [Bq/ml] * weight [g] / (injected dose [Bq] decayed to the
    reference time)``. The reference time follows DecayCorrection (0054,1102):
    START (default): series start (SeriesTime, or the earliest AcquisitionTime if
    earlier, because re-reconstruction can rewrite SeriesTime); ADMIN: injection
    time (no decay); NONE: each slice's AcquisitionTime.
    """
    first = slices[0]
    units = str(_require(first, "Units", "(0054,1001)", directory, "to know the voxel units")).upper()
    if units == "GML":
        return np.ones(len(slices))
    if units != "BQML":
        raise UserError(f"{directory}: voxel units are {units}; only BQML (converted to SUV) or GML (SUV) are supported")
    why = "to convert Bq/ml to SUV"
    weight_g = float(_require(first, "PatientWeight", "(0010,1030)", directory, why)) * 1000.0
    if weight_g <= 0:
        raise UserError(f"{directory}: PatientWeight (0010,1030) is {weight_g / 1000} kg; it must be positive for SUV")
    info = _require(first, "RadiopharmaceuticalInformationSequence", "(0054,0016)", directory, why)[0]
    dose = float(_require(info, "RadionuclideTotalDose", "(0018,1074)", directory, why))
    if dose <= 0:
        raise UserError(f"{directory}: RadionuclideTotalDose (0018,1074) is {dose} Bq; it must be positive for SUV")
    correction = str(getattr(first, "DecayCorrection", "START") or "START").upper()
    if correction == "ADMIN":
        return np.full(len(slices), weight_g / dose)
    half_life = float(_require(info, "RadionuclideHalfLife", "(0018,1075)", directory, why))
    start = getattr(info, "RadiopharmaceuticalStartTime", None)
    if not start and getattr(info, "RadiopharmaceuticalStartDateTime", None):
        # DT is YYYYMMDDHHMMSS.FFFFFF with an optional &ZZXX offset.
        start = re.split("[+-]", str(info.RadiopharmaceuticalStartDateTime))[0][8:]
    start_s = _time_of(start or _require(info, "RadiopharmaceuticalStartTime", "(0018,1072)", directory, why), directory)
    if correction == "START":
        candidates = [_time_of(ds.AcquisitionTime, directory) for ds in slices if getattr(ds, "AcquisitionTime", None)]
        if getattr(first, "SeriesTime", None):
            candidates.append(_time_of(first.SeriesTime, directory))
        if not candidates:
            _require(first, "SeriesTime", "(0008,0031)", directory, why)
        references = np.full(len(slices), min(candidates))
    elif correction == "NONE":
        references = np.array(
            [_time_of(_require(ds, "AcquisitionTime", "(0008,0032)", directory, why), directory) for ds in slices]
        )
    else:
        raise UserError(f"{directory}: DecayCorrection (0054,1102) is {correction}; expected START, ADMIN or NONE")
    # Times are of day; a negative delay means the scan crossed midnight.
    delay = (references - start_s) % SECONDS_PER_DAY
    decayed_dose = dose * np.exp2(-delay / half_life)
    return weight_g / decayed_dose


def _read_dicom(directory: Path) -> Volume:
    slices, affine = _dicom_geometry(_read_series(directory), directory)
    factors = _suv_factors(slices, directory)
    planes = []
    for ds, factor in zip(slices, factors):
        try:
            pixels = ds.pixel_array.astype(np.float64)
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
            raise UserError(
                f"{getattr(ds, 'filename', directory)}: cannot decode pixels ({exc}); the file may be truncated, "
                "or compressed without a pydicom pixel handler installed (e.g. pylibjpeg)"
            ) from exc
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        # pixel_array is (rows, columns) = (Y, X); the volume is (X, Y, Z).
        planes.append(((pixels * slope + intercept) * factor).T)
    name = directory.resolve().name
    return Volume(_validated(np.stack(planes, axis=-1), directory), affine, "dicom", directory, name)


# --------------------------------------------------------------------------- public API


def read_volume(path: str | os.PathLike, npz_key: str | None = None, default_voxel_size: float = DEFAULT_VOXEL_SIZE) -> Volume:
    """Read a PET volume (X, Y, Z) in SUV with its geometry.

    Args:
        path: ``.npz``, ``.nii``, ``.nii.gz`` file, or a DICOM series directory.
        npz_key: array name inside an ``.npz`` (default ``arr_0``).
        default_voxel_size: isotropic voxel size (mm) for ``.npz`` files without an ``affine``.

    Raises:
        UserError: the file is missing, unreadable, has the wrong shape, is
            empty or all zero, holds NaN/inf voxels, or SUV cannot be computed.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_dicom(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        return _read_npz(path, npz_key, default_voxel_size)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    raise UserError(f"{path}: unknown volume format; use .npz, .nii, .nii.gz or a DICOM series directory")


def output_path(save_dir: str | os.PathLike, like: Volume, suffix: str) -> Path:
    """``<save_dir>/<name>_<suffix><ext>`` with ``ext`` matching ``like``'s format.

    ``.npz`` for npz input, ``.nii`` / ``.nii.gz`` as the NIfTI input, and
    ``.nii.gz`` for DICOM input (DICOM is not written). An empty ``suffix``
    gives ``<name><ext>``.
    """
    if like.fmt == "npz":
        ext = ".npz"
    elif like.fmt == "nifti" and _suffix(like.path) == ".nii":
        ext = ".nii"
    else:
        ext = ".nii.gz"
    return Path(save_dir) / f"{like.name}{'_' + suffix if suffix else ''}{ext}"


def write_volume(path: str | os.PathLike, data: np.ndarray, like: Volume, overwrite: bool = False) -> Path:
    """Atomically write ``data`` (X, Y, Z) in ``like``'s format and geometry; return the path.

    npz: ``arr_0`` (float32) plus ``affine``. NIfTI: ``like``'s affine and header,
    float32 without scaling. DICOM input: NIfTI with ``like``'s affine.

    Raises:
        UserError: shape differs from ``like``, the suffix of ``path`` does not
            match the format, or ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    data = np.asarray(data, dtype=np.float32)
    if data.shape != like.data.shape:
        raise UserError(f"{path}: result shape {data.shape} differs from the input {like.path} shape {like.data.shape}")
    suffix = _suffix(path)
    expected = (".npz",) if like.fmt == "npz" else NIFTI_SUFFIXES
    if suffix not in expected:
        raise UserError(f"{path}: must end in {' or '.join(expected)} to match the input {like.path}")

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, arr_0=data, affine=like.affine)

    def write_nifti(tmp: Path) -> None:
        header = like.header.copy() if like.header is not None else None
        image = nib.Nifti1Image(data, like.affine, header=header)
        image.set_data_dtype(np.float32)
        if header is None:
            image.header.set_xyzt_units("mm", "sec")
            image.set_qform(like.affine, code=1)
            image.set_sform(like.affine, code=1)
        nib.save(image, tmp)

    return atomic_write(path, write_npz if like.fmt == "npz" else write_nifti, overwrite=overwrite)


def _is_dicom_dir(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() and p.suffix.lower() == ".dcm" for p in path.iterdir())


def _is_volume(path: Path) -> bool:
    return (path.is_file() and _suffix(path) != "") or _is_dicom_dir(path)


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
