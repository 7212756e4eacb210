"""What a BIDS-PET JSON sidecar (``<stem>.json`` beside a NIfTI) says about the SUV of its image.

Keys are matched ignoring case. Read, as the BIDS specification (PET) and
dcm2niix write them:

* ``Units``: ``Bq/mL`` (also ``BQML``) or SUV (``g/ml``, ``GML``, ``SUV``, ``SUVbw``).
* ``BodyWeight`` (kg; also ``PatientWeight``).
* ``InjectedRadioactivity`` with ``InjectedRadioactivityUnits`` (MBq, kBq, Bq,
  GBq, mCi, uCi), or dcm2niix's ``RadionuclideTotalDose`` (Bq).
* ``TimeZero`` (``hh:mm:ss``, the clock time all BIDS times count from),
  ``InjectionStart`` and ``ScanStart`` (seconds after TimeZero), ``ScanDate``
  (``YYYY-MM-DD``, deprecated in BIDS but used when present), and
  ``ImageDecayCorrected`` / ``ImageDecayCorrectionTime`` (seconds after
  TimeZero): a decay-corrected image refers to its correction time, else to
  ScanStart.
* Half-life: dcm2niix's ``RadionuclideHalfLife`` (s), else
  ``TracerRadionuclide`` (``F18``, ``18F``, ``[18F]``, ``F-18``,
  ``^18^Fluorine``, ...) looked up in :data:`HALF_LIVES_S`.
* ``AttenuationCorrection``: a value of ``none`` / ``no`` means not corrected.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from ...errors import UserError
from .registry import volume_stem
from .suv import Instant, Sourced

#: Half-lives (s) of the PET radionuclides, from nuclear data tables (NNDC NuDat 3, www.nndc.bnl.gov/nudat3;
#: the Turku PET Centre's list, turkupetcentre.net/petanalysis/decay.html, agrees within 0.5 %, which moves
#: SUV by < 0.2 % at usual delays). F-18 is the 109.77 min that scanners write in RadionuclideHalfLife.
HALF_LIVES_S = {
    "F18": 6586.2,  # 109.77 min
    "C11": 1221.8,  # 20.364 min
    "N13": 597.9,  # 9.965 min
    "O15": 122.24,
    "GA68": 4062.6,  # 67.71 min
    "CU64": 45723.6,  # 12.701 h
    "ZR89": 282276.0,  # 78.41 h
    "RB82": 75.45,  # 1.2575 min
    "I124": 360806.4,  # 4.176 d
}

#: Element names as DICOM code meanings spell them (``^18^Fluorine``), to symbols.
ELEMENTS = {"FLUORINE": "F", "CARBON": "C", "NITROGEN": "N", "OXYGEN": "O", "GALLIUM": "GA", "COPPER": "CU",
            "ZIRCONIUM": "ZR", "RUBIDIUM": "RB", "IODINE": "I"}

#: Activity units to Bq.
ACTIVITY_UNITS_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "uci": 3.7e4, "µci": 3.7e4, "mci": 3.7e7}

#: ``Units`` values and the ``input_units`` they mean.
UNITS = {"bq/ml": "bqml", "bqml": "bqml", "bq/cc": "bqml", "g/ml": "suv", "gml": "suv", "suv": "suv", "suvbw": "suv"}

#: Date standing in for a missing one; only differences of instants on it are used.
PLACEHOLDER_DATE = date(2000, 1, 1)


def sidecar_path(path: Path) -> Path:
    """``<folder>/<stem>.json`` for a volume file ``path`` (``a.nii.gz`` -> ``a.json``)."""
    return path.with_name(volume_stem(path) + ".json")


def read_sidecar(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The sidecar of volume file ``path`` and its keys (lower-cased), or None when there is none.

    Raises:
        UserError: the sidecar is not a JSON object.
    """
    json_path = sidecar_path(path)
    if not json_path.is_file():
        return None
    try:
        fields = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{json_path}: cannot read the JSON sidecar ({exc}); fix or remove it") from exc
    if not isinstance(fields, dict):
        raise UserError(f"{json_path}: the JSON sidecar is not an object of keys and values")
    return json_path, {str(k).lower(): v for k, v in fields.items()}


def half_life_of(radionuclide: str) -> float | None:
    """Half-life (s) of a radionuclide named as BIDS or DICOM do (``F18``, ``18F``, ``^18^Fluorine``), or None."""
    text = re.sub(r"[^A-Z0-9]", "", str(radionuclide).upper())
    mass = "".join(re.findall(r"\d+", text))
    letters = "".join(re.findall(r"[A-Z]+", text))
    return HALF_LIVES_S.get(ELEMENTS.get(letters, letters) + mass)


def declared_units(fields: dict[str, Any]) -> str | None:
    """"bqml" or "suv" as the sidecar's ``Units`` says, or None when absent or other."""
    return UNITS.get(str(fields.get("units", "")).strip().lower().replace(" ", ""))


