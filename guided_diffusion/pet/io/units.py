"""Units of NIfTI inputs: SUV as stored, or Bq/ml converted to SUV from a BIDS sidecar and options.

``input_units``:

* ``suv``: the values are SUV (no check).
* ``bqml``: the values are Bq/ml; weight, injected activity, injection and
  scan times and half-life come from the options when given, else from the
  BIDS-PET sidecar ``<stem>.json`` (:mod:`.bids`); the options override the
  sidecar, value by value. The result must look like SUV.
* ``auto`` (default): the sidecar's ``Units`` when it says Bq/ml or SUV; else
  SUV when the values are plausible as SUV (:func:`.suv.implausible_suv`),
  else refused with one line naming ``--input_units bqml`` and the flags.

Times given as options are ISO date-times (``2024-03-05T10:02:00``) or times
of day (``10:02`` or ``10:02:30``); a time of day takes the date of the other
time, and an injection late in the evening before a scan after midnight is
taken to be the day before. UTC offsets are dropped (local clock).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from . import bids
from .suv import Instant, Sourced, Timing, body_weight_factors, implausible_suv

#: The values of ``input_units``.
INPUT_UNITS = ("auto", "suv", "bqml")

#: The flags of scripts/test.py that give what a Bq/ml volume needs.
BQML_FLAGS = "--weight_kg --injected_mbq --injection_time --scan_time --half_life_s"


@dataclass(frozen=True)
class UnitOptions:
    """How to read the units of a volume (the ``--input_units`` ... flags of the scripts).

    Attributes:
        input_units: "auto", "suv" or "bqml" (NIfTI only; DICOM follows its Units tag, npz is SUV).
        weight_kg: body weight (kg); overrides the sidecar's BodyWeight.
        injected_mbq: injected activity (MBq); overrides the sidecar's InjectedRadioactivity.
        injection_time: injection start, ISO date-time or HH:MM[:SS]; overrides the sidecar.
        scan_time: the time the image is decay corrected to (the scan start), same formats.
        half_life_s: radionuclide half-life (s); overrides the sidecar.
        allow_uncorrected: convert images without attenuation or decay correction
            (DICOM CorrectedImage, BIDS AttenuationCorrection) instead of refusing them.

    ``None``, ``0`` and ``""`` all mean "not given" (the flags' defaults).

    Raises:
        UserError: naming the flag, for an unknown ``input_units``, a negative
            number or an unreadable time.
    """

    input_units: str = "auto"
    weight_kg: float | None = None
    injected_mbq: float | None = None
    injection_time: str | None = None
    scan_time: str | None = None
    half_life_s: float | None = None
    allow_uncorrected: bool = False

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) in (0, "") and field.name not in ("allow_uncorrected", "input_units"):
                object.__setattr__(self, field.name, None)
        if self.input_units not in INPUT_UNITS:
            raise UserError(f"--input_units must be one of {', '.join(INPUT_UNITS)}, got {self.input_units!r}")
        for name in ("weight_kg", "injected_mbq", "half_life_s"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise UserError(f"--{name} must be positive, got {value}")
        for name in ("injection_time", "scan_time"):
            if getattr(self, name) is not None:
                clock(getattr(self, name), name)


def clock(text: str, name: str) -> Instant:
    """Option ``name``'s time as an Instant: an ISO date-time, or a time of day on a placeholder date."""
    source = f"--{name} {text}"
    try:
        when = datetime.fromisoformat(text.strip()).replace(tzinfo=None)
        return Instant(when, source)
    except ValueError:
        pass
    try:
        day_time = time.fromisoformat(text.strip()).replace(tzinfo=None)
    except ValueError:
        raise UserError(f"--{name} must be an ISO date-time (2024-03-05T10:02:00) or HH:MM[:SS], got {text!r}") from None
    return Instant(datetime.combine(bids.PLACEHOLDER_DATE, day_time), source, date_assumed=True, dated=False)


def _on_date_of(instant: Instant, other: Instant) -> Instant:
    """``instant`` moved to ``other``'s date when only ``other`` has one."""
    if instant.dated or not other.dated:
        return instant
    return Instant(datetime.combine(other.when.date(), instant.when.time()), instant.source, True, True)


def _missing(what: str, key: str, flag: str, json_path: Path | None, path: Path) -> UserError:
    where = f"add {key} to {json_path}" if json_path else f"add {key} to a BIDS sidecar {bids.sidecar_path(path).name}"
    return UserError(f"{path}: Bq/ml needs {what} to become SUV; {where} or pass {flag}")


def _bqml_factor(path: Path, sidecar: tuple[Path, dict[str, Any]] | None, options: UnitOptions
                 ) -> tuple[float, dict[str, Any]]:
    """The Bq/ml -> SUV factor of ``path`` and its record, from the options over the sidecar."""
    json_path, keys = sidecar if sidecar else (None, {})

    def choose(option: Any, from_sidecar: Any, what: str, key: str, flag: str) -> Any:
        value = option if option is not None else (from_sidecar(json_path, keys) if json_path else None)
        if value is None:
            raise _missing(what, key, flag, json_path, path)
        return value

    if json_path and bids.attenuation_uncorrected(keys) and not options.allow_uncorrected:
        raise UserError(
            f"{json_path}: AttenuationCorrection is {keys['attenuationcorrection']!r}: the SUV of an image without "
            "attenuation correction is wrong; pass --allow_uncorrected True to convert it anyway"
        )
    o = options
    weight = choose(o.weight_kg and Sourced(o.weight_kg, f"--weight_kg {o.weight_kg:g}"), bids.weight_kg,
                    "the body weight", "BodyWeight (kg)", "--weight_kg")
    dose = choose(o.injected_mbq and Sourced(o.injected_mbq * 1e6, f"--injected_mbq {o.injected_mbq:g}"),
                  bids.injected_bq, "the injected activity", "InjectedRadioactivity and InjectedRadioactivityUnits",
                  "--injected_mbq")
    half_life = choose(o.half_life_s and Sourced(o.half_life_s, f"--half_life_s {o.half_life_s:g}"), bids.half_life_s,
                       "the half-life", "TracerRadionuclide", "--half_life_s")
    injection = choose(o.injection_time and clock(o.injection_time, "injection_time"), bids.injection,
                       "the injection time", "TimeZero and InjectionStart", "--injection_time")
    scan = choose(o.scan_time and clock(o.scan_time, "scan_time"), bids.reference, "the scan time",
                  "TimeZero and ScanStart", "--scan_time")
    injection, scan = _on_date_of(injection, scan), _on_date_of(scan, injection)
    factors, record = body_weight_factors(weight, dose, Timing(injection, [scan], half_life), str(path), 1)
    return float(factors[0]), {"units": "BQML", "sidecar": str(json_path) if json_path else None, **record}


def nifti_units(data: np.ndarray, path: Path, options: UnitOptions) -> tuple[str, float, dict[str, Any] | None]:
    """The stored units of NIfTI ``path``, the factor to SUV and its record.

    Args:
        data: the stored values (X, Y, Z), float32.
        path: the NIfTI file (its sidecar is ``<stem>.json`` beside it).
        options: the units options.

    Returns:
        ``("SUV", 1.0, None)``, or ``("BQML", factor, record)`` with
        ``SUV = data * factor`` and the record of :func:`.suv.body_weight_factors`
        plus ``units`` and ``sidecar``.

    Raises:
        UserError: ``auto`` on values implausible as SUV, Bq/ml without what SUV
            needs, an impossible timing, or an implausible result.
    """
    sidecar = bids.read_sidecar(path)
    mode = options.input_units
    if mode == "auto":
        mode = (bids.declared_units(sidecar[1]) if sidecar else None) or "suv"
        reason = implausible_suv(data) if mode == "suv" else None
        if reason is not None:
            raise UserError(
                f"{path}: the values do not look like SUV ({reason}; Bq/ml?); pass --input_units bqml with a BIDS "
                f"sidecar {bids.sidecar_path(path).name} or {BQML_FLAGS} (or --input_units suv if they are SUV)"
            )
    if mode == "suv":
        return "SUV", 1.0, None
    factor, record = _bqml_factor(path, sidecar, options)
    reason = implausible_suv(data * factor)
    if reason is not None:
        raise UserError(
            f"{path}: after conversion from Bq/ml to SUV, {reason}; check the weight ({record['sources']['weight_kg']}) "
            f"and the injected activity ({record['sources']['injected_bq']}): MBq read as Bq gives SUV x 1e6"
        )
    return "BQML", factor, record
