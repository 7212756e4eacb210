"""Glob patterns matched as Python's glob matches them, without ever going round a symlink loop.

``glob.glob(pattern, recursive=True)`` follows symlinked folders in ``**``, so
a link to a folder above it (``tree/up -> ..``) sends the search round the
loop until paths grow too long, in every branch: with two such links, for
ever in practice. Here ``**`` enters each folder once (by its real path) and
follows no link to a folder that holds it; a wildcard skips such links too.
Each folder passed over gives one note. As in glob, wildcards match no name
starting with ``.`` (hidden files, the temporary files of atomic writes)
unless the pattern's part starts with ``.`` itself, and ``**`` enters no
hidden folder.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from collections.abc import Iterator
from pathlib import Path


def symlink_loop(path: Path) -> bool:
    """Whether ``path`` is a symlink that never ends in a file or folder (``a -> b -> a``)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def links_to_a_folder_above(path: Path) -> bool:
    """Whether ``path`` is a symlink to a folder holding it (or to the folder it lies in): a loop for a walk."""
    if not path.is_symlink():
        return False
    target, home = os.path.realpath(path), os.path.realpath(path.parent)
    return home == target or home.startswith(target.rstrip(os.sep) + os.sep)


def glob_root(pattern: str) -> Path:
    """The folder a glob pattern searches from: its parts before the first wildcard (``.`` when it starts with one)."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


class _Search:
    """One pattern's search and its notes on what was passed over."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def _note(self, path: Path, why: str) -> None:
        line = f"{path}: skipped, {why}"
        if line not in self.notes:  # ``**`` lists a folder twice: for its folders, then for its files
            self.notes.append(line)

    def matches(self, folder: Path, parts: tuple[str, ...]) -> Iterator[Path]:
        """The paths below ``folder`` that the pattern ``parts`` (one per path component) names."""
        head, rest = parts[0], parts[1:]
        if head == "**":
            for below in self.folders(folder, {}):
                if rest:
                    yield from self.matches(below, rest)
                else:
                    yield below
                    yield from (p for p in self.entries(below, "*") if not p.is_dir())
        elif glob.has_magic(head):
            for entry in self.entries(folder, head):
                if not rest:
                    yield entry
                elif entry.is_dir():
                    yield from self.matches(entry, rest)
        elif rest:
            if (folder / head).is_dir():
                yield from self.matches(folder / head, rest)
        elif os.path.lexists(folder / head):
            yield folder / head

    def entries(self, folder: Path, pattern: str) -> list[Path]:
        """The names in ``folder`` that ``pattern`` matches (hidden ones only for a pattern starting with ``.``),
        sorted, without links to a folder above (noted)."""
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return []
        found = []
        for name in fnmatch.filter(names, pattern):
            if name.startswith(".") and not pattern.startswith("."):
                continue
            if links_to_a_folder_above(folder / name):
                self._note(folder / name, f"a symlink loop (it links to {os.path.realpath(folder / name)}, a folder "
                                          "holding it); not followed")
                continue
            found.append(folder / name)
        return found

    def folders(self, top: Path, entered: dict[str, Path]) -> Iterator[Path]:
        """``top`` and every folder below it that is not hidden, links followed, depth first; each folder once per
        ``**``: ``entered`` maps the real paths of those met so far to the path they were met by."""
        real = os.path.realpath(top)
        if real in entered:
            self._note(top, f"the same folder as {entered[real]} (through a symlink), searched once")
            return
        entered[real] = top
        yield top
        for entry in self.entries(top, "*"):
            if entry.is_dir():
                yield from self.folders(entry, entered)


def glob_paths(pattern: str) -> tuple[list[Path], list[str]]:
    """The paths ``pattern`` matches (``**``: this folder and every one below), sorted, and notes on what was
    passed over (symlink loops, folders reached twice).

    Matches what ``glob.glob(pattern, recursive=True)`` gives where the tree has
    no loop, except that a folder reached again through a link is searched once.
    """
    parts = Path(pattern).parts
    fixed = len(glob_root(pattern).parts) if glob.has_magic(pattern) else len(parts)
    if fixed == len(parts):
        return ([Path(pattern)] if os.path.lexists(pattern) else []), []
    search = _Search()
    found = sorted(dict.fromkeys(search.matches(glob_root(pattern), parts[fixed:])))
    return found, search.notes
