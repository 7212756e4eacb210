"""Writing a result as a new DICOM PET series that a viewer loads over its source series.

Each array slice ``z`` becomes one PET Image Storage file built from the source
header of the same slice (``DicomSource.datasets[z]``), so the result keeps the
source's patient, study, frame of reference, equipment, timing, isotope and
geometry, and gets new Series and SOP Instance UIDs. Pixel ``(row r, column c)``
of slice ``z`` is ``data[c, r, z]`` (the (X, Y, Z) convention of
:mod:`.volume`). Values are stored as int16 with a per-slice RescaleSlope (the
slice's largest magnitude maps to 32767) and RescaleIntercept 0, as scanners
write PET.

Units, chosen by the caller:
    * ``"suv"``: SUV body weight, Units GML (SUVType BW).
    * ``"input"``: the source's units through the factor the reader used
      (``stored = SUV / to_suv``): BQML (Bq/ml) sources get Bq/ml back, which the
      copied weight, dose and times turn into the same SUV; Philips CNTS sources
      get counts with the SUV factor of each slice written in the Philips private
      tag (7053,1000), the one private attribute kept.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from ...atomic import atomic_directory
from ...errors import UserError
from .volume import DicomSource, Volume

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
PHILIPS_PET_CREATOR = "Philips PET Private Group"
INT16_MAX = 32767
#: Length limit of SeriesDescription (VR LO); the full text goes to DerivationDescription.
SERIES_DESCRIPTION_CHARS = 64

#: DICOM Units (0054,1001) for ``Volume.source_units``.
_DICOM_UNITS = {"BQML": "BQML", "GML": "GML", "SUV": "GML", "CNTS": "CNTS"}

#: Group 0028 attributes that describe the acquisition rather than the stored pixels; the rest
#: of the group (size, bits, rescale, window, padding, frames) is set afresh or dropped.
_KEPT_IN_GROUP_0028 = frozenset(
    {"PixelSpacing", "CorrectedImage", "LossyImageCompression", "LossyImageCompressionRatio",
     "LossyImageCompressionMethod"}
)

#: Source attributes that identify or describe the source instance or series: set afresh or dropped.
_REPLACED = frozenset(
    {"SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
     "SeriesDescriptionCodeSequence", "ImageType", "DerivationDescription", "DerivationCodeSequence",
     "SourceImageSequence", "ReferencedSeriesSequence", "InstanceCreationDate", "InstanceCreationTime",
     "ContentDate", "ContentTime", "ImageComments", "Units", "IconImageSequence"}
)


def write_dicom_series(
    out_dir: str | os.PathLike,
    data: np.ndarray,
    like: Volume,
    *,
    series_description: str,
    units: str = "suv",
    series_number_offset: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Atomically write ``data`` as a new PET series in ``like``'s DICOM geometry; return ``out_dir``.

    Args:
        out_dir: the series folder to create; it holds ``IM_00001.dcm`` ... one file per
            array slice, in array Z order.
        data: (X, Y, Z) array in SUV, ``like``'s shape: a denoised volume, or an ensemble
            standard deviation (written in the same units as the mean).
        like: the DICOM source volume (``fmt == "dicom"``, ``header`` a :class:`DicomSource`).
        series_description: what the series is (e.g. denoised, by which model and sampler);
            SeriesDescription holds its first 64 characters, DerivationDescription all of it.
        units: ``"suv"`` (Units GML) or ``"input"`` (the source's units; see the module docstring).
        series_number_offset: SeriesNumber is the source's plus this (a source without one counts as 0);
            give each series written from one source its own offset.
        overwrite: replace an existing ``out_dir``.

    The series is written in a hidden folder next to ``out_dir`` and renamed onto it, so
    ``out_dir`` is either absent, the old series or the complete new one.

    Raises:
        UserError: ``like`` is not a DICOM input, ``data`` has another shape or holds NaN/inf,
            ``units`` is unknown, or ``out_dir`` exists and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if like.fmt != "dicom" or not isinstance(like.header, DicomSource):
        raise UserError(f"{like.path}: DICOM output needs a DICOM series input; write this result as NIfTI")
    datasets = like.header.datasets
    data = np.asarray(data)
    if data.shape != like.data.shape or data.shape[2] != len(datasets):
        raise UserError(
            f"{out_dir}: result shape {data.shape} differs from the input {like.path} "
            f"shape {like.data.shape} ({len(datasets)} slices)"
        )
    if not np.isfinite(data).all():
        raise UserError(f"{out_dir}: the result holds NaN or infinite values; nothing written")
    dicom_units, divisors, cnts_factors = _units_and_divisors(like, units, data.shape[2])

    series_uid = generate_uid()
    series_number = int(datasets[0].get("SeriesNumber") or 0) + series_number_offset
    now = datetime.datetime.now()
    stamp = {"date": now.strftime("%Y%m%d"), "time": now.strftime("%H%M%S.%f")}
    derivation = f"{series_description} (from series {like.header.series_uid}, values in {dicom_units})"
    with atomic_directory(out_dir, overwrite) as tmp:
        for z, source in enumerate(datasets):
            ds = _derived_header(source, series_uid, series_number, stamp)
            ds.SeriesDescription = series_description[:SERIES_DESCRIPTION_CHARS]
            ds.DerivationDescription = derivation
            ds.InstanceNumber = source.get("InstanceNumber") or z + 1
            _set_units(ds, dicom_units, None if cnts_factors is None else float(cnts_factors[z]), source)
            # The plane is (rows, columns) = (Y, X).
            _set_pixels(ds, data[:, :, z].T.astype(np.float64) / divisors[z])
            pydicom.dcmwrite(tmp / f"IM_{z + 1:05d}.dcm", ds, enforce_file_format=True)
    return out_dir


def _units_and_divisors(like: Volume, units: str, slices: int) -> tuple[str, np.ndarray, np.ndarray | None]:
    """The DICOM Units for ``units``, the per-slice divisor (shape (Z,)) from SUV to them, and for CNTS the
    per-slice CNTS -> SUV factors to write (else None)."""
    if units == "suv":
        return "GML", np.ones(slices), None
    if units != "input":
        raise UserError(f"output units {units!r}: expected 'suv' or 'input' (--output_units)")
    dicom_units = _DICOM_UNITS.get(like.source_units.upper())
    if dicom_units is None:
        raise UserError(f"{like.path}: cannot write units {like.source_units} as DICOM; use --output_units suv")
    factors = np.broadcast_to(np.asarray(like.to_suv, dtype=np.float64), (slices,))
    if dicom_units != "CNTS":
        return dicom_units, factors, None
    # A reader multiplies by the factor as written (a decimal string), so divide by that same value.
    written = np.array([float(format_number_as_ds(float(f))) for f in factors])
    return dicom_units, written, written


def _derived_header(source: Dataset, series_uid: str, series_number: int, stamp: dict[str, str]) -> Dataset:
    """A copy of one source slice header with the new series' identity and no pixel or private attributes.

    Kept: everything else, i.e. the Patient, General Study and Patient Study modules,
    Frame of Reference, General Equipment, General Series timing (SeriesDate/Time, the SUV
    reference time), PET Series, PET Isotope, PET Multi-gated Acquisition, Image Plane
    (geometry) and the acquisition part of PET Image.
    """
    ds = copy.deepcopy(source)
    ds.remove_private_tags()
    for elem in list(ds):
        group = elem.tag.group
        if (
            elem.tag.element == 0  # group lengths, stale after any edit
            or (group == 0x0028 and elem.keyword not in _KEPT_IN_GROUP_0028)
            or group == 0x7FE0  # pixel data
            or (group & 0xFF00) in (0x5000, 0x6000)  # curves, overlays
            or elem.keyword in _REPLACED
        ):
            del ds[elem.tag]
    ds.SOPClassUID = PET_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    # PS3.3 C.8.9.4.1.1: a PET image's second ImageType value is PRIMARY, also when derived.
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate = ds.ContentDate = stamp["date"]
    ds.InstanceCreationTime = ds.ContentTime = stamp["time"]
    if "SOPInstanceUID" in source and "SOPClassUID" in source:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceImageSequence = [reference]
        referenced_series = Dataset()
        referenced_series.SeriesInstanceUID = source.SeriesInstanceUID
        referenced_series.ReferencedInstanceSequence = [copy.deepcopy(reference)]
        ds.ReferencedSeriesSequence = [referenced_series]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _set_units(ds: Dataset, dicom_units: str, cnts_factor: float | None, source: Dataset) -> None:
    """Units, and for CNTS the Philips SUV factor (7053,1000) plus the source's Bq/ml factor (7053,1009)."""
    ds.Units = dicom_units
    if dicom_units == "GML":
        ds.SUVType = "BW"
    if cnts_factor is None:
        return
    block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
    block.add_new(0x00, "DS", format_number_as_ds(cnts_factor))
    with contextlib.suppress(KeyError):
        block.add_new(0x09, "DS", source.get_private_item(0x7053, 0x09, PHILIPS_PET_CREATOR).value)


def _set_pixels(ds: Dataset, plane: np.ndarray) -> None:
    """Store ``plane`` (rows, columns) as signed int16 with RescaleSlope = max |value| / 32767."""
    peak = float(np.abs(plane).max())
    # The slope is read back from its decimal string, so quantise with that same value.
    slope = float(format_number_as_ds(peak / INT16_MAX)) if peak > 0 else 1.0
    pixels = np.clip(np.rint(plane / slope), -INT16_MAX - 1, INT16_MAX).astype("<i2")
    ds.Rows, ds.Columns = plane.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = format_number_as_ds(slope), "0"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
