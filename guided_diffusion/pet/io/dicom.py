"""DICOM PET series: one directory, one series, read with pydicom and converted to SUV.

Writing DICOM is out of scope: results of a DICOM input are written as NIfTI
(``.nii.gz``) with the same affine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ...errors import UserError
from .dicom_tags import require
from .suv import suv_factors
from .volume import Volume, validated

# DICOM patient coordinates are LPS; flipping x and y gives RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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
    orientation = np.asarray(require(first, "ImageOrientationPatient", "(0020,0037)", directory, "for geometry"), float)
    spacing = np.asarray(require(first, "PixelSpacing", "(0028,0030)", directory, "for geometry"), float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    for ds in slices:
        require(ds, "ImagePositionPatient", "(0020,0032)", directory, "to order the slices")
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


def read_dicom(directory: Path) -> Volume:
    """Read the PET series in ``directory`` as an (X, Y, Z) SUV volume with its RAS affine.

    X runs along an image row, Y down its columns and Z along the slice normal.

    Raises:
        UserError: no or several series, inconsistent slices, undecodable pixels,
            or a tag needed for geometry or SUV is missing.
    """
    slices, affine = _dicom_geometry(_read_series(directory), directory)
    factors = suv_factors(slices, directory)
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
    return Volume(validated(np.stack(planes, axis=-1), directory), affine, "dicom", directory, name)
