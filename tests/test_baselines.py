"""Baselines on the same pipeline: the UNet regression, the 2D DDPM (slice by slice), the fitted Gaussian filter."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from training_helpers import MPIEXEC, REPO, TINY_NET, run_train, write_npz_pair

from guided_diffusion.checkpoint import stored_flags, suggest_flags
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.errors import UserError
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.filters import gaussian_smooth
from guided_diffusion.pet.training.crops import PairCropDataset, crop_loader, parse_patch_size
from guided_diffusion.pet.training.gaussian_fit import fit_gaussian_fwhm
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.regression import RegressionProcess
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults
from guided_diffusion.train_util import TrainLoop, TrainOptions

TEST = REPO / "scripts" / "test.py"
FIT = REPO / "scripts" / "fit_gaussian.py"
# The tiny network with two levels (TINY_NET without --patch_size), for scripts/test.py.
NET = TINY_NET[:4]
TINY = {**sr_model_and_diffusion_defaults(), "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
        "attention_resolutions": "1000", "learn_sigma": True, "resblock_updown": True, "large_size": 64,
        "diffusion_steps": 100}


def run_script(script: Path, args: list[str], ranks: int = 1) -> subprocess.CompletedProcess:
    command = [sys.executable, str(script), *args]
    if ranks > 1:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def progress(folder: Path) -> list[dict]:
    with open(folder / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def random_weights(model: torch.nn.Module) -> torch.nn.Module:
    """No zero layers: the output depends on the input."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory) -> Path:
    """A regression model trained by scripts/train.py for 30 steps on one tiny pair, and a scan to denoise."""
    root = tmp_path_factory.mktemp("regression")
    write_npz_pair(root / "data" / "pair.npz", shape=(16, 16, 8))
    write_npz_pair(root / "val" / "pair.npz", shape=(16, 16, 8), seed=1)
    result = run_train([*TINY_NET, "--model_kind", "regression", "--regression_loss", "l1", "--data_dir",
                        str(root / "data"), "--val_dir", str(root / "val"), "--result_folder", str(root / "run"),
                        "--max_steps", "30", "--batch_size", "2", "--lr", "1e-3", "--log_interval", "10",
                        "--val_interval", "30", "--save_interval", "30", "--num_workers", "0"])
    assert result.returncode == 0, result.stderr
    low = np.load(root / "data" / "pair.npz")["arr_0"][0]
    nib.save(nib.Nifti1Image(low, np.diag([1.0, 1.0, 1.0, 1.0])), root / "scan.nii.gz")
    return root


# -- regression ------------------------------------------------------------------


@pytest.mark.slow
def test_regression_training_lowers_the_loss_and_records_its_kind(regression_run):
    rows = progress(regression_run / "run")
    loss = [float(r["loss"]) for r in rows if r["loss"]]
    assert loss[-1] < 0.7 * loss[0], loss
    # Validation scores the one forward pass of the EMA weights (crop PSNR) beside the low dose's.
    last = rows[-1]
    assert np.isfinite(float(last["val_psnr"])) and float(last["val_psnr_low"]) > 10
    for name in ("checkpoint_0000030.pt", "ema_0.9999_0000030.pt"):
        flags = stored_flags(regression_run / "run" / name)
        assert flags["model_kind"] == "regression" and flags["regression_loss"] == "l1"
    state = torch.load(regression_run / "run" / "ema_0.9999_0000030.pt", weights_only=True)
    # The paper's UNet layout, one input channel (the low dose) and one output channel.
    model, process = sr_create_model_and_diffusion(**{**TINY, "model_kind": "regression"})
    assert set(state) == set(model.state_dict()) and isinstance(process, RegressionProcess)
    assert state["input_blocks.0.0.weight"].shape[1] == 1 and state["out.2.weight"].shape[0] == 1
    assert "--model_kind regression" in suggest_flags(state)


