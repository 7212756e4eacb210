"""From the units of a DICOM PET series to SUV (body weight, g/ml), with decay correction.

``SUV = activity [Bq/ml] * weight [g] / (injected dose [Bq] decayed to the
reference time)``. The reference time follows DecayCorrection (0054,1102):
START (default): series start (SeriesTime, or the earliest AcquisitionTime if
earlier, because re-reconstruction can rewrite SeriesTime); ADMIN: injection
time (no decay); NONE: each slice's AcquisitionTime.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from .dicom_tags import require, seconds_of_day

SECONDS_PER_DAY = 86400.0


def suv_factors(slices: list[Any], directory: Path) -> np.ndarray:
    """Per-slice factor (shape ``(len(slices),)``) from the stored units to SUV body weight (g/ml).

    Units GML are SUV already (factor 1); BQML is converted as in the module docstring.

    Raises:
        UserError: other units, a tag SUV needs is missing, or weight or dose is not positive.
    """
    first = slices[0]
    units = str(require(first, "Units", "(0054,1001)", directory, "to know the voxel units")).upper()
    if units == "GML":
        return np.ones(len(slices))
    if units != "BQML":
        raise UserError(f"{directory}: voxel units are {units}; only BQML (converted to SUV) or GML (SUV) are supported")
    why = "to convert Bq/ml to SUV"
    weight_g = float(require(first, "PatientWeight", "(0010,1030)", directory, why)) * 1000.0
    if weight_g <= 0:
        raise UserError(f"{directory}: PatientWeight (0010,1030) is {weight_g / 1000} kg; it must be positive for SUV")
    info = require(first, "RadiopharmaceuticalInformationSequence", "(0054,0016)", directory, why)[0]
    dose = float(require(info, "RadionuclideTotalDose", "(0018,1074)", directory, why))
    if dose <= 0:
        raise UserError(f"{directory}: RadionuclideTotalDose (0018,1074) is {dose} Bq; it must be positive for SUV")
    correction = str(getattr(first, "DecayCorrection", "START") or "START").upper()
    if correction == "ADMIN":
        return np.full(len(slices), weight_g / dose)
    half_life = float(require(info, "RadionuclideHalfLife", "(0018,1075)", directory, why))
    start = getattr(info, "RadiopharmaceuticalStartTime", None)
    if not start and getattr(info, "RadiopharmaceuticalStartDateTime", None):
        # DT is YYYYMMDDHHMMSS.FFFFFF with an optional &ZZXX offset.
        start = re.split("[+-]", str(info.RadiopharmaceuticalStartDateTime))[0][8:]
    start_s = seconds_of_day(start or require(info, "RadiopharmaceuticalStartTime", "(0018,1072)", directory, why),
                             directory)
    if correction == "START":
        candidates = [seconds_of_day(ds.AcquisitionTime, directory) for ds in slices
                      if getattr(ds, "AcquisitionTime", None)]
        if getattr(first, "SeriesTime", None):
            candidates.append(seconds_of_day(first.SeriesTime, directory))
        if not candidates:
            require(first, "SeriesTime", "(0008,0031)", directory, why)
        references = np.full(len(slices), min(candidates))
    elif correction == "NONE":
        references = np.array(
            [seconds_of_day(require(ds, "AcquisitionTime", "(0008,0032)", directory, why), directory) for ds in slices]
        )
    else:
        raise UserError(f"{directory}: DecayCorrection (0054,1102) is {correction}; expected START, ADMIN or NONE")
    # Times are of day; a negative delay means the scan crossed midnight.
    delay = (references - start_s) % SECONDS_PER_DAY
    decayed_dose = dose * np.exp2(-delay / half_life)
    return weight_g / decayed_dose
