"""Samplers of the reverse process, one function each, in k-diffusion's manner: explicit arguments, no state.

A sampler walks a diffusion process's own discrete steps, from the last
(noisiest) down to step 0, then to the clean data. It sees the model only
through a denoiser ``denoise(x, i) -> x_0``: the model's (clipped) prediction
of the clean data, shape (N, C, ...), for the sample ``x`` (N, C, ...) at step
index ``i`` of the process. :class:`~guided_diffusion.gaussian_diffusion.GaussianDiffusion`
builds that denoiser from the network, so the timestep mapping of respaced
processes and learned-variance outputs are handled in one place.

Notation (Lu et al., 2022): ``alpha_t = sqrt(alpha_bar_t)``, ``sigma_t =
sqrt(1 - alpha_bar_t)``, ``lambda_t = log(alpha_t / sigma_t)`` (half the log
signal-to-noise ratio), and ``x_t = alpha_t x_0 + sigma_t eps``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


def with_progress(steps: Sequence[int], progress: bool) -> Iterable[int]:
    """``steps``, behind a tqdm bar when ``progress``."""
    if not progress:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps)


def dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    alphas_cumprod: np.ndarray,
    order: int = 2,
    progress: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """DPM-Solver++(2M): the multistep second-order solver of the probability-flow ODE, data-prediction form.

    From Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of
    Diffusion Probabilistic Models" (2022), Algorithm 2. The solver visits
    every step of the process, ``len(alphas_cumprod) - 1`` down to 0, with one
    denoiser evaluation each, then steps to the clean data (``alpha_bar = 1``).
    A step from s to t, with ``h = lambda_t - lambda_s``, is::

        x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D

    where ``D`` is the latest ``x_0`` prediction (first order; this is DDIM
    with eta = 0) or, at second order, its linear extrapolation from the
    previous one, ``D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev`` with
    ``r = h_prev / h``. Three steps are first order: the first (no previous
    prediction); the step to step 0, the solver's final step on the model's
    grid ("lower order final"; the paper lowers it for few steps, here it is
    lowered always, since ``lambda`` jumps up near t = 0 and extrapolating
    into that jump made 10 to 40 steps worse than DDIM on Gaussian data);
    and the step from step 0 to the clean data, where sigma = 0 makes the
    update exactly ``D``, so the last sample is the last evaluation's ``x_0``.

    Args:
        denoise: ``denoise(x, i)``, the model's ``x_0`` (N, C, ...) for the sample at step index ``i``.
        x: (N, C, ...) the sample at the process's last step: pure noise, or a warm start.
        alphas_cumprod: (T,) float64 cumulative alphas of the process's steps 0..T-1.
        order: 2 for DPM-Solver++(2M), 1 for its first-order form (DDIM, eta = 0).
        progress: show a tqdm bar over the steps.

    Yields:
        Per step, {"sample": the next sample (N, C, ...), "pred_xstart": this step's ``x_0`` (N, C, ...)}.
    """
    if order not in (1, 2):
        raise ValueError(f"DPM-Solver++ order must be 1 or 2, got {order}")
    steps = range(len(alphas_cumprod) - 1, -1, -1)
    alpha_bar = np.asarray(alphas_cumprod, dtype=np.float64)[::-1]  # in sampling order
    alpha, sigma = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
    lam = np.log(alpha) - np.log(sigma)
    x0_prev = None
    for k, i in enumerate(with_progress(steps, progress)):
        x0 = denoise(x, i)
        if i == 0:
            x = x0  # to the clean data: sigma = 0, so the update is exactly D = x0
        else:
            h = lam[k + 1] - lam[k]
            d = x0
            if order == 2 and x0_prev is not None and i > 1:
                half_over_r = float(0.5 * h / (lam[k] - lam[k - 1]))
                d = (1 + half_over_r) * x0 - half_over_r * x0_prev
            x = float(sigma[k + 1] / sigma[k]) * x - float(alpha[k + 1] * np.expm1(-h)) * d
        yield {"sample": x, "pred_xstart": x0}
        x0_prev = x0
