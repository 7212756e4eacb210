"""Ancestral sampling (Ho et al., 2020), the paper's default: every step a draw from the model's p(x_{t-1} | x_t)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .interface import Denoiser, Generator, Step
from .steps import not_last, randn, reverse_steps


def ddpm_step(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, generator: Generator = None) -> Step:
    """One ancestral step from ``x`` (N, C, ...) at step indices ``t`` (N,): the model's mean plus its
    standard deviation times fresh noise from ``generator``; no noise where ``t`` is 0."""
    out = denoiser.predict(x, t)
    noise = randn(x.shape, generator, x.device).to(x.dtype)
    sample = out.mean + not_last(t, x) * torch.exp(0.5 * out.log_variance) * noise
    return {"sample": sample, "pred_xstart": out.pred_xstart}


def sample_ddpm(denoiser: Denoiser, x: torch.Tensor, *, generator: Generator = None, eta: float = 0.0,
                progress: bool = False) -> Iterator[Step]:
    """Ancestral sampling over every step of the process, one network evaluation each.

    The variance of each step is the model's (fixed by the process or learned),
    so ``eta`` is not used. Other arguments: :class:`~.interface.SamplerFn`.
    """
    for _, t in reverse_steps(len(denoiser.alphas_cumprod), x, progress):
        out = ddpm_step(denoiser, x, t, generator)
        yield out
        x = out["sample"]
