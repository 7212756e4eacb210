"""Training statistics: averaged over steps and ranks, printed and appended to ``progress.csv`` by rank 0."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import dist_util, storage

QUARTILES = ("loss_q0", "loss_q1", "loss_q2", "loss_q3")
TRAIN_COLUMNS = ("step", "samples", "loss", "mse", "vb", *QUARTILES, "grad_norm", "lr", "samples_per_s")


class ProgressLog:
    """Sums of statistics since the last row; :meth:`write` averages them over every rank.

    Args:
        path: the CSV file (``progress.csv``; a local path or a URL); only rank 0 touches it.
        extra_columns: further columns (validation scores), empty when not computed.
        start_step: rows after this step (left by a run killed before its next
            checkpoint) are dropped, so a resumed run does not log a step twice.
    """

    def __init__(self, path: str | Path, extra_columns: Sequence[str] = (), start_step: int = 0):
        self.path = path
        self.columns = (*TRAIN_COLUMNS, *extra_columns)
        self.sums: dict[str, list[float]] = {}
        if dist_util.rank() == 0:
            self._start_file(start_step)

    def _start_file(self, start_step: int) -> None:
        kept = []
        if storage.is_file(self.path):
            with storage.open_binary_for_read(self.path) as f:
                rows = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
                kept = [row for row in rows if row.get("step", "").isdigit() and int(row["step"]) <= start_step]
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        storage.write_binary(self.path, lambda f: f.write(text.getvalue().encode("utf-8")))

    def add(self, name: str, value: float, count: int = 1) -> None:
        """Add ``value`` (a sum over ``count`` items) to the statistic ``name``."""
        total = self.sums.setdefault(name, [0.0, 0])
        total[0] += float(value)
        total[1] += count

    def add_losses(self, losses: dict[str, torch.Tensor], t: torch.Tensor, num_timesteps: int) -> None:
        """Per-sample losses (N,) at timesteps ``t`` (N,): their means, and the loss by timestep quartile."""
        for name in ("loss", "mse", "vb"):
            if name in losses:
                self.add(name, losses[name].detach().sum().item(), len(t))
        quartile = (t.detach() * 4 // num_timesteps).cpu().numpy()
        loss = losses["loss"].detach().float().cpu().numpy()
        for q, name in enumerate(QUARTILES):
            chosen = quartile == q
            if chosen.any():
                self.add(name, float(loss[chosen].sum()), int(chosen.sum()))

    def write(self, step: int, values: dict[str, float]) -> dict[str, float]:
        """Average the sums over ranks (a collective), print and append one row with ``values``; reset the sums."""
        everyone = dist_util.COMM.allgather(self.sums)
        self.sums = {}
        merged: dict[str, np.ndarray] = {}
        for sums in everyone:
            for name, total in sums.items():
                merged[name] = merged.get(name, np.zeros(2)) + total
        row = {name: total[0] / total[1] for name, total in merged.items()}
        row.update(values, step=step)
        if dist_util.rank() == 0:
            tqdm.write(" ".join(f"{k} {_format(row[k])}" for k in self.columns if k in row))
            line = io.StringIO()
            csv.DictWriter(line, self.columns, restval="", extrasaction="ignore").writerow(row)
            storage.append_text(self.path, line.getvalue())
        return row


def _format(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e12):
        return str(int(value))
    return f"{value:.5g}"
