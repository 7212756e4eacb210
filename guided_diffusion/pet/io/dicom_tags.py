"""Reading DICOM attributes: messages that name the tag, and DA / TM / DT values as Python dates and times."""

from __future__ import annotations

import re
from copy import deepcopy
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from ...errors import UserError


def tag_name(keyword: str) -> str:
    """``keyword`` with its tag, e.g. ``"PatientWeight (0010,1030)"``."""
    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def present(ds: Any, keyword: str) -> bool:
    """Whether ``ds`` holds ``keyword`` with a non-empty value."""
    value = getattr(ds, keyword, None)
    return value is not None and not (hasattr(value, "__len__") and len(value) == 0)


def header_copy(ds: Any, without: tuple[str, ...]) -> Dataset:
    """A plain in-memory ``Dataset`` with deep copies of the top-level elements of ``ds`` except ``without``.

    Unlike the dataset read from a file, it has no file handle and no original
    encoding, so pydicom resolves the VR of elements added later when it is written.
    """
    copy = Dataset()
    for element in ds:
        if element.keyword not in without:
            copy.add(deepcopy(element))
    return copy


def require(ds: Any, keyword: str, where: Path, why: str) -> Any:
    """The value of ``keyword`` in dataset ``ds``.

    Raises:
        UserError: the attribute is missing or empty; the message names the
            keyword and its tag, ``where`` (file or folder) and ``why`` it is needed.
    """
    if not present(ds, keyword):
        raise UserError(
            f"{where}: DICOM tag {tag_name(keyword)} is missing; it is needed {why}. "
            "Add the tag, or convert the series to a NIfTI file in SUV with another tool"
        )
    return getattr(ds, keyword)


def parse_date(value: Any, keyword: str, where: Path) -> date:
    """A DICOM DA (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as a date; UserError naming ``keyword`` if malformed."""
    text = str(value).strip().replace(".", "").replace("-", "")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise UserError(f"{where}: {tag_name(keyword)} is {value!r}, not a DICOM date (YYYYMMDD)") from None


def parse_time(value: Any, keyword: str, where: Path) -> time:
    """A DICOM TM (``HH``, ``HHMM``, ``HHMMSS.FFFFFF``, or the old ``HH:MM:SS``) as a time of day."""
    text = str(value).strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not match or int(match[1]) > 23 or int(match[2] or 0) > 59 or int(match[3] or 0) > 60:
        raise UserError(f"{where}: {tag_name(keyword)} is {value!r}, not a DICOM time (HHMMSS.FFFFFF)")
    seconds = min(int(match[3] or 0), 59)  # a leap second (60) is read as 59
    return time(int(match[1]), int(match[2] or 0), seconds, int((match[4] or "0").ljust(6, "0")))


def parse_datetime(value: Any, keyword: str, where: Path) -> datetime:
    """A DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, at least to the minute) as a naive datetime.

    A UTC offset (``&ZZXX``) is dropped: DA and TM carry none, so times are
    compared on the scanner's local clock, as QIBA's pseudo-code does.
    """
    text = re.split(r"[+-]", str(value).strip())[0]
    if not re.fullmatch(r"\d{12}(\d{2}(\.\d{1,6})?)?", text):
        raise UserError(f"{where}: {tag_name(keyword)} is {value!r}, not a DICOM date-time (YYYYMMDDHHMMSS)")
    return datetime.combine(parse_date(text[:8], keyword, where), parse_time(text[8:], keyword, where))


def date_and_time(ds: Any, date_keyword: str, time_keyword: str, where: Path) -> datetime | None:
    """``date_keyword`` + ``time_keyword`` of ``ds`` as a datetime, or None if either is missing."""
    if not (present(ds, date_keyword) and present(ds, time_keyword)):
        return None
    return datetime.combine(
        parse_date(getattr(ds, date_keyword), date_keyword, where),
        parse_time(getattr(ds, time_keyword), time_keyword, where),
    )
