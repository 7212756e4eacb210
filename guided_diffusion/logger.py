"""The paper's ``logger`` module, kept for scripts written for its code: messages and tables of values.

:func:`configure` chooses the run's folder (``dir``, else ``$OPENAI_LOGDIR``,
else a new temporary folder) and creates it. Rank 0 then writes each
:func:`log` message to stdout and ``log.txt``, and each :func:`dumpkvs` table
to stdout and as a row of ``progress.csv``. Other ranks write nothing unless
``format_strs`` names outputs; their files then end in ``-rank001`` ... so
that ranks sharing a folder do not write one file.

Values are collected with :func:`logkv` (the last value counts) and
:func:`logkv_mean` (values averaged until the next :func:`dumpkvs`). Only
:func:`dumpkvs` of a logger configured with ``comm`` is a collective call.
Before :func:`configure`, messages go to rank 0's stdout and
:func:`get_dir` is None.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import dist_util, storage
from .errors import UserError

DEBUG, INFO, WARN, ERROR, DISABLED = 10, 20, 30, 40, 50
#: The outputs ``format_strs`` may name: stdout, ``log<suffix>.txt`` and ``progress<suffix>.csv``.
FORMATS = ("stdout", "log", "csv")


@dataclass
class _Logger:
    """Where this rank writes, and the values collected since the last table."""

    folder: str | Path | None
    formats: tuple[str, ...]
    suffix: str = ""
    comm: Any = None
    level: int = INFO
    values: dict[str, Any] = field(default_factory=dict)
    sums: dict[str, list[float]] = field(default_factory=dict)  # logkv_mean: name -> [sum, count]
    columns: list[str] | None = None  # progress.csv's header, read from the file on the first table

    def file(self, stem: str, extension: str) -> str | Path:
        return storage.join(self.folder, f"{stem}{self.suffix}.{extension}")


_current: _Logger | None = None


def _logger() -> _Logger:
    """The configured logger; before :func:`configure`, one that writes to rank 0's stdout only."""
    global _current
    if _current is None:
        _current = _Logger(folder=None, formats=("stdout",) if dist_util.rank() == 0 else ())
    return _current


def configure(dir: str | os.PathLike | None = None, format_strs: Sequence[str] | None = None, comm: Any = None,
              log_suffix: str = "") -> None:
    """Start logging into the folder ``dir`` (created if missing; a local path or a URL).

    Args:
        dir: the folder; None: ``$OPENAI_LOGDIR``, else a new folder ``openai-<date>-...`` in the
            temporary folder (one per rank: pass ``dir`` so that ranks share one).
        format_strs: outputs among :data:`FORMATS` (a list, or a comma-separated string); None: all of
            them on rank 0, none on other ranks.
        comm: an MPI communicator (e.g. ``dist_util.COMM``) over which :func:`dumpkvs` averages the
            :func:`logkv_mean` values; None: each rank averages its own.
        log_suffix: appended to the file names (``log<suffix>.txt``); other ranks add ``-rank<r>``.

    Raises:
        UserError: ``format_strs`` names an unknown output.
    """
    global _current
    rank = dist_util.rank()
    if isinstance(format_strs, str):
        format_strs = format_strs.split(",")
    formats = tuple(format_strs) if format_strs is not None else (FORMATS if rank == 0 else ())
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise UserError(f"logger.configure: format_strs {', '.join(unknown)} unknown; choose among "
                        f"{', '.join(FORMATS)}")
    folder = dir or os.getenv("OPENAI_LOGDIR") or tempfile.mkdtemp(prefix=time.strftime("openai-%Y-%m-%d-%H-%M-%S-"))
    if not storage.is_url(folder):
        folder = Path(folder).expanduser()
    storage.makedirs(folder)
    suffix = log_suffix + (f"-rank{rank:03d}" if rank else "")
    _current = _Logger(folder=folder, formats=formats, suffix=suffix, comm=comm)
    log(f"Logging to {folder}")


def get_dir() -> str | None:
    """The folder :func:`configure` chose, or None before it."""
    folder = _logger().folder
    return str(folder) if folder is not None else None


def set_level(level: int) -> None:
    """Show only messages of ``level`` (:data:`DEBUG`, :data:`INFO`, :data:`WARN`, :data:`ERROR`) and above."""
    _logger().level = level


def log(*args: Any, level: int = INFO) -> None:
    """Write the arguments, joined by spaces, as one line to this rank's outputs (when ``level`` is shown)."""
    logger = _logger()
    if level < logger.level:
        return
    line = " ".join(str(arg) for arg in args)
    if "stdout" in logger.formats:
        tqdm.write(line, file=sys.stdout)  # keeps progress bars intact
        sys.stdout.flush()
    if "log" in logger.formats and logger.folder is not None:
        storage.append_text(logger.file("log", "txt"), line + "\n")


def logkv(key: str, value: Any) -> None:
    """Record ``value`` under ``key`` for the next table (a later call replaces it)."""
    _logger().values[key] = value


def logkv_mean(key: str, value: float) -> None:
    """Add ``value`` to the average shown under ``key`` in the next table."""
    total = _logger().sums.setdefault(key, [0.0, 0])
    total[0] += float(value)
    total[1] += 1


def dumpkvs() -> dict[str, Any]:
    """Write the values recorded since the last call as a table (and a CSV row), forget them, return them.

    The :func:`logkv_mean` values are averaged over the ranks of ``comm`` when :func:`configure` had one:
    then every rank of it must call this together.
    """
    logger = _logger()
    sums = logger.sums
    if logger.comm is not None and logger.comm.Get_size() > 1:
        sums = {}
        for rank_sums in logger.comm.allgather(logger.sums):
            for key, (total, count) in rank_sums.items():
                merged = sums.setdefault(key, [0.0, 0])
                merged[0] += total
                merged[1] += count
    values = {**logger.values, **{key: total / count for key, (total, count) in sums.items()}}
    logger.values, logger.sums = {}, {}
    if not values:
        return values
    if "stdout" in logger.formats:
        tqdm.write(_table(values), file=sys.stdout)
        sys.stdout.flush()
    if "csv" in logger.formats and logger.folder is not None:
        _write_row(logger, values)
    return values


def _table(values: dict[str, Any]) -> str:
    """The values as a boxed two-column table, keys sorted."""
    cells = [(str(key), _format(value)) for key, value in sorted(values.items())]
    key_width = max(len(key) for key, _ in cells)
    value_width = max(len(value) for _, value in cells)
    rule = "-" * (key_width + value_width + 7)
    rows = [f"| {key:<{key_width}} | {value:<{value_width}} |" for key, value in cells]
    return "\n".join([rule, *rows, rule])


def _format(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return str(value)


def _write_row(logger: _Logger, values: dict[str, Any]) -> None:
    """Append ``values`` as a row of ``progress.csv``; rewrite the file (atomically) when new columns appear."""
    path = logger.file("progress", "csv")
    if logger.columns is None:  # the first table: continue a file an earlier run left in this folder
        logger.columns = _read_csv(path)[0]
    new = [key for key in values if key not in logger.columns]
    if new:
        logger.columns += new
        text = _csv_text(logger.columns, [*_read_csv(path)[1], values], header=True)
        storage.write_binary(path, lambda f: f.write(text.encode("utf-8")))
    else:
        storage.append_text(path, _csv_text(logger.columns, [values], header=False))


def _read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of the CSV file ``path``; empty when it does not exist."""
    if not storage.is_file(path):
        return [], []
    with storage.open_binary_for_read(path) as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _csv_text(columns: list[str], rows: list[dict[str, Any]], header: bool) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
