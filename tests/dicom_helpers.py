"""Synthetic DICOM for tests: classic PET series, enhanced multi-frame PET, CT series, written with pydicom.

Every PET dataset starts from :func:`pet_header` (a well-formed BQML series,
FDG: 70 kg, 370 MBq injected at 10:00:00 on 2024-03-05, series start 11:00:00
the same day, DecayCorrection START, CorrectedImage ATTN/DECY, axial slices of
2 mm rows x 3 mm columns, 4 mm apart). Keyword arguments set any attribute
(``SeriesTime="000500"``); ``drop=("PatientWeight",)`` deletes attributes;
``info=`` replaces the RadiopharmaceuticalInformationSequence item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET_STORAGE = "1.2.840.10008.5.1.4.1.1.130"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 70.0, 370e6, 6586.2
PIXEL_SPACING = (2.0, 3.0)  # (row spacing along Y, column spacing along X), mm
SLICE_GAP = 4.0


def injection_info(dose_bq: float = DOSE_BQ, half_life_s: float = HALF_LIFE_S, start_time: str | None = "100000",
                   start_datetime: str | None = None) -> Dataset:
    """A RadiopharmaceuticalInformationSequence item (FDG by default); None leaves a time out."""
    info = Dataset()
    info.RadionuclideTotalDose, info.RadionuclideHalfLife = dose_bq, half_life_s
    if start_time is not None:
        info.RadiopharmaceuticalStartTime = start_time
    if start_datetime is not None:
        info.RadiopharmaceuticalStartDateTime = start_datetime
    return info


def pixels(slices: int = 4, rows: int = 8, columns: int = 8, seed: int = 3) -> np.ndarray:
    """Random int16 stored values (slices, rows, columns) in 500..4999 (SUV about 0.1-1.4 with the defaults)."""
    return np.random.default_rng(seed).integers(500, 5000, (slices, rows, columns)).astype(np.int16)


def _file_meta(sop_class: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _image(ds: Dataset, stored: np.ndarray) -> None:
    """Pixel module for int16 ``stored`` of shape (rows, columns) or (frames, rows, columns)."""
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(stored).astype("<i2").tobytes()


def pet_header(series_uid: str, info: Dataset | None = None, drop: Sequence[str] = (), **attributes: Any) -> Dataset:
    """The attributes shared by the slices of a PET series (no geometry, no pixels), with overrides."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID, ds.PatientName = "P1", "Test^Patient"
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = "1.2.3.4", "1.2.3.5"
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "PT", series_uid, 3
    ds.SeriesDescription = "PET WB"
    ds.SeriesDate, ds.SeriesTime = "20240305", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240305", "110000"
    ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
    ds.PatientWeight = WEIGHT_KG
    ds.RadiopharmaceuticalInformationSequence = [info if info is not None else injection_info()]
    for key, value in attributes.items():
        setattr(ds, key, value)
    for key in drop:
        if key in ds:
            delattr(ds, key)
    return ds


