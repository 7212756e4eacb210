"""Device choice under MPI: collective once at start-up, then a getter any subset of ranks may call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from guided_diffusion import dist_util

BIN = Path(sys.executable).parent

# CUDA faked before guided_diffusion is imported: the GPU path of device selection
# runs on machines without a GPU.
FAKE_CUDA = """
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: {gpus}
torch.cuda.set_device = lambda device: None
from guided_diffusion import dist_util
"""


def run_two_ranks(tmp_path: Path, body: str, gpus: int) -> subprocess.CompletedProcess:
    script = tmp_path / "two_ranks.py"
    script.write_text(FAKE_CUDA.format(gpus=gpus) + body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    try:
        return subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, str(script)], check=False,
                              capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the two ranks hung (a collective call reached by one rank only)")


@pytest.mark.parametrize("gpus", [1, 2])
def test_dev_on_one_rank_then_a_barrier_returns_with_gpus(tmp_path, gpus):
    # scripts/test.py asks for the device on rank 0 alone while writing the sidecar.
    result = run_two_ranks(tmp_path, (
        "def main():\n"
        "    if dist_util.rank() == 0:\n"
        "        dist_util.dev()\n"
        "    dist_util.COMM.Barrier()\n"
        "    devices = dist_util.COMM.gather(str(dist_util.dev()), root=0)\n"
        "    if dist_util.rank() == 0:\n"
        "        print('devices', *devices, flush=True)\n"
        "dist_util.run_main(main)\n"
    ), gpus)
    assert result.returncode == 0, result.stderr
    assert f"devices cuda:0 cuda:{1 % gpus}" in result.stdout, result.stdout


def test_dev_before_setup_under_mpi_is_a_bug_not_a_hang(tmp_path):
    result = run_two_ranks(tmp_path, "dist_util.dev()\n", gpus=1)
    assert result.returncode != 0 and "setup_device" in result.stderr


def test_a_single_process_chooses_its_device_on_first_use(monkeypatch):
    monkeypatch.setattr(dist_util, "_device", None)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dist_util.dev().type == expected
    assert dist_util.setup_device() is dist_util.dev()


def test_cpu_ranks_share_the_cores(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(
        "import torch\n"
        "torch.cuda.is_available = lambda: False\n"
        "from guided_diffusion import dist_util\n"
        "def main():\n"
        "    threads = dist_util.COMM.gather(torch.get_num_threads(), root=0)\n"
        "    if dist_util.rank() == 0:\n"
        "        print('threads', *threads, flush=True)\n"
        "dist_util.run_main(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PATH"] = f"{BIN}:{os.environ['PATH']}"
    result = subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, str(script)], check=False,
                            capture_output=True, text=True, timeout=60, env=env)
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert result.returncode == 0 and f"threads {share} {share}" in result.stdout, result.stdout + result.stderr
