"""DDIM (Song et al., 2021): steps of the non-Markovian process with the same marginals; ``eta`` = 0 is deterministic."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .interface import Denoiser, Generator, Step
from .steps import extract, not_last, randn, reverse_steps


def ddim_step(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, eta: float = 0.0,
              generator: Generator = None) -> Step:
    """One DDIM step from ``x`` (N, C, ...) at step indices ``t`` (N,) to the step before.

    ``x_{t-1} = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1} - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1})``;
    ``z`` is drawn from ``generator`` only when ``eta`` > 0, and not where ``t`` is 0.
    """
    out = denoiser.predict(x, t)
    alpha_bar = extract(denoiser.alphas_cumprod, t, x.shape)
    alpha_bar_prev = extract(denoiser.alphas_cumprod_prev, t, x.shape)
    sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
    sample = out.pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * out.eps
    if eta > 0:
        sample = sample + not_last(t, x) * sigma * randn(x.shape, generator, x.device).to(x.dtype)
    return {"sample": sample, "pred_xstart": out.pred_xstart}


def sample_ddim(denoiser: Denoiser, x: torch.Tensor, *, generator: Generator = None, eta: float = 0.0,
                progress: bool = False) -> Iterator[Step]:
    """DDIM over every step of the process, one network evaluation each; arguments: :class:`~.interface.SamplerFn`."""
    for _, t in reverse_steps(len(denoiser.alphas_cumprod), x, progress):
        out = ddim_step(denoiser, x, t, eta, generator)
        yield out
        x = out["sample"]