def write_pet_series(folder: Path, stored: np.ndarray, slopes: Sequence[float] | None = None,
                     positions: Sequence[float] | None = None, names: Callable[[int], str] | None = None,
                     per_slice: Sequence[dict[str, Any]] | None = None, series_uid: str | None = None,
                     info: Dataset | None = None, drop: Sequence[str] = (), **attributes: Any) -> list[Path]:
    """Write one classic PET file per slice of ``stored`` (slices, rows, columns) int16; return the files.

    Args:
        folder: created if missing (parents too).
        stored: stored values per slice.
        slopes: RescaleSlope per slice (default 1).
        positions: z (mm) of each slice (default 0, 4, 8, ...); the array Z order
            of the reader is ascending z.
        names: file name of slice k (default ``slice{k:02d}.dcm``).
        per_slice: attributes set on slice k only (e.g. AcquisitionTime).
        series_uid: default a new UID.
        info, drop, attributes: as :func:`pet_header`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    count = len(stored)
    slopes = slopes if slopes is not None else [1.0] * count
    positions = positions if positions is not None else [SLICE_GAP * k for k in range(count)]
    files = []
    for k in range(count):
        ds = pet_header(series_uid, info, drop, **attributes)
        ds.file_meta = _file_meta(PET_STORAGE)
        ds.SOPClassUID, ds.SOPInstanceUID = PET_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, float(positions[k])]
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_GAP
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], 0
        for key, value in (per_slice[k] if per_slice else {}).items():
            setattr(ds, key, value)
        _image(ds, stored[k])
        path = folder / (names(k) if names else f"slice{k:02d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def write_enhanced_pet(path: Path, stored: np.ndarray, slopes: Sequence[float] | None = None,
                       positions: Sequence[float] | None = None, series_uid: str | None = None,
                       shared: dict[str, Any] | None = None, info: Dataset | None = None, drop: Sequence[str] = (),
                       **attributes: Any) -> Path:
    """Write ``stored`` (frames, rows, columns) int16 as one Enhanced PET Image with functional groups.

    Orientation and pixel measures are shared groups; position, rescale and
    FrameAcquisitionDateTime (the series start) are per-frame groups. The
    top-level attributes are those of :func:`pet_header` (classic Units,
    DecayCorrection and CorrectedImage; pass ``drop`` to test the enhanced ones).
    ``shared`` adds attributes to the shared functional groups item (e.g. a
    RealWorldValueMappingSequence).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(stored)
    slopes = slopes if slopes is not None else [1.0] * count
    positions = positions if positions is not None else [SLICE_GAP * k for k in range(count)]
    ds = pet_header(series_uid or generate_uid(), info, drop, **attributes)
    ds.file_meta = _file_meta(ENHANCED_PET_STORAGE)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_PET_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
    ds.NumberOfFrames = count
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = list(PIXEL_SPACING), SLICE_GAP
    groups = Dataset()
    groups.PlaneOrientationSequence, groups.PixelMeasuresSequence = [orientation], [measures]
    for key, value in (shared or {}).items():
        setattr(groups, key, value)
    ds.SharedFunctionalGroupsSequence = [groups]
    frames = []
    for k in range(count):
        frame, position, transform, content = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [-100.0, -120.0, float(positions[k])]
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slopes[k], 0, "BQML"
        content.FrameAcquisitionDateTime = f"{ds.SeriesDate}{ds.SeriesTime}"
        frame.PlanePositionSequence, frame.PixelValueTransformationSequence = [position], [transform]
        frame.FrameContentSequence = [content]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    _image(ds, stored)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_series(folder: Path, slices: int = 2, name_prefix: str = "ct", **attributes: Any) -> list[Path]:
    """A small CT series (not PET): the reader must pass over it with a note."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, files = generate_uid(), []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = _file_meta(CT_STORAGE)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.Modality, ds.SeriesInstanceUID = "P1", "CT", series_uid
        ds.SeriesDescription, ds.SeriesDate = "CT WB", "20240305"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.PixelSpacing = [1.0, 1.0]
        for key, value in attributes.items():
            setattr(ds, key, value)
        _image(ds, np.zeros((4, 4), np.int16))
        path = folder / f"{name_prefix}{k}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def suv_factor(delay_s: float, weight_kg: float = WEIGHT_KG, dose_bq: float = DOSE_BQ,
               half_life_s: float = HALF_LIFE_S) -> float:
    """QIBA's SUVbw factor by hand: weight [g] / (dose [Bq] * 2^(-delay / half-life))."""
    return weight_kg * 1000.0 / (dose_bq * 2.0 ** (-delay_s / half_life_s))


def expected_suv(stored: np.ndarray, slopes: Sequence[float], factors: Sequence[float] | float) -> np.ndarray:
    """The reader's (X, Y, Z) volume by hand from ``stored`` (Z, rows, columns): value x slope x factor, transposed."""
    factors = np.broadcast_to(np.asarray(factors, float), (len(stored),))
    planes = [stored[k].astype(float).T * slopes[k] * factors[k] for k in range(len(stored))]
    return np.stack(planes, axis=-1)
