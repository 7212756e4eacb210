"""The SUV factor of a DICOM PET series, read from its tags as QIBA's pseudo-code does.

* Units (0054,1001): BQML is converted with body weight and decayed dose
  (:mod:`.suv`); GML is SUV already; CNTS (Philips) is multiplied by the
  Philips SUV scale factor (7053,1000); anything else is refused.
* CorrectedImage (0028,0051) must list ATTN and DECY (DECY is not needed with
  DecayCorrection NONE, where the reader decays the dose slice by slice);
  otherwise the series is refused unless ``allow_uncorrected``.
* Injection: RadiopharmaceuticalStartDateTime (0018,1078) when present, else
  RadiopharmaceuticalStartTime (0018,1072) on the scan date (SeriesDate, else
  the earliest AcquisitionDate); such a time-only injection later in the day
  than the scan is taken to be the day before when that puts it at most 12 h
  before the scan (a scan after midnight), else it is refused.
* Reference time, by DecayCorrection (0054,1102): START: DecayCorrectionDateTime
  (0018,9701) when present (enhanced objects), else the earlier of
  SeriesDate/SeriesTime and the earliest acquisition date and time (QIBA: a
  re-reconstruction can rewrite SeriesTime); ADMIN: the injection (no decay);
  NONE: each slice's acquisition date and time.

Times are on the scanner's local clock; UTC offsets in DT values are ignored.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from .dicom_tags import date_and_time, parse_date, parse_datetime, parse_time, present, require, tag_name
from .suv import Instant, Sourced, Timing, body_weight_factors, implausible_suv, summary

#: Private creator of the Philips PET group holding the SUV scale factor at (7053,xx00).
PHILIPS_PET_CREATOR = "Philips PET Private Group"

#: The Units (0054,1001) values the reader converts.
SUPPORTED_UNITS = ("BQML", "GML", "CNTS")

WHY = "to convert the voxel values to SUV"


def _corrections(first: Any, decay_correction: str, where: Path, allow_uncorrected: bool) -> list[str]:
    """The corrections CorrectedImage lists; UserError when ATTN or (unless NONE) DECY is missing and not allowed."""
    value = getattr(first, "CorrectedImage", None) or []
    listed = [str(v).strip().upper() for v in ([value] if isinstance(value, str) else value)]
    needed = ("ATTN",) if decay_correction == "NONE" else ("ATTN", "DECY")
    missing = [c for c in needed if c not in listed]
    if missing and not allow_uncorrected:
        shown = "/".join(listed) or "missing"
        raise UserError(
            f"{where}: {tag_name('CorrectedImage')} is {shown}, without {' and '.join(missing)}: the SUV of an "
            "image without attenuation and decay correction is wrong. Use the corrected series, or pass "
            "--allow_uncorrected True to convert it anyway"
        )
    return listed


def _scan_date(first: Any, slices: list[Any], where: Path) -> tuple[date, str]:
    """The scan date (SeriesDate, else the earliest AcquisitionDate) and the tag it came from."""
    if present(first, "SeriesDate"):
        return parse_date(first.SeriesDate, "SeriesDate", where), tag_name("SeriesDate")
    dates = [parse_date(ds.AcquisitionDate, "AcquisitionDate", where) for ds in slices if present(ds, "AcquisitionDate")]
    if not dates:
        require(first, "SeriesDate", where, "to date the injection and the scan for decay correction")
    return min(dates), tag_name("AcquisitionDate")


def _acquisition(ds: Any, scan_date: tuple[date, str], where: Path) -> Instant | None:
    """A slice's acquisition start: AcquisitionDateTime, else AcquisitionDate/Time (the scan date if no date)."""
    if present(ds, "AcquisitionDateTime"):
        when = parse_datetime(ds.AcquisitionDateTime, "AcquisitionDateTime", where)
        return Instant(when, tag_name("AcquisitionDateTime"))
    when = date_and_time(ds, "AcquisitionDate", "AcquisitionTime", where)
    if when is not None:
        return Instant(when, f"{tag_name('AcquisitionDate')}/{tag_name('AcquisitionTime')}")
    if not present(ds, "AcquisitionTime"):
        return None
    clock = parse_time(ds.AcquisitionTime, "AcquisitionTime", where)
    return Instant(datetime.combine(scan_date[0], clock), f"{tag_name('AcquisitionTime')} on {scan_date[1]}",
                   date_assumed=True)


def _injection(info: Any, scan_date: tuple[date, str], where: Path) -> Instant:
    """The injection start: RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the scan date."""
    if present(info, "RadiopharmaceuticalStartDateTime"):
        when = parse_datetime(info.RadiopharmaceuticalStartDateTime, "RadiopharmaceuticalStartDateTime", where)
        return Instant(when, tag_name("RadiopharmaceuticalStartDateTime"))
    clock = parse_time(require(info, "RadiopharmaceuticalStartTime", where, WHY), "RadiopharmaceuticalStartTime", where)
    return Instant(datetime.combine(scan_date[0], clock),
                   f"{tag_name('RadiopharmaceuticalStartTime')} on {scan_date[1]}", date_assumed=True)


