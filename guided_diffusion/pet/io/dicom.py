"""A DICOM PET series read with pydicom: classic slices or enhanced multi-frame objects, to SUV with geometry.

The files of one series (as :mod:`.dicom_discovery` groups them) become an
(X, Y, Z) = (column, row, slice) volume sorted along the slice normal, with a
RAS affine; the voxels are the rescaled pixel values times the SUV factor of
:mod:`.dicom_suv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ...errors import UserError
from .dicom_discovery import is_dicom_file, pet_series
from .dicom_suv import check_dicom_suv, dicom_suv_factors
from .dicom_tags import header_copy, require
from .dicom_write import write_dicom_series
from .enhanced import frame_headers, is_multiframe
from .nifti import NIFTI_FORMAT
from .registry import VolumeFormat
from .source import ReadOptions, VolumeInfo, VolumeSource
from .volume import DicomSource, Volume, check_fits_in_memory, validated

# DICOM patient coordinates are LPS; flipping x and y gives RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _pixels(ds: Any, file: Path) -> np.ndarray:
    """The stored pixel values of ``ds``: (frames, rows, columns) float64; refused before decoding when its
    header claims more than memory holds."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    check_fits_in_memory((int(getattr(ds, "Columns", 0) or 0), int(getattr(ds, "Rows", 0) or 0), frames), file,
                         bytes_per_voxel=8)
    try:
        pixels = ds.pixel_array.astype(np.float64)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
        raise UserError(
            f"{file}: cannot decode pixels ({exc}); the file may be truncated, "
            "or compressed without a pydicom pixel handler installed (e.g. pylibjpeg)"
        ) from exc
    return pixels.reshape(frames, *pixels.shape[-2:])


def _dataset(file: Path, stop_before_pixels: bool = False) -> Any:
    try:
        return pydicom.dcmread(file, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise UserError(f"{file}: cannot read as DICOM ({exc}); check the file is complete") from exc


def _read_frames(files: Sequence[Path]) -> tuple[list[Any], list[np.ndarray]]:
    """Header-only datasets (one per frame; one per file for classic slices) and their (rows, columns) pixels."""
    headers, planes = [], []
    for file in files:
        ds = _dataset(file)
        require(ds, "PixelData", file, "for the voxel values")
        pixels = _pixels(ds, file)
        if is_multiframe(ds):
            frames = frame_headers(ds, file)
            if len(frames) != len(pixels):
                raise UserError(f"{file}: {len(frames)} frame headers but {len(pixels)} frames of pixels")
        else:
            frames = [header_copy(ds, ("PixelData",))]
        headers += frames
        planes += list(pixels)
    return headers, planes


def _geometry(headers: list[Any], where: Path) -> tuple[list[int], np.ndarray]:
    """The order of ``headers`` along the slice normal and the RAS affine for (X=column, Y=row, Z=slice)."""
    first = headers[0]
    orientation = np.asarray(require(first, "ImageOrientationPatient", where, "for geometry"), float)
    spacing = np.asarray(require(first, "PixelSpacing", where, "for geometry"), float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    for ds in headers:
        require(ds, "ImagePositionPatient", where, "to order the slices")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns) or not np.allclose(
            np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-4
        ):
            raise UserError(f"{where}: slices differ in size or orientation; is more than one series here?")
    order = sorted(range(len(headers)), key=lambda k: float(np.dot(np.asarray(headers[k].ImagePositionPatient, float), normal)))
    positions = np.array([np.asarray(headers[k].ImagePositionPatient, float) for k in order])
    if len(order) > 1:
        gaps = np.diff(positions @ normal)
        if gaps.min() <= 1e-3:
            raise UserError(f"{where}: two slices share a position; is more than one series or time frame here?")
        if gaps.max() - gaps.min() > 0.01 * gaps.mean():
            raise UserError(
                f"{where}: slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm; are slices missing?"
            )
        step = (positions[-1] - positions[0]) / (len(order) - 1)
    else:
        thickness = float(getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", None) or 1.0)
        step = normal * thickness
    affine = np.eye(4)
    # Array X runs along a row (column index, spacing[1]); Y down the columns (row index, spacing[0]).
    affine[:3, 0] = row_dir * spacing[1]
    affine[:3, 1] = col_dir * spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return order, LPS_TO_RAS @ affine


def read_dicom(source: VolumeSource, options: ReadOptions) -> Volume:
    """Read the PET series made of ``source.files`` as an (X, Y, Z) SUV volume with its RAS affine.

    X runs along an image row, Y down its columns and Z along the slice normal.
    ``source.path`` (the folder holding the files) is ``Volume.path`` and names the
    series in messages; of ``options`` only ``units.allow_uncorrected`` applies
    (convert even when CorrectedImage lacks ATTN or DECY).

    Returns:
        a Volume with ``header`` a :class:`DicomSource` (headers in array Z order),
        ``source_units`` "SUV" (GML), "BQML" or "CNTS", ``to_suv`` a scalar or (Z,)
        factors per slice, and ``suv_record`` (None for GML).

    Raises:
        UserError: unreadable files, inconsistent slices, undecodable pixels, a tag
            needed for geometry or SUV missing, or values implausible as SUV.
    """
    files, folder = sorted(source.files), source.path
    headers, planes = _read_frames(files)
    order, affine = _geometry(headers, folder)
    headers = [headers[k] for k in order]
    units, factors, record = dicom_suv_factors(headers, folder, options.units.allow_uncorrected)
    volume = []
    for k, header, factor in zip(order, headers, factors):
        slope = float(getattr(header, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(header, "RescaleIntercept", 0.0) or 0.0)
        # Pixels are (rows, columns) = (Y, X); the volume is (X, Y, Z).
        volume.append(((planes[k] * slope + intercept) * factor).T)
    data = validated(np.stack(volume, axis=-1), folder)
    check_dicom_suv(data, units, folder)
    to_suv: float | np.ndarray = float(factors[0]) if np.ptp(factors) == 0 else factors
    return Volume(data, affine, "dicom", folder, source.name, DicomSource(headers, files, source.series_uid or ""),
                  units, to_suv, record)


def survey_dicom(source: VolumeSource, options: ReadOptions) -> VolumeInfo:
    """Shape (columns, rows, frames) and affine of a PET series from its headers (no pixel data is read); refused
    when too big for the memory available."""
    headers = []
    for file in sorted(source.files):
        ds = _dataset(file, stop_before_pixels=True)
        headers += frame_headers(ds, file) if is_multiframe(ds) else [ds]
    _, affine = _geometry(headers, source.path)
    shape = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    check_fits_in_memory(shape, source.path)
    return VolumeInfo(source, shape, affine)


#: DICOM PET series, found by content; results are NIfTI files and, on request, a new DICOM series.
DICOM_FORMAT = VolumeFormat(
    "dicom", read_dicom, results_as=NIFTI_FORMAT.name, survey=survey_dicom, detect=is_dicom_file, group=pet_series,
    label="DICOM PET series", write_series=write_dicom_series,
)
