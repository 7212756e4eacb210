"""Atomic writes: a temporary file (or folder) beside the target, then a rename.

A reader (or a crashed run) therefore sees either the old complete file or the
new complete file, never a half-written one. Every temporary name is hidden (a
leading ".") and marked (:func:`is_temporary_name`), so input discovery can skip
what a running or interrupted write leaves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import UserError

#: Marks of temporary names: files being written (``.<target>.<random>.tmp<target's suffixes>``) and folders
#: (``.<target>.<random>.tmp``), a set's staging folder, a claimed set's lock, an old version moved aside.
TEMP_MARK = ".tmp"
STAGING_SUFFIX = ".staging"
LOCK_SUFFIX = ".lock"
OLD_SUFFIX = ".old"


def is_temporary_name(name: str) -> bool:
    """Whether a file or folder name is one of the temporary names written here (never an input or a result)."""
    return name.startswith(".") and (name.endswith((TEMP_MARK, STAGING_SUFFIX, LOCK_SUFFIX, OLD_SUFFIX))
                                     or f"{TEMP_MARK}." in name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.npz`` ...), so
    libraries that choose a format from the file name write the right one. On an
    exception the temporary file is removed and ``target`` is untouched.

    Raises:
        UserError: ``target`` exists and ``overwrite`` is false.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{TEMP_MARK}{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the usual permissions for new files.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's file-creation mask (reading it requires setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(target: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"), overwrite=overwrite)


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty hidden folder next to ``target``; rename it onto ``target`` on success.

    An existing ``target`` (with ``overwrite``) is moved aside, replaced, then removed;
    it is put back if the rename fails. On an exception the folder is removed and
    ``target`` is untouched.

    Raises:
        UserError: ``target`` exists and ``overwrite`` is false.
    """
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}{TEMP_MARK}"
    tmp.mkdir()  # unlike mkdtemp, mkdir honours the umask
    try:
        yield tmp
        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.{secrets.token_hex(6)}{OLD_SUFFIX}"
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
        if old is not None:
            remove_path(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
