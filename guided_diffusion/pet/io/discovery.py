"""Which volumes a path, folder or glob names: volume files by suffix, DICOM PET series by content.

Rules (see the README's "Formats and discovery"):

* ``.npz`` / ``.nii`` / ``.nii.gz`` files are found by suffix (any case): the
  file itself, the files directly in a folder (not below it), or a glob's matches.
* DICOM files are found by content, whatever their names (``.dcm``, ``.IMA``,
  none, UIDs): every file in a folder and below it (patient/study/series trees)
  whose 128-byte preamble is followed by ``DICM`` (DICOM Part 10, what pydicom
  reads without ``force``). Only headers are read. Names starting with ``.`` are
  skipped.
* Files are grouped by SeriesInstanceUID, wherever they lie under the searched
  folder: a folder may hold several series, and a series may span folders
  (DICOMDIR media split large series). A second copy of an instance (same
  SOPInstanceUID) is dropped with a note.
* PET series (SOP class PET, Enhanced PET or Legacy Converted Enhanced PET
  Image Storage) are kept; every other series (CT, MR, SEG, RTSTRUCT, PR,
  secondary captures of a PET, ...) is ignored with a one-line note.
* Names: ``<PatientID>_<SeriesDescription>_<SeriesDate>`` for a DICOM series
  (the parts present, characters outside ``[A-Za-z0-9._-]`` replaced by ``_``;
  the folder's name when none is present), the file name without its volume
  suffix otherwise. When two names would be equal (ignoring case), each of
  them gets ``_`` and 8 hex digits of a hash of its SeriesInstanceUID (or
  file path) appended.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
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

from ...errors import UserError
from .paths import volume_stem, volume_suffix

#: SOP classes read as PET volumes.
PET_IMAGE_CLASSES = (PositronEmissionTomographyImageStorage, EnhancedPETImageStorage,
                     LegacyConvertedEnhancedPETImageStorage)

#: The only attributes discovery reads from each file.
HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "PatientID", "SeriesDescription",
               "SeriesDate"]

#: Longest name part kept from a DICOM attribute (file names stay short).
MAX_NAME_PART = 64


@dataclass(frozen=True)
class VolumeSource:
    """One volume to read: what :func:`list_volumes` finds and ``read_volume`` takes.

    Attributes:
        path: the file (npz, NIfTI) or the folder holding the series' files (DICOM:
            their deepest common folder).
        name: unique, readable stem for the outputs (``[A-Za-z0-9._-]`` for DICOM).
        kind: "npz", "nifti" or "dicom".
        files: the series' files, sorted (DICOM only; empty otherwise).
        series_uid: the SeriesInstanceUID (DICOM only).
    """

    path: Path
    name: str
    kind: str
    files: tuple[Path, ...] = ()
    series_uid: str | None = None


class VolumeList(list):
    """The :class:`VolumeSource` entries :func:`list_volumes` found, sorted, plus ``notes``.

    ``notes`` holds one line per series or file passed over (a CT series, an
    unreadable DICOM header, a duplicate instance), for the caller to print.
    """

    def __init__(self, sources: Iterable[VolumeSource] = (), notes: Iterable[str] = ()):
        super().__init__(sources)
        self.notes = list(notes)


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


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _dicom_files(folder: Path, recursive: bool, exclude: set[Path]) -> list[Path]:
    """Files in ``folder`` (and below when ``recursive``) that may be DICOM: no volume suffix, not hidden."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d).resolve() not in exclude)
        found += [Path(root, n) for n in sorted(names) if not n.startswith(".") and not volume_suffix(Path(n))]
        if not recursive:
            break
    return found


def _series(candidates: Iterable[Path]) -> tuple[list[VolumeSource], list[str]]:
    """PET series among ``candidates`` (files of any name) and the notes on what was passed over."""
    notes: list[str] = []
    groups: dict[str, list[tuple[Path, Any]]] = {}
    instances: dict[str, Path] = {}
    for path in candidates:
        if not is_dicom_file(path):
            continue
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
        files = tuple(sorted(p for p, _ in members))
        folder = Path(os.path.commonpath([str(p.parent) for p in files]))
        header = members[0][1]
        if key.startswith("other:"):
            sop_class = getattr(header, "SOPClassUID", "") or getattr(header.file_meta, "MediaStorageSOPClassUID", "")
            kind = UID(str(sop_class)).name if sop_class else "no SOP class"
            description = getattr(header, "SeriesDescription", "") or ""
            notes.append(f"{folder}: ignored series {description!r} (Modality {getattr(header, 'Modality', '?')}, "
                         f"{kind}, {len(files)} file(s)): not a PET image series")
            continue
        sources.append(VolumeSource(folder, _series_name(header, folder), "dicom", files, key))
    return sources, notes


