"""What a sampler sees of the model and the process, and the one signature every sampler has.

A sampler walks a diffusion process's own discrete steps, from the last
(noisiest) down to step 0, then to the clean data. It sees the network only
through a :class:`Denoiser`, which
:meth:`GaussianDiffusion.denoiser <guided_diffusion.gaussian_diffusion.GaussianDiffusion.denoiser>`
builds: the timestep mapping of respaced processes, learned-variance outputs,
``denoised_fn`` and clipping are all handled there, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

#: One ``torch.Generator`` for the whole batch, one per batch element, or None (torch's global generator).
Generator = torch.Generator | Sequence[torch.Generator] | None

#: What a sampler yields per step: {"sample": the next sample, "pred_xstart": this step's x_0}, both (N, C, ...).
Step = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """The model's reading of samples ``x`` (N, C, ...) at step indices ``t`` (N,); every field is (N, C, ...).

    Attributes:
        pred_xstart: x_0, after ``denoised_fn`` and clipping.
        eps: the noise that ``pred_xstart`` implies, ``(x - sqrt(abar_t) x_0) / sqrt(1 - abar_t)``.
        mean: mean of the model's reverse step p(x_{t-1} | x_t): the posterior q(x_{t-1} | x_t, x_0) at
            ``pred_xstart``, or the network's own output when it predicts x_{t-1}.
        log_variance: log variance of that step: fixed by the process or learned by the network.
    """

    pred_xstart: torch.Tensor
    eps: torch.Tensor
    mean: torch.Tensor
    log_variance: torch.Tensor


class Denoiser(Protocol):
    """The network as samplers call it, on the steps 0..T-1 of one (respaced, possibly truncated) process.

    Attributes:
        alphas_cumprod: (T,) float64 cumulative alphas ``abar`` of the process's steps.
        alphas_cumprod_prev: (T,) float64 ``abar`` of the step before each (1 before step 0).
    """

    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        """The model's :class:`Prediction` for samples ``x`` (N, C, ...) at step indices ``t`` (N,) long."""


class SamplerFn(Protocol):
    """A sampler: a generator over the reverse process, in k-diffusion's manner (explicit arguments, no state).

    Every sampler takes every argument below and ignores those it has no use
    for (a deterministic sampler draws no noise; only DDIM has an ``eta``). A
    sampler may add keyword options of its own, with defaults.

    Args:
        denoiser: the model and the process's tables.
        x: (N, C, ...) the sample at the process's last step: pure noise, or a warm start.
        generator: one ``torch.Generator`` or one per batch element, for every noise drawn after ``x``.
        eta: DDIM's noise level (0 = deterministic).
        progress: show a tqdm bar over the steps.

    Yields:
        One :data:`Step` per network evaluation; the last one's ``sample`` is the result.
    """

    def __call__(self, denoiser: Denoiser, x: torch.Tensor, *, generator: Generator = None, eta: float = 0.0,
                 progress: bool = False) -> Iterator[Step]: ...
