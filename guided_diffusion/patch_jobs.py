"""Patch jobs: denoising a list of (member, patch) jobs of one volume in one process; no MPI, no files.

A job is one (ensemble member, box) pair of a volume's patch plan.
Reproducibility: the initial noise of a volume and member is one field of the
padded shape, drawn from (seed, volume name, member); every patch starts from
its crop of that field (or, with a warm start, from its crop of the low-dose
volume diffused with that field), so overlapping patches agree where they
overlap. Any per-step noise (ancestral sampling, DDIM with eta > 0) comes
from a generator of the job itself. A job's result therefore does not depend
on which process samples it, nor on what else is in its batch.

What denoises a batch is the model kind's :class:`PatchPredictor` (a reverse
process; one forward pass, with no noise, for the one-pass baselines). A 2D network
(``model.dims == 2``) takes patches one axial slice deep, (X, Y, 1), as
(1, X, Y) images: every slice is denoised on its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .pet.patches import PatchPlan
from .sharding import batches

#: One (ensemble member, box index) pair.
Job = tuple[int, int]


class PatchPredictor(Protocol):
    """What denoises a batch of patches (a model kind's, see :mod:`guided_diffusion.model_kinds`).

    Attributes:
        steps: network evaluations per patch (progress bars count them).
        uses_noise: whether it starts from noise (each patch's crop of the volume's noise field).
    """

    steps: int
    uses_noise: bool

    def __call__(self, model: Callable, low: torch.Tensor, noise: torch.Tensor | None,
                 generators: Sequence[torch.Generator] | None,
                 on_step: Callable[[int], None] = lambda n: None) -> torch.Tensor:
        """(N, 1, Z, X, Y) low-dose patches ((N, 1, X, Y) for a 2D network), their starting noise (same shape;
        None unless ``uses_noise``) and one generator each for any later noise -> the (N, 1, ...) denoised
        patches; ``on_step(N)`` after each network evaluation."""


@dataclass(frozen=True)
class SamplingOptions:
    """How each patch is sampled.

    Attributes:
        sampler: a name of :data:`guided_diffusion.samplers.SAMPLERS`: "ddpm" (ancestral,
            the paper's default), "ddim" (deterministic when ``eta`` = 0) or "dpmpp2m"
            (DPM-Solver++(2M), deterministic); each runs over the steps the (respaced)
            process keeps.
        eta: DDIM noise level (0 = deterministic).
        clip_denoised: clip each x_0 prediction to [-1, ``clip_max``].
        clip_max: the model value of the intensity clip, ``--suv_max`` / data scale (1 when the data scale is
            the clip, the paper's mapping), so that clipping never caps what the data can hold.
        batch_size: patches per network call.
        seed: base seed of all noise.
        num_ensemble: samples per volume (K); K > 1 gives a voxel-wise standard deviation.
        warm_start: start from the low-dose patch diffused to the process's last step
            instead of from pure noise (Come-Closer-Diffuse-Faster, Chung et al. 2022);
            used with a process truncated by ``--start_timestep``.
    """

    sampler: str = "ddim"
    eta: float = 0.0
    clip_denoised: bool = True
    clip_max: float = 1.0
    batch_size: int = 4
    seed: int = 0
    num_ensemble: int = 1
    warm_start: bool = False


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (numpy SeedSequence), for ``torch.Generator.manual_seed``."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def name_key(name: str) -> int:
    """A stable integer for a volume name, so noise follows the volume, not its position in a list."""
    return zlib.crc32(name.encode("utf-8"))


def noise_field(padded_shape: tuple[int, int, int], seed: int, name: str, member: int) -> torch.Tensor:
    """Standard normal field of the padded (X, Y, Z) shape for one volume and ensemble member (CPU)."""
    generator = torch.Generator().manual_seed(mix_seed(seed, name_key(name), member))
    return torch.randn(padded_shape, generator=generator)


def to_network(box_array: np.ndarray | torch.Tensor, dims: int = 3) -> torch.Tensor:
    """(X, Y, Z) -> (1, Z, X, Y), the network's layout; for a 2D network (X, Y, 1) -> (1, X, Y)."""
    patch = torch.as_tensor(box_array).permute(2, 0, 1).unsqueeze(0)
    if dims == 2:
        if patch.shape[1] != 1:
            raise ValueError(f"a 2D network takes patches one slice deep, got {tuple(box_array.shape)}")
        return patch[:, 0]
    return patch


def from_network(patch: torch.Tensor) -> np.ndarray:
    """(1, Z, X, Y) -> (X, Y, Z) float32 numpy; (1, X, Y) (a 2D network's) -> (X, Y, 1)."""
    if patch.dim() == 3:
        patch = patch.unsqueeze(1)
    return patch[0].permute(1, 2, 0).float().cpu().numpy()


def sample_jobs(
    model: torch.nn.Module,
    predictor: PatchPredictor,
    options: SamplingOptions,
    plan: PatchPlan,
    cond: np.ndarray,
    name: str,
    jobs: Sequence[Job],
    on_step: Callable[[int], None] = lambda n: None,
) -> list[np.ndarray]:
    """Denoise ``jobs`` of one volume in batches of ``options.batch_size``.

    Args:
        model: the network; its parameters' device runs the batches, its ``dims``
            (3 if absent) says whether it takes volumes or slices.
        predictor: the model kind's patch predictor (a reverse process, one forward pass, ...):
            ``predictor(model, low, noise, generators, on_step)``; ``predictor.uses_noise`` says
            whether it takes the noise field's crops.
        plan: the volume's patch plan; ``cond`` is the low-dose volume in model
            units, padded to ``plan.padded_shape`` (X, Y, Z).
        name: the volume's name, part of every seed.
        jobs: (member, box) pairs; keeping a member's jobs together keeps one
            noise field in memory at a time.
        on_step: called with the batch size after every network evaluation (progress bars).

    Returns:
        One (X, Y, Z) float32 patch of ``plan.patch_size`` per job, in model units, in job order.
    """
    device = next(model.parameters()).device
    dims = getattr(model, "dims", 3)
    boxes = plan.boxes
    patches = []
    field_member, field = -1, None
    for batch in batches(list(jobs), options.batch_size):
        low = torch.stack([to_network(cond[boxes[box]], dims) for _, box in batch]).to(device)
        noise, generators = None, None
        if predictor.uses_noise:
            noises, generators = [], []
            for member, box in batch:
                if member != field_member:
                    field_member, field = member, noise_field(plan.padded_shape, options.seed, name, member)
                noises.append(to_network(field[boxes[box]], dims))
                generator = torch.Generator(device)
                generator.manual_seed(mix_seed(options.seed, name_key(name), member, box, 1))
                generators.append(generator)
            noise = torch.stack(noises).to(device)
        patches += [from_network(sample) for sample in predictor(model, low, noise, generators, on_step)]
    return patches
