"""One-pass kinds: a network that maps the low dose to the full dose in one forward pass.

The regression baseline (the paper's UNet trained on an L1 or L2 loss) and the
3D GAN baseline (that UNet trained against a patch discriminator) denoise alike:
one network call per batch of patches, no noise, no steps. They differ in
training only: the process that computes their losses. Both read the network's
output as ``--one_pass_output`` says (by default a correction to the input, so an
untrained network is the identity; see :mod:`guided_diffusion.regression`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..adversarial import MIN_DISC_INPUT, AdversarialProcess, PatchDiscriminator
from ..errors import UserError
from ..patch_jobs import SamplingOptions
from ..regression import ONE_PASS_OUTPUT_BEFORE_THE_FLAG, ONE_PASS_OUTPUTS, RegressionProcess
from .base import ModelKind, NetworkMethod, PatchPredictor, load_network, network_denoiser, network_record


@dataclass(frozen=True)
class OnePass:
    """A one-pass network's :class:`~.base.PatchPredictor`: ``process.predict``, clipped to [-1, ``clip_max``]
    if asked."""

    process: RegressionProcess
    clip_denoised: bool = True
    clip_max: float = 1.0
    steps: ClassVar[int] = 1
    uses_noise: ClassVar[bool] = False

    def __call__(self, model: Callable, low: torch.Tensor, noise: torch.Tensor | None,
                 generators: Sequence[torch.Generator] | None,
                 on_step: Callable[[int], None] = lambda n: None) -> torch.Tensor:
        with torch.inference_mode():
            estimate = self.process.predict(model, low, clip=self.clip_denoised, clip_max=self.clip_max)
        on_step(len(low))
        return estimate


def one_pass_output(flags: dict) -> str:
    """``--one_pass_output``, checked.

    Raises:
        UserError: naming the flag, for a value not in :data:`~guided_diffusion.regression.ONE_PASS_OUTPUTS`.
    """
    output = flags["one_pass_output"]
    if output not in ONE_PASS_OUTPUTS:
        raise UserError(f"--one_pass_output must be one of {', '.join(ONE_PASS_OUTPUTS)}, got {output!r}")
    return output


def regression_process(flags: dict) -> RegressionProcess:
    """The regression baseline's losses (``--regression_loss``, ``--one_pass_output``)."""
    return RegressionProcess(flags["regression_loss"], one_pass_output(flags))


def adversarial_process(flags: dict) -> AdversarialProcess:
    """The GAN's losses: ``--regression_loss`` plus ``--adv_weight`` times the discriminator's (``--disc_channels``);
    the generator's output read as ``--one_pass_output`` says."""
    return AdversarialProcess(flags["regression_loss"], flags["adv_weight"],
                              PatchDiscriminator(flags["dims"], flags["disc_channels"]), one_pass_output(flags))


@dataclass(frozen=True)
class OnePassKind(ModelKind):
    """A network denoising in one forward pass; ``make_process(flags)`` gives its training losses."""

    #: Models trained before --one_pass_output output the network's value itself.
    predating_flags: ClassVar[dict] = {"one_pass_output": ONE_PASS_OUTPUT_BEFORE_THE_FLAG}

    make_process: Callable[[dict], RegressionProcess] = regression_process

    def network(self, flags: dict) -> torch.nn.Module:
        return self.unet(flags, conditional=False, out_channels=1)

    def process(self, flags: dict, start_timestep: int = 0) -> RegressionProcess:
        return self.make_process(flags)

    def check_train_flags(self, args: argparse.Namespace, patch_size: tuple[int, int, int]) -> None:
        for flag in ("val_start_timestep", "max_train_timestep", "snr_gamma"):
            if getattr(args, flag):
                raise UserError(f"--{flag}: a {self.name} model has no diffusion steps; leave it at 0")

    def validation_predictor(self, process: Any, flags: dict, sampler: str, respacing: str,
                             start_timestep: int, clip_max: float = 1.0) -> PatchPredictor:
        return OnePass(process, clip_denoised=True, clip_max=clip_max)

    def predictor(self, process: RegressionProcess, sampling: SamplingOptions) -> PatchPredictor:
        return OnePass(process, sampling.clip_denoised, sampling.clip_max)

    def prepare(self, settings: Any) -> NetworkMethod:
        network, process = load_network(self, settings)
        denoiser = network_denoiser(network, self.predictor(process, settings.sampling), settings)
        flags = settings.flags
        record = {"process": f"{self.name}, one forward pass per patch", "output": process.output,
                  "batch_size": flags["batch_size"],
                  "clip_denoised": flags["clip_denoised"], **network_record(network, settings)}
        return NetworkMethod(denoiser, record, f"UNet{network.dims}D {self.name} denoised", ["one pass"])


@dataclass(frozen=True)
class GanKind(OnePassKind):
    """The 3D GAN baseline: trained with a discriminator, denoising as the regression does."""

    def check_train_flags(self, args: argparse.Namespace, patch_size: tuple[int, int, int]) -> None:
        super().check_train_flags(args, patch_size)
        if not args.adv_weight >= 0:
            raise UserError(f"--adv_weight must be 0 or more, got {args.adv_weight}")
        if args.disc_channels < 8 or args.disc_channels % 8:
            raise UserError(f"--disc_channels must be a positive multiple of 8, got {args.disc_channels}")
        if min(patch_size[:args.dims]) < MIN_DISC_INPUT:
            raise UserError(f"--patch_size {args.patch_size}: the GAN's discriminator needs crops of at least "
                            f"{MIN_DISC_INPUT} voxels on every axis")

