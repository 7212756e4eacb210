"""The paper's kind: a conditional denoising diffusion model, sampled patch by patch.

The network is the :class:`~guided_diffusion.unet.SuperResModel` (``x_t`` and the
low dose side by side); denoising runs a reverse process chosen by name from
:mod:`guided_diffusion.samplers`, from pure noise or from a warm start (the low
dose diffused to step ``T0``; ``--start_timestep auto`` picks ``T0`` per volume
from its measured noise and the model's fitted ``--warm_start_scale``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from .. import dist_util
from ..denoise import VolumeDenoiser, VolumeResult, warm_start_for_volume
from ..gaussian_diffusion import GaussianDiffusion
from ..networks import diffusion_from_flags
from ..patch_jobs import SamplingOptions
from ..warm_start import AUTO
from .base import ModelKind, NetworkMethod, PatchPredictor, load_network, network_denoiser, network_record


@dataclass(frozen=True)
class ReverseProcess:
    """A diffusion model's :class:`~.base.PatchPredictor`: the reverse process of ``process`` with ``sampler``.

    Attributes:
        process: the (respaced, possibly warm-start-truncated) diffusion process.
        sampler: a name of :data:`guided_diffusion.samplers.SAMPLERS`.
        eta: DDIM's noise level.
        clip_denoised: clip each ``x_0`` prediction to [-1, ``clip_max``].
        warm_start: start from the low dose diffused to the process's last step, not from the noise alone.
    """

    process: GaussianDiffusion
    sampler: str
    eta: float = 0.0
    clip_denoised: bool = True
    warm_start: bool = False
    clip_max: float = 1.0
    uses_noise: ClassVar[bool] = True

    @property
    def steps(self) -> int:
        return self.process.num_timesteps

    def __call__(self, model: Callable, low: torch.Tensor, noise: torch.Tensor | None,
                 generators: Sequence[torch.Generator] | None,
                 on_step: Callable[[int], None] = lambda n: None) -> torch.Tensor:
        start = self.process.warm_start(low, noise) if self.warm_start else noise
        # The process clips to [-1, 1]; another bound is the estimate's own function.
        clip_elsewhere = self.clip_denoised and self.clip_max != 1.0
        loop = self.process.sample_loop_progressive(
            self.sampler, model, start.shape, noise=start, clip_denoised=self.clip_denoised and not clip_elsewhere,
            denoised_fn=partial(torch.clamp, min=-1.0, max=self.clip_max) if clip_elsewhere else None,
            model_kwargs={"low_res": low}, device=start.device, generator=generators, eta=self.eta)
        out = None
        with torch.inference_mode():
            for out in loop:
                on_step(len(low))
        return out["sample"]


class WarmStartMethod(NetworkMethod):
    """A diffusion model's volumes, each sampled from the warm start its own measured noise calls for."""

    def __init__(self, denoiser: VolumeDenoiser, record: dict, what: str, details: list[str], model_flags: dict,
                 predictor_at: Callable[[GaussianDiffusion], PatchPredictor], data_scale: float, scale: float):
        super().__init__(denoiser, record, what, details)
        self.full_process = diffusion_from_flags(model_flags, timestep_respacing="")
        self.model_flags, self.predictor_at, self.data_scale, self.scale = model_flags, predictor_at, data_scale, scale

    def denoise(self, suv: np.ndarray, spacing: np.ndarray, name: str, job_offset: int) -> tuple[VolumeResult | None,
                                                                                                     dict]:
        warm = dist_util.from_root(partial(warm_start_for_volume, suv, spacing, self.full_process.alphas_cumprod,
                                           self.data_scale, self.scale))
        process = diffusion_from_flags(self.model_flags, start_timestep=warm["start_timestep"])
        denoiser = self.denoiser.with_predictor(self.predictor_at(process))
        return denoiser.denoise(suv, name, job_offset), {"warm_start": warm}


class DiffusionKind(ModelKind):
    """The paper's conditional DDPM."""

    def network(self, flags: dict) -> torch.nn.Module:
        return self.unet(flags, conditional=True, out_channels=2 if flags["learn_sigma"] else 1)

    def process(self, flags: dict, start_timestep: int = 0) -> GaussianDiffusion:
        return diffusion_from_flags(flags, start_timestep=start_timestep)

    def check_train_flags(self, args: argparse.Namespace, patch_size: tuple[int, int, int]) -> None:
        """Every training flag applies to a diffusion model."""

    def validation_predictor(self, process: Any, flags: dict, sampler: str, respacing: str,
                             start_timestep: int, clip_max: float = 1.0) -> PatchPredictor:
        short = diffusion_from_flags(flags, timestep_respacing=respacing, start_timestep=start_timestep)
        return ReverseProcess(short, sampler, warm_start=start_timestep > 0, clip_max=clip_max)

    def predictor(self, process: GaussianDiffusion, sampling: SamplingOptions) -> PatchPredictor:
        return ReverseProcess(process, sampling.sampler, sampling.eta, sampling.clip_denoised, sampling.warm_start,
                              sampling.clip_max)

    def prepare(self, settings: Any) -> NetworkMethod:
        auto = settings.start_timestep == AUTO
        network, process = load_network(self, settings, 0 if auto else settings.start_timestep)
        sampling = settings.sampling
        denoiser = network_denoiser(network, self.predictor(process, sampling), settings)
        record = {**asdict(sampling), "steps": process.num_timesteps, "start_timestep": settings.start_timestep,
                  **network_record(network, settings)}
        start = f" from t={settings.start_timestep}" if settings.start_timestep else ""
        details = [f"{sampling.sampler} {process.num_timesteps} steps{start}", f"K={sampling.num_ensemble}"]
        what = f"DDPM{network.dims}D denoised"
        if not auto:
            return NetworkMethod(denoiser, record, what, details)
        return WarmStartMethod(denoiser, record, what, details, settings.model_flags,
                               lambda truncated: self.predictor(truncated, sampling), settings.data_scale,
                               settings.warm_start_scale)
