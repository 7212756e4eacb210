"""Files of weights and training runs: local paths, or cloud URLs read and written through blobfile.

A path that contains ``://`` (``gs://bucket/run``, ``az://account/container/run``,
``https://account.blob.core.windows.net/container/run``) is a URL and goes to
blobfile; anything else is a local path. The training loop and checkpoint
loading use only the functions below, so ``--model_path``, ``--init_weights``,
``--resume_checkpoint`` and ``--result_folder`` may be either.

Writes stay atomic. A local file is written to a temporary name in its folder
and renamed (:mod:`guided_diffusion.atomic`). An object store has no rename, but
it publishes an object only when its upload completes, and blobfile uploads
when the file is closed, which is skipped here if the writing code raised
(``partial_writes_on_exc=False``), so a reader sees the old object or the
complete new one, never a partial one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .atomic import atomic_write


def is_url(path: str | os.PathLike) -> bool:
    """True for ``gs://``, ``az://``, ``https://`` ... paths (handled by blobfile)."""
    return "://" in str(path)


def _blobfile():
    # Imported on first use: local runs never pay for it.
    import blobfile

    return blobfile


def join(folder: str | os.PathLike, name: str) -> str | Path:
    """``folder/name``: a ``Path`` for a local folder, a string for a URL (``Path`` would fold its ``//``)."""
    return _blobfile().join(str(folder), name) if is_url(folder) else Path(folder) / name


def is_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an existing file (an object, for a URL)."""
    if is_url(path):
        bf = _blobfile()
        return bf.exists(str(path)) and not bf.isdir(str(path))
    return Path(path).is_file()


def listdir(folder: str | os.PathLike) -> list[str]:
    """Names of the entries of ``folder``; empty when it does not exist."""
    if is_url(folder):
        bf = _blobfile()
        return [name.rstrip("/") for name in bf.listdir(str(folder))] if bf.isdir(str(folder)) else []
    return os.listdir(folder) if Path(folder).is_dir() else []


def makedirs(folder: str | os.PathLike) -> None:
    """Create ``folder`` and its parents if missing (object stores need no folders)."""
    if is_url(folder):
        _blobfile().makedirs(str(folder))
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)


def remove(path: str | os.PathLike) -> None:
    """Delete the file ``path`` if it exists."""
    if is_url(path):
        bf = _blobfile()
        if bf.exists(str(path)):
            bf.remove(str(path))
    else:
        Path(path).unlink(missing_ok=True)


def open_binary_for_read(path: str | os.PathLike) -> BinaryIO:
    """The file ``path`` opened for reading bytes (seekable, as ``torch.load`` needs)."""
    if is_url(path):
        return _blobfile().BlobFile(str(path), "rb")
    return open(path, "rb")


def write_binary(target: str | os.PathLike, write: Callable[[BinaryIO], None]) -> str | Path:
    """Call ``write(file)`` on a binary file that becomes ``target`` atomically (see above); return ``target``."""
    if is_url(target):
        with _blobfile().BlobFile(str(target), "wb", partial_writes_on_exc=False) as f:
            write(f)
        return str(target)

    def write_local(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_write(target, write_local)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` (UTF-8) to the file ``path``, creating it if missing.

    On an object store this uploads the whole file again (blobfile's append), so
    append seldom: the progress log adds one row every ``--log_interval`` steps.
    """
    if is_url(path):
        with _blobfile().BlobFile(str(path), "ab", partial_writes_on_exc=False) as f:
            f.write(text.encode("utf-8"))
    else:
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(text)
