"""benchmarks/volume_timing.py: its settings syntax, the synthetic body, and one run through scripts/test.py."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, benchmark_module

from guided_diffusion.errors import UserError


@pytest.fixture(scope="module")
def timing():
    with benchmark_module("volume_timing") as module:
        yield module


def test_settings_are_named_flag_groups(timing):
    assert timing.parse_settings("fp16 eager=--use_fp16 True; bf16=--precision bf16 --compile True;") == [
        ("fp16 eager", ["--use_fp16", "True"]), ("bf16", ["--precision", "bf16", "--compile", "True"])]
    with pytest.raises(UserError, match="name=flags"):
        timing.parse_settings("--precision bf16")


def test_synthetic_body_is_a_noisy_cylinder_in_suv(timing):
    body = timing.synthetic_body((40, 30, 50), seed=0)
    assert body.shape == (40, 30, 50) and body.min() >= 0
    assert body[15:25, 10:20].mean() == pytest.approx(1.0, abs=0.05) and body[0, 0].max() == 0
    np.testing.assert_array_equal(body, timing.synthetic_body((40, 30, 50), seed=0))


def test_one_setting_runs_the_denoising_script_and_reports_its_evaluations(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "volume_timing.py"), "--config", "tiny",
                             "--volume", "32,32,40", "--steps", "2", "--start_timestep", "20",
                             "--settings", "bf16=--precision bf16", "--out_dir", str(tmp_path)],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    (row,) = csv.DictReader((tmp_path / "volume_timing.csv").open())
    assert row["setting"] == "bf16" and row["flags"] == "--precision bf16" and row["device"] == "cpu"
    assert int(row["patches"]) == 1 and int(row["steps"]) == 2 and int(row["evaluations"]) == 2
    assert 0 < float(row["sample_s"]) <= float(row["total_s"]) < float(row["wall_s"])
