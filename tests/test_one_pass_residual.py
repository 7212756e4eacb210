"""One-pass networks (regression, GAN generator) predict a correction: identity at step 0, and --one_pass_output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from denoise_helpers import denoising_script, run_in_process
from training_helpers import REPO, TINY_NET, body_pair, tiny_flags, write_npz_pair

from guided_diffusion.checkpoint import CHECKPOINT_FORMAT, stored_flags
from guided_diffusion.denoise_settings import read_model_records, resolve_settings
from guided_diffusion.errors import UserError
from guided_diffusion.flags import parse_args_with_config
from guided_diffusion.model_card import read_card
from guided_diffusion.model_kinds import get_model_kind
from guided_diffusion.pet.training.crops import PairCropDataset, crop_loader
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.regression import BASE_BLUR_FWHM_VOXELS, RegressionProcess, gaussian_blur
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults
from guided_diffusion.train_util import TrainLoop, TrainOptions

TEST_SCRIPT = REPO / "scripts" / "test.py"
# scripts/test.py's network flags (TINY_NET without --patch_size).
NET = TINY_NET[:4]


def tiny(kind: str, output: str) -> dict:
    return {**tiny_flags(), "model_kind": kind, "one_pass_output": output, "disc_channels": 8}


def low_dose(shape=(2, 1, 8, 8, 8)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 0.5


def no_zero_layers(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.mark.parametrize("kind", ["regression", "gan"])
def test_a_residual_network_is_the_identity_at_step_0(kind):
    torch.manual_seed(0)
    model, process = sr_create_model_and_diffusion(**tiny(kind, "residual"))
    assert process.output == "residual"
    low = low_dose()
    with torch.no_grad():
        torch.testing.assert_close(process.predict(model, low, clip=False), low, rtol=0, atol=0)
        t = torch.zeros(len(low), dtype=torch.long)
        losses = process.training_losses(model, low, t, model_kwargs={"low_res": low})
    assert torch.equal(losses["mse"], torch.zeros(len(low)))
    # Today's direct output starts at 0: the same network, read directly.
    direct = RegressionProcess(output="direct")
    assert torch.equal(direct.predict(model, low, clip=False), torch.zeros_like(low))


def test_the_default_output_is_residual_and_direct_keeps_todays_process():
    assert sr_model_and_diffusion_defaults()["one_pass_output"] == "residual"
    model, process = sr_create_model_and_diffusion(**tiny("regression", "direct"))
    model, low = no_zero_layers(model), low_dose()
    t = torch.zeros(len(low), dtype=torch.long)
    with torch.no_grad():
        network = model(low, t)
        torch.testing.assert_close(process.predict(model, low), network.clamp(-1, 1))
        full = low + 0.1
        torch.testing.assert_close(process.training_losses(model, full, t, model_kwargs={"low_res": low})["mse"],
                                   ((network - full) ** 2).mean(dim=(1, 2, 3, 4)))
        for output, base in (("residual", low), ("gaussian", gaussian_blur(low, BASE_BLUR_FWHM_VOXELS))):
            estimate = RegressionProcess(output=output).predict(model, low, clip=False)
            torch.testing.assert_close(estimate, base + network)


def test_the_gan_generator_reads_its_output_as_the_regression_does():
    model, process = sr_create_model_and_diffusion(**tiny("gan", "residual"))
    model, low = no_zero_layers(model), low_dose()
    t = torch.zeros(len(low), dtype=torch.long)
    with torch.no_grad():
        losses = process.training_losses(model, low, t, model_kwargs={"low_res": low})
        kept = process.take_predictions()
        torch.testing.assert_close(kept, low + model(low, t))
    assert losses["loss"].shape == (len(low),)


@pytest.mark.parametrize("dims", [2, 3])
def test_the_gaussian_base_is_a_normalised_blur_of_the_stated_fwhm(dims):
    shape = (1, 1) + (9,) * dims
    delta = torch.zeros(shape, dtype=torch.float64)
    delta[(0, 0) + (4,) * dims] = 1.0
    blurred = gaussian_blur(delta, BASE_BLUR_FWHM_VOXELS)
    assert blurred.shape == shape and blurred.dtype == torch.float64
    assert blurred.sum().item() == pytest.approx(1.0)
    profile = blurred.sum(dim=tuple(range(3, 2 + dims)))[0, 0].numpy()  # along the first spatial axis
    variance = float(((np.arange(9) - 4) ** 2 * profile).sum())
    sigma = BASE_BLUR_FWHM_VOXELS / math.sqrt(8 * math.log(2))
    assert variance == pytest.approx(sigma**2, rel=0.02)
    flat = torch.full(shape, 0.3)
    torch.testing.assert_close(gaussian_blur(flat, BASE_BLUR_FWHM_VOXELS), flat)  # edges extended: no dark rim


def test_an_unknown_output_is_refused_naming_the_flag():
    with pytest.raises(UserError, match="--one_pass_output must be one of residual, direct, gaussian, got 'sum'"):
        sr_create_model_and_diffusion(**tiny("regression", "sum"))


# -- the flag in checkpoints, cards and denoising runs ----------------------------------------------------------


def settings_for(model_path: Path, *argv: str):
    args_list = [*NET, "--model_path", str(model_path), "--base_samples", "unused", *argv]
    args = parse_args_with_config(denoising_script().create_argparser(), args_list)
    return resolve_settings(args, args_list, read_model_records(str(model_path)),
                            sr_model_and_diffusion_defaults().keys())


def write_checkpoint(path: Path, flags: dict) -> Path:
    """An untrained network of ``flags`` as a training checkpoint (its last layer zero: it outputs 0)."""
    torch.manual_seed(0)
    model, _ = sr_create_model_and_diffusion(**flags)
    state = model.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "step": 0, "model": state, "ema": {"0.9999": state},
                "flags": {**flags, "model_voxel_size": 0.0}}, path)
    return path


@pytest.mark.slow
def test_the_flag_round_trips_through_a_checkpoint_and_its_card(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(8, 8, 8))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (8, 8, 8))
    flags = {**tiny("regression", "gaussian"), "model_voxel_size": 0.0}
    torch.manual_seed(0)
    model, process = sr_create_model_and_diffusion(**tiny("regression", "gaussian"))
    options = TrainOptions(result_folder=str(tmp_path / "run"), batch_size=1, max_steps=1, save_interval=1,
                           log_interval=1, lr=1e-4)

    def data(start_batch):
        return crop_loader(PairCropDataset(pairs, (8, 8, 8), 1, seed=0, rank=0, start_batch=start_batch), 0)

    TrainLoop(model=model, diffusion=process, data=data, options=options, flags=flags).run_loop()
    checkpoint, ema = tmp_path / "run" / "checkpoint_0000001.pt", tmp_path / "run" / "ema_0.9999_0000001.pt"
    assert stored_flags(checkpoint)["one_pass_output"] == "gaussian"
    assert read_card(ema)["configuration"]["one_pass_output"] == "gaussian"
    settings = settings_for(checkpoint)
    assert settings.model_flags["one_pass_output"] == "gaussian"
    assert settings.sources["one_pass_output"] == "the model file's training flags"
    assert settings_for(checkpoint, "--one_pass_output", "direct").model_flags["one_pass_output"] == "direct"
    checkpoint.unlink()  # the EMA file alone: its card says
    settings = settings_for(ema)
    assert settings.model_flags["one_pass_output"] == "gaussian" and settings.sources["one_pass_output"] == "model card"


def test_a_model_file_that_predates_the_flag_runs_direct(tmp_path):
    old_flags = {k: v for k, v in tiny("regression", "direct").items() if k != "one_pass_output"}
    old = write_checkpoint(tmp_path / "old.pt", old_flags)
    settings = settings_for(old)
    assert settings.model_flags["one_pass_output"] == "direct"
    assert settings.sources["one_pass_output"] == "the model file's training flags, which predate it"
    # A plain state_dict without a card records nothing: the flag's default applies.
    torch.save(torch.load(old, weights_only=True)["model"], tmp_path / "plain.pt")
    plain = settings_for(tmp_path / "plain.pt", "--model_kind", "regression")
    assert plain.model_flags["one_pass_output"] == "residual"


@pytest.mark.slow
def test_an_old_checkpoint_denoises_as_direct_through_scripts_test(tmp_path, monkeypatch, capsys):
    low, _ = body_pair((16, 16, 8))
    nib.save(nib.Nifti1Image(low, np.eye(4)), tmp_path / "scan.nii.gz")
    old_flags = {k: v for k, v in tiny("regression", "direct").items() if k != "one_pass_output"}
    results = {}
    for name, flags in (("old", old_flags), ("new", tiny("regression", "residual"))):
        model_path = write_checkpoint(tmp_path / f"{name}.pt", flags)
        save = tmp_path / name
        status, err = run_in_process(monkeypatch, capsys, *NET, "--model_path", str(model_path),
                                           "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir", str(save),
                                           "--patch_axial", "8", "--max_patch_inplane", "16")
        assert status == 0, err
        results[name] = np.asarray(nib.load(save / "scan_denoised.nii.gz").dataobj)
        record = json.loads((save / "scan_denoised.json").read_text())
        assert record["sampler"]["output"] == ("direct" if name == "old" else "residual")
    # The untrained network outputs 0: read directly that is the estimate, as a correction the input comes back.
    np.testing.assert_allclose(results["old"], 0, atol=1e-6)
    np.testing.assert_allclose(results["new"], low, atol=1e-4)


def test_resuming_a_one_pass_run_that_predates_the_flag_keeps_its_output(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(8, 8, 8))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (8, 8, 8))
    predating = get_model_kind("regression").predating_flags

    def loop(flags: dict, max_steps: int) -> TrainLoop:
        model, process = sr_create_model_and_diffusion(**{**tiny("regression", "direct"), **flags})
        options = TrainOptions(result_folder=str(tmp_path / "run"), batch_size=1, max_steps=max_steps,
                               save_interval=1)
        return TrainLoop(model=model, diffusion=process, options=options, flags=flags, predating_flags=predating,
                         data=lambda start: iter(crop_loader(PairCropDataset(pairs, (8, 8, 8), 1, seed=0, rank=0,
                                                                             start_batch=start), 0)))

    old = {k: v for k, v in tiny("regression", "direct").items() if k != "one_pass_output"}
    loop(old, 1).run_loop()  # a checkpoint whose flags lack --one_pass_output: trained as "direct"
    with pytest.raises(UserError, match="--one_pass_output 'direct' \\(now 'residual'\\)"):
        loop({**old, "one_pass_output": "residual"}, 2)
    loop({**old, "one_pass_output": "direct"}, 2).run_loop()


def test_one_pass_estimates_are_clipped_at_the_given_bound():
    process = RegressionProcess("l1", output="residual")
    high = torch.full((1, 1, 8, 8, 8), 2.5)
    model = no_zero_layers(sr_create_model_and_diffusion(**tiny("regression", "residual"))[0])
    model.out[-1].weight.data.zero_()
    model.out[-1].bias.data.zero_()  # the identity: the estimate is the input
    with torch.no_grad():
        assert process.predict(model, high, clip=True).max() == 1.0
        assert process.predict(model, high, clip=True, clip_max=3.0).max().item() == pytest.approx(2.5)
