"""DPM-Solver++(2M): its first-order form is DDIM, it beats DDIM on data with a known answer, and its bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import apply_weight_rule

from guided_diffusion.samplers import Prediction
from guided_diffusion.samplers.dpmpp2m import sample_dpmpp_2m
from guided_diffusion.script_util import (
    create_gaussian_diffusion,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)

SHAPE = (2, 1, 4, 8, 8)
#: Gaussian data N(MU, S^2) per voxel: the true noise predictor and the probability-flow ODE are closed-form.
MU, S = 0.2, 0.5
#: The base schedule every test process is respaced from.
BASE_ALPHAS_CUMPROD = create_gaussian_diffusion(steps=1000).alphas_cumprod


def tiny_network(learn_sigma: bool) -> torch.nn.Module:
    """A 2-level conditional UNet with 32 channels and deterministic non-zero weights (its output layer included)."""
    flags = {**sr_model_and_diffusion_defaults(), "large_size": 16, "num_channels": 32, "num_res_blocks": 1,
             "channel_mult": "1,2", "attention_resolutions": "", "learn_sigma": learn_sigma}
    model, _ = sr_create_model_and_diffusion(**flags)
    apply_weight_rule(model)
    return model.eval()


def gaussian_eps_model(learned_sigma: bool = False):
    """The exact noise predictor for data N(MU, S^2), called with original timesteps (N,) like the network.

    With ``learned_sigma`` it also outputs a second, arbitrary channel, as a learned-variance network does.
    """
    table = torch.from_numpy(BASE_ALPHAS_CUMPROD)

    def model(x_t, timesteps, **_):
        abar = table[timesteps.long()].float().reshape(-1, *([1] * (x_t.ndim - 1)))
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        x0 = MU + alpha * S**2 / (abar * S**2 + 1 - abar) * (x_t - alpha * MU)  # E[x_0 | x_t]
        eps = (x_t - alpha * x0) / sigma
        return torch.cat([eps, torch.full_like(eps, 0.3)], dim=1) if learned_sigma else eps

    return model


def exact_sample(alphas_cumprod: np.ndarray, x_T: torch.Tensor) -> torch.Tensor:
    """What a sampler of ``alphas_cumprod``'s process would return with no discretisation error.

    For Gaussian data the ODE keeps z = (x_t - alpha_t MU) / sqrt(alpha_t^2 S^2 + sigma_t^2) fixed; the
    samplers end with the x_0 prediction at step 0, E[x_0 | x_{t_0}].
    """
    a_T, a_0 = alphas_cumprod[-1], alphas_cumprod[0]
    z = (x_T - np.sqrt(a_T) * MU) / np.sqrt(a_T * S**2 + 1 - a_T)
    return MU + np.sqrt(a_0) * S**2 * z / np.sqrt(a_0 * S**2 + 1 - a_0)


def counting(model):
    """``model`` and a list that grows by one per call."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        return model(*args, **kwargs)

    return wrapped, calls


@pytest.mark.parametrize("clip_denoised", [True, False])
@pytest.mark.parametrize("start_timestep,respacing", [(0, "ddim10"), (100, "10")])
def test_first_order_is_ddim_on_a_network(clip_denoised, start_timestep, respacing):
    """From pure noise and from a warm start (the low-dose diffused to t = 100), with a learned-variance network."""
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, timestep_respacing=respacing,
                                          start_timestep=start_timestep)
    model = tiny_network(learn_sigma=True)
    gen = torch.Generator().manual_seed(3)
    low = torch.rand(SHAPE, generator=gen) * 2 - 1
    noise = torch.randn(SHAPE, generator=gen)
    if start_timestep:
        noise = diffusion.warm_start(low, noise)
    kwargs = {"noise": noise, "clip_denoised": clip_denoised, "model_kwargs": {"low_res": low}}
    ddim = diffusion.ddim_sample_loop(model, SHAPE, **kwargs)
    first_order = diffusion.dpmpp2m_sample_loop(model, SHAPE, order=1, **kwargs)
    torch.testing.assert_close(first_order, ddim, atol=1e-5, rtol=1e-5)  # unclipped samples reach |x| ~ 100


