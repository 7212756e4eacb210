"""benchmarks/sampler_quality.py: the settings, the shared start and the averaging (with the demo model)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, benchmark_module

from guided_diffusion.pet.sim.cases import simulated_case

DEMO_MODEL = REPO / "models" / "demo_all_doses" / "model_ema.pt"


@pytest.fixture(scope="module")
def quality():
    with benchmark_module("sampler_quality") as module:
        yield module


def setup(quality, **changes):
    fields = {"model_path": Path(DEMO_MODEL), "seeds": (5000,), "dose": 0.25, "axial_extent_mm": 48.0,
              "patch_axial": 12, "start_timestep": "auto", "precision": "fp32", "samplers": ("ddpm", "dpmpp2m"),
              "steps": (3, 50)}
    return quality.QualitySetup(**{**fields, **changes})


def test_settings_put_the_full_chain_first_and_cap_requests_at_it(quality):
    assert quality.settings(setup(quality), 11) == [
        ("ddpm", 11, 11), ("ddpm", 3, 3), ("ddpm", 50, 11), ("dpmpp2m", 3, 3), ("dpmpp2m", 50, 11)]


def test_mean_rows_average_each_method_over_subjects(quality):
    first = [{"method": "a", "psnr": 30.0, "steps": 5}, {"method": "b", "psnr": 40.0, "steps": 5}]
    second = [{"method": "a", "psnr": 32.0, "steps": 5}, {"method": "b", "psnr": 44.0, "steps": 5}]
    assert quality.mean_rows([first, second]) == [{"method": "a", "psnr": 31.0, "steps": 5.0},
                                                  {"method": "b", "psnr": 42.0, "steps": 5.0}]


def test_auto_start_follows_the_noise_and_a_fixed_start_is_kept(quality):
    alphas = quality.diffusion_from_flags(quality.demo_flags(), timestep_respacing="").alphas_cumprod
    starts = [quality.case_start(setup(quality), simulated_case(5000, dose, axial_extent_mm=48.0), alphas)
              for dose in (0.5, 0.01)]
    assert 1 <= starts[0] < starts[1] < 1000
    assert quality.case_start(setup(quality, start_timestep=100), None, alphas) == 100


def test_every_setting_starts_where_the_full_chain_does(quality):
    torch.manual_seed(0)
    subject = setup(quality, steps=(2, 500), samplers=("ddpm",), start_timestep=2, precision="bf16")
    rows = quality.SubjectScorer(subject, torch.device("cpu")).rows(
        simulated_case(5000, 0.5, axial_extent_mm=40.0), log=lambda line: None)
    low, gaussian, chain, short, capped = rows
    assert [r["method"] for r in rows] == ["low_dose", "gaussian", "ddpm (full chain)", "ddpm", "ddpm"]
    assert chain["evaluations"] == 3 == capped["evaluations"] and chain["start_timestep"] == 2
    # the capped request runs the full chain from the same start and noise: the same volume
    assert math.isinf(chain["psnr_vs_chain"]) and math.isinf(capped["psnr_vs_chain"])
    assert short["evaluations"] == 2 and 30 < short["psnr_vs_chain"] < math.inf
    assert chain["delta_psnr"] == 0 and low["delta_psnr"] == pytest.approx(low["psnr"] - chain["psnr"])
    assert math.isnan(gaussian["psnr_vs_chain"])