def _key(json_path: Path, key: str) -> str:
    return f"{key} in {json_path}"


def weight_kg(json_path: Path, fields: dict[str, Any]) -> Sourced | None:
    """Body weight (kg) from ``BodyWeight`` or ``PatientWeight``."""
    for key in ("BodyWeight", "PatientWeight"):
        if fields.get(key.lower()) is not None:
            return Sourced(fields[key.lower()], _key(json_path, key))
    return None


def injected_bq(json_path: Path, fields: dict[str, Any]) -> Sourced | None:
    """Injected activity (Bq) from ``InjectedRadioactivity`` and its units, or ``RadionuclideTotalDose``.

    Raises:
        UserError: InjectedRadioactivityUnits is missing or not an activity unit.
    """
    value = fields.get("injectedradioactivity")
    if value is not None:
        units = str(fields.get("injectedradioactivityunits", "")).strip()
        scale = ACTIVITY_UNITS_BQ.get(units.lower())
        if scale is None:
            raise UserError(
                f"{json_path}: InjectedRadioactivityUnits is {units or 'missing'}; give MBq, kBq, Bq, GBq, mCi or uCi "
                "(or pass --injected_mbq)"
            )
        try:
            bq = float(value) * scale
        except (TypeError, ValueError):
            raise UserError(f"{json_path}: InjectedRadioactivity is {value!r}, not a number") from None
        return Sourced(bq, _key(json_path, f"InjectedRadioactivity ({units})"))
    if fields.get("radionuclidetotaldose") is not None:
        return Sourced(fields["radionuclidetotaldose"], _key(json_path, "RadionuclideTotalDose (Bq)"))
    return None


def half_life_s(json_path: Path, fields: dict[str, Any]) -> Sourced | None:
    """Half-life (s) from ``RadionuclideHalfLife``, else from ``TracerRadionuclide`` via :data:`HALF_LIVES_S`."""
    if fields.get("radionuclidehalflife") is not None:
        return Sourced(fields["radionuclidehalflife"], _key(json_path, "RadionuclideHalfLife"))
    nuclide = fields.get("tracerradionuclide")
    if nuclide is None:
        return None
    value = half_life_of(str(nuclide))
    if value is None:
        raise UserError(
            f"{json_path}: TracerRadionuclide {nuclide!r} is not one of {', '.join(HALF_LIVES_S)}; "
            "pass its half-life with --half_life_s"
        )
    return Sourced(value, _key(json_path, f"TracerRadionuclide {nuclide}"))


def _seconds(json_path: Path, fields: dict[str, Any], key: str) -> float:
    try:
        return float(fields[key.lower()])
    except (TypeError, ValueError):
        raise UserError(f"{json_path}: {key} is {fields[key.lower()]!r}, not a number of seconds") from None


def _time_zero(json_path: Path, fields: dict[str, Any]) -> tuple[datetime, bool]:
    """TimeZero on ScanDate (or the placeholder date) and whether the date is known."""
    text = str(fields.get("timezero", "")).strip()
    try:
        clock = time.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"{json_path}: TimeZero is {text or 'missing'}; BIDS times count from it (hh:mm:ss). "
            "Add it, or pass --injection_time and --scan_time"
        ) from None
    scan_date = fields.get("scandate")
    if scan_date:
        try:
            return datetime.combine(date.fromisoformat(str(scan_date)), clock), True
        except ValueError:
            raise UserError(f"{json_path}: ScanDate is {scan_date!r}, not YYYY-MM-DD") from None
    return datetime.combine(PLACEHOLDER_DATE, clock), False


def injection(json_path: Path, fields: dict[str, Any]) -> Instant | None:
    """The injection start: TimeZero + InjectionStart, or None when InjectionStart is absent."""
    if fields.get("injectionstart") is None:
        return None
    zero, dated = _time_zero(json_path, fields)
    when = zero + timedelta(seconds=_seconds(json_path, fields, "InjectionStart"))
    return Instant(when, _key(json_path, "TimeZero + InjectionStart"), date_assumed=not dated, dated=dated)


def reference(json_path: Path, fields: dict[str, Any]) -> Instant | None:
    """The time the image refers to: TimeZero + ImageDecayCorrectionTime if decay corrected, else + ScanStart."""
    corrected = str(fields.get("imagedecaycorrected", "")).lower() == "true"
    key = "ImageDecayCorrectionTime" if corrected and fields.get("imagedecaycorrectiontime") is not None else "ScanStart"
    if fields.get(key.lower()) is None:
        return None
    zero, dated = _time_zero(json_path, fields)
    when = zero + timedelta(seconds=_seconds(json_path, fields, key))
    return Instant(when, _key(json_path, f"TimeZero + {key}"), date_assumed=not dated, dated=dated)


def attenuation_uncorrected(fields: dict[str, Any]) -> bool:
    """Whether ``AttenuationCorrection`` says the image is not attenuation corrected."""
    return str(fields.get("attenuationcorrection", "")).strip().lower() in ("none", "no", "false")
