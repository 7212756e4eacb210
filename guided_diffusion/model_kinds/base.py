"""What a model kind is: how it is built and trained, how it denoises patches and volumes, what it records.

A :class:`ModelKind` is one entry of the registry in :mod:`guided_diffusion.model_kinds`.
Its methods are the only places that know what a kind does; everything else
(``scripts/train.py``, ``scripts/test.py``, validation, benchmarks) asks the
kind by name. Two small interfaces connect a kind to the rest:

* a :class:`PatchPredictor` denoises a batch of patches in model units (the
  reverse process of a diffusion model, one forward pass of a regression
  network); patch jobs, training validation and benchmarks call it;
* a :class:`VolumeMethod` denoises one whole volume on the model grid over the
  MPI ranks, and says what the sidecar records about it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .. import dist_util
from ..checkpoint import load_model_weights
from ..denoise import PatchingOptions, VolumeDenoiser, VolumeResult, job_offsets
from ..errors import UserError
from ..inference_network import InferenceNetwork
from ..networks import UNET_FLAGS, create_unet
from ..patch_jobs import PatchPredictor, SamplingOptions
from ..pet.patches import PatchPlan
from ..precision import choose_precision, precision_note


@dataclass
class RunPlan:
    """How one run's volumes are cut and dealt: a patch plan per volume (None: no patches), the jobs dealt
    before each volume (so the run stays balanced over ranks), and this rank's total of patch-steps."""

    plans: list[PatchPlan | None]
    offsets: list[int]
    rank_steps: int


class VolumeMethod:
    """Denoises whole volumes on the model grid; a kind's :meth:`ModelKind.prepare` makes one per run.

    Attributes:
        record: what the sidecar's ``sampler`` entry says about the process.
        what: the results' description ("DDPM3D denoised", "Gaussian filtered", ...).
        details: short notes for the description ("ddpm 10 steps", "K=1", ...).
        on_step: called with the number of patch-steps done (progress bars).
    """

    def __init__(self, record: dict, what: str, details: Sequence[str]):
        self.record, self.what, self.details = record, what, list(details)
        self.on_step: Callable[[int], None] = lambda n: None

    def plan_run(self, shapes: Sequence[tuple[int, int, int]], names: Sequence[str] = ()) -> RunPlan:
        """The run's plans for volumes of these model-grid shapes (X, Y, Z), named ``names`` in messages.

        Raises:
            UserError: naming the volume, when its patches cannot be planned with the run's flags.
        """
        return RunPlan([None] * len(shapes), [0] * len(shapes), 0)

    def denoise(self, suv: np.ndarray, spacing: np.ndarray, name: str, job_offset: int) -> tuple[VolumeResult | None,
                                                                                                     dict]:
        """Denoise one (X, Y, Z) SUV volume on the model grid (``spacing``: mm per axis); collective.

        Returns:
            The result (on rank 0; None elsewhere) and what the sidecar adds for this volume.
        """
        raise NotImplementedError


