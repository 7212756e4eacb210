"""Training checkpoints in a result folder: names, atomic writes, finding the newest, pruning.

Files of step ``s`` (seven digits):

* ``checkpoint_{s:07d}.pt``: the full training state, a dict with
  ``"format": CHECKPOINT_FORMAT`` that ``torch.load(weights_only=True)`` reads
  (see :class:`~guided_diffusion.train_util.TrainLoop` for its keys);
* ``ema_{rate}_{s:07d}.pt``: the plain EMA ``state_dict`` of each rate, for
  denoising or fine-tuning.

The EMA files of a step are written before its checkpoint, and every file goes
to a temporary name first and is then renamed, so a run killed at any moment
leaves the newest *complete* checkpoint as the newest ``checkpoint_*.pt``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .atomic import atomic_write

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d{7,})\.pt")
EMA_PATTERN = re.compile(r"ema_(.+)_(\d{7,})\.pt")


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"checkpoint_{step:07d}.pt"


def ema_path(folder: str | Path, rate: str, step: int) -> Path:
    return Path(folder) / f"ema_{rate}_{step:07d}.pt"


def _steps(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("checkpoint_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name)))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest ``checkpoint_*.pt`` in ``folder`` (None if there is none)."""
    folder = Path(folder)
    steps = _steps(folder) if folder.is_dir() else []
    return checkpoint_path(folder, steps[-1]) if steps else None


def write_checkpoint(folder: str | Path, step: int, state: dict, ema_states: dict[str, dict]) -> Path:
    """Write the EMA files of ``step``, then its checkpoint, each atomically; return the checkpoint's path."""
    for rate, ema in ema_states.items():
        atomic_write(ema_path(folder, rate, step), lambda tmp, ema=ema: torch.save(ema, tmp))
    return atomic_write(checkpoint_path(folder, step), lambda tmp: torch.save(state, tmp))


def prune_checkpoints(folder: str | Path, keep_last: int) -> None:
    """Delete the checkpoints and EMA files of all but the newest ``keep_last`` steps (0 keeps all)."""
    folder = Path(folder)
    steps = _steps(folder)
    if keep_last <= 0 or len(steps) <= keep_last:
        return
    oldest_kept = steps[-keep_last]
    for path in folder.glob("*.pt"):
        match = CHECKPOINT_PATTERN.fullmatch(path.name) or EMA_PATTERN.fullmatch(path.name)
        if match and int(match.groups()[-1]) < oldest_kept:
            path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files left by a save that was killed (``.checkpoint_*`` / ``.ema_*`` ``.tmp.pt``)."""
    for pattern in (".checkpoint_*.tmp.pt", ".ema_*.tmp.pt"):
        for path in Path(folder).glob(pattern):
            path.unlink(missing_ok=True)
