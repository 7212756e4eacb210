"""The training loop on one process: learning, resuming, checkpoints, stopping, fine-tuning, validation, errors."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_helpers import REPO, TINY_NET, TRAIN, run_train, tiny_flags, write_bad, write_npz_pair

from guided_diffusion import dist_util
from guided_diffusion.checkpoint import load_model_weights, read_checkpoint, stored_flags
from guided_diffusion.errors import UserError
from guided_diffusion.model_kinds import ReverseProcess
from guided_diffusion.pet.training.crops import PairCropDataset, crop_loader
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.pet.training.validation import CropEvaluator
from guided_diffusion.script_util import (
    create_gaussian_diffusion,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.train_util import TrainLoop, TrainOptions

PATCH = (8, 8, 8)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    write_npz_pair(folder / "a.npz", shape=(8, 8, 8))
    return prepare_pairs(find_pairs(folder), folder / "cache", PATCH)


def train(pairs, folder, evaluator=None, **options) -> TrainLoop:
    """Train a fresh tiny network (seed 0) with ``options``; return the finished loop."""
    options = TrainOptions(result_folder=str(folder), **{"batch_size": 2, "log_interval": 1, **options})
    flags = tiny_flags()
    torch.manual_seed(options.seed)
    model, diffusion = sr_create_model_and_diffusion(**flags)

    def data(start_batch):
        dataset = PairCropDataset(pairs, PATCH, options.batch_size, seed=options.seed, rank=0, start_batch=start_batch)
        return crop_loader(dataset, num_workers=0)

    loop = TrainLoop(model=model, diffusion=diffusion, data=data, options=options, flags=flags, evaluator=evaluator)
    loop.run_loop()
    return loop


def progress(folder) -> list[dict]:
    with open(folder / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def column(rows, name) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


def test_overfits_one_pair(pairs, tmp_path):
    train(pairs, tmp_path, batch_size=4, lr=1e-3, max_steps=40, log_interval=10, save_interval=100)
    loss = column(progress(tmp_path), "mse")
    assert loss[-1] < 0.2 * loss[0], loss


def test_interrupted_run_resumes_to_the_same_losses(pairs, tmp_path):
    options = {"max_steps": 12, "save_interval": 3, "schedule_sampler": "loss-second-moment"}
    train(pairs, tmp_path / "straight", **options)
    train(pairs, tmp_path / "resumed", **{**options, "max_steps": 6})
    # A save killed half-way leaves only a temporary file; it must not be picked up.
    (tmp_path / "resumed" / ".checkpoint_0000009.pt.x1y2.tmp.pt").write_bytes(b"partial")
    loop = train(pairs, tmp_path / "resumed", **options)
    assert loop.step == 12
    straight, resumed = progress(tmp_path / "straight"), progress(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [str(s) for s in range(1, 13)]
    np.testing.assert_allclose(column(resumed, "loss"), column(straight, "loss"), rtol=1e-5)
    assert not list((tmp_path / "resumed").glob(".checkpoint_*"))
    # keep_last 3: the newest three steps remain, with their EMA files.
    assert sorted(p.name for p in (tmp_path / "resumed").glob("*.pt")) == [
        f"{kind}_{step:07d}.pt" for kind in ("checkpoint", "ema_0.9999") for step in (6, 9, 12)]


def test_checkpoint_loads_into_a_model_built_from_its_flags(pairs, tmp_path):
    train(pairs, tmp_path, max_steps=2, ema_rate="0.99,0.9")
    path = tmp_path / "checkpoint_0000002.pt"
    ckpt = read_checkpoint(path)  # weights_only=True
    assert ckpt["step"] == 2 and set(ckpt["ema"]) == {"0.99", "0.9"}
    for weights in ("ema", "ema:0.9", "model"):
        model, _ = sr_create_model_and_diffusion(**ckpt["flags"])
        load_model_weights(model, path, weights=weights)
    model, _ = sr_create_model_and_diffusion(**ckpt["flags"])
    load_model_weights(model, tmp_path / "ema_0.9_0000002.pt")
    # An EMA file takes the flags of the checkpoint beside it; alone, like the released model.pt, it has none.
    assert stored_flags(path) == stored_flags(tmp_path / "ema_0.9_0000002.pt") == ckpt["flags"]
    alone = tmp_path / "alone"
    alone.mkdir()
    (tmp_path / "ema_0.9_0000002.pt").rename(alone / "ema_0.9_0000002.pt")
    assert stored_flags(alone / "ema_0.9_0000002.pt") is None
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["ema"]["0.9"].items())


def test_lr_anneal_stops_the_run_and_ramps_down(pairs, tmp_path):
    loop = train(pairs, tmp_path, lr=1e-3, lr_anneal_steps=4, max_steps=100)
    assert loop.step == 4
    np.testing.assert_allclose(column(progress(tmp_path), "lr"), [1e-3, 7.5e-4, 5e-4, 2.5e-4])
    with pytest.raises(UserError, match="never stop"):
        TrainOptions().check()


def test_microbatches_give_the_full_batch_gradient(pairs, tmp_path):
    whole = train(pairs, tmp_path / "whole", batch_size=4, max_steps=1)
    split = train(pairs, tmp_path / "split", batch_size=4, microbatch=3, max_steps=1)
    np.testing.assert_allclose(column(progress(tmp_path / "split"), "loss"), column(progress(tmp_path / "whole"), "loss"),
                               rtol=1e-5)
    for a, b in zip(whole.model.parameters(), split.model.parameters()):
        # Gradients, not parameters: Adam's first step moves each weight by lr * sign(grad).
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5 * float(a.grad.abs().max()))


def test_fine_tuning_starts_from_init_weights(pairs, tmp_path):
    train(pairs, tmp_path / "base", max_steps=1, log_interval=1)
    released = tmp_path / "base" / "ema_0.9999_0000001.pt"
    loop = train(pairs, tmp_path / "tuned", max_steps=1, init_weights=str(released), lr=1e-12)
    state = torch.load(released, weights_only=True)
    torch.testing.assert_close({k: v.cpu() for k, v in loop.model.state_dict().items()}, state, rtol=0, atol=1e-9)
    with pytest.raises(UserError, match="does not fit the model"):
        torch.save({"input_blocks.0.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
        train(pairs, tmp_path / "bad", max_steps=1, init_weights=str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs(pairs, tmp_path, precision):
    loop = train(pairs, tmp_path, max_steps=2, precision=precision)
    assert np.isfinite(column(progress(tmp_path), "loss")).all()
    assert loop.scaler.is_enabled() == (precision == "fp16")


def test_validation_scores_are_logged(pairs, tmp_path):
    process = create_gaussian_diffusion(steps=1000, learn_sigma=True, timestep_respacing="ddim2")
    evaluator = CropEvaluator(pairs, ReverseProcess(process, "ddim"), PATCH, num_crops=2, device=dist_util.dev())
    train(pairs, tmp_path, evaluator=evaluator, max_steps=2, val_interval=1)
    rows = progress(tmp_path)
    assert np.isfinite(column(rows, "val_psnr")).all() and (column(rows, "val_ssim") <= 1).all()
    low = column(rows, "val_psnr_low")
    assert low[0] == low[1] > 10  # the low-dose baseline does not depend on the network


def test_script_keeps_the_paper_flag_names():
    spec = importlib.util.spec_from_file_location("train_script", TRAIN)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    flags = {a.dest for a in script.create_argparser()._actions}
    paper = {"data_dir", "result_folder", "lr", "batch_size", "microbatch", "ema_rate", "log_interval", "save_interval",
             "resume_checkpoint", "use_fp16", "lr_anneal_steps", "weight_decay", "schedule_sampler"}
    assert paper | set(sr_model_and_diffusion_defaults()) <= flags


@pytest.mark.parametrize("kind,message", [
    ("empty", "no training pairs found"),
    ("wrong shape", "needs (2, X, Y, Z)"),
    ("mismatched pair", "must share one grid"),
    ("NaN", "NaN or infinite"),
    ("two voxel sizes", "differ in voxel size"),
])
def test_script_refuses_bad_data_with_one_line(tmp_path, kind, message):
    data = tmp_path / "data"
    data.mkdir()
    write_bad(data, kind)
    result = run_train([*TINY_NET, "--data_dir", str(data), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2", "--num_workers", "0"], timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_training_checkpoint_is_accepted_by_the_denoising_script(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz")
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2", "--batch_size", "1", "--num_workers", "0"])
    assert result.returncode == 0, result.stderr
    # The model's grid, taken from the data (1 mm voxels), travels with the checkpoint and its EMA file.
    for name in ("checkpoint_0000002.pt", "ema_0.9999_0000002.pt"):
        assert stored_flags(tmp_path / "run" / name)["model_voxel_size"] == 1.0
    low = np.load(tmp_path / "data" / "pair.npz")["arr_0"][0]
    np.savez(tmp_path / "scan.npz", arr_0=low)
    for model_path in ("checkpoint_0000002.pt", "ema_0.9999_0000002.pt"):
        save = tmp_path / f"out_{model_path[:3]}"
        denoise = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "test.py"), "--config", "tiny", "--channel_mult", "1,2",
             "--model_path", str(tmp_path / "run" / model_path), "--base_samples", str(tmp_path / "scan.npz"),
             "--save_dir", str(save), "--timestep_respacing", "ddim2", "--patch_axial", "8", "--patch_overlap", "2"],
            check=False, capture_output=True, text=True, timeout=120)
        assert denoise.returncode == 0, denoise.stderr
        with np.load(save / "scan_denoised.npz") as f:
            assert f["arr_0"].shape == low.shape and np.isfinite(f["arr_0"]).all()


def test_validation_with_a_warm_start_begins_at_the_low_dose(pairs):
    def zero_noise_model(x_t, t, low_res):  # predicts no noise: x_0 is x_t rescaled
        return torch.zeros_like(x_t)

    scores = {}
    for start in (0, 1):
        process = create_gaussian_diffusion(steps=1000, timestep_respacing="2", start_timestep=start)
        evaluator = CropEvaluator(pairs, ReverseProcess(process, "ddim", warm_start=start > 0), PATCH, num_crops=1,
                                  device=torch.device("cpu"))
        scores[start] = evaluator.evaluate(zero_noise_model, [0])[0]
    # From step 1 the result is the low dose plus noise of SD 0.015; from pure noise it is noise.
    assert scores[1]["val_psnr_low"] - 6 < scores[1]["val_psnr"] < scores[1]["val_psnr_low"]
    assert scores[0]["val_psnr"] < scores[1]["val_psnr"] - 10


def test_a_run_in_a_bucket_saves_and_resumes(pairs, bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = "gs://bucket/run"
    train(pairs, run, max_steps=2, save_interval=1, keep_last=1)
    assert sorted(bucket.objects) == [f"{run}/{name}" for name in
                                      ("checkpoint_0000002.card.json", "checkpoint_0000002.pt",
                                       "ema_0.9999_0000002.card.json", "ema_0.9999_0000002.pt", "progress.csv")]
    first = bucket.objects[f"{run}/progress.csv"].decode().splitlines()
    loop = train(pairs, run, max_steps=3, save_interval=1, keep_last=1)
    assert loop.step == 3 and f"resuming from {run}/checkpoint_0000002.pt at step 2" in capsys.readouterr().out
    rows = bucket.objects[f"{run}/progress.csv"].decode().splitlines()
    assert rows[:3] == first and rows[3].startswith("3,")
    assert list(tmp_path.iterdir()) == [], "nothing may be written locally"


def test_resuming_compares_only_the_flags_a_checkpoint_knows():
    loop = TrainLoop.__new__(TrainLoop)  # only the flag check, no training state
    loop.flags, loop.predating_flags = {"num_channels": 32, "model_voxel_size": 4.0}, {}
    loop._check_flags({"num_channels": 32}, "old.pt")  # written before model_voxel_size existed
    with pytest.raises(UserError, match="--model_voxel_size 2.0"):
        loop._check_flags({"num_channels": 32, "model_voxel_size": 2.0}, "new.pt")