class NetworkMethod(VolumeMethod):
    """A network's :class:`VolumeMethod`: its patches shared over the ranks by a :class:`VolumeDenoiser`."""

    def __init__(self, denoiser: VolumeDenoiser, record: dict, what: str, details: list[str]):
        super().__init__(record, what, details)
        self.denoiser = denoiser
        self.denoiser.on_step = lambda n: self.on_step(n)

    def plan_run(self, shapes: Sequence[tuple[int, int, int]], names: Sequence[str] = ()) -> RunPlan:
        plans = []
        for index, shape in enumerate(shapes):
            try:
                plans.append(self.denoiser.plan(shape))
            except UserError as err:
                raise UserError(f"{names[index] if index < len(names) else f'volume {index + 1}'}: {err}") from err
        steps = self.denoiser.rank_job_count(plans) * self.denoiser.predictor.steps
        return RunPlan(plans, job_offsets(plans, self.denoiser.sampling.num_ensemble), steps)

    def denoise(self, suv: np.ndarray, spacing: np.ndarray, name: str, job_offset: int) -> tuple[VolumeResult | None,
                                                                                                     dict]:
        return self.denoiser.denoise(suv, name, job_offset), {}


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: what it is, how it is built, trained and run.

    Attributes:
        name: the registry key (``--model_kind``, the checkpoint's and the fit file's ``model_kind``).
        summary: one line for help texts and the README.
        deterministic: every ensemble member would be the same (``--num_ensemble`` > 1 is refused).
        trainable: ``scripts/train.py`` trains it (a Gaussian is fitted by scripts/fit_gaussian.py instead).
        warm_starts: it samples from ``--start_timestep`` (a step, or ``auto`` with a fitted ``--warm_start_scale``).
        needs_model_file: denoising needs ``--model_path`` (a network's weights; a Gaussian's fit file), unless
            flags of its own select the kind (:meth:`selected_by`).
    """

    name: str
    summary: str
    deterministic: bool = True
    trainable: bool = True
    warm_starts: bool = False
    needs_model_file: bool = True
    #: Flags added after models of this kind were first trained, with the value a model whose records (training
    #: flags, card) lack the flag was trained with.
    predating_flags: ClassVar[dict] = {}
    #: The flags of :func:`~guided_diffusion.networks.create_unet` the kind sets itself.
    network_flags: ClassVar[tuple[str, ...]] = UNET_FLAGS

    def selected_by(self, flags: argparse.Namespace, stored: dict) -> bool:
        """Whether flags of this kind's own, or the model file's record ``stored``, select it whatever
        ``--model_kind`` says (a network kind is chosen by ``--model_kind`` alone)."""
        return False

    # -- building and training ---------------------------------------------

    def network(self, flags: dict) -> torch.nn.Module:
        """The untrained network for the model flags ``flags`` (the paper's names)."""
        raise UserError(f"a {self.name} model has no network")

    def process(self, flags: dict, start_timestep: int = 0) -> Any:
        """What turns network outputs into losses and samples (the diffusion process, the regression loss)."""
        raise UserError(f"a {self.name} model has no network")

    def build(self, flags: dict, start_timestep: int = 0) -> tuple[torch.nn.Module, Any]:
        """The network and its process; ``start_timestep`` truncates a diffusion process (a sampling option)."""
        return self.network(flags), self.process(flags, start_timestep)

    def check_train_flags(self, args: argparse.Namespace, patch_size: tuple[int, int, int]) -> None:
        """Refuse training flags this kind cannot use, naming the flag."""
        if not self.trainable:
            raise UserError(f"--model_kind {self.name}: not trained by scripts/train.py")

    def validation_predictor(self, process: Any, flags: dict, sampler: str, respacing: str,
                             start_timestep: int, clip_max: float = 1.0) -> PatchPredictor:
        """The predictor training validation scores crops with (``--val_sampler``, ``--val_respacing``,
        ``--val_start_timestep`` for a diffusion model), clipping estimates to [-1, ``clip_max``]."""
        raise UserError(f"a {self.name} model is not validated during training")

    # -- denoising ------------------------------------------------------------

    def predictor(self, process: Any, sampling: SamplingOptions) -> PatchPredictor:
        """The predictor that denoises patches with ``process`` as ``sampling`` says."""
        raise UserError(f"a {self.name} model has no patch predictor")

    def prepare(self, settings: Any) -> VolumeMethod:
        """The run's :class:`VolumeMethod` from its :class:`~guided_diffusion.denoising_run.RunSettings`;
        collective (every rank builds its copy of the network)."""
        raise NotImplementedError

    def unet(self, flags: dict, conditional: bool, out_channels: int) -> torch.nn.Module:
        """The paper's UNet from ``flags`` with this kind's inputs and outputs."""
        return create_unet(**{key: flags[key] for key in self.network_flags}, conditional=conditional,
                           out_channels=out_channels)


def load_network(kind: ModelKind, settings: Any, start_timestep: int = 0) -> tuple[InferenceNetwork, Any]:
    """The trained network of a run, on this rank's device, ready to sample, and its process; collective."""
    def build() -> tuple[InferenceNetwork, Any]:
        model, process = kind.build(settings.model_flags, start_timestep)
        load_model_weights(model, settings.model_path, weights=settings.flags["weights"])
        model = model.to(dist_util.dev()).eval()
        precision = choose_precision(settings.flags["precision"], settings.model_flags["use_fp16"], dist_util.dev())
        note = precision_note(precision, dist_util.dev())
        if note and dist_util.rank() == 0:
            print(f"note: {note}", file=sys.stderr, flush=True)
        return InferenceNetwork(model, precision, settings.flags["channels_last"], settings.flags["compile"]), process

    return dist_util.agree(build)


def network_denoiser(network: InferenceNetwork, predictor: PatchPredictor, settings: Any) -> VolumeDenoiser:
    """A run's :class:`VolumeDenoiser` for ``network`` and ``predictor`` with the run's patching and intensity
    (its clip ``suv_max`` and ``data_scale``)."""
    flags = settings.flags
    patching = PatchingOptions(patch_axial=flags["patch_axial"], max_patch_inplane=flags["max_patch_inplane"],
                               overlap=flags["patch_overlap"], blend=flags["blend"])
    return VolumeDenoiser(network, predictor, settings.sampling, patching, settings.suv_max, flags["keep_saturated"],
                          data_scale=settings.data_scale)


def network_record(network: InferenceNetwork, settings: Any) -> dict:
    """What the sidecar records about how the network ran."""
    return {"precision": network.precision, "channels_last": settings.flags["channels_last"],
            "compile": settings.flags["compile"], "dims": network.dims}
