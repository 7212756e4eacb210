"""Enhanced (multi-frame) PET objects as classic single-frame headers, one per frame.

An Enhanced PET Image (SOP class 1.2.840.10008.5.1.4.1.1.130) or a Legacy
Converted Enhanced PET Image (...128.1) holds every slice as a frame of one
file; each frame's geometry and scaling sit in functional groups, per frame
(PerFrameFunctionalGroupsSequence) or shared by all
(SharedFunctionalGroupsSequence). The classic-style header of a frame is the
object's top-level attributes plus, from its groups:

* PlanePositionSequence -> ImagePositionPatient,
* PlaneOrientationSequence -> ImageOrientationPatient,
* PixelMeasuresSequence -> PixelSpacing, SliceThickness, SpacingBetweenSlices,
* PixelValueTransformationSequence -> RescaleSlope, RescaleIntercept,
* FrameContentSequence's FrameAcquisitionDateTime -> AcquisitionDateTime,
* when the object has no Units (0054,1001): RealWorldValueMappingSequence in
  Bq/ml or {SUVbw}g/ml -> Units BQML or GML, with its slope and intercept as
  the rescale,
* when it has no CorrectedImage / DecayCorrection: AttenuationCorrected and
  DecayCorrected (YES/NO) -> CorrectedImage ATTN/DECY and DecayCorrection START
  (decay corrected to DecayCorrectionDateTime) or NONE.

Each header keeps the object's SOPClassUID and SOPInstanceUID and gets
InstanceNumber = its frame number (1-based), so the frames can be traced back.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from ...errors import UserError
from .dicom_tags import header_copy, present, require, tag_name

#: Measurement units codes (UCUM, in RealWorldValueMappingSequence) and the classic Units they mean.
UCUM_UNITS = {"bq/ml": "BQML", "{suvbw}g/ml": "GML"}

#: Top-level elements not copied into the per-frame headers.
MULTIFRAME_ONLY = ("PixelData", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "NumberOfFrames")


def is_multiframe(ds: Any) -> bool:
    """Whether ``ds`` stores its slices as frames with functional groups."""
    return "PerFrameFunctionalGroupsSequence" in ds


def _group(frame: Any, shared: Any, keyword: str) -> Any:
    """The first item of functional group ``keyword`` for a frame (its own, else the shared one), or None."""
    for groups in (frame, shared):
        if groups is not None and present(groups, keyword):
            return getattr(groups, keyword)[0]
    return None


def _required_group(frame: Any, shared: Any, keyword: str, index: int, where: Path) -> Any:
    item = _group(frame, shared, keyword)
    if item is None:
        raise UserError(
            f"{where}: frame {index + 1} has no {tag_name(keyword)}, in its own or the shared functional groups; "
            "the enhanced PET object is incomplete (convert it to classic PET images with the scanner's software)"
        )
    return item


def _top(ds: Any) -> Dataset:
    """The object's top-level header without the multi-frame elements, with Units and corrections made classic."""
    top = header_copy(ds, MULTIFRAME_ONLY)
    if not present(top, "CorrectedImage") and (present(top, "AttenuationCorrected") or present(top, "DecayCorrected")):
        top.CorrectedImage = [code for code, keyword in (("ATTN", "AttenuationCorrected"), ("DECY", "DecayCorrected"))
                              if str(getattr(top, keyword, "")).upper() == "YES"]
    if not present(top, "DecayCorrection") and present(top, "DecayCorrected"):
        top.DecayCorrection = "START" if str(top.DecayCorrected).upper() == "YES" else "NONE"
    return top


def _units_mapping(frame: Any, shared: Any) -> tuple[str, float, float] | None:
    """(Units, slope, intercept) from a Bq/ml or SUVbw real-world value mapping of the frame, or None."""
    for groups in (frame, shared):
        for item in getattr(groups, "RealWorldValueMappingSequence", None) or []:
            codes = getattr(item, "MeasurementUnitsCodeSequence", None) or []
            units = UCUM_UNITS.get(str(getattr(codes[0], "CodeValue", "")).lower()) if codes else None
            if units and present(item, "RealWorldValueSlope"):
                return units, float(item.RealWorldValueSlope), float(getattr(item, "RealWorldValueIntercept", 0) or 0)
    return None


def frame_headers(ds: Any, where: Path) -> list[Dataset]:
    """One classic-style PET header per frame of the enhanced object ``ds``, in frame order.

    Raises:
        UserError: NumberOfFrames disagrees with the per-frame groups, or a frame
            lacks its position, orientation or pixel spacing.
    """
    frames = require(ds, "PerFrameFunctionalGroupsSequence", where, "to read the frames")
    count = int(require(ds, "NumberOfFrames", where, "to read the frames"))
    if len(frames) != count:
        raise UserError(
            f"{where}: NumberOfFrames is {count} but the PerFrameFunctionalGroupsSequence has {len(frames)} items"
        )
    shared = ds.SharedFunctionalGroupsSequence[0] if present(ds, "SharedFunctionalGroupsSequence") else None
    top = _top(ds)
    headers = []
    for index, frame in enumerate(frames):
        header = copy.deepcopy(top)
        header.InstanceNumber = index + 1
        position = _required_group(frame, shared, "PlanePositionSequence", index, where)
        header.ImagePositionPatient = require(position, "ImagePositionPatient", where, "for geometry")
        orientation = _required_group(frame, shared, "PlaneOrientationSequence", index, where)
        header.ImageOrientationPatient = require(orientation, "ImageOrientationPatient", where, "for geometry")
        measures = _required_group(frame, shared, "PixelMeasuresSequence", index, where)
        header.PixelSpacing = require(measures, "PixelSpacing", where, "for geometry")
        for keyword in ("SliceThickness", "SpacingBetweenSlices"):
            if present(measures, keyword):
                setattr(header, keyword, getattr(measures, keyword))
        transform = _group(frame, shared, "PixelValueTransformationSequence")
        if transform is not None:
            header.RescaleSlope = getattr(transform, "RescaleSlope", 1)
            header.RescaleIntercept = getattr(transform, "RescaleIntercept", 0)
        content = _group(frame, shared, "FrameContentSequence")
        if content is not None and present(content, "FrameAcquisitionDateTime"):
            header.AcquisitionDateTime = content.FrameAcquisitionDateTime
        mapping = None if present(header, "Units") else _units_mapping(frame, shared)
        if mapping is not None:
            header.Units, header.RescaleSlope, header.RescaleIntercept = mapping
        headers.append(header)
    return headers
