"""Reading DICOM attributes with messages that name the missing tag and the directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import UserError


def require(ds: Any, keyword: str, tag: str, directory: Path, why: str) -> Any:
    """The value of ``keyword`` in dataset ``ds``.

    Raises:
        UserError: the attribute is missing or empty; the message names the
            keyword, its ``tag`` (e.g. ``"(0010,1030)"``), ``directory`` and ``why`` it is needed.
    """
    value = getattr(ds, keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise UserError(
            f"{directory}: DICOM tag {keyword} {tag} is missing; it is needed {why}. "
            "Add the tag, or convert the series to a NIfTI file in SUV with another tool"
        )
    return value


def seconds_of_day(value: Any, directory: Path) -> float:
    """Seconds since midnight of a DICOM TM (``HHMMSS.FFFFFF``, ``HHMM``, ``HH:MM:SS``)."""
    text = str(value).strip().replace(":", "")
    if not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d*)?)?)?", text):
        raise UserError(f"{directory}: {value!r} is not a DICOM time (HHMMSS.FFFFFF)")
    return int(text[:2]) * 3600 + int(text[2:4] or 0) * 60 + float(text[4:] or 0)
