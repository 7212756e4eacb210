"""The 3D GAN baseline: the patch discriminator, the losses, training (resumable, two ranks) and denoising."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from test_baselines import NET, TEST, TINY, progress, run_script
from training_helpers import TINY_NET, run_train, write_npz_pair

from guided_diffusion.adversarial import MIN_DISC_INPUT, AdversarialProcess, PatchDiscriminator
from guided_diffusion.errors import UserError
from guided_diffusion.pet.training.crops import PairCropDataset, crop_loader
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.regression import RegressionProcess
from guided_diffusion.script_util import sr_create_model_and_diffusion
from guided_diffusion.train_util import TrainLoop, TrainOptions

GAN_NET = [*TINY_NET, "--model_kind", "gan"]


@pytest.mark.parametrize("dims,shape,grid", [(3, (8, 8, 8), (1, 1, 1)), (3, (32, 48, 16), (4, 6, 2)),
                                             (2, (40, 24), (5, 3))])
def test_discriminator_scores_a_grid_of_patches(dims, shape, grid):
    disc = PatchDiscriminator(dims, channels=8)
    low, image = torch.rand(2, 1, *shape), torch.rand(2, 1, *shape)
    assert disc(low, image).shape == (2, 1, *grid)
    with pytest.raises(ValueError, match="multiple of 8"):
        PatchDiscriminator(dims, channels=12)


def test_generator_loss_adds_the_weighted_adversarial_term_and_keeps_its_predictions():
    full = torch.rand(3, 1, 4, 8, 8)
    low = full - 0.1
    process = AdversarialProcess("l1", adv_weight=0.5, discriminator=PatchDiscriminator(3, 8))
    assert isinstance(process, RegressionProcess)  # denoises as the regression baseline does
    t = torch.zeros(3, dtype=torch.long)
    for logit, adversarial in ((1.0, 0.0), (0.0, 1.0), (3.0, 4.0)):  # (D - 1)^2 per patch
        process.critic = lambda low, image, logit=logit: torch.full((len(low), 1, 2, 2, 2), logit)
        losses = process.training_losses(lambda x, t: x + 0.05, full, t, model_kwargs={"low_res": low})
        torch.testing.assert_close(losses["regression"], torch.full((3,), 0.05))
        torch.testing.assert_close(losses["adv"], torch.full((3,), adversarial))
        torch.testing.assert_close(losses["loss"], torch.full((3,), 0.05 + 0.5 * adversarial))
    kept = process.take_predictions()
    assert kept.shape == (9, 1, 4, 8, 8) and not kept.requires_grad
    torch.testing.assert_close(kept[:3], low + 0.05)
    with pytest.raises(RuntimeError, match="no generator predictions"):  # handed over once
        process.take_predictions()


def test_discriminator_loss_wants_one_for_real_and_zero_for_generated():
    low, full, fake = torch.zeros(2, 1, 4, 4, 4), torch.ones(2, 1, 4, 4, 4), torch.full((2, 1, 4, 4, 4), 0.5)

    def critic(low, image):  # the image's mean as the logit: 1 for real, 0.5 for generated
        return image.mean(dim=(1, 2, 3, 4), keepdim=True)

    losses = AdversarialProcess.discriminator_losses(critic, low, full, fake)
    torch.testing.assert_close(losses["real"], torch.zeros(2))
    torch.testing.assert_close(losses["fake"], torch.full((2,), 0.25))
    torch.testing.assert_close(losses["loss"], torch.full((2,), 0.125))


@pytest.mark.slow
def test_gan_training_resumes_to_the_same_losses_with_its_discriminator(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(24, 24, 24))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (24, 24, 24))
    flags = {**TINY, "model_kind": "gan", "disc_channels": 8}

    def train(folder: Path, steps: int) -> None:
        options = TrainOptions(result_folder=str(folder), batch_size=2, max_steps=steps, save_interval=2,
                               log_interval=1, lr=1e-3)
        torch.manual_seed(0)
        model, process = sr_create_model_and_diffusion(**flags)

        def data(start_batch):
            return crop_loader(PairCropDataset(pairs, (24, 24, 24), 2, seed=0, rank=0, start_batch=start_batch), 0)

        TrainLoop(model=model, diffusion=process, data=data, options=options, flags=flags).run_loop()

    train(tmp_path / "straight", 4)
    train(tmp_path / "resumed", 2)
    train(tmp_path / "resumed", 4)
    straight, resumed = progress(tmp_path / "straight"), progress(tmp_path / "resumed")
    for column in ("loss", "adv", "d_loss", "d_real", "d_fake"):
        np.testing.assert_allclose([float(r[column]) for r in resumed], [float(r[column]) for r in straight],
                                   rtol=1e-5, err_msg=column)
    state = torch.load(tmp_path / "resumed" / "checkpoint_0000004.pt", weights_only=True)
    assert set(state["discriminator"]) == {"model", "optimizer", "scaler"}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> Path:
    """A GAN trained by scripts/train.py for 6 steps on two ranks, and a scan to denoise."""
    root = tmp_path_factory.mktemp("gan")
    for seed in (0, 1):
        write_npz_pair(root / "data" / f"pair{seed}.npz", shape=(24, 24, 24), seed=seed)
    result = run_train([*GAN_NET, "--disc_channels", "8", "--data_dir", str(root / "data"), "--result_folder",
                        str(root / "run"), "--max_steps", "6", "--batch_size", "2", "--lr", "1e-3", "--log_interval",
                        "3", "--save_interval", "6", "--num_workers", "0"], ranks=2, timeout=240)
    assert result.returncode == 0, result.stderr
    low = np.load(root / "data" / "pair0.npz")["arr_0"][0]
    nib.save(nib.Nifti1Image(low, np.eye(4)), root / "scan.nii.gz")
    return root


@pytest.mark.slow
@pytest.mark.mpi
def test_gan_trains_on_two_ranks_and_denoises_in_one_pass(gan_run):
    state = torch.load(gan_run / "run" / "checkpoint_0000006.pt", weights_only=True)
    generator_and_discriminator = state["rank_checksums"]
    assert len(generator_and_discriminator) == 2 and len(set(generator_and_discriminator)) == 1
    assert state["flags"]["model_kind"] == "gan" and state["flags"]["disc_channels"] == 8
    with open(gan_run / "run" / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["3", "6"] and all(float(r["d_loss"]) > 0 for r in rows)

    save = gan_run / "out"
    result = run_script(TEST, [*NET, "--model_path", str(gan_run / "run" / "ema_0.9999_0000006.pt"), "--base_samples",
                               str(gan_run / "scan.nii.gz"), "--save_dir", str(save), "--patch_axial", "16",
                               "--max_patch_inplane", "16", "--patch_overlap", "4"])
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((save / "scan_denoised.json").read_text())
    assert sidecar["model_kind"] == "gan" and sidecar["sampler"]["process"] == "gan, one forward pass per patch"


@pytest.mark.parametrize("args,named", [
    ([f"--patch_size={MIN_DISC_INPUT - 4}"], "--patch_size"),
    (["--disc_channels", "12"], "--disc_channels"),
    (["--adv_weight", "-1"], "--adv_weight"),
])
def test_bad_gan_flags_one_line_exit_1(tmp_path, args, named):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(24, 24, 24))
    result = run_train([*GAN_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "never"),
                        "--max_steps", "1", *args])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert not (tmp_path / "never").exists()


def test_resuming_a_gan_needs_its_discriminator(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(8, 8, 8))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (8, 8, 8))
    flags = {**TINY, "model_kind": "gan", "disc_channels": 8}

    def loop() -> TrainLoop:
        model, process = sr_create_model_and_diffusion(**flags)
        options = TrainOptions(result_folder=str(tmp_path / "run"), batch_size=1, max_steps=1, save_interval=1)
        return TrainLoop(model=model, diffusion=process, options=options, flags=flags, data=lambda start: iter(
            crop_loader(PairCropDataset(pairs, (8, 8, 8), 1, seed=0, rank=0, start_batch=start), 0)))

    loop().run_loop()
    path = tmp_path / "run" / "checkpoint_0000001.pt"
    state = torch.load(path, weights_only=True)
    del state["discriminator"]
    torch.save(state, path)
    with pytest.raises(UserError, match="holds no discriminator"):
        loop()


def test_a_2d_gan_trains_on_axial_slices(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(16, 16, 4))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", (16, 16, 1))
    flags = {**TINY, "model_kind": "gan", "disc_channels": 8, "dims": 2}
    model, process = sr_create_model_and_diffusion(**flags)
    options = TrainOptions(result_folder=str(tmp_path / "run"), batch_size=2, max_steps=2, save_interval=2)
    TrainLoop(model=model, diffusion=process, options=options, flags=flags, data=lambda start: iter(crop_loader(
        PairCropDataset(pairs, (16, 16, 1), 2, seed=0, rank=0, start_batch=start, dims=2), 0))).run_loop()
    state = torch.load(tmp_path / "run" / "checkpoint_0000002.pt", weights_only=True)
    assert state["discriminator"]["model"]["net.0.weight"].ndim == 4  # Conv2d: (out, 2, 4, 4)
    assert all(float(r["d_loss"]) > 0 for r in progress(tmp_path / "run"))
