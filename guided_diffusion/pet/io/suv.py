"""SUV body weight from activity concentration, whatever the file format: decay, timing checks, plausibility.

QIBA's definition (the QIBA FDG-PET/CT profile and its "vendor-neutral
pseudo-code for SUV calculation")::

    SUVbw = C [Bq/ml] * W [g] / (A [Bq] * 2 ** (-dt / T_half))

``C`` the voxel's activity concentration, ``W`` the body weight, ``A`` the
injected activity, ``T_half`` the radionuclide's half-life and ``dt`` the time
from the injection to the time the image is decay corrected to (the scan
start for DICOM DecayCorrection START). The readers (``dicom_suv``, ``units``)
find these values in their files; this module does the arithmetic, refuses
timings that cannot be right, and checks that the result looks like SUV.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from ...errors import UserError

#: A delay longer than this many half-lives leaves < 0.1 % of the activity: a wrong date or half-life.
MAX_DELAY_HALF_LIVES = 10.0

#: When a time of day comes without its own date, an injection up to this long before midnight
#: and a scan after it are taken to cross midnight; a longer gap is read as an injection after the scan.
MIDNIGHT_WINDOW_S = 12 * 3600.0

#: Range of the body median for values to pass as SUV. Soft tissue is SUV 0.3-3 (fat to liver) and a
#: whole-body median about 0.5-2; a brain or tumour field of view may reach ~10. The unit mistakes the
#: check is for move it by decades: Bq/ml (~1e3-1e4 at full FDG dose), a dose in MBq read as Bq (x 1e6),
#: a weight in g read as kg (x 1e3), so wide bounds cost nothing.
PLAUSIBLE_BODY_MEDIAN = (0.02, 50.0)

#: "Body" voxels are those above this fraction of the 99th percentile of the positive voxels: it drops
#: air, scatter tails and zero padding, and keeps soft tissue (fat, the coldest, sits near 5-10 % of the
#: hottest organs). The choice moves the median by less than 2x, far below the decades the check tests.
BODY_FRACTION = 0.05

#: The plausibility check looks at most at this many voxels (a regular subsample), to stay fast.
MAX_CHECKED_VOXELS = 1_000_000


@dataclass(frozen=True)
class Sourced:
    """A value and where it came from (a DICOM tag, a sidecar key or a flag), for messages and the record."""

    value: Any
    source: str


@dataclass(frozen=True)
class Instant:
    """A clock reading and where it came from.

    Attributes:
        when: the local date and time (naive).
        source: the tags, keys or flag it was read from.
        date_assumed: the time came without its own date (the date is the scan's,
            or a placeholder): an injection then may be the day before.
        dated: False when no date is known at all (``when``'s date is a placeholder);
            the record then shows the time of day only.
    """

    when: datetime
    source: str
    date_assumed: bool = False
    dated: bool = True

    def iso(self) -> str:
        """ISO 8601 date-time, or time of day when no date is known."""
        return self.when.isoformat() if self.dated else self.when.time().isoformat()


@dataclass(frozen=True)
class Timing:
    """When the activity was injected and when each image slice is decay corrected to.

    Attributes:
        injection: the injection start.
        references: one instant per slice (DICOM DecayCorrection NONE) or a single one for all.
        half_life_s: the radionuclide half-life (s).
    """

    injection: Instant
    references: list[Instant]
    half_life_s: Sourced


def positive(value: Sourced, what: str, where: str, fix: str) -> float:
    """``value.value`` as a positive float; UserError naming ``where``, the source and ``fix`` otherwise."""
    try:
        number = float(value.value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} from {value.source} is {value.value!r}, not a number; {fix}") from None
    if not np.isfinite(number) or number <= 0:
        raise UserError(f"{where}: {what} from {value.source} is {number:g}; it must be positive. {fix}")
    return number


def _delays(timing: Timing, where: str) -> tuple[np.ndarray, Instant]:
    """Seconds from the injection to each reference, checked, and the injection (moved a day back if it crossed midnight)."""
    injection = timing.injection
    first = min(timing.references, key=lambda r: r.when)
    gap = (first.when - injection.when).total_seconds()
    assumed = injection.date_assumed or first.date_assumed
    if gap < 0 and assumed and gap + 86400.0 <= MIDNIGHT_WINDOW_S:
        injection = Instant(injection.when - timedelta(days=1), injection.source + ", the day before (crossed midnight)",
                            injection.date_assumed, injection.dated)
        gap += 86400.0
    if gap < 0:
        raise UserError(
            f"{where}: the injection ({injection.iso()}, {injection.source}) is after the scan "
            f"({first.iso()}, {first.source}); correct the injection or scan time"
        )
    half_life = positive(timing.half_life_s, "the half-life", where, "give the radionuclide half-life in seconds")
    delays = np.array([(r.when - injection.when).total_seconds() for r in timing.references])
    if delays.max() > MAX_DELAY_HALF_LIVES * half_life:
        raise UserError(
            f"{where}: the scan is {delays.max() / 3600:.1f} h after the injection ({injection.source} to "
            f"{first.source}), more than {MAX_DELAY_HALF_LIVES:g} half-lives of {half_life:g} s "
            f"({timing.half_life_s.source}); correct the date, time or half-life"
        )
    return delays, injection


def summary(values: np.ndarray) -> float | dict[str, float | int]:
    """A scalar when every value is the same, else min, max and count (JSON-able)."""
    if np.ptp(values) <= 1e-12 * np.abs(values).max():
        return float(values[0])
    return {"min": float(values.min()), "max": float(values.max()), "count": int(values.size)}


def body_weight_factors(weight_kg: Sourced, injected_bq: Sourced, timing: Timing | None, where: str,
                        count: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Factors from Bq/ml to SUVbw (g/ml) per slice, and the record of how they were computed.

    Args:
        weight_kg: body weight (kg).
        injected_bq: injected activity (Bq) at the injection time.
        timing: injection, reference instants and half-life; None when the image is
            decay corrected to the injection time (DICOM ADMIN): no decay then.
        where: the file or folder, for messages.
        count: number of slices; ``timing.references`` holds one instant or ``count``.

    Returns:
        ``(factors, record)``: factors of shape ``(count,)`` in g/ml per Bq/ml, and a
        JSON-able dict with ``weight_kg``, ``injected_bq``, ``half_life_s``,
        ``injection_datetime``, ``reference_datetime`` (the earliest), ``delay_s``
        and ``factor`` (scalars, or min/max/count when they differ per slice) and
        ``sources`` (where each value came from).

    Raises:
        UserError: weight, activity or half-life not positive, injection after the
            scan, or a delay beyond :data:`MAX_DELAY_HALF_LIVES` half-lives.
    """
    weight = positive(weight_kg, "the body weight (kg)", where, "give the weight in kg")
    dose = positive(injected_bq, "the injected activity (Bq)", where, "give the injected activity")
    record: dict[str, Any] = {
        "method": "SUVbw (QIBA): activity concentration x body weight / injected activity decayed to the reference time",
        "weight_kg": weight,
        "injected_bq": dose,
        "sources": {"weight_kg": weight_kg.source, "injected_bq": injected_bq.source},
    }
    if timing is None:
        factors = np.full(count, weight * 1000.0 / dose)
        record.update(half_life_s=None, injection_datetime=None, reference_datetime=None, delay_s=0.0)
        record["sources"]["delay_s"] = "none: decay corrected to the injection time"
    else:
        delays, injection = _delays(timing, where)
        half_life = float(timing.half_life_s.value)
        decayed = dose * np.exp2(-delays / half_life)
        factors = np.broadcast_to(weight * 1000.0 / decayed, (count,)).astype(np.float64)
        first = min(timing.references, key=lambda r: r.when)
        record.update(half_life_s=half_life, injection_datetime=injection.iso(), reference_datetime=first.iso(),
                      delay_s=summary(delays))
        record["sources"].update(half_life_s=timing.half_life_s.source, injection_datetime=injection.source,
                                 reference_datetime=first.source)
    record["factor"] = summary(factors)
    return factors, record


def implausible_suv(suv: np.ndarray) -> str | None:
    """Why ``suv`` (any shape) cannot be SUV, or None when its body median is plausible.

    The body is the positive voxels above :data:`BODY_FRACTION` of their 99th
    percentile; its median must lie in :data:`PLAUSIBLE_BODY_MEDIAN`. At most
    :data:`MAX_CHECKED_VOXELS` voxels (a regular subsample) are looked at.
    """
    flat = suv.ravel()[:: max(1, suv.size // MAX_CHECKED_VOXELS)]
    values = flat[flat > 0]
    if values.size == 0:
        return "no voxel is positive"
    body = values[values > BODY_FRACTION * np.percentile(values, 99)]
    median = float(np.median(body))
    low, high = PLAUSIBLE_BODY_MEDIAN
    if low <= median <= high:
        return None
    return f"the body median is {median:.3g}, outside the {low:g} to {high:g} expected of SUV"