def _unique(sources: list[VolumeSource]) -> list[VolumeSource]:
    """``sources`` with a hash appended to each name that would clash (ignoring case) with another."""
    counts: dict[str, int] = {}
    for s in sources:
        counts[s.name.casefold()] = counts.get(s.name.casefold(), 0) + 1
    return [
        s if counts[s.name.casefold()] == 1
        else VolumeSource(s.path, f"{s.name}_{_short_hash(s.series_uid or str(s.path.resolve()))}", s.kind, s.files,
                          s.series_uid)
        for s in sources
    ]


def _file_source(path: Path) -> VolumeSource:
    kind = "npz" if volume_suffix(path) == ".npz" else "nifti"
    return VolumeSource(path, volume_stem(path), kind)


def list_volumes(spec: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> VolumeList:
    """The volumes ``spec`` names, sorted by path then name, with notes on what was passed over.

    Args:
        spec: a volume file; a DICOM file (its series, from the files beside it);
            a folder (its volume files, and the DICOM PET series in it and below);
            or a glob pattern (each match as above; ``**`` recurses).
        exclude: folders not searched for DICOM (e.g. the output folder, so results
            written as DICOM are not read back as inputs).

    Returns:
        a :class:`VolumeList` of :class:`VolumeSource` with unique names, and its
        ``notes`` (one line per ignored series or skipped file).

    Raises:
        UserError: nothing is found.
    """
    path = Path(spec)
    skip = {Path(p).resolve() for p in exclude}
    files: list[Path] = []
    candidates: list[Path] = []
    if path.is_file() and not volume_suffix(path):
        candidates = _dicom_files(path.parent, False, skip) if is_dicom_file(path) else []
    else:
        for match in [path] if path.exists() else sorted(Path(p) for p in glob.glob(str(spec), recursive=True)):
            if match.is_dir():
                files += [p for p in sorted(match.iterdir()) if p.is_file() and volume_suffix(p)]
                candidates += _dicom_files(match, True, skip)
            elif volume_suffix(match):
                files.append(match)
            elif match.is_file() and not match.name.startswith("."):
                candidates.append(match)
    series, notes = _series({p.resolve(): p for p in candidates}.values())
    if path.is_file() and not volume_suffix(path):
        series = [s for s in series if path.resolve() in {f.resolve() for f in s.files}]
    found = [_file_source(p) for p in dict.fromkeys(files)] + series
    if not found:
        raise UserError(
            f"{spec}: no volumes found; give a .npz/.nii/.nii.gz file, a folder holding them or DICOM PET series "
            "(any file names, searched below the folder), or a glob pattern"
            + (f"; passed over: {notes[0]}" + (f" and {len(notes) - 1} more" if len(notes) > 1 else "") if notes else "")
        )
    return VolumeList(sorted(_unique(found), key=lambda s: (str(s.path), s.name)), notes)


def source_for_path(path: Path) -> VolumeSource:
    """The one volume a plain path names: a volume file, a DICOM file's series, or a folder's single PET series.

    Raises:
        UserError: the path does not exist, is of unknown format, or a folder holds
            no PET series or several.
    """
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file() and volume_suffix(path):
        return _file_source(path)
    if path.is_file() and not is_dicom_file(path):
        raise UserError(f"{path}: unknown volume format; use .npz, .nii, .nii.gz, a DICOM file or a DICOM series folder")
    if path.is_file():
        return list_volumes(path)[0]
    sources, notes = _series(_dicom_files(path, True, set()))
    if not sources:
        passed = f" (passed over: {notes[0]})" if notes else ""
        raise UserError(f"{path}: no DICOM PET series found in this folder or below{passed}; pass a folder holding one")
    if len(sources) > 1:
        raise UserError(
            f"{path}: holds {len(sources)} DICOM PET series ({', '.join(s.name for s in sources)}); pass one "
            "series' folder, or this folder as --base_samples to process them all"
        )
    return sources[0]
