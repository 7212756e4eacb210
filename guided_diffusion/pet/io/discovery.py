"""Which volumes a path, folder or glob names: files of the registered formats by suffix, others by content.

Rules (see the README's "Formats and discovery"); the formats are those of
:data:`.registry.FORMATS`:

* Files with a registered suffix (``.npz`` / ``.nii`` / ``.nii.gz``, any case)
  are found by it: the file itself, the files directly in a folder (not below
  it), or a glob's matches.
* Formats found by content (DICOM: :mod:`.dicom_discovery`) look at every file
  without a registered suffix in a folder and below it (patient/study/series
  trees), whatever its name; names starting with ``.`` are skipped. Each
  format's ``detect`` picks its files and its ``group`` makes volumes of them
  (DICOM: PET series grouped by SeriesInstanceUID, other series passed over
  with a note).
* Names: the file name without its volume suffix, or the name ``group`` gives
  (DICOM: ``<PatientID>_<SeriesDescription>_<SeriesDate>``). When two names
  would be equal (ignoring case), each of them gets ``_`` and 8 hex digits of a
  hash of its ``series_uid`` (or file path) appended.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ...errors import UserError
from .registry import content_formats, content_labels, suffix_format, suffixes_named, volume_stem, volume_suffix
from .source import VolumeSource


class VolumeList(list):
    """The :class:`VolumeSource` entries :func:`list_volumes` found, sorted, plus ``notes``.

    ``notes`` holds one line per series or file passed over (a CT series, an
    unreadable DICOM header, a duplicate instance), for the caller to print.
    """

    def __init__(self, sources: Iterable[VolumeSource] = (), notes: Iterable[str] = ()):
        super().__init__(sources)
        self.notes = list(notes)


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _content_candidates(folder: Path, recursive: bool, exclude: set[Path]) -> list[Path]:
    """Files in ``folder`` (and below when ``recursive``) a format found by content may claim.

    Those without a registered suffix and not hidden; none when no format is found by content.
    """
    if not content_formats():
        return []
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d).resolve() not in exclude)
        found += [Path(root, n) for n in sorted(names) if not n.startswith(".") and not volume_suffix(Path(n))]
        if not recursive:
            break
    return found


def _detected(path: Path) -> bool:
    """Whether a format found by content claims the file ``path``."""
    return any(fmt.detect(path) for fmt in content_formats())


def _by_content(candidates: Iterable[Path]) -> tuple[list[VolumeSource], list[str]]:
    """The volumes the formats found by content make of ``candidates`` (files of any name), and their notes."""
    unique = list({p.resolve(): p for p in candidates}.values())
    sources: list[VolumeSource] = []
    notes: list[str] = []
    for fmt in content_formats():
        found, passed = fmt.group([p for p in unique if fmt.detect(p)])
        sources += found
        notes += passed
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


def _file_source(path: Path) -> VolumeSource:
    """The volume file ``path`` (it has a registered suffix), named by its stem."""
    return VolumeSource(path, volume_stem(path), suffix_format(path).name)


def list_volumes(spec: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> VolumeList:
    """The volumes ``spec`` names, sorted by path then name, with notes on what was passed over.

    Args:
        spec: a volume file; a DICOM file (its series, from the files beside it);
            a folder (its volume files, and the DICOM PET series in it and below);
            or a glob pattern (each match as above; ``**`` recurses).
        exclude: folders not searched by content (e.g. the output folder, so results
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
    single = path.is_file() and not volume_suffix(path)
    if single:
        candidates = _content_candidates(path.parent, False, skip) if _detected(path) else []
    else:
        for match in [path] if path.exists() else sorted(Path(p) for p in glob.glob(str(spec), recursive=True)):
            if match.is_dir():
                files += [p for p in sorted(match.iterdir()) if p.is_file() and volume_suffix(p)]
                candidates += _content_candidates(match, True, skip)
            elif volume_suffix(match):
                files.append(match)
            elif match.is_file() and not match.name.startswith("."):
                candidates.append(match)
    by_content, notes = _by_content(candidates)
    if single:
        by_content = [s for s in by_content if path.resolve() in {f.resolve() for f in s.files}]
    found = [_file_source(p) for p in dict.fromkeys(files)] + by_content
    if not found:
        raise UserError(
            f"{spec}: no volumes found; give a {'/'.join(suffixes_named())} file, a folder holding them or "
            f"{content_labels()} (any file names, searched below the folder), or a glob pattern"
            + (f"; passed over: {notes[0]}" + (f" and {len(notes) - 1} more" if len(notes) > 1 else "") if notes else "")
        )
    return VolumeList(sorted(_unique(found), key=lambda s: (str(s.path), s.name)), notes)


def source_for_path(path: Path) -> VolumeSource:
    """The one volume a plain path names: a volume file, a DICOM file's series, or a folder's single series.

    Raises:
        UserError: the path does not exist, is of unknown format, or a folder holds
            no PET series or several.
    """
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file() and volume_suffix(path):
        return _file_source(path)
    if path.is_file() and not _detected(path):
        raise UserError(f"{path}: unknown volume format; use {', '.join(suffixes_named())}, or a file or folder of "
                        f"a {content_labels()}")
    if path.is_file():
        return list_volumes(path)[0]
    sources, notes = _by_content(_content_candidates(path, True, set()))
    if not sources:
        passed = f" (passed over: {notes[0]})" if notes else ""
        raise UserError(f"{path}: no {content_labels()} found in this folder or below{passed}; pass a folder holding one")
    if len(sources) > 1:
        raise UserError(
            f"{path}: holds {len(sources)} {content_labels()} ({', '.join(s.name for s in sources)}); pass one "
            "series' folder, or this folder as --base_samples to process them all"
        )
    return sources[0]