@pytest.mark.slow
def test_regression_checkpoint_denoises_deterministically_through_the_writer(regression_run):
    model_path = regression_run / "run" / "checkpoint_0000030.pt"
    outputs = []
    for seed, batch in ((0, 4), (5, 1)):
        save = regression_run / f"out_{seed}"
        result = run_script(TEST, [*NET, "--model_path", str(model_path), "--base_samples",
                                   str(regression_run / "scan.nii.gz"), "--save_dir", str(save), "--seed", str(seed),
                                   "--batch_size", str(batch), "--patch_axial", "8", "--max_patch_inplane", "8",
                                   "--patch_overlap", "2"])
        assert result.returncode == 0, result.stderr
        image = nib.load(save / "scan_denoised.nii.gz")
        assert image.shape == (16, 16, 8) and np.allclose(image.affine, np.eye(4))
        outputs.append(np.asarray(image.dataobj))
        sidecar = json.loads((save / "scan_denoised.json").read_text())
        assert sidecar["model_kind"] == "regression" and sidecar["patch_plan"]["num_patches"] > 1
        assert sidecar["sampler"]["process"].startswith("regression")
        assert not (save / "scan_denoised_std.nii.gz").exists()
    # No noise anywhere: another seed and batch size give the same volume.
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5, rtol=0)
    assert outputs[0].std() > 0


def test_regression_process_losses_and_prediction():
    full = torch.rand(3, 1, 4, 8, 8)
    low = full - 0.1

    def shift(x, t):  # a network that adds 0.05
        assert (t == 0).all()
        return x + 0.05

    for loss, expected in (("l1", 0.05), ("l2", 0.0025)):
        terms = RegressionProcess(loss).training_losses(shift, full, torch.zeros(3, dtype=torch.long),
                                                        model_kwargs={"low_res": low})
        torch.testing.assert_close(terms["loss"], torch.full((3,), expected), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(RegressionProcess().predict(shift, low), (low + 0.05).clamp(-1, 1))


@pytest.mark.slow
def test_regression_training_resumes_to_the_same_losses(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(8, 8, 8))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (8, 8, 8))

    def train(folder: Path, steps: int) -> None:
        options = TrainOptions(result_folder=str(folder), batch_size=2, max_steps=steps, save_interval=2,
                               log_interval=1, lr=1e-3)
        torch.manual_seed(0)
        model, process = sr_create_model_and_diffusion(**{**TINY, "model_kind": "regression"})

        def data(start_batch):
            return crop_loader(PairCropDataset(pairs, (8, 8, 8), 2, seed=0, rank=0, start_batch=start_batch), 0)

        TrainLoop(model=model, diffusion=process, data=data, options=options,
                  flags={**TINY, "model_kind": "regression"}).run_loop()

    train(tmp_path / "straight", 4)
    train(tmp_path / "resumed", 2)
    train(tmp_path / "resumed", 4)
    straight, resumed = progress(tmp_path / "straight"), progress(tmp_path / "resumed")
    np.testing.assert_allclose([float(r["loss"]) for r in resumed], [float(r["loss"]) for r in straight], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.mpi
def test_regression_denoising_is_the_same_on_two_ranks(regression_run):
    outputs = []
    for ranks in (1, 2):
        save = regression_run / f"ranks_{ranks}"
        result = run_script(TEST, [*NET, "--model_path", str(regression_run / "run" / "ema_0.9999_0000030.pt"),
                                   "--base_samples", str(regression_run / "scan.nii.gz"), "--save_dir", str(save),
                                   "--batch_size", "1", "--patch_axial", "4", "--max_patch_inplane", "8",
                                   "--patch_overlap", "2"], ranks=ranks)
        assert result.returncode == 0, result.stderr
        outputs.append(np.asarray(nib.load(save / "scan_denoised.nii.gz").dataobj))
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5, rtol=0)


# -- 2D DDPM, slice by slice ----------------------------------------------------


