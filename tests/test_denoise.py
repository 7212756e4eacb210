"""Whole-volume denoising logic: stitching, noise, sharding, intensity (no MPI launcher)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, job_offsets, make_plan, member_waves, rank_jobs
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.networks import create_gaussian_diffusion
from guided_diffusion.patch_jobs import SamplingOptions, noise_field
from guided_diffusion.pet.ensemble import RunningMoments
from guided_diffusion.sharding import batches, round_robin


class IdentitySampler:
    """Stands in for a model kind's patch predictor: the 'sample' is the conditioning patch itself."""

    steps = 3
    uses_noise = True

    def __call__(self, model, low, noise, generators, on_step=lambda n: None):
        for _ in range(self.steps):
            on_step(len(low))
        return low.clone()


class NoiseSampler(IdentitySampler):
    """The 'sample' is the initial noise, to check how noise reaches the patches (one step)."""

    steps = 1

    def __call__(self, model, low, noise, generators, on_step=lambda n: None):
        on_step(len(low))
        return noise.clone()


class Divisor(torch.nn.Module):
    """Stands in for the UNet: only its parameter device and spatial divisor are used."""

    def __init__(self, divisor: int):
        super().__init__()
        self.spatial_divisor = divisor
        self.weight = torch.nn.Parameter(torch.zeros(1))


@pytest.mark.parametrize("shape", [(37, 45, 70), (5, 7, 3), (33, 16, 97)])
@pytest.mark.parametrize("overlap", [1, 4, 7])
@pytest.mark.parametrize("blend", ["linear", "gaussian"])
def test_identity_model_returns_the_input_exactly(shape, overlap, blend):
    rng = np.random.default_rng(0)
    suv = rng.gamma(2.0, 1.5, shape).astype(np.float32)
    suv.flat[::97] = 25.0  # above suv_max: restored from the input
    denoiser = VolumeDenoiser(
        Divisor(4), IdentitySampler(), SamplingOptions(batch_size=3),
        PatchingOptions(patch_axial=16, max_patch_inplane=16, overlap=overlap, blend=blend), suv_max=16.0,
        keep_saturated=True,
    )
    result = denoiser.denoise(suv, "vol")
    assert len(denoiser.plan(shape)) > 1 or max(shape) <= 16
    assert result.mean.shape == shape and result.std is None
    np.testing.assert_allclose(result.mean, suv, rtol=1e-6, atol=1e-6)


def test_saturated_voxels_are_clipped_when_not_kept():
    suv = np.full((8, 8, 8), 2.0, np.float32)
    suv[4, 4, 4] = 40.0
    denoiser = VolumeDenoiser(Divisor(4), IdentitySampler(), SamplingOptions(),
                              PatchingOptions(patch_axial=8, overlap=2), suv_max=16.0, keep_saturated=False)
    assert denoiser.denoise(suv, "v").mean[4, 4, 4] == pytest.approx(16.0)


def test_patches_start_from_crops_of_one_noise_field_and_batching_does_not_matter():
    suv = np.ones((12, 12, 30), np.float32)
    patching = PatchingOptions(patch_axial=12, max_patch_inplane=8, overlap=4)
    results = [
        VolumeDenoiser(Divisor(4), NoiseSampler(), SamplingOptions(batch_size=b, seed=5, num_ensemble=2),
                       patching, suv_max=16.0, keep_saturated=False).denoise(suv, "subject").mean
        for b in (1, 4)
    ]
    np.testing.assert_array_equal(results[0], results[1])
    plan = make_plan(suv.shape, patching, 4)
    fields = [noise_field(plan.padded_shape, 5, "subject", m).numpy()[:12, :12, :30] for m in range(2)]
    # Overlapping patches agree, so the stitched result is the field itself (clamped at 0, in SUV).
    expected = np.mean([np.maximum(f, 0) * 16.0 for f in fields], axis=0)
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5)


def test_noise_depends_on_seed_name_and_member():
    a = noise_field((4, 4, 4), 0, "a", 0)
    assert torch.equal(a, noise_field((4, 4, 4), 0, "a", 0))
    for other in (noise_field((4, 4, 4), 1, "a", 0), noise_field((4, 4, 4), 0, "b", 0),
                  noise_field((4, 4, 4), 0, "a", 1)):
        assert not torch.equal(a, other)


def test_ensemble_mean_and_standard_deviation_match_the_members():
    suv = np.ones((8, 8, 8), np.float32)
    patching = PatchingOptions(patch_axial=8, overlap=2)
    denoiser = VolumeDenoiser(Divisor(4), NoiseSampler(), SamplingOptions(num_ensemble=3, seed=4), patching,
                              suv_max=16.0, keep_saturated=False)
    result = denoiser.denoise(suv, "v")
    padded = make_plan(suv.shape, patching, 4).padded_shape
    members = np.stack([np.maximum(noise_field(padded, 4, "v", m).numpy()[:8, :8, :8], 0) * 16.0 for m in range(3)])
    np.testing.assert_allclose(result.mean, members.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.std, members.std(axis=0, ddof=1), rtol=1e-4, atol=1e-4)


