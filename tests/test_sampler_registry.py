"""The sampler registry: a sampler added with one entry runs through the patch jobs, the paper's methods are its
entries, every entry keeps the common signature, and unknown names are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guided_diffusion.denoise import PatchingOptions, make_plan
from guided_diffusion.errors import UserError
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.networks import create_gaussian_diffusion
from guided_diffusion.patch_jobs import SamplingOptions, sample_jobs
from guided_diffusion.samplers import SAMPLERS, get_sampler

SHAPE = (2, 1, 2, 4, 4)


def toy_sampler(denoiser, x, *, generator=None, eta=0.0, progress=False):
    """One step: the denoiser's x_0 at the process's last step is the sample."""
    t = torch.full((x.shape[0],), len(denoiser.alphas_cumprod) - 1, device=x.device, dtype=torch.long)
    out = denoiser.predict(x, t)
    yield {"sample": out.pred_xstart, "pred_xstart": out.pred_xstart}


class OracleNetwork(torch.nn.Module):
    """Predicts the noise of x_t exactly when the data is the low dose itself; counts its calls."""

    def __init__(self, alphas_cumprod: np.ndarray):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # gives sample_jobs its device
        self.spatial_divisor = 4
        self.alphas_cumprod = torch.from_numpy(alphas_cumprod)
        self.calls = 0

    def forward(self, x_t, timesteps, low_res):
        self.calls += 1
        abar = self.alphas_cumprod[timesteps].float().reshape(-1, *([1] * (x_t.ndim - 1)))
        return (x_t - abar.sqrt() * low_res) / (1 - abar).sqrt()


def toy_model(x, timesteps, **_):
    """A cheap stand-in network with a learned variance: (N, 2C, ...) outputs, elementwise in x."""
    return torch.cat([0.5 * x + 1e-4 * timesteps.float().reshape(-1, 1, 1, 1, 1), torch.tanh(x)], dim=1)


def test_a_registered_toy_sampler_runs_through_the_patch_jobs(monkeypatch):
    monkeypatch.setitem(SAMPLERS, "toy", toy_sampler)
    process = create_gaussian_diffusion(steps=100, timestep_respacing="5")
    network = OracleNetwork(create_gaussian_diffusion(steps=100).alphas_cumprod)
    options = SamplingOptions(sampler="toy", batch_size=2)
    plan = make_plan((8, 8, 20), PatchingOptions(patch_axial=8, max_patch_inplane=8, overlap=4), 4)
    cond = np.random.default_rng(0).random(plan.padded_shape).astype(np.float32)
    jobs = [(0, box) for box in range(len(plan.boxes))]
    steps = []
    patches = sample_jobs(network, MODEL_KINDS["diffusion"].predictor(process, options), options, plan, cond, "v",
                          jobs, steps.append)
    # One network call per batch (the process has 5 steps), and the oracle's x_0 is the low dose.
    assert len(jobs) > 2 and network.calls == len(steps) == -(-len(jobs) // 2) and sum(steps) == len(jobs)
    for (_, box), patch in zip(jobs, patches):
        np.testing.assert_allclose(patch, cond[plan.boxes[box]], atol=1e-4)


def generators():
    return [torch.Generator().manual_seed(20 + k) for k in range(SHAPE[0])]


@pytest.mark.parametrize("name,wrapper,options", [
    ("ddpm", "p_sample_loop_progressive", {}),
    ("ddim", "ddim_sample_loop_progressive", {"eta": 0.5}),
    ("dpmpp2m", "dpmpp2m_sample_loop_progressive", {"order": 2}),
])
def test_the_paper_methods_are_the_registry_entries(name, wrapper, options):
    process = create_gaussian_diffusion(steps=100, learn_sigma=True, timestep_respacing="6")
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    by_method = list(getattr(process, wrapper)(toy_model, SHAPE, noise=x_T, generator=generators(), **options))
    by_name = list(process.sample_loop_progressive(name, toy_model, SHAPE, noise=x_T, generator=generators(),
                                                   **options))
    by_entry = list(SAMPLERS[name](process.denoiser(toy_model), x_T, generator=generators(), **options))
    assert len(by_method) == len(by_name) == len(by_entry) == process.num_timesteps
    for steps in zip(by_method, by_name, by_entry):
        for key in ("sample", "pred_xstart"):
            assert all(torch.equal(steps[0][key], step[key]) for step in steps[1:])
    loop = getattr(process, wrapper.removesuffix("_progressive"))
    final = loop(toy_model, SHAPE, x_T, generator=generators(), **options)
    assert torch.equal(final, by_entry[-1]["sample"])
    assert torch.equal(process.sample_loop(name, toy_model, SHAPE, x_T, generator=generators(), **options), final)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_entry_keeps_the_common_signature_and_per_sample_generators(name):
    """Each sample depends only on its own noise and generator, not on what else is in its batch."""
    process = create_gaussian_diffusion(steps=100, learn_sigma=True, timestep_respacing="4")
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    sampler = get_sampler(name)
    outputs = list(sampler(process.denoiser(toy_model), x_T, generator=generators(), eta=0.7, progress=False))
    assert len(outputs) == process.num_timesteps
    assert all(out["sample"].shape == out["pred_xstart"].shape == SHAPE for out in outputs)
    *_, alone = sampler(process.denoiser(toy_model), x_T[1:], generator=generators()[1:], eta=0.7)
    torch.testing.assert_close(alone["sample"], outputs[-1]["sample"][1:])


def test_steps_run_without_grad_and_leave_the_callers_mode_alone():
    process = create_gaussian_diffusion(steps=100, timestep_respacing="3")
    network = torch.nn.Conv3d(1, 1, 1)
    for out in process.sample_loop_progressive("ddpm", lambda x, t: network(x), SHAPE, device="cpu",
                                               generator=torch.Generator().manual_seed(0)):
        assert torch.is_grad_enabled() and not out["sample"].requires_grad


def test_an_unknown_sampler_is_refused_with_the_flag_and_the_choices():
    with pytest.raises(UserError, match=r"^--sampler must be one of ddpm, ddim, dpmpp2m, got 'euler'$"):
        get_sampler("euler")
    with pytest.raises(UserError, match="^--val_sampler must be one of"):
        get_sampler("euler", "--val_sampler")
    process = create_gaussian_diffusion(steps=100, timestep_respacing="3")
    with pytest.raises(UserError, match="--sampler"):
        process.sample_loop("euler", toy_model, SHAPE)