def _references(slices: list[Any], decay_correction: str, scan_date: tuple[date, str], where: Path) -> list[Instant]:
    """The instants the slices are decay corrected to: one for START, one per slice for NONE."""
    first = slices[0]
    if decay_correction == "NONE":
        instants = [_acquisition(ds, scan_date, where) for ds in slices]
        for ds, instant in zip(slices, instants):
            if instant is None:
                require(ds, "AcquisitionTime", where, "for every slice with DecayCorrection NONE")
        return instants  # type: ignore[return-value]
    if present(first, "DecayCorrectionDateTime"):
        when = parse_datetime(first.DecayCorrectionDateTime, "DecayCorrectionDateTime", where)
        return [Instant(when, tag_name("DecayCorrectionDateTime"))]
    candidates = []
    if present(first, "SeriesTime"):
        series = datetime.combine(scan_date[0], parse_time(first.SeriesTime, "SeriesTime", where))
        candidates.append(Instant(series, f"{scan_date[1]}/{tag_name('SeriesTime')}",
                                  date_assumed=scan_date[1] != tag_name("SeriesDate")))
    acquisitions = [i for i in (_acquisition(ds, scan_date, where) for ds in slices) if i is not None]
    if acquisitions:
        earliest = min(acquisitions, key=lambda i: i.when)
        candidates.append(Instant(earliest.when, f"earliest {earliest.source}", earliest.date_assumed))
    if not candidates:
        require(first, "SeriesTime", where, "for the scan start (DecayCorrection START)")
    return [min(candidates, key=lambda i: i.when)]  # the series time on a tie


def _philips_factors(slices: list[Any], where: Path) -> np.ndarray:
    """Per-slice Philips SUV scale factor (7053,1000); UserError naming the tag when a slice lacks it."""
    factors = []
    for ds in slices:
        try:
            value = ds.private_block(0x7053, PHILIPS_PET_CREATOR)[0x00].value
        except KeyError:
            raise UserError(
                f"{getattr(ds, 'filename', None) or where}: Units (0054,1001) is CNTS but the Philips SUV scale "
                f"factor (7053,1000) (private creator {PHILIPS_PET_CREATOR!r}) is missing; export the series in "
                "BQML or SUV from the console"
            ) from None
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        try:
            factor = float(text[0] if isinstance(text, (list, tuple)) else str(text).strip("\0 ").split("\\")[0])
        except ValueError:
            raise UserError(f"{where}: the Philips SUV scale factor (7053,1000) is {text!r}, not a number") from None
        if not factor > 0:
            raise UserError(f"{where}: the Philips SUV scale factor (7053,1000) is {factor:g}; it must be positive")
        factors.append(factor)
    return np.array(factors)


def dicom_suv_factors(slices: list[Any], where: Path, allow_uncorrected: bool = False
                      ) -> tuple[str, np.ndarray, dict[str, Any] | None]:
    """The stored units, the per-slice factors to SUV and the record of how they were found.

    Args:
        slices: header datasets of the series, in array Z order (one per slice).
        where: the series folder, for messages.
        allow_uncorrected: convert even when CorrectedImage lacks ATTN or DECY.

    Returns:
        ``(source_units, factors, record)``: ``"SUV"`` (for GML), ``"BQML"`` or
        ``"CNTS"``; factors of shape ``(len(slices),)`` with ``SUV = value * factor``
        where ``value`` is the rescaled pixel value; the JSON-able record (None for GML):
        ``units``, ``decay_correction``, ``corrected_image``, and for BQML the keys
        of :func:`.suv.body_weight_factors`.

    Raises:
        UserError: unsupported units or DecayCorrection, missing corrections, a
            missing or invalid tag needed for SUV, or an impossible timing; the
            message names the tag.
    """
    first = slices[0]
    units = str(require(first, "Units", where, "to know the voxel units")).strip().upper()
    if units not in SUPPORTED_UNITS:
        raise UserError(
            f"{where}: {tag_name('Units')} is {units}; only BQML (converted to SUV), GML (SUV) or Philips CNTS "
            "with its SUV scale factor are supported"
        )
    decay = str(require(first, "DecayCorrection", where, WHY)).strip().upper()
    if decay not in ("START", "ADMIN", "NONE"):
        raise UserError(f"{where}: {tag_name('DecayCorrection')} is {decay}; expected START, ADMIN or NONE")
    corrected = _corrections(first, decay, where, allow_uncorrected)
    if units == "GML":
        return "SUV", np.ones(len(slices)), None
    header = {"units": units, "decay_correction": decay, "corrected_image": corrected}
    if units == "CNTS":
        factors = _philips_factors(slices, where)
        return "CNTS", factors, {**header, "factor": summary(factors),
                                 "sources": {"factor": f"Philips SUV scale factor (7053,1000) {PHILIPS_PET_CREATOR!r}"}}
    info = require(first, "RadiopharmaceuticalInformationSequence", where, WHY)[0]
    weight = Sourced(require(first, "PatientWeight", where, WHY), tag_name("PatientWeight"))
    dose = Sourced(require(info, "RadionuclideTotalDose", where, WHY), tag_name("RadionuclideTotalDose"))
    timing = None
    if decay != "ADMIN":
        scan_date = _scan_date(first, slices, where)
        half_life = Sourced(require(info, "RadionuclideHalfLife", where, WHY), tag_name("RadionuclideHalfLife"))
        timing = Timing(_injection(info, scan_date, where), _references(slices, decay, scan_date, where), half_life)
    factors, record = body_weight_factors(weight, dose, timing, str(where), len(slices))
    return "BQML", factors, {**header, **record}


def check_dicom_suv(suv: np.ndarray, source_units: str, where: Path) -> None:
    """Refuse SUV values (any shape) that cannot be SUV, naming the tags that would explain it."""
    reason = implausible_suv(suv)
    if reason is None:
        return
    causes = {
        "BQML": f"check {tag_name('PatientWeight')} (kg) and {tag_name('RadionuclideTotalDose')} (Bq): an activity "
                "in MBq gives SUV x 1e6, a weight in g SUV x 1e3",
        "CNTS": "check the Philips SUV scale factor (7053,1000)",
        "SUV": f"check {tag_name('Units')} (GML means SUV)",
    }
    raise UserError(f"{where}: after conversion to SUV, {reason}; {causes[source_units]}")
