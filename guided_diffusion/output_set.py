"""Results written as one unit, exclusively: a folder checked before computing, a set claimed, staged, published.

One input's results (a volume, its SD map, a DICOM series folder, a sidecar)
form a *set*. A run

1. checks the output folder before any computing (:func:`check_output_folder`:
   it can be created, a file can be created in it, it has room);
2. claims each set by its name (:func:`claim`: a lock file ``.<name>.lock``
   created exclusively, holding the run's host and process id), so a second
   run into the same folder stops in one line instead of mixing its files in;
3. writes every file of the set into a hidden staging folder
   (``.<name>.<random>.staging``) beside the targets and moves them onto their
   names only when all are complete (:func:`write_set`): the set's old files
   (with ``overwrite``) are moved aside first, the new files follow (the
   sidecar last), and the old ones are removed only then; a failure at any point
   (a full disk, a signal) removes the staging folder and puts the old set back.

Temporary names are hidden (a leading ".") and end in a recognisable suffix
(:func:`~guided_diffusion.atomic.is_temporary_name`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .atomic import LOCK_SUFFIX, STAGING_SUFFIX, remove_path
from .errors import UserError

#: Bytes reserved per output beyond its voxels (headers, DICOM slice headers, the sidecar).
HEADER_ALLOWANCE_BYTES = 1 << 20

#: ``os.link`` errors of file systems without hard links: publish by rename there.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def check_output_folder(folder: str | os.PathLike, what: str, needed_bytes: int = 0) -> None:
    """Refuse, before anything is computed, an output folder that cannot be created or written, or is too full.

    A folder that does not exist yet is created for the check and removed again,
    so a refused (or later failing) run leaves nothing behind.

    Args:
        folder: the output folder.
        what: how the user names it, for messages (e.g. ``"--save_dir"``).
        needed_bytes: what the outputs will take (e.g. float32 voxels x outputs); 0 skips the space check.

    Raises:
        UserError: the folder is a file, cannot be created or written, or has less than ``needed_bytes`` free.
    """
    folder = Path(folder)
    missing = []
    existing = folder
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {folder}: {existing} is a file, not a folder; choose another {what}")
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise UserError(f"{what} {folder}: cannot write there ({err.strerror}); choose a writable {what} "
                        "or fix its permissions") from None
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
    if free < needed_bytes:
        raise UserError(f"{what} {folder}: {free / 1e6:.0f} MB free, the results need about "
                        f"{needed_bytes / 1e6:.0f} MB; free some space or choose another {what}")


def claim(folder: str | os.PathLike, name: str) -> Path:
    """Claim the set ``name`` in ``folder`` for this process; return the lock file to :func:`release`.

    The lock ``<folder>/.<name>.lock`` is created exclusively. One left by a
    process of this host that no longer runs (killed without its cleanup) is
    taken over, and the staging folders such a process left are removed.

    Raises:
        UserError: another live run holds the set, or the folder cannot be written.
    """
    folder = Path(folder)
    lock = folder / f".{name}{LOCK_SUFFIX}"
    try:
        for _ in range(3):  # tries again after taking over a stale lock, or after an empty folder was removed
            folder.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                continue  # a run that wrote nothing removed the (empty) folder it had made
            except FileExistsError:
                holder = _holder(lock)
                if holder is not None:
                    raise UserError(f"{folder}: another run ({holder}) is writing {name} there; wait for it to "
                                    f"end or choose another --save_dir (remove {lock.name} if no such run is "
                                    "active)") from None
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(f"{socket.gethostname()} {os.getpid()}\n")
            # Staging folders of this set are left only by a writer that was killed (it held the claim).
            for stale in folder.glob(f".{glob.escape(name)}.*{STAGING_SUFFIX}"):
                shutil.rmtree(stale, ignore_errors=True)
            return lock
    except OSError as err:
        raise UserError(f"{folder}: cannot write there ({err.strerror}); choose a writable --save_dir") from None
    raise UserError(f"{folder}: another run keeps claiming {name}; wait for it to end or choose another --save_dir")


def _holder(lock: Path) -> str | None:
    """Who holds ``lock`` (``"process P on HOST"``), or None when it is stale (its process on this host is gone)."""
    try:
        host, pid = lock.read_text().split()
        pid = int(pid)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return f"lock {lock.name}"  # being written, or not ours: assume live
    if host == socket.gethostname() and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
    return f"process {pid} on {host}"


def release(lock: Path) -> None:
    """Give back a claim from :func:`claim` (a lock already gone is fine)."""
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()


def write_set(targets: Sequence[Path], write: Callable[[dict[Path, Path]], None], overwrite: bool,
              others: Sequence[Path] = (), name: str = "") -> None:
    """Write the files (or folders) ``targets`` of one set together and publish them only when all are complete.

    Args:
        targets: the set's paths, all in one folder, in publication order (the sidecar last).
        write: writes each target's content to the staged path it is given (``{target: staged path}``).
        overwrite: replace an existing set; its ``others`` (old files the new set does not write, e.g. an
            SD map of an earlier ensemble run) are removed with it. Without it an existing target or other
            stops the publication.
        others: the set's other possible paths.
        name: the set's name, for the staging folder and messages.

    Raises:
        UserError: a target exists (without ``overwrite``), or writing failed (a full disk, a permission):
            nothing of the new set remains and the old set is as it was.
    """
    folder = targets[0].parent
    name = name or targets[0].name
    staging = folder / f".{name}.{secrets.token_hex(6)}{STAGING_SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        try:
            staged = {target: staging / target.name for target in targets}
            write(staged)
            _publish(staged, [*targets, *others], staging, overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:
        raise UserError(f"{folder}: {err.strerror or err} while writing {name}; nothing of it was kept "
                        "(free space or fix the folder, then run again)") from None


def _publish(staged: dict[Path, Path], old: Sequence[Path], staging: Path, overwrite: bool) -> None:
    """Move the old set into ``staging``, then each staged file onto its target; undo both on a failure."""
    existing = [path for path in old if path.exists() or path.is_symlink()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]} exists; pass --overwrite True to replace it")
    aside = staging / ".old"
    aside.mkdir()
    moved: list[Path] = []
    placed: list[Path] = []
    try:
        for path in existing:
            os.rename(path, aside / path.name)
            moved.append(path)
        for target, source in staged.items():
            _place(source, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            remove_path(target)
        for path in moved:
            os.rename(aside / path.name, path)
        raise


def _place(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``, failing if ``target`` appeared meanwhile (exclusive hard link for files)."""
    if source.is_dir():
        if target.exists() or target.is_symlink():
            raise _appeared(target)
        os.rename(source, target)
        return
    try:
        os.link(source, target)
    except FileExistsError:
        raise _appeared(target) from None
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
        if target.exists() or target.is_symlink():
            raise _appeared(target) from None
        os.rename(source, target)


def _appeared(target: Path) -> UserError:
    return UserError(f"{target} appeared while this run wrote it (another run?); nothing of this set was kept")
