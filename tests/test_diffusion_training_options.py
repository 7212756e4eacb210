"""Diffusion training for warm-started models and the data scale: --max_train_timestep, --snr_gamma, --data_scale."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_helpers import REPO, TINY_NET, body_pair, run_train, write_npz_pair

from guided_diffusion.checkpoint import read_checkpoint, stored_flags
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, warm_start_for_volume
from guided_diffusion.denoise_settings import ModelRecords, resolve_settings
from guided_diffusion.errors import UserError
from guided_diffusion.model_card import make_card, read_own_card
from guided_diffusion.networks import create_gaussian_diffusion
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.intensity import model_to_suv, suv_to_model
from guided_diffusion.pet.training.crops import draw_crop
from guided_diffusion.resample import (
    LossSecondMomentResampler,
    UniformSampler,
    check_max_train_timestep,
    create_named_schedule_sampler,
)
from guided_diffusion.script_util import sr_model_and_diffusion_defaults
from guided_diffusion.warm_start import start_timestep_for_noise


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- --max_train_timestep: where the schedule samplers draw -----------------------------------------------------


@pytest.mark.parametrize("name", ["uniform", "loss-second-moment"])
def test_both_schedule_samplers_draw_only_steps_up_to_the_maximum(name):
    diffusion = create_gaussian_diffusion(steps=100)
    sampler = create_named_schedule_sampler(name, diffusion, max_timestep=9)
    if name == "loss-second-moment":
        # Fill every trained step's history: step t lost t + 1, so the weights are no longer uniform.
        sampler.update_with_all_losses([t for t in range(10) for _ in range(10)],
                                       [t + 1.0 for t in range(10) for _ in range(10)])
        assert not np.allclose(sampler.weights(), sampler.weights()[0])
    t, weights = sampler.sample(4000, "cpu", np.random.default_rng(0))
    assert t.max() == 9 and t.min() == 0 and len(sampler.weights()) == 10
    # Importance weights keep the loss an unbiased mean over the trained steps: E[w] = 1.
    assert weights.mean().item() == pytest.approx(1.0, rel=0.05)
    if name == "uniform":
        assert torch.equal(weights, torch.ones(4000))


def test_a_respaced_process_trains_the_indices_of_steps_up_to_the_maximum():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="10")  # steps 0, 11, 22, ...
    t, _ = UniformSampler(diffusion, max_timestep=30).sample(500, "cpu", np.random.default_rng(1))
    assert sorted(set(t.tolist())) == [0, 1, 2]
    assert diffusion.timestep_map[t.numpy()].max() == 22


def test_the_default_draws_every_step_exactly_as_before():
    diffusion = create_gaussian_diffusion(steps=50)
    t, weights = create_named_schedule_sampler("uniform", diffusion).sample(64, "cpu", np.random.default_rng(3))
    expected = np.random.default_rng(3).choice(50, size=64, p=np.full(50, 1 / 50))
    assert torch.equal(t, torch.from_numpy(expected)) and torch.equal(weights, torch.ones(64))
    assert len(LossSecondMomentResampler(diffusion).weights()) == 50


def test_a_loss_history_of_another_range_is_not_restored():
    diffusion = create_gaussian_diffusion(steps=50)
    everything = LossSecondMomentResampler(diffusion)
    everything.update_with_all_losses(list(range(50)) * 10, [2.0] * 500)
    low_steps = LossSecondMomentResampler(diffusion, max_timestep=9)
    low_steps.load_state_dict(everything.state_dict())
    assert low_steps.state_dict()["history"].shape == (10, 10) and not low_steps.state_dict()["counts"].any()


@pytest.mark.parametrize("bad", [-1, 1000, 5000])
def test_a_maximum_outside_the_process_is_refused_naming_the_flag(bad):
    with pytest.raises(UserError, match=r"--max_train_timestep .*\[1, 1000\)"):
        check_max_train_timestep(bad, 1000)
    assert check_max_train_timestep(0, 1000) == 0 and check_max_train_timestep(999, 1000) == 999


def _train_args(*extra: str):
    train = _script("train")
    args = train.parse_args_with_config(train.create_argparser(), ["--data_dir", "d", "--max_steps", "1", *extra])
    return train, args, train.TrainOptions(**train.args_to_dict(args, train.train_defaults().keys()))


@pytest.mark.parametrize(("extra", "message"), [
    (["--max_train_timestep", "1000"], r"--max_train_timestep 1000 must be a step in \[1, 1000\)"),
    (["--max_train_timestep", "63", "--val_dir", "v"], "--val_start_timestep 1..63"),
    (["--max_train_timestep", "63", "--val_dir", "v", "--val_start_timestep", "64"], "--val_start_timestep 1..63"),
    (["--snr_gamma", "5", "--use_kl", "True"], "--snr_gamma weights the MSE loss, --use_kl"),
    (["--snr_gamma", "-1"], "--snr_gamma must be 0 or a positive"),
    (["--model_kind", "regression", "--snr_gamma", "5"], "--snr_gamma: a regression model has no diffusion steps"),
    (["--model_kind", "gan", "--max_train_timestep", "5"], "--max_train_timestep: a gan model has no diffusion"),
    (["--data_scale", "-4"], "--data_scale must be a positive number"),
])
def test_the_training_script_refuses_options_that_cannot_work(extra, message):
    train, args, options = _train_args(*extra)
    with pytest.raises(UserError, match=message):
        train.check_flags(args, options)


def test_a_warm_start_validation_within_the_trained_steps_is_accepted():
    train, args, options = _train_args("--max_train_timestep", "63", "--val_dir", "v", "--val_start_timestep", "63",
                                       "--snr_gamma", "5", "--data_scale", "4")
    train.check_flags(args, options)


# -- Min-SNR-gamma ----------------------------------------------------------------------------------------------


def _hand_snr(t: int, steps: int = 1000) -> float:
    """SNR(t) of the linear schedule, one step at a time in plain Python."""
    alpha_bar = 1.0
    for i in range(t + 1):
        alpha_bar *= 1.0 - (0.0001 + (0.02 - 0.0001) * i / (steps - 1))
    return alpha_bar / (1.0 - alpha_bar)


@pytest.mark.parametrize("predict_xstart", [False, True])
def test_min_snr_weights_match_the_formula(predict_xstart):
    diffusion = create_gaussian_diffusion(steps=1000, predict_xstart=predict_xstart)
    ts = [0, 10, 40, 63, 200, 999]
    weights = diffusion.min_snr_weights(torch.tensor(ts), 5.0)
    snr = [_hand_snr(t) for t in ts]
    expected = [min(s, 5.0) if predict_xstart else min(s, 5.0) / s for s in snr]
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert snr[0] > 5 > snr[-1]  # the cap binds at small t and not at large t


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_training_losses_weight_the_mse_by_min_snr(learn_sigma):
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=learn_sigma)
    x0 = torch.rand(4, 1, 4, 4, 4) * 0.2
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 30, 400, 999])

    def zero_model(x_t, timesteps, **kwargs):
        return torch.zeros(x_t.shape[0], 2 if learn_sigma else 1, *x_t.shape[2:])

    plain = diffusion.training_losses(zero_model, x0, t, noise=noise)
    weighted = diffusion.training_losses(zero_model, x0, t, noise=noise, snr_gamma=5.0)
    mse = (noise**2).mean(dim=(1, 2, 3, 4))  # the zero model's epsilon error
    hand = torch.tensor([min(_hand_snr(s), 5.0) / _hand_snr(s) for s in t.tolist()])
    torch.testing.assert_close(weighted["mse"], mse)
    torch.testing.assert_close(weighted["loss"] - weighted.get("vb", 0.0), hand.float() * mse)
    assert torch.equal(diffusion.training_losses(zero_model, x0, t, noise=noise, snr_gamma=0.0)["loss"],
                       plain["loss"])
    assert torch.equal(plain["loss"], plain["mse"] + plain.get("vb", 0.0))


def test_min_snr_refuses_a_variational_bound_loss():
    diffusion = create_gaussian_diffusion(steps=100, use_kl=True, learn_sigma=True)
    with pytest.raises(ValueError, match="Min-SNR"):
        diffusion.training_losses(lambda x, t, **k: torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2),
                                  torch.tensor([3]), snr_gamma=5.0)


# -- the data scale ---------------------------------------------------------------------------------------------


def test_the_data_scale_maps_clipped_suv_and_back():
    suv = np.array([-1.0, 0.5, 4.0, 12.0, 30.0], dtype=np.float32)
    model = suv_to_model(suv, suv_max=12.0, data_scale=4.0)
    np.testing.assert_allclose(model, [0.0, 0.125, 1.0, 3.0, 3.0])
    np.testing.assert_allclose(model_to_suv(model, 4.0), [0.0, 0.5, 4.0, 12.0, 12.0])
    # The default data scale is the clip, the paper's mapping, to the bit.
    assert np.array_equal(suv_to_model(suv, 12.0), suv_to_model(suv, 12.0, 12.0))
    with pytest.raises(UserError, match="--data_scale"):
        suv_to_model(suv, 12.0, 0.0)


def test_training_crops_use_the_data_scale():
    low, full = body_pair()
    crops = [draw_crop(low, full, (8, 8, 8), np.random.default_rng(5), suv_max=16.0, data_scale=scale)
             for scale in (None, 16.0, 2.0)]
    assert all(np.array_equal(a, b) for a, b in zip(crops[0], crops[1]))
    np.testing.assert_allclose(crops[2][0], crops[0][0] * 8, rtol=1e-6)


class ConstantSampler:
    """Stands in for a patch predictor: records the largest conditioning value and returns model value 0.5."""

    steps = 1
    uses_noise = True
    largest_input = 0.0

    def __call__(self, model, low, noise, generators, on_step=lambda n: None):
        on_step(len(low))
        ConstantSampler.largest_input = max(ConstantSampler.largest_input, float(low.max()))
        return torch.full_like(low, 0.5)


class Divisor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial_divisor = 4
        self.weight = torch.nn.Parameter(torch.zeros(1))


def test_the_volume_denoiser_maps_with_the_data_scale():
    suv = np.full((8, 8, 8), 2.0, np.float32)
    suv[4, 4, 4] = 20.0
    denoiser = VolumeDenoiser(Divisor(), ConstantSampler(), SamplingOptions(batch_size=2),
                              PatchingOptions(patch_axial=8, overlap=2), suv_max=12.0, keep_saturated=False,
                              data_scale=4.0)
    ConstantSampler.largest_input = 0.0
    result = denoiser.denoise(suv, "s")
    assert ConstantSampler.largest_input == pytest.approx(3.0)  # clip(20, 0, 12) / 4
    np.testing.assert_allclose(result.mean, 2.0)  # 0.5 * 4


def test_the_warm_start_compares_noise_in_data_scale_units():
    rng = np.random.default_rng(0)
    suv = (2.0 + rng.normal(0, 0.5, (24, 24, 24))).astype(np.float32)
    alphas_cumprod = create_gaussian_diffusion(steps=1000).alphas_cumprod
    warm = warm_start_for_volume(suv, 2.0, alphas_cumprod, 4.0, 6.3)
    assert warm["start_timestep"] == start_timestep_for_noise(alphas_cumprod, warm["noise_sd_suv"] / 4.0, 6.3)
    assert warm["start_timestep"] > warm_start_for_volume(suv, 2.0, alphas_cumprod, 16.0, 6.3)["start_timestep"]


def _test_args(*extra: str):
    test = _script("test")
    argv = ["--base_samples", "x.npz", "--model_path", "m.pt", *extra]
    return test.parse_args_with_config(test.create_argparser(), argv), argv


@pytest.mark.parametrize(("extra", "records", "scale", "source"), [
    ((), ModelRecords({"data_scale": 4.0}, None), 4.0, "the model file's training flags"),
    ((), ModelRecords(None, {"intensity": {"suv_max": 16.0, "data_scale": 2.0}}), 2.0, "model card"),
    ((), ModelRecords({}, {"intensity": {"suv_max": 12.0}}), 12.0, "--suv_max"),  # predates the data scale
    ((), ModelRecords(None, None), 16.0, "--suv_max"),  # the released model.pt: the paper's mapping
    (("--data_scale", "8"), ModelRecords({"data_scale": 4.0}, None), 8.0, "--data_scale"),
])
def test_denoising_resolves_the_data_scale(extra, records, scale, source):
    args, argv = _test_args(*extra)
    settings = resolve_settings(args, argv, records, sr_model_and_diffusion_defaults().keys())
    assert settings.data_scale == scale and settings.sources["data_scale"] == source


def test_the_paper_configuration_keeps_the_paper_mapping():
    args, argv = _test_args("--config", "paper")
    settings = resolve_settings(args, argv, ModelRecords(None, None), sr_model_and_diffusion_defaults().keys())
    assert settings.suv_max == settings.data_scale == 16.0 and not settings.notes


def test_estimates_are_clipped_at_the_model_value_of_the_clip():
    args, argv = _test_args()
    settings = resolve_settings(args, argv, ModelRecords({"data_scale": 4.0}, None),
                                sr_model_and_diffusion_defaults().keys())
    assert settings.sampling.clip_max == 4.0 and not settings.notes  # --suv_max 16 over the data scale 4
    default = resolve_settings(args, argv, ModelRecords(None, None), sr_model_and_diffusion_defaults().keys())
    assert default.sampling.clip_max == 1.0


def test_the_card_records_the_data_scale(tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    card = make_card(weights, kind="model", configuration={"data_scale": 4.0, "suv_max": 16.0},
                     model_voxel_size_mm=4.0, suv_max=16.0)
    assert card["intensity"] == {"suv_max": 16.0, "data_scale": 4.0, "model_value": "clip(SUV, 0, suv_max) / data_scale"}
    older = make_card(weights, kind="model", configuration={"suv_max": 12.0}, model_voxel_size_mm=4.0, suv_max=12.0)
    assert older["intensity"]["data_scale"] == 12.0


@pytest.mark.slow
def test_the_data_scale_and_the_training_options_round_trip_through_a_checkpoint(tmp_path):
    write_npz_pair(tmp_path / "data" / "a.npz")
    run = tmp_path / "run"
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(run),
                        "--max_steps", "1", "--num_workers", "0", "--suv_max", "12", "--data_scale", "4",
                        "--max_train_timestep", "20", "--snr_gamma", "5"])
    assert result.returncode == 0, result.stderr
    checkpoint = run / "checkpoint_0000001.pt"
    assert read_checkpoint(checkpoint)["options"]["max_train_timestep"] == 20
    assert stored_flags(checkpoint)["data_scale"] == 4.0
    ema = run / "ema_0.9999_0000001.pt"
    assert read_own_card(ema)["intensity"]["data_scale"] == 4.0 and read_own_card(ema)["intensity"]["suv_max"] == 12

    # Denoising takes the scale from the model's records with no flag.
    (tmp_path / "in").mkdir()
    np.savez(tmp_path / "in" / "x.npz", arr_0=body_pair(seed=1)[0], affine=np.eye(4))
    command = [sys.executable, str(REPO / "scripts" / "test.py"), *TINY_NET[:4], "--model_path", str(ema),
               "--base_samples", str(tmp_path / "in" / "x.npz"), "--save_dir", str(tmp_path / "out"),
               "--steps", "2", "--start_timestep", "5", "--patch_axial", "8", "--max_patch_inplane", "8",
               "--patch_overlap", "2"]
    denoised = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert denoised.returncode == 0, denoised.stderr
    sidecar = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert sidecar["settings_from"]["data_scale"] == "the model file's training flags"
    assert sidecar["sampler"]["clip_max"] == 3.0  # estimates clipped at the clip 12 over the data scale 4
    assert sidecar["settings_from"]["suv_max"] == "model card" and sidecar["suv_max"] == 12.0