def test_deterministic_and_independent_of_batching():
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, timestep_respacing="ddim5")
    model = tiny_network(learn_sigma=True)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(2)]
    noise = torch.stack([torch.randn(SHAPE[1:], generator=g) for g in gens])
    low = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))

    def sample(rows: slice, **kwargs) -> torch.Tensor:
        return diffusion.dpmpp2m_sample_loop(model, (len(low[rows]), *SHAPE[1:]),
                                             model_kwargs={"low_res": low[rows]}, **kwargs)

    both = sample(slice(None), noise=noise)
    assert torch.equal(both, sample(slice(None), noise=noise))
    separately = torch.cat([sample(slice(0, 1), noise=noise[:1]), sample(slice(1, 2), noise=noise[1:])])
    torch.testing.assert_close(both, separately, atol=1e-5, rtol=1e-5)
    # Without ``noise``, x_T comes from the per-sample generators.
    redrawn = [torch.Generator().manual_seed(10 + i) for i in range(2)]
    assert torch.equal(sample(slice(None), generator=redrawn), both)


@pytest.mark.parametrize("start_timestep,respacing,max_ratio", [(0, "ddim10", 0.8), (100, "10", 0.1)])
def test_second_order_beats_ddim_on_gaussian_data(start_timestep, respacing, max_ratio):
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing=respacing, start_timestep=start_timestep)
    x_T = torch.randn(64, 1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    if start_timestep:  # x_T drawn from the data diffused to the process's last step
        a_T = diffusion.alphas_cumprod[-1]
        x_T = np.sqrt(a_T) * MU + np.sqrt(a_T * S**2 + 1 - a_T) * x_T
    exact = exact_sample(diffusion.alphas_cumprod, x_T)
    kwargs = {"noise": x_T, "clip_denoised": False}
    rms = {}
    for name, loop in (("ddim", diffusion.ddim_sample_loop), ("dpmpp2m", diffusion.dpmpp2m_sample_loop)):
        rms[name] = float((loop(gaussian_eps_model(), x_T.shape, **kwargs) - exact).pow(2).mean().sqrt())
    # Measured: pure noise (ddim10) 0.128 -> 0.093; warm start at t = 100 (10 steps) 0.0096 -> 0.00057.
    assert rms["dpmpp2m"] < max_ratio * rms["ddim"], rms


class GaussianDataDenoiser:
    """The exact E[x_0 | x_t] for data N(MU, S^2) on a process of ``alphas_cumprod``, in float64.

    DPM-Solver++ reads only ``pred_xstart``; the other fields are NaN so that a read would show.
    """

    def __init__(self, alphas_cumprod: np.ndarray):
        self.alphas_cumprod = alphas_cumprod
        self.alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        abar = self.alphas_cumprod[int(t[0])]
        x0 = MU + np.sqrt(abar) * S**2 / (abar * S**2 + 1 - abar) * (x - np.sqrt(abar) * MU)
        unread = torch.full_like(x, float("nan"))
        return Prediction(pred_xstart=x0, eps=unread, mean=unread, log_variance=unread)


def test_second_order_convergence_on_a_log_snr_grid():
    """Doubling the steps divides the error by about 4 at second order and by 2 at first (float64, 1-D data)."""
    x_T = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def error(steps: int, order: int) -> float:
        log_snr = np.linspace(9.2, -10.0, steps)  # 2 lambda, from near-clean to near-pure noise
        denoiser = GaussianDataDenoiser(1 / (1 + np.exp(-log_snr)))
        *_, last = sample_dpmpp_2m(denoiser, x_T, order=order)
        return float((last["sample"] - exact_sample(denoiser.alphas_cumprod, x_T)).pow(2).mean().sqrt())

    assert error(40, 2) / error(80, 2) > 3.5
    assert 1.8 < error(40, 1) / error(80, 1) < 2.2


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_one_model_call_per_step_and_the_last_sample_is_the_last_prediction(steps):
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing=str(steps))
    model, calls = counting(gaussian_eps_model())
    x_T = torch.randn(3, 1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    outputs = list(diffusion.dpmpp2m_sample_loop_progressive(model, x_T.shape, noise=x_T, progress=True))
    assert len(calls) == len(outputs) == steps
    for out in outputs:
        assert out["sample"].shape == out["pred_xstart"].shape == x_T.shape
        assert torch.isfinite(out["sample"]).all()
    assert torch.equal(outputs[-1]["sample"], outputs[-1]["pred_xstart"])
    assert outputs[-1]["sample"].abs().max() <= 1  # clip_denoised by default


def test_learned_sigma_output_is_read_as_its_first_channels():
    x_T = torch.randn(2, 1, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    samples = [
        create_gaussian_diffusion(steps=1000, learn_sigma=learned, timestep_respacing="ddim10").dpmpp2m_sample_loop(
            gaussian_eps_model(learned_sigma=learned), x_T.shape, noise=x_T)
        for learned in (False, True)
    ]
    assert torch.equal(*samples)


def test_unknown_order_is_refused():
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing="ddim10")
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        diffusion.dpmpp2m_sample_loop(gaussian_eps_model(), (1, 1, 2, 2, 2), order=3)
