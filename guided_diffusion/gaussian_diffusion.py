"""The Gaussian diffusion process: schedules, forward noising, reverse sampling, losses.

Reverse sampling reads the model once, in :meth:`GaussianDiffusion.denoiser`, and
runs a sampler of :mod:`guided_diffusion.samplers` by name over it.

All tables are float64 numpy arrays of length ``num_timesteps``; they are
indexed on the timesteps' device and cast to float32 only when used. Tensors
are (N, C, ...) with any spatial shape.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .losses import discretized_gaussian_log_likelihood, normal_kl
from .samplers import get_sampler
from .samplers.ddim import ddim_step
from .samplers.ddpm import ddpm_step
from .samplers.interface import Generator, Prediction, Step
from .samplers.steps import extract, randn


def get_named_beta_schedule(name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Beta schedule by name: ``"linear"`` (Ho et al., scaled to the step count) or ``"cosine"`` (Nichol & Dhariwal)."""
    if name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if name == "cosine":
        return betas_for_alpha_bar(
            num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    raise ValueError(f"unknown noise schedule {name!r}; use 'linear' or 'cosine'")


def betas_for_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """Betas that discretise a continuous cumulative product ``alpha_bar(t)``, t in [0, 1]."""
    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return np.array(betas, dtype=np.float64)


class ModelMeanType(enum.Enum):
    """What the network predicts."""

    PREVIOUS_X = enum.auto()  # x_{t-1}
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise


class ModelVarType(enum.Enum):
    """How the reverse-process variance is obtained."""

    LEARNED = enum.auto()  # log variance predicted directly
    FIXED_SMALL = enum.auto()  # posterior variance beta-tilde
    FIXED_LARGE = enum.auto()  # beta
    LEARNED_RANGE = enum.auto()  # interpolation between the two, predicted in [-1, 1]


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE, plus the variational bound when the variance is learned
    RESCALED_MSE = enum.auto()  # same, with the bound rescaled as in the 1000-step setting
    KL = enum.auto()  # the variational bound only
    RESCALED_KL = enum.auto()

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def mean_flat(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the batch axis: (N, ...) -> (N,)."""
    return tensor.mean(dim=list(range(1, tensor.ndim)))


class GaussianDiffusion:
    """A diffusion process with ``betas`` (float64, length T), and how to read a model's output.

    Args:
        betas: the noise schedule, values in (0, 1).
        model_mean_type / model_var_type / loss_type: see the enums.
        rescale_timesteps: feed the network timesteps scaled to [0, 1000).
        timestep_map: original timestep of each step (respaced processes); identity by default.
        original_num_steps: length of the schedule ``timestep_map`` indexes into.
    """

    def __init__(
        self,
        *,
        betas: np.ndarray,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
        timestep_map: Sequence[int] | None = None,
        original_num_steps: int | None = None,
    ):
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps

        self.betas = np.asarray(betas, dtype=np.float64)
        if self.betas.ndim != 1 or not ((self.betas > 0) & (self.betas < 1)).all():
            raise ValueError(
                "betas must be a 1-D array with values in (0, 1); the linear schedule needs at least 21 steps"
            )
        if len(self.betas) < 2:
            raise ValueError("a diffusion process needs at least 2 steps (a single kept step is t = 0, no denoising)")
        self.num_timesteps = len(self.betas)
        self.timestep_map = np.asarray(
            range(self.num_timesteps) if timestep_map is None else timestep_map, dtype=np.int64
        )
        self.original_num_steps = original_num_steps or self.num_timesteps

        alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)

        # The posterior q(x_{t-1} | x_t, x_0) is Gaussian: mean coef1 x_0 + coef2 x_t, variance beta-tilde.
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The variance is 0 at t = 0; its log is clipped to the value at t = 1.
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    # -- forward process ---------------------------------------------------

    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mean, variance and log variance of q(x_t | x_0)."""
        mean = extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = extract(1.0 - self.alphas_cumprod, t, x_start.shape)
        log_variance = extract(self.log_one_minus_alphas_cumprod, t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0): x_start (N, ...), t (N,) step indices, noise like x_start."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def warm_start(self, x_start: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The starting sample of a warm start: ``x_start`` diffused to this process's last step.

        With a process truncated at step T0 (``start_timestep``), sampling from
        here instead of from pure noise is Come-Closer-Diffuse-Faster (Chung et al., 2022).
        """
        last = torch.full((x_start.shape[0],), self.num_timesteps - 1, device=x_start.device, dtype=torch.long)
        return self.q_sample(x_start, last, noise=noise)

    def q_posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        mean = (
            extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        variance = extract(self.posterior_variance, t, x_t.shape)
        log_variance = extract(self.posterior_log_variance_clipped, t, x_t.shape)
        return mean, variance, log_variance

    # -- reading the model -------------------------------------------------

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The timesteps the network sees for step indices ``t``: original steps, optionally rescaled."""
        mapped = torch.from_numpy(self.timestep_map).to(t.device)[t]
        if self.rescale_timesteps:
            return mapped.float() * (1000.0 / self.original_num_steps)
        return mapped

    def p_mean_variance(
        self,
        model: Callable,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Apply the model to get p(x_{t-1} | x_t) and the prediction of x_0.

        Args:
            model: called as ``model(x, model_timesteps(t), **model_kwargs)``.
            x: (N, C, ...) the sample at step t; t: (N,) step indices.
            clip_denoised: clip the x_0 prediction to [-1, 1].
            denoised_fn: applied to the x_0 prediction before clipping.

        Returns:
            dict with 'mean', 'variance', 'log_variance', 'pred_xstart', 'model_output'.
        """
        model_kwargs = model_kwargs or {}
        c = x.shape[1]
        model_output = model(x, self.model_timesteps(t), **model_kwargs)

        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            if model_output.shape[1] != 2 * c:
                raise ValueError(f"a learned-variance model must output {2 * c} channels, got {model_output.shape[1]}")
            model_output, var_values = torch.split(model_output, c, dim=1)
            if self.model_var_type == ModelVarType.LEARNED:
                log_variance = var_values
            else:
                min_log = extract(self.posterior_log_variance_clipped, t, x.shape)
                max_log = extract(np.log(self.betas), t, x.shape)
                frac = (var_values + 1) / 2
                log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            if self.model_var_type == ModelVarType.FIXED_LARGE:
                # beta, with the first entry set to the posterior variance so the log is finite.
                var_table = np.append(self.posterior_variance[1], self.betas[1:])
                log_table = np.log(var_table)
            else:
                var_table, log_table = self.posterior_variance, self.posterior_log_variance_clipped
            variance = extract(var_table, t, x.shape) * torch.ones_like(x)
            log_variance = extract(log_table, t, x.shape) * torch.ones_like(x)

        def process_xstart(x0: torch.Tensor) -> torch.Tensor:
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-1, 1) if clip_denoised else x0

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            pred_xstart = process_xstart(self._predict_xstart_from_xprev(x, t, model_output))
            mean = model_output
        else:
            if self.model_mean_type == ModelMeanType.START_X:
                pred_xstart = process_xstart(model_output)
            else:
                pred_xstart = process_xstart(self._predict_xstart_from_eps(x, t, model_output))
            mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "model_output": model_output,
        }

    def _predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

    def _predict_xstart_from_xprev(self, x_t: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor) -> torch.Tensor:
        return (
            extract(1.0 / self.posterior_mean_coef1, t, x_t.shape) * xprev
            - extract(self.posterior_mean_coef2 / self.posterior_mean_coef1, t, x_t.shape) * x_t
        )

    def _predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart
        ) / extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape)

    # -- sampling: the registry's samplers over this process --------------

    def denoiser(self, model: Callable, clip_denoised: bool = True, denoised_fn: Callable | None = None,
                 model_kwargs: dict | None = None) -> ModelDenoiser:
        """``model`` read by this process, as samplers call it (:class:`~.samplers.Denoiser`).

        :meth:`sample_loop_progressive` runs each step under ``torch.no_grad``; a sampler
        called directly on this denoiser tracks gradients as the model does.

        Args:
            model: called as ``model(x, model_timesteps(t), **model_kwargs)``.
            clip_denoised: clip each x_0 prediction to [-1, 1].
            denoised_fn: applied to each x_0 prediction before clipping.
        """
        return ModelDenoiser(self, model, clip_denoised, denoised_fn, model_kwargs)

    def sample_loop(self, name: str, model: Callable, shape: Sequence[int], noise: torch.Tensor | None = None,
                    **kwargs) -> torch.Tensor:
        """Sample from the model with the sampler ``name``; see :meth:`sample_loop_progressive`."""
        return _final_sample(self.sample_loop_progressive(name, model, shape, noise=noise, **kwargs))

    def sample_loop_progressive(
        self,
        name: str,
        model: Callable,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        generator: Generator = None,
        **options,
    ) -> Iterator[Step]:
        """Yield every step of the sampler ``name`` (a key of :data:`~.samplers.SAMPLERS`), from the last step
        of this (respaced, possibly truncated) process down to 0, one network evaluation each.

        Args:
            name: the sampler; an unknown name raises :class:`~.errors.UserError`.
            shape: (N, C, ...) of the samples.
            noise: the initial x_T (the caller's, e.g. a crop of a whole-volume field, or a warm start);
                drawn from ``generator`` when None.
            clip_denoised, denoised_fn, model_kwargs: how the model is read (:meth:`denoiser`).
            device: where to sample; the model's by default.
            progress: show a tqdm bar over the steps.
            generator: one ``torch.Generator`` or one per batch element, for every random draw.
            options: the sampler's keyword options, e.g. ``eta`` (DDIM's noise level), ``order`` (dpmpp2m's).

        Yields:
            Per step, {"sample": the next sample (N, C, ...), "pred_xstart": this step's x_0 (N, C, ...)}.
        """
        sampler = get_sampler(name)
        x = self._initial_sample(model, shape, noise, device, generator)
        denoiser = self.denoiser(model, clip_denoised, denoised_fn, model_kwargs)
        yield from _without_grad(sampler(denoiser, x, generator=generator, progress=progress, **options))

    def _initial_sample(self, model, shape, noise, device, generator) -> torch.Tensor:
        """x_T on the device to sample on (the model's by default): ``noise``, or drawn from ``generator``."""
        if device is None:
            device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
        x = noise.to(device) if noise is not None else randn(shape, generator, device)
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"noise shape {tuple(x.shape)} differs from the requested shape {tuple(shape)}")
        return x

    # -- the paper's API: ancestral sampling and DDIM, by their own names ---

    def p_sample(
        self,
        model: Callable,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        generator: Generator = None,
    ) -> Step:
        """One ancestral step x_t -> x_{t-1} (:func:`~.samplers.ddpm.ddpm_step`); returns 'sample' and 'pred_xstart'."""
        return ddpm_step(self.denoiser(model, clip_denoised, denoised_fn, model_kwargs), x, t, generator)

    def p_sample_loop(self, model: Callable, shape: Sequence[int], noise: torch.Tensor | None = None,
                      **kwargs) -> torch.Tensor:
        """Sample from the model by ancestral sampling; see :meth:`p_sample_loop_progressive`."""
        return _final_sample(self.p_sample_loop_progressive(model, shape, noise, **kwargs))

    def p_sample_loop_progressive(
        self,
        model: Callable,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        generator: Generator = None,
    ) -> Iterator[Step]:
        """Yield the output of every ancestral step, from t = T-1 down to 0: the sampler ``"ddpm"`` of
        :meth:`sample_loop_progressive`, whose arguments these are."""
        return self.sample_loop_progressive("ddpm", model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                            device, progress, generator)

    def ddim_sample(
        self,
        model: Callable,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        eta: float = 0.0,
        generator: Generator = None,
    ) -> Step:
        """One DDIM step x_t -> x_{t-1} (Song et al.; :func:`~.samplers.ddim.ddim_step`); ``eta`` = 0 is
        deterministic."""
        return ddim_step(self.denoiser(model, clip_denoised, denoised_fn, model_kwargs), x, t, eta, generator)

    def ddim_sample_loop(self, model: Callable, shape: Sequence[int], noise: torch.Tensor | None = None,
                         **kwargs) -> torch.Tensor:
        """Sample from the model with DDIM; see :meth:`ddim_sample_loop_progressive`."""
        return _final_sample(self.ddim_sample_loop_progressive(model, shape, noise, **kwargs))

    def ddim_sample_loop_progressive(
        self,
        model: Callable,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        eta: float = 0.0,
        generator: Generator = None,
    ) -> Iterator[Step]:
        """Yield the output of every DDIM step: the sampler ``"ddim"`` of :meth:`sample_loop_progressive`."""
        return self.sample_loop_progressive("ddim", model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                            device, progress, generator, eta=eta)

    def dpmpp2m_sample_loop(self, model: Callable, shape: Sequence[int], noise: torch.Tensor | None = None,
                            **kwargs) -> torch.Tensor:
        """Sample from the model with DPM-Solver++(2M); see :meth:`dpmpp2m_sample_loop_progressive`."""
        return _final_sample(self.dpmpp2m_sample_loop_progressive(model, shape, noise, **kwargs))

    def dpmpp2m_sample_loop_progressive(
        self,
        model: Callable,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        generator: Generator = None,
        order: int = 2,
    ) -> Iterator[Step]:
        """Yield the output of every DPM-Solver++(2M) step: the sampler ``"dpmpp2m"`` of
        :meth:`sample_loop_progressive`. ``order=1`` is DDIM with eta = 0; ``generator`` only draws
        ``noise`` when it is None, since the solver is deterministic."""
        return self.sample_loop_progressive("dpmpp2m", model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                            device, progress, generator, order=order)

    # -- training ----------------------------------------------------------

    def _vb_terms_bpd(
        self, model: Callable, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
        clip_denoised: bool = True, model_kwargs: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """One term of the variational bound in bits per dimension: (N,) 'output' and 'pred_xstart'."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = mean_flat(decoder_nll) / math.log(2.0)
        # At the first step the bound is the decoder's negative log-likelihood.
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def min_snr_weights(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma loss weights (Hang et al., ICCV 2023) of step indices ``t`` (N,): (N,) float32.

        With ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``, the weight of the MSE of an
        epsilon prediction is ``min(SNR, gamma) / SNR`` and of an x_0 prediction
        ``min(SNR, gamma)``: either way the x_0 error is weighted by ``min(SNR, gamma)``.
        """
        snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        if self.model_mean_type == ModelMeanType.EPSILON:
            weights = np.minimum(snr, gamma) / snr
        elif self.model_mean_type == ModelMeanType.START_X:
            weights = np.minimum(snr, gamma)
        else:
            raise ValueError("Min-SNR weighting needs a model that predicts the noise or x_0")
        return extract(weights, t, t.shape)

    def training_losses(
        self,
        model: Callable,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict | None = None,
        noise: torch.Tensor | None = None,
        snr_gamma: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Per-sample training losses for x_start (N, C, ...) at step indices t (N,).

        ``snr_gamma`` > 0 weights the MSE term by :meth:`min_snr_weights` (the
        variational bound of a learned variance keeps its weight); 0 leaves it as it is.

        Returns a dict of (N,) tensors: 'loss' (what to minimise), and 'mse'
        (unweighted) and 'vb' where they apply.
        """
        if snr_gamma and self.loss_type.is_vb():
            raise ValueError("Min-SNR weighting weights the MSE loss; this process trains the variational bound only")
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms: dict[str, torch.Tensor] = {}

        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False,
                                               model_kwargs=model_kwargs)["output"]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms

        model_output = model(x_t, self.model_timesteps(t), **model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            c = x_t.shape[1]
            model_output, var_values = torch.split(model_output, c, dim=1)
            # The bound trains the variance only; the mean is trained by the MSE.
            frozen = torch.cat([model_output.detach(), var_values], dim=1)
            terms["vb"] = self._vb_terms_bpd(lambda *args, **kwargs: frozen, x_start, x_t, t,
                                             clip_denoised=False)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                # The MSE term is much smaller than the bound; rescale as in the 1000-step setting.
                terms["vb"] = terms["vb"] * self.num_timesteps / 1000.0

        target = {
            ModelMeanType.PREVIOUS_X: lambda: self.q_posterior_mean_variance(x_start, x_t, t)[0],
            ModelMeanType.START_X: lambda: x_start,
            ModelMeanType.EPSILON: lambda: noise,
        }[self.model_mean_type]()
        terms["mse"] = mean_flat((target - model_output) ** 2)
        mse = terms["mse"] * self.min_snr_weights(t, snr_gamma) if snr_gamma else terms["mse"]
        terms["loss"] = mse + terms.get("vb", 0.0)
        return terms


@dataclass(frozen=True)
class ModelDenoiser:
    """A model read by a process, as samplers call it (:class:`~.samplers.Denoiser`); see
    :meth:`GaussianDiffusion.denoiser`. Respacing's timestep map, learned variances, ``denoised_fn`` and
    clipping are all applied by :meth:`GaussianDiffusion.p_mean_variance`."""

    process: GaussianDiffusion
    model: Callable
    clip_denoised: bool = True
    denoised_fn: Callable | None = None
    model_kwargs: dict | None = None

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return self.process.alphas_cumprod

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        return self.process.alphas_cumprod_prev

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        """The model's :class:`~.samplers.Prediction` for ``x`` (N, C, ...) at step indices ``t`` (N,)."""
        out = self.process.p_mean_variance(self.model, x, t, self.clip_denoised, self.denoised_fn, self.model_kwargs)
        eps = self.process._predict_eps_from_xstart(x, t, out["pred_xstart"])
        return Prediction(out["pred_xstart"], eps, out["mean"], out["log_variance"])


def _without_grad(steps: Iterator[Step]) -> Iterator[Step]:
    """``steps``, each computed under ``torch.no_grad``; the caller's code between steps keeps its own mode."""
    while True:
        with torch.no_grad():
            out = next(steps, None)
        if out is None:
            return
        yield out


def _final_sample(steps: Iterator[Step]) -> torch.Tensor:
    """Run a progressive sampling loop to its end; its last ``sample``."""
    final = None
    for final in steps:
        pass
    return final["sample"]