def test_2d_patch_size_is_an_axial_slice():
    assert parse_patch_size("16", dims=2) == (16, 16, 1)
    assert parse_patch_size("16,8,1", dims=2) == (16, 8, 1)
    assert parse_patch_size("16") == (16, 16, 16)
    with pytest.raises(UserError, match="axial slices"):
        parse_patch_size("16,16,4", dims=2)


@pytest.mark.parametrize("kind", ["diffusion", "regression"])
def test_2d_network_denoises_each_slice_on_its_own(kind):
    model, process = sr_create_model_and_diffusion(**{**TINY, "dims": 2, "model_kind": kind,
                                                      "timestep_respacing": "ddim2"})
    model = random_weights(model)
    sampling = SamplingOptions(batch_size=3)
    denoiser = VolumeDenoiser(model, MODEL_KINDS[kind].predictor(process, sampling), sampling,
                              PatchingOptions(patch_axial=8, max_patch_inplane=16, overlap=3), suv_max=16.0)
    suv = np.random.default_rng(0).gamma(2.0, 1.0, (12, 10, 5)).astype(np.float32)
    plan = denoiser.plan(suv.shape)
    assert plan.patch_size[2] == 1 and plan.overlap[2] == 0 and len(plan) == 5
    before = denoiser.denoise(suv, "vol").mean
    changed = suv.copy()
    changed[:, :, 2] *= 2
    after = denoiser.denoise(changed, "vol").mean
    assert before.shape == suv.shape
    differs = [not np.array_equal(before[:, :, z], after[:, :, z]) for z in range(suv.shape[2])]
    assert differs == [False, False, True, False, False]


@pytest.mark.slow
def test_2d_ddpm_trains_on_slices_and_denoises_slice_by_slice(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(16, 16, 6))
    result = run_train([*NET, "--dims", "2", "--patch_size", "8", "--data_dir", str(tmp_path / "data"),
                        "--result_folder", str(tmp_path / "run"), "--max_steps", "3", "--batch_size", "2",
                        "--num_workers", "0"])
    assert result.returncode == 0, result.stderr
    assert stored_flags(tmp_path / "run" / "checkpoint_0000003.pt")["dims"] == 2
    low = np.load(tmp_path / "data" / "pair.npz")["arr_0"][0]
    np.savez(tmp_path / "scan.npz", arr_0=low, affine=np.eye(4))
    # --dims comes from the checkpoint, as --model_kind and --model_voxel_size do.
    result = run_script(TEST, [*NET, "--model_path", str(tmp_path / "run" / "ema_0.9999_0000003.pt"),
                               "--base_samples", str(tmp_path / "scan.npz"), "--save_dir", str(tmp_path / "out"),
                               "--timestep_respacing", "ddim2", "--num_ensemble", "2"])
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out" / "scan_denoised.npz") as f:
        assert f["arr_0"].shape == low.shape and np.isfinite(f["arr_0"]).all()
    sidecar = json.loads((tmp_path / "out" / "scan_denoised.json").read_text())
    assert sidecar["patch_plan"]["patch_size"][2] == 1 and sidecar["patch_plan"]["num_patches"] == 6
    assert sidecar["sampler"]["dims"] == 2 and (tmp_path / "out" / "scan_denoised_std.npz").exists()


# -- Gaussian filter fitted on validation pairs -----------------------------------


def smooth_pair(folder: Path, noise: float, seed: int) -> None:
    """A noise-free smooth reference (a broad blob, 2 mm voxels) and the same plus white noise."""
    x, y, z = np.meshgrid(*(np.arange(n) - n / 2 for n in (24, 24, 16)), indexing="ij")
    full = (1.0 + 4.0 * np.exp(-(x**2 + y**2 + z**2) / (2 * 5.0**2))).astype(np.float32)
    low = full + np.random.default_rng(seed).normal(0, noise, full.shape).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"pair{seed}.npz", arr_0=np.stack([low, full]), affine=np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.mark.slow
