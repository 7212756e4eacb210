"""Whole-volume denoising over MPI: patch jobs dealt to ranks, stitched on rank 0.

The work is three parts: :func:`~guided_diffusion.patch_jobs.sample_jobs`
samples a list of (member, box) jobs in one process;
:class:`~guided_diffusion.pet.patches.PatchBlender` and
:class:`~guided_diffusion.pet.ensemble.RunningMoments` stitch them; this module
is the thin MPI layer between: it deals the (member, box) jobs of a wave of
members round robin over the ranks, gathers them on rank 0, stitches them and
frees them before the next wave. A wave is one member for volumes with enough
patches to give every rank a full batch, so rank 0 holds one member's patches
plus the running moments whatever the ensemble size; small volumes put several
members in a wave, so all ranks work and members share batches. Results do not
depend on the number of ranks nor on the batch size (see ``patch_jobs``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import dist_util
from .errors import UserError
from .patch_jobs import Job, PatchPredictor, SamplingOptions, sample_jobs
from .pet.ensemble import RunningMoments
from .pet.intensity import model_to_suv, restore_saturated, suv_to_model
from .pet.noise_level import estimate_noise_sd
from .pet.patches import PatchBlender, PatchPlan, pad_shape, pad_volume, plan_patches
from .sharding import round_robin
from .warm_start import start_timestep_for_noise


@dataclass(frozen=True)
class PatchingOptions:
    """How volumes are cut: ``patch_axial`` voxels along Z, in-plane as large as the volume
    up to ``max_patch_inplane``, at least ``overlap`` voxels shared between neighbours
    (``axial_overlap`` along Z when set), blended with ``blend`` ("linear" or "gaussian").

    A 2D network takes :meth:`slices`: patches one slice deep, no axial overlap.
    """

    patch_axial: int = 96
    max_patch_inplane: int = 320
    overlap: int = 10
    blend: str = "linear"
    axial_overlap: int | None = None

    def slices(self) -> PatchingOptions:
        """The same in-plane patching, one axial slice per patch (for a 2D network)."""
        return replace(self, patch_axial=1, axial_overlap=0)


def make_plan(shape: tuple[int, int, int], patching: PatchingOptions, divisor: int) -> PatchPlan:
    """Patch plan for a (X, Y, Z) volume of model-grid voxels; in-plane sizes are multiples of the network's ``divisor``.

    Along an axis that one patch covers (a volume no thicker than the patch), a
    patch has no neighbour to blend with, so the overlap there is lowered to fit
    the patch (a 4-voxel-thin volume is planned with an overlap of 3, not refused).

    Raises:
        UserError: naming ``--patch_overlap`` and ``--patch_axial`` / ``--max_patch_inplane``,
            when the overlap is not smaller than the patches along an axis that needs several.
    """
    cap = max(divisor, patching.max_patch_inplane // divisor * divisor)
    patch = (*(min(cap, -(-s // divisor) * divisor) for s in shape[:2]), patching.patch_axial)
    multiple = (divisor, divisor, 1)
    axial_overlap = patching.overlap if patching.axial_overlap is None else patching.axial_overlap
    padded = pad_shape(shape, patch, multiple)
    overlap = tuple(o if n > p else min(o, p - 1)
                    for o, p, n in zip((patching.overlap, patching.overlap, axial_overlap), patch, padded))
    for axis, (o, p) in enumerate(zip(overlap, patch)):
        if o >= p:
            flag = "--patch_axial" if axis == 2 else "--max_patch_inplane"
            raise UserError(
                f"--patch_overlap {o} is not smaller than the {p}-voxel patches ({flag}) that a volume of {shape} "
                f"voxels on the model grid needs several of along {'XYZ'[axis]}; lower --patch_overlap below {p} "
                f"or raise {flag}"
            )
    return plan_patches(shape, patch, overlap, multiple=multiple)


@dataclass
class VolumeResult:
    """Denoised SUV volume (ensemble mean), its standard deviation (K > 1), and timings in seconds."""

    mean: np.ndarray
    std: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)


def warm_start_for_volume(suv: np.ndarray, voxel_size: float | Sequence[float], alphas_cumprod: np.ndarray,
                          data_scale: float, scale: float) -> dict:
    """The warm start of ``--start_timestep auto`` for one (X, Y, Z) SUV volume on the model grid.

    Args:
        voxel_size: mm, one value or one per axis.
        alphas_cumprod: the full process's ``alpha_bar`` per step, shape (T,).
        data_scale: the SUV the model maps to 1 (the noise is compared in model units).
        scale: the ratio of step noise to input noise (``--warm_start_scale``).

    Returns:
        ``{"noise_sd_suv", "scale", "start_timestep"}``, the sidecar's record.
    """
    noise_sd = estimate_noise_sd(suv, voxel_size)
    return {"noise_sd_suv": noise_sd, "scale": scale,
            "start_timestep": start_timestep_for_noise(alphas_cumprod, noise_sd / data_scale, scale)}


def job_offsets(plans: Sequence[PatchPlan], num_ensemble: int) -> list[int]:
    """Jobs dealt before each volume of a run: carried into the dealing so the run stays balanced."""
    offsets, total = [], 0
    for plan in plans:
        offsets.append(total)
        total += num_ensemble * len(plan)
    return offsets


def member_waves(num_boxes: int, num_ensemble: int, batch_size: int) -> list[range]:
    """Ensemble members sampled, gathered and stitched together, in order.

    A wave is one member when the volume has enough patches to give every rank a
    full batch (whole-body volumes), so rank 0 holds one member's patches; for
    smaller volumes, enough members to keep every rank busy.
    """
    per_wave = min(num_ensemble, max(1, -(-dist_util.world_size() * batch_size // num_boxes)))
    return [range(m, min(m + per_wave, num_ensemble)) for m in range(0, num_ensemble, per_wave)]


def rank_jobs(num_boxes: int, members: range, job_offset: int) -> list[Job]:
    """This rank's (member, box) jobs of a wave: the volume's jobs dealt round robin, continuing ``job_offset``."""
    dealt = round_robin(len(members) * num_boxes, dist_util.world_size(), job_offset + members.start * num_boxes)
    return [(members.start + j // num_boxes, j % num_boxes) for j in dealt[dist_util.rank()]]


class VolumeDenoiser:
    """Denoise volumes with a network, sharing patches over MPI ranks.

    Args:
        model: the network, on this rank's device, in eval mode.
        predictor: what denoises a batch of patches with it, the model kind's
            (e.g. :class:`~guided_diffusion.model_kinds.ReverseProcess` for a diffusion model).
        sampling / patching: see the option classes (a 2D network, ``model.dims == 2``, takes
            ``patching.slices()``).
        suv_max: the intensity mapping's clip value (as in training).
        keep_saturated: voxels whose input exceeds ``suv_max`` keep the input value.
        data_scale: the SUV the model maps to 1 (as in training); None: ``suv_max``.
        on_step: called with the number of patch-steps done, for progress bars.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        predictor: PatchPredictor,
        sampling: SamplingOptions,
        patching: PatchingOptions,
        suv_max: float,
        keep_saturated: bool = False,
        on_step: Callable[[int], None] | None = None,
        data_scale: float | None = None,
    ):
        self.model = model
        self.predictor = predictor
        self.sampling = sampling
        # A 2D network denoises slice by slice.
        self.patching = patching.slices() if getattr(model, "dims", 3) == 2 else patching
        self.suv_max = suv_max
        self.data_scale = suv_max if data_scale is None else data_scale
        self.keep_saturated = keep_saturated
        self.on_step = on_step or (lambda n: None)

    def with_predictor(self, predictor: PatchPredictor) -> VolumeDenoiser:
        """The same denoiser with another predictor (e.g. a process truncated at a volume's own warm start)."""
        other = copy.copy(self)
        other.predictor = predictor
        return other

    def plan(self, shape: tuple[int, int, int]) -> PatchPlan:
        return make_plan(shape, self.patching, self.model.spatial_divisor)

    def rank_job_count(self, plans: Sequence[PatchPlan]) -> int:
        """How many jobs this rank samples for a run over volumes with these plans."""
        k = self.sampling.num_ensemble
        return sum(len(rank_jobs(len(plan), wave, offset)) for plan, offset in zip(plans, job_offsets(plans, k))
                   for wave in member_waves(len(plan), k, self.sampling.batch_size))

    def denoise(self, suv: np.ndarray, name: str, job_offset: int = 0) -> VolumeResult | None:
        """Denoise one (X, Y, Z) SUV volume; collective over all ranks.

        Args:
            job_offset: jobs dealt before this volume in the run (:func:`job_offsets`).

        Returns:
            The result on rank 0, None on the other ranks.
        """
        timings = {"sample_s": 0.0, "stitch_s": 0.0}
        plan = self.plan(suv.shape)
        cond = pad_volume(suv_to_model(suv, self.suv_max, self.data_scale), plan.padded_shape)
        is_root = dist_util.rank() == 0
        moments = RunningMoments(suv.shape) if is_root else None
        for wave in member_waves(len(plan), self.sampling.num_ensemble, self.sampling.batch_size):
            started = time.perf_counter()
            jobs = rank_jobs(len(plan), wave, job_offset)
            patches = sample_jobs(self.model, self.predictor, self.sampling, plan, cond, name, jobs, self.on_step)
            gathered = dist_util.COMM.gather(list(zip(jobs, patches)), root=0)
            del patches
            sampled = time.perf_counter()
            if is_root:
                for member in wave:
                    moments.add(self._stitch(plan, [(box, patch) for rank_jobs_done in gathered
                                                    for (m, box), patch in rank_jobs_done if m == member], suv))
            del gathered
            timings["sample_s"] += sampled - started
            timings["stitch_s"] += time.perf_counter() - sampled
        if not is_root:
            return None
        return VolumeResult(mean=moments.mean(), std=moments.std(), timings=timings)

    def _stitch(self, plan: PatchPlan, patches: list[tuple[int, np.ndarray]], suv: np.ndarray) -> np.ndarray:
        """One member's (box, patch) pairs from every rank -> its (X, Y, Z) SUV volume."""
        blender = PatchBlender(plan, self.patching.blend)
        for box, patch in patches:
            blender.add(box, patch)
        denoised = model_to_suv(blender.result(), self.data_scale)
        return restore_saturated(denoised, suv, self.suv_max) if self.keep_saturated else denoised
