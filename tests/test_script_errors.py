"""Every script reports a bad flag the same way: one line ``error: ...`` on stderr and exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.parametrize("script,argv,named", [
    ("scripts/make_phantoms.py", ["--out_dir", "unused", "--num_subjects", "two"], "--num_subjects"),
    ("scripts/train.py", ["--not_a_flag", "1"], "--not_a_flag"),
    ("scripts/train.py", ["--data_dir", "pairs", "--result_folder", "gs://bucket/run"], "--data_cache"),
    ("scripts/train.py", ["--data_dir", "pairs", "--val_sampler", "euler"], "--val_sampler"),
    ("benchmarks/quality.py", ["--config", "no_such_preset"], "no_such_preset"),
    ("scripts/demo.py", ["--dose", "1/3", "--out_dir", "unused"], "--dose 1/3"),
    ("scripts/test.py", ["--base_samples", "x.nii.gz", "--model_path", "m.pt", "--start_timestep", "late"],
     "--start_timestep"),
    ("scripts/test.py", ["--base_samples", "x.nii.gz", "--model_path", "m.pt", "--steps", "1"], "--steps"),
    ("benchmarks/sampler_quality.py", ["--start_timestep", "late"], "--start_timestep"),
    ("benchmarks/sampler_quality.py", ["--quality_samplers", "ddpm,euler"], "--quality_samplers"),
    ("benchmarks/quality.py", ["--sampler", "euler"], "--sampler"),
    ("benchmarks/volume_timing.py", ["--settings", "--precision bf16"], "--settings"),
    ("benchmarks/warm_start.py", ["--starts", "0,10"], "--starts"),
])
def test_scripts_share_one_exit_status_for_bad_flags(tmp_path, script, argv, named):
    result = subprocess.run([sys.executable, str(REPO / script), *argv], capture_output=True, text=True,
                            cwd=tmp_path, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]


@pytest.mark.mpi
def test_a_bad_flag_under_mpiexec_is_reported_once(tmp_path):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    result = subprocess.run([str(mpiexec), "-n", "2", sys.executable, str(REPO / "scripts" / "train.py"),
                             "--not_a_flag", "1"], capture_output=True, text=True, cwd=tmp_path, check=False,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: unrecognized arguments: --not_a_flag 1 (see train.py --help)"]
