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
* Passed over in a folder or a glob's matches: hidden names (``.*``, which the
  temporary files of atomic writes are) silently; with a note, results of an
  earlier run (:data:`RESULT_NAME`), the output folder (``exclude``) and
  symlink loops. Globs are matched by :mod:`.walk`, whose ``**`` never goes
  round a loop.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ...errors import UserError
from .registry import content_formats, content_labels, suffix_format, suffixes_named, volume_stem, volume_suffix
from .source import VolumeSource
from .walk import glob_paths, glob_root, symlink_loop


class VolumeList(list):
    """The :class:`VolumeSource` entries :func:`list_volumes` found, sorted, plus ``notes``.

    ``notes`` holds one line per series, file or folder passed over (a CT series, an
    unreadable DICOM header, a duplicate instance, a symlink loop, an earlier
    result, the output folder), for the caller to print.
    """

    def __init__(self, sources: Iterable[VolumeSource] = (), notes: Iterable[str] = ()):
        super().__init__(sources)
        self.notes = list(notes)


#: Names results are written under: ``<name>_denoised<ext>``, ``<name>_denoised_std<ext>`` and the DICOM series
#: folders ``<name>_denoised_dcm`` / ``<name>_denoised_std_dcm`` (without the volume suffix).
RESULT_NAME = re.compile(r".+_denoised(_std)?(_dcm)?")


def named_like_a_result(path: Path) -> bool:
    """Whether the file or folder ``path`` is named as results are (:data:`RESULT_NAME`)."""
    return RESULT_NAME.fullmatch(volume_stem(path)) is not None


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


class _Search:
    """What one :func:`list_volumes` call passes over, and its notes.

    Hidden names are passed over silently; with one note each: symlink cycles,
    and files and folders below ``root`` named like results or lying in an
    ``exclude`` folder (one note for the folder, not for each file in it).

    Args:
        exclude: resolved folders whose content is not read (the output folder).
        root: the folder searched (a glob's part before its first wildcard); only
            names below it are checked for results.
    """

    def __init__(self, exclude: set[Path], root: Path):
        self.exclude, self.root = exclude, root
        self.notes: list[str] = []

    def _note(self, path: Path, why: str) -> None:
        line = f"{path}: skipped, {why}"
        if line not in self.notes:
            self.notes.append(line)

    def loops(self, path: Path) -> bool:
        """Whether ``path`` is a symlink cycle (noted)."""
        if symlink_loop(path):
            self._note(path, "a symlink loop (its links never end in a file or folder)")
            return True
        return False

    def readable(self, path: Path) -> bool:
        """Whether ``path`` may be looked at: not hidden and not a symlink cycle."""
        return not path.name.startswith(".") and not self.loops(path)

    def an_input(self, path: Path) -> bool:
        """Whether the found file or folder ``path`` may be or hold inputs: not named like a result, nor in a folder
        so named below the root, nor in an excluded folder (noted)."""
        parts = path.parts
        first = len(self.root.parts) if parts[:len(self.root.parts)] == self.root.parts else len(parts) - 1
        for depth in range(first, len(parts)):
            if named_like_a_result(Path(parts[depth])):
                self._note(Path(*parts[:depth + 1]), "named like a result (<name>_denoised...): results are not read "
                                                     "as inputs; rename it to denoise it again")
                return False
        folder = next((f for f in self.exclude if _within(path.resolve(), f)), None)
        if folder is not None:
            self._note(folder, "the output folder: nothing in it is read as an input")
            return False
        return True

    def volume_files(self, folder: Path) -> list[Path]:
        """The files with a registered suffix directly in ``folder``."""
        return [p for p in sorted(folder.iterdir()) if self.readable(p) and p.is_file() and volume_suffix(p)
                and self.an_input(p)]

    def content_candidates(self, folder: Path, recursive: bool) -> list[Path]:
        """Files in ``folder`` (and below when ``recursive``) a format found by content may claim: those without a
        registered suffix; none when no format is found by content. Symlinked folders are not followed."""
        if not content_formats():
            return []
        found = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in sorted(dirs) if self.readable(Path(root, d)) and self.an_input(Path(root, d))]
            found += [Path(root, n) for n in sorted(names) if not volume_suffix(Path(n)) and self.readable(Path(root, n))]
            if not recursive:
                break
        return found


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


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
    """The volume file ``path`` (it has a registered suffix), named by its stem."""
    return VolumeSource(path, volume_stem(path), suffix_format(path).name)


def list_volumes(spec: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> VolumeList:
    """The volumes ``spec`` names, sorted by path then name, with notes on what was passed over.

    What a folder or a glob finds skips hidden names (``.*``: hidden and temporary
    files), files named like results (:data:`RESULT_NAME`), what lies in an
    ``exclude`` folder below the folder searched, and symlink loops, all but the
    hidden ones with a note; a glob's ``**`` enters each folder once. A file
    named by ``spec`` itself is taken as it is.

    Args:
        spec: a volume file; a DICOM file (its series, from the files beside it);
            a folder (its volume files, and the DICOM PET series in it and below);
            or a glob pattern (each match as above; ``**`` recurses).
        exclude: folders whose files are not inputs (the output folder, so results
            are not read back as inputs), unless ``spec`` searches inside one.

    Returns:
        a :class:`VolumeList` of :class:`VolumeSource` with unique names, and its
        ``notes`` (one line per ignored series or skipped file or folder).

    Raises:
        UserError: nothing is found.
    """
    path = Path(spec)
    is_glob = not os.path.lexists(path)
    root = glob_root(str(spec)) if is_glob else path if path.is_dir() else path.parent
    search = _Search({f for f in (Path(p).resolve() for p in exclude) if not _within(root.resolve(), f)}, root)
    files: list[Path] = []
    candidates: list[Path] = []
    searched: list[Path] = []  # folders searched by content, with all below them
    single = path.is_file() and not volume_suffix(path)
    if single:
        candidates = search.content_candidates(path.parent, False) if _detected(path) else []
    else:
        matches, walk_notes = glob_paths(str(spec)) if is_glob else ([path], [])
        search.notes += walk_notes
        for match in matches:
            if search.loops(match) or is_glob and not search.an_input(match):
                continue
            if match.is_dir():
                files += search.volume_files(match)
                if not any(_within(match.resolve(), s) for s in searched):
                    candidates += search.content_candidates(match, True)
                    searched.append(match.resolve())
            elif volume_suffix(match):
                files.append(match)
            elif match.is_file():
                candidates.append(match)
    by_content, notes = _by_content(candidates)
    notes = search.notes + notes
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
    sources, notes = _by_content(_Search(set(), path).content_candidates(path, True))
    if not sources:
        passed = f" (passed over: {notes[0]})" if notes else ""
        raise UserError(f"{path}: no {content_labels()} found in this folder or below{passed}; pass a folder holding one")
    if len(sources) > 1:
        raise UserError(
            f"{path}: holds {len(sources)} {content_labels()} ({', '.join(s.name for s in sources)}); pass one "
            "series' folder, or this folder as --base_samples to process them all"
        )
    return sources[0]
