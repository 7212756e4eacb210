"""Closed-form checks of the diffusion process, samplers, losses and a tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guided_diffusion import gaussian_diffusion as gd
from guided_diffusion.resample import LossSecondMomentResampler, UniformSampler, create_named_schedule_sampler
from guided_diffusion.respace import SpacedDiffusion, space_timesteps
from guided_diffusion.script_util import (
    create_gaussian_diffusion,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


def make(**kwargs) -> gd.GaussianDiffusion:
    options = {"model_mean_type": gd.ModelMeanType.EPSILON, "model_var_type": gd.ModelVarType.FIXED_SMALL,
               "loss_type": gd.LossType.MSE}
    options.update(kwargs)
    return gd.GaussianDiffusion(betas=gd.get_named_beta_schedule("linear", 100), **options)


def oracle_eps_model(diffusion: gd.GaussianDiffusion, x0: torch.Tensor):
    """A 'network' that knows x0 and returns the exact noise of x_t."""
    original = torch.from_numpy(diffusion.timestep_map)

    def model(x_t, model_t, **_):
        step = torch.searchsorted(original, model_t.long())
        abar = torch.from_numpy(diffusion.alphas_cumprod)[step].float().reshape(-1, 1, 1, 1, 1)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    return model


def test_q_sample_moments_match_closed_form():
    diffusion = make()
    x0 = torch.full((20000, 1, 1, 1, 1), 0.7)
    t = torch.full((20000,), 40)
    x_t = diffusion.q_sample(x0, t, noise=torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    abar = diffusion.alphas_cumprod[40]
    assert abs(x_t.mean().item() - np.sqrt(abar) * 0.7) < 0.02
    assert abs(x_t.var().item() - (1 - abar)) < 0.02


def test_posterior_is_the_product_of_gaussians():
    diffusion = make()
    t = 30
    x0, x_t = torch.tensor([[0.3]]), torch.tensor([[-0.5]])
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, torch.tensor([t]))
    beta, alpha = diffusion.betas[t], 1 - diffusion.betas[t]
    abar_prev = diffusion.alphas_cumprod[t - 1]
    # x_{t-1} ~ N(sqrt(abar_prev) x0, 1 - abar_prev) and x_t | x_{t-1} ~ N(sqrt(alpha) x_{t-1}, beta)
    precision = 1 / (1 - abar_prev) + alpha / beta
    expected_mean = (np.sqrt(abar_prev) * 0.3 / (1 - abar_prev) + np.sqrt(alpha) * -0.5 / beta) / precision
    assert var.item() == pytest.approx(1 / precision, rel=1e-5)
    assert log_var.item() == pytest.approx(np.log(1 / precision), rel=1e-5)
    assert mean.item() == pytest.approx(expected_mean, rel=1e-5)


def test_xstart_from_true_noise_is_exact():
    diffusion = make()
    x0 = torch.rand(3, 1, 2, 4, 4)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    recovered = diffusion._predict_xstart_from_eps(diffusion.q_sample(x0, t, noise), t, noise)
    torch.testing.assert_close(recovered, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("respacing", ["", "ddim10", "25"])
def test_samplers_with_an_oracle_recover_x0(respacing):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing=respacing)
    x0 = torch.rand(2, 1, 2, 4, 4) * 0.8
    model = oracle_eps_model(diffusion, x0)
    ddim = diffusion.ddim_sample_loop(model, x0.shape, noise=torch.randn_like(x0))
    torch.testing.assert_close(ddim, x0, atol=1e-3, rtol=1e-3)
    ancestral = diffusion.p_sample_loop(model, x0.shape, generator=torch.Generator().manual_seed(1))
    assert (ancestral - x0).abs().max() < 0.05


def test_spaced_process_keeps_cumulative_alphas_and_maps_timesteps():
    base = make()
    kept = sorted(space_timesteps(100, "ddim10"))
    spaced = SpacedDiffusion(kept, betas=base.betas, model_mean_type=base.model_mean_type,
                             model_var_type=base.model_var_type, loss_type=base.loss_type, rescale_timesteps=True)
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)
    mapped = spaced.model_timesteps(torch.tensor([0, 9]))
    torch.testing.assert_close(mapped, torch.tensor([0.0, 900.0]))


def test_a_one_step_process_is_refused():
    base = make()
    with pytest.raises(ValueError, match="at least 2 steps"):
        SpacedDiffusion(space_timesteps(100, "1"), betas=base.betas, model_mean_type=base.model_mean_type,
                        model_var_type=base.model_var_type, loss_type=base.loss_type)


def test_per_element_generators_make_samples_independent_of_batching():
    diffusion = create_gaussian_diffusion(steps=50)
    x0 = torch.rand(3, 1, 2, 4, 4)
    model = oracle_eps_model(diffusion, x0[:1])

    def sample(n):
        gens = [torch.Generator().manual_seed(10 + i) for i in range(n)]
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
        return diffusion.p_sample_loop(model, (n, *x0.shape[1:]), noise=noise, generator=gens)

    torch.testing.assert_close(sample(3)[:1], sample(1))


def test_noise_of_wrong_shape_is_refused():
    diffusion = create_gaussian_diffusion(steps=50)
    with pytest.raises(ValueError, match="noise shape"):
        diffusion.ddim_sample_loop(lambda x, t: x, (1, 1, 2, 4, 4), noise=torch.zeros(1, 1, 2, 4, 8))


@pytest.mark.parametrize("var_type", list(gd.ModelVarType))
@pytest.mark.parametrize("mean_type", list(gd.ModelMeanType))
def test_p_mean_variance_shapes_and_positive_variance(var_type, mean_type):
    diffusion = make(model_var_type=var_type, model_mean_type=mean_type)
    learned = var_type in (gd.ModelVarType.LEARNED, gd.ModelVarType.LEARNED_RANGE)
    x = torch.randn(2, 1, 2, 4, 4)

    def model(x_t, t, **_):
        return torch.zeros(x_t.shape[0], 2 if learned else 1, *x_t.shape[2:])

    out = diffusion.p_mean_variance(model, x, torch.tensor([5, 60]))
    for key in ("mean", "variance", "log_variance", "pred_xstart"):
        assert out[key].shape == x.shape
    assert (out["variance"] > 0).all()
    torch.testing.assert_close(out["variance"].log(), out["log_variance"])


def zero_model(out_channels: int):
    """A network whose every output is 0: the noise (or x_0) it predicts and, with two channels, v."""
    def model(x_t, t, **_):
        return torch.zeros(x_t.shape[0], out_channels, *x_t.shape[2:])

    return model


def zero_model_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_0 uniform in [-1, 1], its noise, and one step index per sample: shapes (3, 1, 2, 4, 4), same, (3,)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(3, 1, 2, 4, 4, generator=gen) * 2 - 1
    return x0, torch.randn(x0.shape, generator=gen), torch.tensor([1, 17, 49])


@pytest.mark.parametrize("predict_xstart", [False, True])
def test_mse_of_a_zero_model_is_the_mean_square_of_its_target(predict_xstart):
    diffusion = create_gaussian_diffusion(steps=50, predict_xstart=predict_xstart)
    x0, noise, t = zero_model_batch()
    terms = diffusion.training_losses(zero_model(1), x0, t, noise=noise)
    target = x0 if predict_xstart else noise
    expected = target.pow(2).mean(dim=(1, 2, 3, 4))
    assert set(terms) == {"loss", "mse"}
    torch.testing.assert_close(terms["mse"], expected)
    torch.testing.assert_close(terms["loss"], expected)


def kl_bits_of_a_zero_model(x0: np.ndarray, noise: np.ndarray, t: np.ndarray, steps: int) -> np.ndarray:
    """KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) in bits per voxel, per sample, for t > 0, by hand.

    The linear schedule (betas 1e-4 to 0.02 over 1000 steps, scaled to ``steps``)
    in float64. The network predicts eps = 0, so its x_0 is x_t / sqrt(alpha_bar_t),
    and v = 0, so its log-variance lies half-way between log(beta_t) and the
    posterior's.
    """
    scale = 1000 / steps
    betas = np.linspace(scale * 1e-4, scale * 0.02, steps)
    alpha_bar = np.cumprod(1 - betas)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
    ab_prev = alpha_bar[t - 1].reshape(shape)
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise
    c0, ct = beta * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab)
    var_q = beta * (1 - ab_prev) / (1 - ab)
    mean_q, mean_p = c0 * x0 + ct * x_t, c0 * x_t / np.sqrt(ab) + ct * x_t
    log_var_p = 0.5 * (np.log(beta) + np.log(var_q))
    kl = 0.5 * (-1 + log_var_p - np.log(var_q) + (var_q + (mean_q - mean_p) ** 2) / np.exp(log_var_p))
    return kl.reshape(len(t), -1).mean(axis=1) / np.log(2)


@pytest.mark.parametrize("flags", [{}, {"rescale_learned_sigmas": True}, {"use_kl": True}])
def test_bound_term_of_a_zero_model_is_the_gaussian_kl(flags):
    steps = 50
    diffusion = create_gaussian_diffusion(steps=steps, learn_sigma=True, **flags)
    x0, noise, t = zero_model_batch()
    terms = diffusion.training_losses(zero_model(2), x0, t, noise=noise)
    kl = torch.from_numpy(kl_bits_of_a_zero_model(x0.double().numpy(), noise.double().numpy(), t.numpy(), steps))
    mse = noise.double().pow(2).mean(dim=(1, 2, 3, 4))
    if flags.get("use_kl"):
        expected = {"loss": kl * steps}
    else:
        vb = kl * steps / 1000 if flags else kl
        expected = {"mse": mse, "vb": vb, "loss": mse + vb}
    assert set(terms) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name].double(), value, rtol=1e-4, atol=1e-6)


def test_schedule_samplers():
    diffusion = create_gaussian_diffusion(steps=50, timestep_respacing="10")
    ts, weights = UniformSampler(diffusion).sample(64, "cpu", np.random.default_rng(0))
    assert ts.min() >= 0 and ts.max() < 10 and torch.allclose(weights, torch.ones(64))
    sampler = create_named_schedule_sampler("loss-second-moment", diffusion)
    assert isinstance(sampler, LossSecondMomentResampler)
    for _ in range(sampler.history_per_term):
        sampler.update_with_local_losses(torch.arange(10), torch.linspace(0.1, 10.0, 10))
    w = sampler.weights()
    assert w[-1] > 50 * w[0]
    ts, weights = sampler.sample(1000, "cpu", np.random.default_rng(0))
    # Importance weights keep the expected loss unbiased: E[w * loss] equals the uniform mean.
    losses = torch.linspace(0.1, 10.0, 10)
    assert float((weights * losses[ts]).mean()) == pytest.approx(float(losses.mean()), rel=0.1)
    with pytest.raises(ValueError, match="unknown schedule sampler"):
        create_named_schedule_sampler("bogus", diffusion)


def test_tiny_network_overfits_one_pair():
    torch.manual_seed(0)
    flags = {**sr_model_and_diffusion_defaults(), "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
             "attention_resolutions": "", "learn_sigma": True, "resblock_updown": True, "diffusion_steps": 100}
    model, diffusion = sr_create_model_and_diffusion(**flags)
    full = torch.rand(2, 1, 4, 8, 8) * 0.5 + 0.25
    low = full + 0.1 * torch.randn_like(full)
    t = torch.tensor([10, 60])
    noise = torch.randn_like(full)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = diffusion.training_losses(model, full, t, model_kwargs={"low_res": low}, noise=noise)["loss"].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_schedule_sampler_state_round_trip():
    diffusion = create_gaussian_diffusion(steps=50, timestep_respacing="10")
    sampler = LossSecondMomentResampler(diffusion)
    for _ in range(sampler.history_per_term):
        sampler.update_with_local_losses(torch.arange(10), torch.linspace(0.1, 10.0, 10))
    restored = LossSecondMomentResampler(diffusion)
    restored.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(restored.weights(), sampler.weights())
    assert UniformSampler(diffusion).state_dict() == {}
