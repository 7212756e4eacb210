"""Faults that would publish non-finite numbers or waste work: diverging training, NaN models, bad flags.

Each refusal is one line on stderr and exit status 1 (on every rank), and leaves nothing behind that the
run should not have written: no diverged checkpoint, no result file, no data cache, no MPI job.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from denoise_helpers import FAST, run, write_random_model
from training_helpers import MPIEXEC, REPO, TINY_NET, run_train, tiny_flags, write_npz_pair

from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser
from guided_diffusion.pet.io import read_volume, write_volume
from guided_diffusion.pet.training.crops import PairCropDataset, crop_loader
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.script_util import sr_create_model_and_diffusion
from guided_diffusion.train_util import TrainLoop, TrainOptions

PATCH = (8, 8, 8)


#: What the scripts' progress bars print before their description.
BAR_PREFIXES = ("training:", "rank 0 of ")


def one_error_line(stderr: str) -> str:
    """The one ``error:`` line ending ``stderr``, which holds nothing else but progress-bar redraws.

    A bar redraws itself after a carriage return, which a subprocess's text mode turns into a newline, so its
    redraws (and the blank one that erases it) read as lines of their own here.
    """
    *before, last = stderr.rstrip("\n").split("\n")
    assert last.startswith("error: "), stderr
    assert all(not line.strip() or line.startswith(BAR_PREFIXES) for line in before), stderr
    return last


def tiny_loop(folder: Path, data_folder: Path, **options) -> TrainLoop:
    """A TrainLoop of the tiny network (seed 0) on the pairs in ``data_folder``, 8-voxel crops (batch 2 unless ``options`` say)."""
    pairs = prepare_pairs(find_pairs(data_folder), data_folder / "cache", PATCH)
    options = TrainOptions(result_folder=str(folder), **{"batch_size": 2, "log_interval": 1, **options})
    flags = tiny_flags()
    torch.manual_seed(0)
    model, diffusion = sr_create_model_and_diffusion(**flags)

    def data(start_batch):
        return crop_loader(PairCropDataset(pairs, PATCH, options.batch_size, seed=0, rank=0, start_batch=start_batch),
                           num_workers=0)

    return TrainLoop(model=model, diffusion=diffusion, data=data, options=options, flags=flags)


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    write_npz_pair(folder / "a.npz", shape=(8, 8, 8))
    return folder


# -- training flags --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options,named", [
    ({"lr": float("inf")}, "--lr must be positive"),
    ({"lr": float("nan")}, "--lr must be positive"),
    ({"lr": -1e-4}, "--lr must be positive"),
    ({"weight_decay": float("inf")}, "--weight_decay"),
    ({"weight_decay": -0.1}, "--weight_decay"),
    ({"grad_clip": float("nan")}, "--grad_clip"),
])
def test_non_finite_or_negative_optimiser_flags_are_refused(options, named):
    with pytest.raises(UserError, match=named) as info:
        TrainOptions(max_steps=1, **options).check()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv,message", [
    (["--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["--lr", "-1e-4"], "--lr must be positive and finite, got -0.0001"),
    (["--lr=-1E-4"], "--lr must be positive and finite, got -0.0001"),
    (["--weight_decay", "-inf"], "--weight_decay must be 0 or a positive finite number, got -inf"),
])
def test_the_training_script_refuses_bad_learning_rates_before_touching_data(tmp_path, argv, message):
    write_npz_pair(tmp_path / "data" / "pair.npz")
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2", "--num_workers", "0", *argv], timeout=60)
    assert result.returncode == 1
    assert one_error_line(result.stderr) == f"error: {message}"
    assert not (tmp_path / "run").exists()


def test_negative_numbers_are_values_not_flags():
    parser = FlagParser(prog="test.py")
    add_dict_to_argparser(parser, {"lr": 1e-4, "num_head_channels": 64, "shift": 0.0})
    args = parser.parse_args(["--lr", "-1e-4", "--num_head_channels", "-1", "--shift", "-.5E+2"])
    assert (args.lr, args.num_head_channels, args.shift) == (-1e-4, -1, -50.0)
    assert parser.parse_args(["--shift", "-inf"]).shift == float("-inf")
    # A word after a flag that takes a value is still an error, not a value.
    with pytest.raises(UserError, match="expected one argument"):
        parser.parse_args(["--lr", "-x"])


def test_the_denoising_script_reads_negative_values():
    spec = importlib.util.spec_from_file_location("denoise_script", REPO / "scripts" / "test.py")
    denoise_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(denoise_script)
    args = denoise_script.create_argparser().parse_args(["--num_head_channels", "-1", "--ddim_eta", "-1e-1"])
    assert (args.num_head_channels, args.ddim_eta) == (-1, -0.1)


# -- divergence ------------------------------------------------------------------------------------------------


def nan_loss_from(loop: TrainLoop, step: int) -> None:
    """Make the training loss NaN from the 1-based step ``step`` on."""
    training_losses = loop.diffusion.training_losses

    def poisoned(*args, **kwargs):
        losses = training_losses(*args, **kwargs)
        if loop.step + 1 >= step:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    loop.diffusion.training_losses = poisoned


def test_a_nan_loss_stops_training_at_its_step_keeping_the_last_good_checkpoint(pair_folder, tmp_path):
    loop = tiny_loop(tmp_path, pair_folder, max_steps=4, save_interval=2)
    nan_loss_from(loop, step=3)
    with pytest.raises(UserError) as info:
        loop.run_loop()
    message = str(info.value)
    assert message.startswith("training diverged at step 3: the loss became NaN or infinite") and "\n" not in message
    assert str(tmp_path / "checkpoint_0000002.pt") in message and "--lr" in message
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_0000002.pt", "ema_0.9999_0000002.pt"]
    # The EMA never saw the diverged step.
    ema = loop.ema.state_dict(loop.model, loop.rates[0])
    assert all(torch.isfinite(v).all() for v in ema.values())
    assert [int(r.split(",")[0]) for r in (tmp_path / "progress.csv").read_text().splitlines()[1:]] == [1, 2]


def test_non_finite_parameters_after_a_step_stop_training(pair_folder, tmp_path):
    loop = tiny_loop(tmp_path, pair_folder, max_steps=3)
    step = loop.opt.step

    def step_then_break(*args, **kwargs):
        step(*args, **kwargs)
        next(loop.model.parameters()).data[0] = float("inf")

    loop.opt.step = step_then_break
    ema_before = loop.ema.state_dict(loop.model, loop.rates[0])
    with pytest.raises(UserError, match="training diverged at step 1: the parameters became NaN or infinite; "
                                        "no checkpoint of this run was saved yet"):
        loop.run_loop()
    ema_after = loop.ema.state_dict(loop.model, loop.rates[0])
    assert all(torch.equal(ema_before[k], ema_after[k]) for k in ema_before)
    assert not list(tmp_path.glob("*.pt"))


def test_weights_that_already_diverged_are_refused_when_loaded(pair_folder, tmp_path):
    tiny_loop(tmp_path / "run", pair_folder, max_steps=1, save_interval=1).run_loop()
    checkpoint = tmp_path / "run" / "checkpoint_0000001.pt"
    state = torch.load(checkpoint, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = torch.full_like(state["model"][first], float("nan"))
    torch.save(state, checkpoint)  # as a run saved after it diverged
    with pytest.raises(UserError, match=f"--resume_checkpoint {checkpoint}: its weights hold NaN or infinite"):
        tiny_loop(tmp_path / "run", pair_folder, max_steps=2)
    torch.save(state["model"], tmp_path / "nan_weights.pt")
    with pytest.raises(UserError, match="--init_weights .*nan_weights.pt: its weights hold NaN or infinite"):
        tiny_loop(tmp_path / "fresh", pair_folder, max_steps=1, init_weights=str(tmp_path / "nan_weights.pt"))


def test_the_training_script_stops_a_run_that_diverges(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz")
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "8", "--save_interval", "1", "--num_workers", "0", "--lr", "1e6"], timeout=120)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith("error: training diverged at step "), line
    diverged = int(line.split("step ")[1].split(":")[0])
    saved = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "run").glob("checkpoint_*.pt"))
    assert saved == list(range(max(1, diverged - 3), diverged))  # keep_last 3, the diverged step not among them
    for path in (tmp_path / "run").glob("ema_*.pt"):
        assert all(torch.isfinite(v).all() for v in torch.load(path, weights_only=True).values())


NAN_ON_RANK_ONE = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from guided_diffusion import dist_util
from test_faults_nonfinite import nan_loss_from, tiny_loop

def main():
    loop = tiny_loop(Path({run!r}), Path({data!r}), max_steps=4, save_interval=1)
    if dist_util.rank() == 1:
        nan_loss_from(loop, step=3)
    loop.run_loop()

dist_util.run_main(main)
"""