def test_plan_respects_network_divisor_and_inplane_cap():
    plan = make_plan((37, 45, 70), PatchingOptions(patch_axial=32, max_patch_inplane=30, overlap=5), 8)
    assert plan.patch_size == (24, 24, 32)
    assert all(s % 8 == 0 for s in plan.padded_shape[:2])
    whole = make_plan((37, 45, 70), PatchingOptions(patch_axial=96, max_patch_inplane=320, overlap=10), 16)
    assert whole.patch_size[:2] == (48, 48) and len(whole) == 1


def test_round_robin_balances_across_calls():
    world = 3
    counts = [0] * world
    offset = 0
    for n in (2, 1, 5, 1):
        shares = round_robin(n, world, offset)
        assert sorted(i for share in shares for i in share) == list(range(n))
        for r in range(world):
            counts[r] += len(shares[r])
        offset += n
    assert max(counts) - min(counts) <= 1
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


class StartProcess:
    """A diffusion process truncated at step 10 whose reverse process returns its start sample unchanged."""

    def __init__(self):
        self.process = create_gaussian_diffusion(steps=100, start_timestep=10, timestep_respacing="5")
        self.num_timesteps = self.process.num_timesteps
        self.warm_start = self.process.warm_start

    def sample_loop_progressive(self, sampler, model, shape, noise, **_):
        yield {"sample": noise.clone()}


def test_warm_start_begins_from_the_diffused_low_dose():
    process = StartProcess()
    assert list(process.process.timestep_map) == [0, 2, 5, 8, 10]
    suv = np.random.default_rng(0).gamma(2.0, 1.0, (8, 8, 12)).astype(np.float32)
    patching = PatchingOptions(patch_axial=8, max_patch_inplane=8, overlap=4)
    sampling = SamplingOptions(seed=2, warm_start=True)
    result = VolumeDenoiser(Divisor(4), MODEL_KINDS["diffusion"].predictor(process, sampling), sampling, patching,
                            suv_max=16.0, keep_saturated=False).denoise(suv, "w").mean
    plan = make_plan(suv.shape, patching, 4)
    field = noise_field(plan.padded_shape, 2, "w", 0).numpy()[:8, :8, :12]
    abar = process.process.alphas_cumprod[-1]
    expected = np.maximum(np.sqrt(abar) * suv / 16.0 + np.sqrt(1 - abar) * field, 0) * 16.0
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_rank_job_count_matches_the_jobs_sampled():
    patching = PatchingOptions(patch_axial=8, max_patch_inplane=8, overlap=2)
    denoiser = VolumeDenoiser(Divisor(4), NoiseSampler(), SamplingOptions(num_ensemble=2), patching, suv_max=16.0)
    shapes = [(8, 8, 20), (12, 8, 8)]
    expected = denoiser.rank_job_count([denoiser.plan(s) for s in shapes])
    assert expected == 2 * sum(len(denoiser.plan(s)) for s in shapes)
    steps = []
    denoiser.on_step = steps.append
    for shape, offset in zip(shapes, job_offsets([denoiser.plan(s) for s in shapes], 2)):
        denoiser.denoise(np.ones(shape, np.float32), "v", offset)
    assert sum(steps) == expected  # one step per patch with this sampler


def _peak_bytes_of_denoising(num_ensemble: int) -> tuple[int, int]:
    """tracemalloc peak (numpy arrays are traced) of denoising a many-patch volume; and one member's patch bytes."""
    suv = np.ones((16, 16, 96), np.float32)
    patching = PatchingOptions(patch_axial=8, max_patch_inplane=16, overlap=2)
    denoiser = VolumeDenoiser(Divisor(4), NoiseSampler(), SamplingOptions(num_ensemble=num_ensemble), patching,
                              suv_max=16.0, keep_saturated=False)
    plan = denoiser.plan(suv.shape)
    member_bytes = len(plan) * int(np.prod(plan.patch_size)) * 4
    tracemalloc.start()
    try:
        denoiser.denoise(suv, "v")
        return tracemalloc.get_traced_memory()[1], member_bytes
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_ensemble_size():
    one, member_bytes = _peak_bytes_of_denoising(1)
    six, _ = _peak_bytes_of_denoising(6)
    # Holding every member's patches would add 5 members' worth; one member at a time adds next to nothing.
    assert six - one < member_bytes / 2, (one, six, member_bytes)


def test_running_moments_equal_numpy_mean_and_std():
    rng = np.random.default_rng(3)
    members = rng.normal(5.0, 2.0, (5, 4, 3, 2)).astype(np.float32)
    moments = RunningMoments(members.shape[1:])
    moments.add(members[0])
    assert moments.std() is None
    for member in members[1:]:
        moments.add(member)
    np.testing.assert_allclose(moments.mean(), members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(moments.std(), members.std(axis=0, ddof=1), rtol=1e-5)


def test_members_share_a_wave_only_when_a_volume_has_few_patches():
    # One process, batch 4: a 16-patch volume goes member by member; a 1-patch volume samples 4 members together.
    assert member_waves(16, 6, 4) == [range(m, m + 1) for m in range(6)]
    assert member_waves(1, 6, 4) == [range(4), range(4, 6)]
    assert rank_jobs(1, range(4, 6), job_offset=0) == [(4, 0), (5, 0)]
