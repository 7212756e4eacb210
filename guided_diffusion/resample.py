"""Timestep samplers for training: which diffusion steps each batch element is trained on.

By default every step of the process is trained on. A model that always runs
from a warm start (a low dose diffused to a step ``T0``) never meets the steps
above ``T0``: ``max_timestep`` T > 0 trains on steps ``t <= T`` only
(``--max_train_timestep``), with the same importance weighting over that range.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError
from .gaussian_diffusion import GaussianDiffusion


def create_named_schedule_sampler(name: str, diffusion: GaussianDiffusion, max_timestep: int = 0) -> ScheduleSampler:
    """``"uniform"`` or ``"loss-second-moment"``, over the steps ``t <= max_timestep`` (0: every step)."""
    if name == "uniform":
        return UniformSampler(diffusion, max_timestep=max_timestep)
    if name == "loss-second-moment":
        return LossSecondMomentResampler(diffusion, max_timestep=max_timestep)
    raise ValueError(f"unknown schedule sampler {name!r}; use 'uniform' or 'loss-second-moment'")


def check_max_train_timestep(max_timestep: int, diffusion_steps: int) -> int:
    """``max_timestep`` when it is 0 (every step) or a step in [1, ``diffusion_steps``); else UserError naming
    --max_train_timestep."""
    if max_timestep != 0 and not 1 <= max_timestep < diffusion_steps:
        raise UserError(f"--max_train_timestep {max_timestep} must be a step in [1, {diffusion_steps}) of the "
                        f"--diffusion_steps {diffusion_steps} process (0: train on every step)")
    return max_timestep


def trained_steps(diffusion: GaussianDiffusion, max_timestep: int = 0) -> int:
    """How many of the process's step indices are trained on: those whose original step is ``<= max_timestep``
    (the first ones, as a respaced process keeps its steps in order); all of them for 0."""
    if not max_timestep:
        return diffusion.num_timesteps
    check_max_train_timestep(max_timestep, diffusion.original_num_steps)
    return int(np.searchsorted(diffusion.timestep_map, max_timestep, side="right"))


class ScheduleSampler(ABC):
    """A distribution over timesteps, with importance weights that keep the loss unbiased."""

    @abstractmethod
    def weights(self) -> np.ndarray:
        """Unnormalised positive weights, one per trained step index 0, 1, ... (float64; length T, or fewer
        with ``max_timestep``)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must keep to resume the sampler (tensors only; empty when stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def sample(
        self, batch_size: int, device: torch.device | str, generator: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` timesteps; returns (timesteps (N,) long, loss weights (N,) float32)."""
        rng = generator if generator is not None else np.random.default_rng()
        w = self.weights()
        p = w / w.sum()
        indices = rng.choice(len(p), size=batch_size, p=p)
        weights = 1.0 / (len(p) * p[indices])
        return (
            torch.from_numpy(indices).long().to(device),
            torch.from_numpy(weights).float().to(device),
        )


class UniformSampler(ScheduleSampler):
    """Every trained step equally likely."""

    def __init__(self, diffusion: GaussianDiffusion, *, max_timestep: int = 0):
        self._weights = np.ones(trained_steps(diffusion, max_timestep), dtype=np.float64)

    def weights(self) -> np.ndarray:
        return self._weights


class LossAwareSampler(ScheduleSampler):
    """A sampler that adapts to the losses seen; every rank must call ``update_with_local_losses``."""

    def update_with_local_losses(self, local_ts: torch.Tensor, local_losses: torch.Tensor) -> None:
        """Share this rank's (timestep, loss) pairs with all ranks and update the weights identically."""
        ts, losses = local_ts.detach().cpu().tolist(), local_losses.detach().float().cpu().tolist()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Objects, not tensors: works on every backend (gloo cannot all_gather CUDA tensors).
            everyone: list = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, (ts, losses))
            ts = [t for rank_ts, _ in everyone for t in rank_ts]
            losses = [loss for _, rank_losses in everyone for loss in rank_losses]
        self.update_with_all_losses(ts, losses)

    @abstractmethod
    def update_with_all_losses(self, ts: list[int], losses: list[float]) -> None:
        """Update the weights from every rank's (timestep, loss) pairs."""


class LossSecondMomentResampler(LossAwareSampler):
    """Sample steps in proportion to the root mean square of their recent losses.

    Uniform until every trained step has ``history_per_term`` losses recorded; a
    ``uniform_prob`` share of probability always stays uniform.
    """

    def __init__(self, diffusion: GaussianDiffusion, history_per_term: int = 10, uniform_prob: float = 0.001, *,
                 max_timestep: int = 0):
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        steps = trained_steps(diffusion, max_timestep)
        self._history = np.zeros((steps, history_per_term), dtype=np.float64)
        self._counts = np.zeros(steps, dtype=np.int64)

    def weights(self) -> np.ndarray:
        if not (self._counts == self.history_per_term).all():
            return np.ones(len(self._counts), dtype=np.float64)
        w = np.sqrt(np.mean(self._history**2, axis=-1))
        w /= w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / len(w)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"history": torch.from_numpy(self._history.copy()), "counts": torch.from_numpy(self._counts.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the loss history; one kept for another range of steps (another ``max_timestep``) is not
        restored, so the weights start uniform again."""
        if tuple(state["history"].shape) != self._history.shape:
            return
        self._history = state["history"].numpy().astype(np.float64)
        self._counts = state["counts"].numpy().astype(np.int64)

    def update_with_all_losses(self, ts: list[int], losses: list[float]) -> None:
        for t, loss in zip(ts, losses):
            if self._counts[t] == self.history_per_term:
                self._history[t, :-1] = self._history[t, 1:]
                self._history[t, -1] = loss
            else:
                self._history[t, self._counts[t]] = loss
                self._counts[t] += 1