@pytest.mark.mpi
def test_a_nan_on_one_rank_stops_every_rank(pair_folder, tmp_path):
    code = NAN_ON_RANK_ONE.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run"), data=str(pair_folder))
    result = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=180, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr
    assert one_error_line(result.stderr).startswith("error: ") and "diverged at step 3" in result.stderr
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*.pt")) == [
        "checkpoint_0000001.pt", "checkpoint_0000002.pt"]


# -- checks before computing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--resume_checkpoint", "--init_weights"])
def test_a_missing_or_unreadable_checkpoint_is_reported_before_the_data_cache_is_written(tmp_path, flag):
    write_npz_pair(tmp_path / "data" / "pair.npz")
    for name, content in (("missing.pt", None), ("text.pt", b"not a torch file")):
        if content is not None:
            (tmp_path / name).write_bytes(content)
        result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                            "--max_steps", "2", "--num_workers", "0", flag, str(tmp_path / name)], timeout=60)
        assert result.returncode == 1
        assert str(tmp_path / name) in one_error_line(result.stderr)
        assert not (tmp_path / "run" / "data_cache").exists()


def test_a_plain_state_dict_given_to_resume_is_refused_before_the_data_cache_is_written(tmp_path):
    write_npz_pair(tmp_path / "data" / "pair.npz")
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2", "--num_workers", "0", "--resume_checkpoint", str(tmp_path / "weights.pt")],
                       timeout=60)
    assert result.returncode == 1
    assert "plain state_dict" in one_error_line(result.stderr)
    assert not (tmp_path / "run" / "data_cache").exists()


