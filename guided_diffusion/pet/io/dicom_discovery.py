"""DICOM PET series found by content: which files are DICOM, and how they group into series with names.

* A file is DICOM when its 128-byte preamble is followed by ``DICM`` (DICOM
  Part 10, what pydicom reads without ``force``), whatever its name. Only
  headers are read.
* Files are grouped by SeriesInstanceUID, wherever they lie: a folder may hold
  several series, and a series may span folders (DICOMDIR media split large
  series). A second copy of an instance (same SOPInstanceUID) is dropped with a note.
* PET series (SOP class PET, Enhanced PET or Legacy Converted Enhanced PET
  Image Storage) are kept; every other series (CT, MR, SEG, RTSTRUCT, PR,
  secondary captures of a PET, ...) is ignored with a one-line note.
* A series is named ``<PatientID>_<SeriesDescription>_<SeriesDate>`` (the parts
  present, characters outside ``[A-Za-z0-9._-]`` replaced by ``_``; the
  folder's name when none is present).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    EnhancedPETImageStorage,
    LegacyConvertedEnhancedPETImageStorage,
    MediaStorageDirectoryStorage,
    PositronEmissionTomographyImageStorage,
)

from .source import VolumeSource

#: SOP classes read as PET volumes.
PET_IMAGE_CLASSES = (PositronEmissionTomographyImageStorage, EnhancedPETImageStorage,
                     LegacyConvertedEnhancedPETImageStorage)

#: The only attributes discovery reads from each file.
HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "PatientID", "SeriesDescription",
               "SeriesDate"]

#: Longest name part kept from a DICOM attribute (file names stay short).
MAX_NAME_PART = 64


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file: ``DICM`` after the 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _sanitised(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:MAX_NAME_PART].strip("._-")


def _series_name(header: Any, folder: Path) -> str:
    parts = [_sanitised(getattr(header, k, "") or "") for k in ("PatientID", "SeriesDescription", "SeriesDate")]
    return "_".join(p for p in parts if p) or _sanitised(folder.resolve().name) or "series"


def pet_series(files: Sequence[Path]) -> tuple[list[VolumeSource], list[str]]:
    """The PET series made of DICOM ``files`` (any names, any folders) and the notes on what was passed over.

    Each series is a :class:`VolumeSource` of kind "dicom" whose ``path`` is the
    deepest folder common to its files and ``series_uid`` its SeriesInstanceUID.
    """
    notes: list[str] = []
    groups: dict[str, list[tuple[Path, Any]]] = {}
    instances: dict[str, Path] = {}
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
            notes.append(f"{path}: skipped, its DICOM header cannot be read ({exc})")
            continue
        meta = getattr(header, "file_meta", None)
        sop_class = getattr(header, "SOPClassUID", None) or getattr(meta, "MediaStorageSOPClassUID", None)
        if sop_class == MediaStorageDirectoryStorage:
            continue  # a DICOMDIR index; the files it lists are found by themselves
        instance = str(getattr(header, "SOPInstanceUID", "") or "")
        if instance and instance in instances:
            notes.append(f"{path}: skipped, a copy of {instances[instance]} (same SOPInstanceUID)")
            continue
        instances[instance] = path
        series = str(getattr(header, "SeriesInstanceUID", "") or "")
        if not series:
            notes.append(f"{path}: skipped, no SeriesInstanceUID (0020,000E)")
            continue
        is_pet = sop_class in PET_IMAGE_CLASSES or (not sop_class and getattr(header, "Modality", "") == "PT")
        groups.setdefault(("" if is_pet else "other:") + series, []).append((path, header))
    sources = []
    for key, members in groups.items():
        series_files = tuple(sorted(p for p, _ in members))
        folder = Path(os.path.commonpath([str(p.parent) for p in series_files]))
        header = members[0][1]
        if key.startswith("other:"):
            sop_class = getattr(header, "SOPClassUID", "") or getattr(header.file_meta, "MediaStorageSOPClassUID", "")
            kind = UID(str(sop_class)).name if sop_class else "no SOP class"
            description = getattr(header, "SeriesDescription", "") or ""
            notes.append(f"{folder}: ignored series {description!r} (Modality {getattr(header, 'Modality', '?')}, "
                         f"{kind}, {len(series_files)} file(s)): not a PET image series")
            continue
        sources.append(VolumeSource(folder, _series_name(header, folder), "dicom", series_files, key))
    return sources, notes