def test_fit_gaussian_picks_a_filter_for_noise_and_none_for_a_clean_pair(tmp_path):
    for seed in (1, 2):
        smooth_pair(tmp_path / "val", noise=0.5, seed=seed)
    result = run_script(FIT, ["--val_dir", str(tmp_path / "val"), "--out", str(tmp_path / "gaussian.json")])
    assert result.returncode == 0, result.stderr
    fit = json.loads((tmp_path / "gaussian.json").read_text())
    assert fit["model_kind"] == "gaussian" and fit["model_voxel_size"] == 2.0 and fit["num_pairs"] == 2
    assert fit["fwhm_mm"] > 0 and fit["mean_psnr"][f"{fit['fwhm_mm']:g}"] == max(fit["mean_psnr"].values())
    assert fit["mean_psnr"][f"{fit['fwhm_mm']:g}"] > fit["mean_psnr"]["0"] + 3
    # Low dose = full dose: no filter is best.
    smooth_pair(tmp_path / "clean", noise=0.0, seed=3)
    pairs = prepare_pairs(find_pairs(tmp_path / "clean"), tmp_path / "cache", (1, 1, 1), 2.0)
    assert fit_gaussian_fwhm(pairs, 2.0).fwhm_mm == 0.0
    assert fit_gaussian_fwhm(pairs, 2.0, (3.0, 6.0)).fwhm_mm == 3.0

    # scripts/test.py applies the fit with no network, on the fit's grid (here the input's), through the writer.
    low = np.load(tmp_path / "val" / "pair1.npz")["arr_0"][0]
    nib.save(nib.Nifti1Image(low, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "scan.nii.gz")
    for flags, save in ((["--model_path", str(tmp_path / "gaussian.json")], "out_fit"),
                        (["--gaussian_fwhm_mm", str(fit["fwhm_mm"])], "out_flag")):
        result = run_script(TEST, [*flags, "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir",
                                   str(tmp_path / save)])
        assert result.returncode == 0, result.stderr
        image = nib.load(tmp_path / save / "scan_denoised.nii.gz")
        np.testing.assert_allclose(np.asarray(image.dataobj), gaussian_smooth(low, fit["fwhm_mm"], 2.0), atol=1e-5)
        sidecar = json.loads((tmp_path / save / "scan_denoised.json").read_text())
        assert sidecar["model_kind"] == "gaussian" and sidecar["patch_plan"] is None


# -- refusals ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("script,args,named", [
    ("train", ["--model_kind", "foo"], "--model_kind"),
    ("train", ["--regression_loss", "l3", "--model_kind", "regression"], "--regression_loss"),
    ("train", ["--dims", "2", "--patch_size", "8,8,4"], "--patch_size"),
    ("train", ["--dims", "4"], "--dims"),
    ("test", ["--model_kind", "foo"], "--model_kind"),
    ("test", ["--num_ensemble", "2"], "--num_ensemble"),
    ("test", ["--gaussian_fwhm_mm", "-1"], "--gaussian_fwhm_mm"),
    ("test", ["--gaussian_fwhm_mm", "4"], "give one"),
    ("fit", [], "--val_dir"),
    ("fit", ["--val_dir", "val", "--fwhm_grid_mm", "a,b"], "--fwhm_grid_mm"),
])
def test_bad_baseline_flags_one_line_exit_1(regression_run, script, args, named):
    common = {
        "train": [*TINY_NET, "--data_dir", str(regression_run / "data"), "--result_folder",
                  str(regression_run / "never"), "--max_steps", "1"],
        "test": [*NET, "--model_path", str(regression_run / "run" / "ema_0.9999_0000030.pt"), "--base_samples",
                 str(regression_run / "scan.nii.gz"), "--save_dir", str(regression_run / "never")],
        "fit": ["--out", str(regression_run / "never" / "g.json")],
    }[script]
    path = {"train": REPO / "scripts" / "train.py", "test": TEST, "fit": FIT}[script]
    result = run_script(path, [*common, *args])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert not (regression_run / "never").exists()
