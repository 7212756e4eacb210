"""Training checkpoints in a result folder: names, atomic writes, finding the newest, pruning.

Files of step ``s`` (seven digits):

* ``checkpoint_{s:07d}.pt``: the full training state, a dict with
  ``"format": CHECKPOINT_FORMAT`` that ``torch.load(weights_only=True)`` reads
  (see :class:`~guided_diffusion.train_util.TrainLoop` for its keys);
* ``ema_{rate}_{s:07d}.pt``: the plain EMA ``state_dict`` of each rate, for
  denoising or fine-tuning;
* ``checkpoint_{s:07d}.card.json``, ``ema_{rate}_{s:07d}.card.json``: the model
  card of each (:mod:`guided_diffusion.model_card`), written after its weights.

The EMA files of a step are written before its checkpoint, and every file is
written atomically (a temporary name, then a rename; an object store publishes
an upload only when it is complete), so a run killed at any moment leaves the
newest *complete* checkpoint as the newest ``checkpoint_*.pt``. The folder may
be a local path or a cloud URL (see :mod:`guided_diffusion.storage`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from . import storage

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d{7,})\.pt")
EMA_PATTERN = re.compile(r"ema_(.+)_(\d{7,})\.pt")


def checkpoint_path(folder: str | Path, step: int) -> str | Path:
    return storage.join(folder, f"checkpoint_{step:07d}.pt")


def ema_path(folder: str | Path, rate: str, step: int) -> str | Path:
    return storage.join(folder, f"ema_{rate}_{step:07d}.pt")


def _steps(names: list[str]) -> list[int]:
    return sorted(int(m.group(1)) for name in names if (m := CHECKPOINT_PATTERN.fullmatch(name)))


def latest_checkpoint(folder: str | Path) -> str | Path | None:
    """The newest ``checkpoint_*.pt`` in ``folder`` (None if there is none)."""
    steps = _steps(storage.listdir(folder))
    return checkpoint_path(folder, steps[-1]) if steps else None


def write_checkpoint(folder: str | Path, step: int, state: dict, ema_states: dict[str, dict]) -> str | Path:
    """Write the EMA files of ``step``, then its checkpoint, each atomically; return the checkpoint's path."""
    for rate, ema in ema_states.items():
        storage.write_binary(ema_path(folder, rate, step), lambda f, ema=ema: torch.save(ema, f))
    return storage.write_binary(checkpoint_path(folder, step), lambda f: torch.save(state, f))


def prune_checkpoints(folder: str | Path, keep_last: int, sidecars: tuple[str, ...] = ()) -> None:
    """Delete the checkpoints and EMA files of all but the newest ``keep_last`` steps (0 keeps all).

    ``sidecars``: suffixes of files that live beside a weights file and go with it
    (``X.pt`` -> ``X<suffix>``, e.g. the model card's ``.card.json``).
    """
    names = storage.listdir(folder)
    steps = _steps(names)
    if keep_last <= 0 or len(steps) <= keep_last:
        return
    oldest_kept = steps[-keep_last]
    for name in names:
        weights = next((name[: -len(s)] + ".pt" for s in sidecars if name.endswith(s)), name)
        match = CHECKPOINT_PATTERN.fullmatch(weights) or EMA_PATTERN.fullmatch(weights)
        if match and int(match.groups()[-1]) < oldest_kept:
            storage.remove(storage.join(folder, name))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files left by a local save that was killed (``.checkpoint_*`` / ``.ema_*`` ``.tmp.*``:
    weights, and files beside them such as model cards).

    Object stores keep no temporaries: an interrupted upload is never published.
    """
    if storage.is_url(folder):
        return
    for pattern in (".checkpoint_*.tmp.*", ".ema_*.tmp.*"):
        for path in Path(folder).glob(pattern):
            path.unlink(missing_ok=True)