# -- writers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scan.npz", "scan.nii.gz"])
def test_writers_refuse_non_finite_results(tmp_path, name):
    data = np.ones((6, 5, 4), np.float32)
    source = tmp_path / name
    if name.endswith(".npz"):
        np.savez(source, arr_0=data)
    else:
        import nibabel as nib
        nib.save(nib.Nifti1Image(data, np.eye(4)), source)
    volume = read_volume(source)
    result = data.copy()
    result[0, 0, :3] = [np.nan, np.inf, -np.inf]
    out = tmp_path / "out" / name
    with pytest.raises(UserError) as info:
        write_volume(out, result, volume)
    assert str(info.value) == (f"{out}: 3 of 120 voxels of the result are NaN or infinite; the model's output is not "
                               "finite: a diverged model? Nothing written")
    assert not out.parent.exists() or not list(out.parent.iterdir())


def write_nan_model(path: Path) -> Path:
    """The denoise_helpers network with every weight NaN (what a diverged run leaves)."""
    write_random_model(path)
    state = torch.load(path, weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, path)
    return path


def test_a_nan_model_writes_nothing(tmp_path):
    low = np.random.default_rng(0).uniform(0.5, 2.0, (8, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "scan.npz", arr_0=low)
    model = write_nan_model(tmp_path / "model.pt")
    result = run(["--model_path", str(model), "--base_samples", str(tmp_path / "scan.npz"),
                  "--save_dir", str(tmp_path / "out"), *FAST], ranks=0)
    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        f"error: scan: 512 of 512 voxels of the result are NaN or infinite: the model {model} gave non-finite "
        "output (a diverged model?); nothing written")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- launchers -------------------------------------------------------------------------------------------------


def run_launcher(tmp_path: Path, launcher: str, num_gpus: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``launcher`` with NUM_GPUS (unset for None) and a stand-in MPIEXEC; return the run and the file in
    which the stand-in writes its arguments when it is called."""
    called = tmp_path / "mpiexec_arguments"
    fake_mpiexec = tmp_path / "mpiexec"
    fake_mpiexec.write_text(f"#!/bin/sh\nprintf '%s ' \"$@\" > {called}\n")
    fake_mpiexec.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "NUM_GPUS"}
    env.update({"MPIEXEC": str(fake_mpiexec), **({"NUM_GPUS": num_gpus} if num_gpus is not None else {})})
    result = subprocess.run(["bash", str(REPO / launcher)], capture_output=True, text=True, env=env, check=False,
                            timeout=30)
    return result, called


@pytest.mark.parametrize("launcher", ["test_DDPM_3d_mpi.sh", "train_DDPM_3d_mpi.sh"])
@pytest.mark.parametrize("num_gpus", ["abc", "0", "-1", "1.5"])
def test_launchers_refuse_a_bad_number_of_ranks(tmp_path, launcher, num_gpus):
    result, called = run_launcher(tmp_path, launcher, num_gpus)
    assert result.returncode == 1
    assert result.stderr == (f"error: NUM_GPUS={num_gpus}: give the number of MPI ranks (one per GPU), "
                             "a whole number of 1 or more\n")
    assert not called.exists()


@pytest.mark.parametrize("num_gpus,ranks", [("2", "2"), (None, "1")])
def test_launchers_pass_a_good_number_of_ranks(tmp_path, num_gpus, ranks):
    result, called = run_launcher(tmp_path, "test_DDPM_3d_mpi.sh", num_gpus)
    assert result.returncode == 0, result.stderr
    assert called.read_text().startswith(f"-n {ranks} ")
