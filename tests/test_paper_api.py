"""The module API that users' copies of the paper's scripts call: ``dist_util``, ``logger``,
``UNetModel.convert_to_fp16`` and ``p_sample_loop`` with the noise third."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from guided_diffusion import dist_util, logger
from guided_diffusion.errors import UserError
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

MPIEXEC = Path(sys.executable).parent / "mpiexec"
DEMO_MODEL = REPO / "models" / "demo" / "model_ema.pt"
#: The demo model's flags (models/demo/README.md: configs/tiny.yaml), sampled in 4 respaced steps.
DEMO_FLAGS = {
    **sr_model_and_diffusion_defaults(), "large_size": 64, "small_size": 64, "num_channels": 32, "num_res_blocks": 1,
    "channel_mult": "1,2,2", "attention_resolutions": "1000", "learn_sigma": True, "resblock_updown": True,
    "use_scale_shift_norm": True, "diffusion_steps": 1000, "noise_schedule": "linear", "timestep_respacing": "4",
}
CROP = (8, 16, 16)  # Z, X, Y voxels


@pytest.fixture(autouse=True)
def fresh_logger(monkeypatch):
    """Each test starts with the logger unconfigured, and leaves it so."""
    monkeypatch.setattr(logger, "_current", None)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- The paper-style script on two ranks ---------------------------------------


@pytest.mark.mpi
@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec of the virtual environment is missing")
def test_a_paper_style_script_samples_on_two_ranks_and_gathers_them(tmp_path):
    run = tmp_path / "run"
    argv = [f"--{key}={value}" for key, value in {**DEMO_FLAGS, "use_fp16": True}.items()]
    command = [str(MPIEXEC), "-n", "2", sys.executable, str(REPO / "tests" / "paper_style_sample.py"), *argv,
               "--model_path", str(DEMO_MODEL), "--log_dir", str(run),
               "--crop", ",".join(map(str, CROP)), "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                                check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the two ranks hung (a collective call reached by one rank only)")
    assert result.returncode == 0, result.stderr

    saved = np.load(run / "samples_2x1x8x16x16.npz")
    samples, low = saved["arr_0"], saved["low"]
    assert samples.shape == (2, 1, *CROP) and np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1  # clip_denoised: the last step returns the clipped x_0
    assert saved["ranks"].tolist() == [0, 1]

    # Rank 1's sample, computed here from its seed: the broadcast weights and the gathering order are right.
    model, diffusion = sr_create_model_and_diffusion(**DEMO_FLAGS)
    model.load_state_dict(dist_util.load_state_dict(DEMO_MODEL, map_location="cpu"))
    shape = (1, 1, *CROP)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(1)
        low_1, noise_1 = torch.rand(shape), torch.randn(shape)
        expected = diffusion.p_sample_loop(model.eval(), shape, noise_1, model_kwargs={"low_res": low_1})
    np.testing.assert_array_equal(low[1:], low_1.numpy())
    np.testing.assert_allclose(samples[1:], expected.numpy(), atol=1e-4)
    assert not np.allclose(samples[0], samples[1])

    assert result.stdout.count("Logging to") == 1 and "sampling complete" in result.stdout
    assert (run / "log.txt").read_text().count("sampling complete") == 1  # rank 0 alone writes
    rows = read_rows(run / "progress.csv")
    assert len(rows) == 1 and rows[0]["samples"] == "2"


# -- logger ----------------------------------------------------------------------


def test_configure_makes_the_folder_and_log_writes_to_stdout_and_log_txt(tmp_path, capsys):
    folder = tmp_path / "a" / "b"
    logger.configure(dir=str(folder))
    logger.log("hello", 3)
    assert logger.get_dir() == str(folder) and folder.is_dir()
    assert capsys.readouterr().out.splitlines() == [f"Logging to {folder}", "hello 3"]
    assert (folder / "log.txt").read_text().splitlines() == [f"Logging to {folder}", "hello 3"]


def test_the_folder_defaults_to_openai_logdir_then_a_new_temporary_one(tmp_path, monkeypatch):
    assert logger.get_dir() is None
    monkeypatch.setenv("OPENAI_LOGDIR", str(tmp_path / "env"))
    logger.configure()
    assert logger.get_dir() == str(tmp_path / "env")
    monkeypatch.delenv("OPENAI_LOGDIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    logger.configure()
    made = Path(logger.get_dir())
    assert made.parent == tmp_path / "tmp" and made.name.startswith("openai-") and made.is_dir()


def test_dumpkvs_prints_a_table_and_appends_csv_rows_adding_new_columns(tmp_path, capsys):
    logger.configure(dir=str(tmp_path))
    logger.logkv("step", 1)
    logger.logkv("step", 2)  # the last value counts
    logger.logkv_mean("loss", 1.0)
    logger.logkv_mean("loss", 2.0)
    assert logger.dumpkvs() == {"step": 2, "loss": 1.5}
    out = capsys.readouterr().out
    assert "| loss | 1.5 |" in out and "| step | 2   |" in out
    logger.logkv("step", 3)
    logger.logkv("grad_norm", 0.25)
    assert logger.dumpkvs() == {"step": 3, "grad_norm": 0.25}
    logger.logkv("loss", 0.5)
    logger.dumpkvs()
    assert logger.dumpkvs() == {}  # values are forgotten once written
    assert read_rows(tmp_path / "progress.csv") == [
        {"step": "2", "loss": "1.5", "grad_norm": ""},
        {"step": "3", "loss": "", "grad_norm": "0.25"},
        {"step": "", "loss": "0.5", "grad_norm": ""},
    ]


def test_a_second_run_in_the_folder_continues_progress_csv(tmp_path):
    for step in (1, 2):
        logger.configure(dir=str(tmp_path))
        logger.logkv("step", step)
        logger.dumpkvs()
    assert [row["step"] for row in read_rows(tmp_path / "progress.csv")] == ["1", "2"]


def test_dumpkvs_averages_over_the_ranks_of_comm(tmp_path):
    class TwoRanks:
        """Rank 0 of a communicator whose other rank logged a loss of 4 over two calls and one of 7."""

        def Get_size(self):
            return 2

        def allgather(self, sums):
            return [sums, {"loss": [4.0, 2], "other": [7.0, 1]}]

    logger.configure(dir=str(tmp_path), comm=TwoRanks())
    logger.logkv_mean("loss", 1.0)
    assert logger.dumpkvs() == {"loss": 5.0 / 3, "other": 7.0}


def test_set_level_hides_lower_messages_and_format_strs_chooses_outputs(tmp_path, capsys):
    logger.configure(dir=str(tmp_path), format_strs="log")
    logger.set_level(logger.WARN)
    logger.log("detail")
    logger.log("careful", level=logger.WARN)
    assert capsys.readouterr().out == ""
    assert (tmp_path / "log.txt").read_text().splitlines() == [f"Logging to {tmp_path}", "careful"]
    with pytest.raises(UserError, match="format_strs json unknown"):
        logger.configure(dir=str(tmp_path), format_strs=["json"])


# -- dist_util -------------------------------------------------------------------


def test_setup_dist_gives_one_process_a_group_of_one():
    import torch.distributed as dist

    dist_util.setup_dist()
    try:
        dist_util.setup_dist()  # again: nothing changes
        gathered = [torch.zeros(2)]
        dist.all_gather(gathered, torch.ones(2))
        assert (dist.get_rank(), dist.get_world_size()) == (0, 1) and gathered[0].tolist() == [1.0, 1.0]
        dist.barrier()
    finally:
        dist.destroy_process_group()  # later tests start without a group, as a plain process does


class _Payload:
    """Unpickling this would create a file: what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_load_state_dict_refuses_a_file_that_runs_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(UserError, match="refused for safety"):
        dist_util.load_state_dict(path, map_location="cpu")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # an unsafe load would indeed run it
    assert marker.exists()


