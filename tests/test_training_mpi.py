"""scripts/train.py under ``mpiexec -n 2``: identical parameters on every rank, resuming, failing together."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from training_helpers import MPIEXEC, TINY_NET, run_train, write_bad, write_npz_pair

from guided_diffusion.checkpoint import read_checkpoint

pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec of the virtual environment is missing")


def checksum(state: dict) -> str:
    """What each rank recorded: SHA-256 over the parameters' bytes (a state_dict holds no buffers here)."""
    digest = hashlib.sha256()
    for value in state.values():
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_two_ranks_keep_identical_parameters_and_resume(tmp_path):
    for i in range(3):  # three files over two ranks: rank 0 reads two, rank 1 one
        write_npz_pair(tmp_path / "data" / f"s{i}.npz", seed=i)
    run = tmp_path / "run"
    flags = [*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(run), "--batch_size", "1",
             "--save_interval", "2", "--log_interval", "2", "--num_workers", "1"]
    first = run_train([*flags, "--max_steps", "4"], ranks=2)
    assert first.returncode == 0, first.stderr
    assert "global batch 1 x 2 = 2" in first.stdout
    ckpt = read_checkpoint(run / "checkpoint_0000004.pt")
    assert len(ckpt["rank_checksums"]) == 2
    assert set(ckpt["rank_checksums"]) == {checksum(ckpt["model"])}
    assert len(ckpt["rng"]["ranks"]) == 2

    second = run_train([*flags, "--max_steps", "6"], ranks=2)
    assert second.returncode == 0, second.stderr
    assert "at step 4" in second.stdout
    ckpt = read_checkpoint(run / "checkpoint_0000006.pt")
    assert ckpt["step"] == 6 and set(ckpt["rank_checksums"]) == {checksum(ckpt["model"])}
    steps = np.loadtxt(run / "progress.csv", delimiter=",", skiprows=1, usecols=0)
    assert steps.tolist() == [2, 4, 6]


def test_bad_file_on_one_rank_stops_every_rank(tmp_path):
    write_npz_pair(tmp_path / "data" / "a.npz")
    write_bad(tmp_path / "data", "NaN")  # x.npz: the second file, read by rank 1 only
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2"], ranks=2, timeout=60)
    assert result.returncode != 0
    assert result.stderr.count("error: rank 1: ") == 1 and "NaN or infinite" in result.stderr
