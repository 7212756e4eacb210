"""Whole-volume denoising: patches of a volume, sampled on every rank, stitched on rank 0.

This module composes the layers (network and diffusion, runtime, PET domain);
``scripts/test.py`` only wires flags and files to it.

Reproducibility: the initial noise of a volume is one field of its padded
shape, drawn from (seed, volume name, ensemble member); every patch starts
from its crop of that field (or, with a warm start, from its crop of the
low-dose volume diffused with that field), so overlapping patches agree where
they overlap.
Any per-step noise (ancestral sampling, DDIM with eta > 0) comes from a
generator of the patch itself. The output therefore does not depend on the
number of ranks nor on the batch size.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import dist_util
from .gaussian_diffusion import GaussianDiffusion
from .pet.intensity import model_to_suv, restore_saturated, suv_to_model
from .pet.patches import PatchBlender, PatchPlan, pad_volume, plan_patches
from .sharding import batches, round_robin


@dataclass(frozen=True)
class SamplingOptions:
    """How each patch is sampled.

    Attributes:
        use_ddim: DDIM (deterministic when ``eta`` = 0) instead of ancestral sampling.
        eta: DDIM noise level (0 = deterministic).
        clip_denoised: clip each x_0 prediction to [-1, 1].
        batch_size: patches per network call.
        seed: base seed of all noise.
        num_ensemble: samples per volume (K); K > 1 gives a voxel-wise standard deviation.
        warm_start: start from the low-dose patch diffused to the process's last step
            instead of from pure noise (Come-Closer-Diffuse-Faster, Chung et al. 2022);
            used with a process truncated by ``--start_timestep``.
    """

    use_ddim: bool = True
    eta: float = 0.0
    clip_denoised: bool = True
    batch_size: int = 4
    seed: int = 0
    num_ensemble: int = 1
    warm_start: bool = False


@dataclass(frozen=True)
class PatchingOptions:
    """How volumes are cut: ``patch_axial`` voxels along Z, in-plane as large as the volume
    up to ``max_patch_inplane``, at least ``overlap`` voxels shared between neighbours,
    blended with ``blend`` ("linear" or "gaussian")."""

    patch_axial: int = 96
    max_patch_inplane: int = 320
    overlap: int = 10
    blend: str = "linear"


def make_plan(shape: tuple[int, int, int], patching: PatchingOptions, divisor: int) -> PatchPlan:
    """Patch plan for a (X, Y, Z) volume; in-plane sizes are multiples of the network's ``divisor``."""
    cap = max(divisor, patching.max_patch_inplane // divisor * divisor)
    inplane = [min(cap, -(-s // divisor) * divisor) for s in shape[:2]]
    return plan_patches(shape, (*inplane, patching.patch_axial), patching.overlap, multiple=(divisor, divisor, 1))


def _seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (numpy SeedSequence), for ``torch.Generator.manual_seed``."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def name_key(name: str) -> int:
    """A stable integer for a volume name, so noise follows the volume, not its position in a list."""
    return zlib.crc32(name.encode("utf-8"))


def noise_field(padded_shape: tuple[int, int, int], seed: int, name: str, member: int) -> torch.Tensor:
    """Standard normal field of the padded (X, Y, Z) shape for one volume and ensemble member (CPU)."""
    generator = torch.Generator().manual_seed(_seed(seed, name_key(name), member))
    return torch.randn(padded_shape, generator=generator)


@dataclass
class VolumeResult:
    """Denoised SUV volume (ensemble mean), its standard deviation (K > 1), and timings in seconds."""

    mean: np.ndarray
    std: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)


def _to_network(box_array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) -> (1, Z, X, Y), the network's layout."""
    tensor = torch.as_tensor(box_array)
    return tensor.permute(2, 0, 1).unsqueeze(0)


def _from_network(patch: torch.Tensor) -> np.ndarray:
    """(1, Z, X, Y) -> (X, Y, Z) float32 numpy."""
    return patch[0].permute(1, 2, 0).float().cpu().numpy()


class VolumeDenoiser:
    """Denoise volumes with a conditional diffusion model, sharing patches over MPI ranks.

    Args:
        model: the conditional UNet, on this rank's device, in eval mode.
        diffusion: the (respaced) diffusion process used for sampling.
        sampling / patching: see the option classes.
        suv_max: the intensity mapping's clip value (as in training).
        keep_saturated: voxels whose input exceeds ``suv_max`` keep the input value.
        on_step: called with the number of patch-steps done, for progress bars.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        diffusion: GaussianDiffusion,
        sampling: SamplingOptions,
        patching: PatchingOptions,
        suv_max: float,
        keep_saturated: bool = True,
        on_step: Callable[[int], None] | None = None,
    ):
        self.model = model
        self.diffusion = diffusion
        self.sampling = sampling
        self.patching = patching
        self.suv_max = suv_max
        self.keep_saturated = keep_saturated
        self.on_step = on_step or (lambda n: None)
        self.device = next(model.parameters()).device
        self.jobs_dealt = 0

    def plan(self, shape: tuple[int, int, int]) -> PatchPlan:
        return make_plan(shape, self.patching, self.model.spatial_divisor)

    def rank_job_count(self, plans: list[PatchPlan]) -> int:
        """How many (member, patch) jobs this rank will get for volumes with these plans, in order."""
        offset, count = self.jobs_dealt, 0
        for plan in plans:
            jobs = self.sampling.num_ensemble * len(plan)
            count += len(self._rank_share(jobs, offset))
            offset += jobs
        return count

    def _rank_share(self, num_jobs: int, offset: int) -> list[int]:
        """This rank's jobs among ``num_jobs``, after ``offset`` jobs were dealt (round robin)."""
        return round_robin(num_jobs, dist_util.world_size(), offset)[dist_util.rank()]

    def denoise(self, suv: np.ndarray, name: str) -> VolumeResult | None:
        """Denoise one (X, Y, Z) SUV volume; collective over all ranks.

        Returns:
            The result on rank 0, None on the other ranks.
        """
        start = time.perf_counter()
        plan = self.plan(suv.shape)
        cond = pad_volume(suv_to_model(suv, self.suv_max), plan.padded_shape)
        num_jobs = self.sampling.num_ensemble * len(plan)
        mine = self._rank_share(num_jobs, self.jobs_dealt)
        self.jobs_dealt += num_jobs

        results = self._sample_jobs(mine, plan, cond, name)
        sampled = time.perf_counter()
        gathered = dist_util.COMM.gather(results, root=0)
        if dist_util.rank() != 0:
            return None
        by_member: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(self.sampling.num_ensemble)]
        for rank_results in gathered:
            for job, patch in rank_results:
                member, box = divmod(job, len(plan))
                by_member[member].append((box, patch))
        # One member stitched at a time, summed into running moments: rank 0 holds
        # a single blender whatever the ensemble size (whole-body volumes are large).
        total = np.zeros(suv.shape, np.float64)
        total_sq = np.zeros(suv.shape, np.float64)
        for patches in by_member:
            blender = PatchBlender(plan, self.patching.blend)
            for box, patch in patches:
                blender.add(box, patch)
            patches.clear()
            denoised = model_to_suv(blender.result(), self.suv_max)
            if self.keep_saturated:
                denoised = restore_saturated(denoised, suv, self.suv_max)
            total += denoised
            total_sq += np.square(denoised, dtype=np.float64)
        k = self.sampling.num_ensemble
        mean = total / k
        std = np.sqrt(np.maximum(total_sq - k * mean**2, 0) / (k - 1)).astype(np.float32) if k > 1 else None
        timings = {"sample_s": sampled - start, "stitch_s": time.perf_counter() - sampled}
        return VolumeResult(mean=mean.astype(np.float32), std=std, timings=timings)

    def _sample_jobs(self, jobs: list[int], plan: PatchPlan, cond: np.ndarray, name: str):
        """Sample this rank's jobs (index = member * len(plan) + box); returns [(job, (X,Y,Z) patch)]."""
        boxes = plan.boxes
        # Jobs come in increasing order, member by member: one whole-volume field in memory at a time.
        field_member, field = -1, None
        results = []
        for batch in batches(jobs, self.sampling.batch_size):
            conds, noises, generators = [], [], []
            for job in batch:
                member, box = divmod(job, len(plan))
                if member != field_member:
                    field_member, field = member, noise_field(plan.padded_shape, self.sampling.seed, name, member)
                conds.append(_to_network(cond[boxes[box]]))
                noises.append(_to_network(field[boxes[box]]))
                generator = torch.Generator(self.device)
                generator.manual_seed(_seed(self.sampling.seed, name_key(name), member, box, 1))
                generators.append(generator)
            low = torch.stack(conds).to(self.device)
            noise = torch.stack(noises).to(self.device)
            if self.sampling.warm_start:
                noise = self.diffusion.warm_start(low, noise)
            samples = self._sample(low, noise, generators)
            results += [(job, _from_network(sample)) for job, sample in zip(batch, samples)]
        return results

    def _sample(self, low: torch.Tensor, noise: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Run the reverse process for a batch (N, 1, Z, X, Y); reports progress per step."""
        kwargs = {"noise": noise, "clip_denoised": self.sampling.clip_denoised, "model_kwargs": {"low_res": low},
                      "device": self.device, "generator": generators}
        if self.sampling.use_ddim:
            loop = self.diffusion.ddim_sample_loop_progressive(self.model, noise.shape, eta=self.sampling.eta, **kwargs)
        else:
            loop = self.diffusion.p_sample_loop_progressive(self.model, noise.shape, **kwargs)
        out = None
        for out in loop:
            self.on_step(len(low))
        return out["sample"]