def test_load_state_dict_moves_the_weights_to_map_location(tmp_path):
    path = tmp_path / "model.pt"
    weights = {"module.a": torch.arange(3.0), "module.b": torch.ones(2, 2, dtype=torch.float16)}
    torch.save(weights, path)
    loaded = dist_util.load_state_dict(path, map_location=torch.device("cpu"))
    assert list(loaded) == ["a", "b"]  # the prefix of a DistributedDataParallel wrapper is dropped
    assert torch.equal(loaded["a"], weights["module.a"]) and loaded["b"].dtype == torch.float16
    assert {value.device.type for value in dist_util.load_state_dict(path, map_location="meta").values()} == {"meta"}
    with pytest.raises(TypeError, match="map_location"):
        dist_util.load_state_dict(path, map_location={"cuda:0": "cpu"})


def test_load_state_dict_names_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        dist_util.load_state_dict(tmp_path / "missing.pt")


# -- convert_to_fp16 and p_sample_loop ------------------------------------------------


def tiny_model_and_diffusion():
    flags = {**DEMO_FLAGS, "channel_mult": "1,2", "timestep_respacing": "2"}
    model, diffusion = sr_create_model_and_diffusion(**flags)
    torch.manual_seed(0)
    for parameter in model.parameters():  # the output layer starts at zero: give every weight a value
        torch.nn.init.normal_(parameter, std=0.05)
    return model.eval(), diffusion


def test_convert_to_fp16_keeps_the_state_dict_and_the_cpu_in_float32():
    model, _ = tiny_model_and_diffusion()
    x, low = torch.randn(1, 1, 4, 8, 8), torch.rand(1, 1, 4, 8, 8)
    t = torch.tensor([1])
    before_state = {key: (value.shape, value.dtype) for key, value in model.state_dict().items()}
    with torch.no_grad():
        before = model(x, t, low_res=low)
        model.convert_to_fp16()
        assert model.use_fp16
        after = model(x, t, low_res=low)
    assert {key: (value.shape, value.dtype) for key, value in model.state_dict().items()} == before_state
    assert after.dtype == torch.float32 and torch.equal(after, before)  # the CPU runs float32
    model.convert_to_fp32()
    assert not model.use_fp16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 autocast runs on CUDA only")
def test_convert_to_fp16_runs_float16_on_cuda():
    model, _ = tiny_model_and_diffusion()
    model.cuda()
    x, low = torch.randn(1, 1, 4, 8, 8, device="cuda"), torch.rand(1, 1, 4, 8, 8, device="cuda")
    t = torch.tensor([1], device="cuda")
    with torch.no_grad():
        full = model(x, t, low_res=low)
        model.convert_to_fp16()
        half = model(x, t, low_res=low)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    torch.testing.assert_close(half, full, atol=2e-2, rtol=0)


def test_p_sample_loop_takes_the_noise_third():
    model, diffusion = tiny_model_and_diffusion()
    shape = (1, 1, 4, 8, 8)
    noise, low = torch.randn(shape), torch.rand(shape)
    with torch.no_grad():
        positional = diffusion.p_sample_loop(model, shape, noise, clip_denoised=True, model_kwargs={"low_res": low},
                                             generator=torch.Generator().manual_seed(1))
        keyword = diffusion.p_sample_loop(model, shape, noise=noise, clip_denoised=True,
                                          model_kwargs={"low_res": low}, generator=torch.Generator().manual_seed(1))
        other = diffusion.p_sample_loop(model, shape, torch.randn(shape), model_kwargs={"low_res": low},
                                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(positional, keyword) and not torch.equal(positional, other)
