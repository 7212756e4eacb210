"""The warm start chosen from the input's noise: the noise estimate, the step it maps to, and the fit of its
scale on validation pairs (benchmarks/warm_start.py --pairs), recorded in the model's card."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, benchmark_module

from guided_diffusion import gaussian_diffusion as gd
from guided_diffusion.errors import UserError
from guided_diffusion.model_card import read_own_card
from guided_diffusion.pet.noise_level import estimate_noise_sd
from guided_diffusion.warm_start import noise_levels, start_timestep_for_noise

ALPHAS_CUMPROD = np.cumprod(1 - gd.get_named_beta_schedule("linear", 1000))


def body_with_noise(sd: float, seed: int = 0) -> np.ndarray:
    """A 32^3 volume: a uniform SUV-2 ball in air, plus white noise of ``sd`` inside it."""
    grid = np.indices((32, 32, 32)) - 15.5
    body = (grid**2).sum(axis=0) < 13**2
    rng = np.random.default_rng(seed)
    return np.where(body, 2.0 + sd * rng.standard_normal(body.shape), 0.0).astype(np.float32)


def test_noise_estimate_scales_with_the_noise_and_ignores_the_edge():
    clean = estimate_noise_sd(body_with_noise(0.0), 4.0)
    low, high = estimate_noise_sd(body_with_noise(0.1), 4.0), estimate_noise_sd(body_with_noise(0.2), 4.0)
    assert clean < 0.01  # the body's edge alone barely registers
    assert high / low == pytest.approx(2.0, rel=0.05)
    # White noise minus its 8 mm-smoothed version (2 voxels FWHM) keeps most of its SD.
    assert 0.08 < low < 0.11


def test_noise_estimate_refuses_bad_volumes():
    with pytest.raises(UserError, match="NaN"):
        estimate_noise_sd(np.full((8, 8, 8), np.nan, np.float32), 4.0)
    with pytest.raises(UserError, match=r"\(X, Y, Z\)"):
        estimate_noise_sd(np.ones((8, 8), np.float32), 4.0)
    with pytest.raises(UserError, match="empty"):
        estimate_noise_sd(np.zeros((8, 8, 8), np.float32), 4.0)


def test_start_step_is_the_first_whose_noise_level_reaches_the_target():
    levels = noise_levels(ALPHAS_CUMPROD)
    assert np.all(np.diff(levels) > 0)
    assert levels[0] == pytest.approx(np.sqrt(1e-4 / (1 - 1e-4)))  # beta_0 = 1e-4 in the linear schedule
    step = start_timestep_for_noise(ALPHAS_CUMPROD, 0.02, 8.0)
    assert levels[step - 1] < 0.16 <= levels[step]
    assert start_timestep_for_noise(ALPHAS_CUMPROD, 0.04, 8.0) > step  # noisier input, later start
    assert start_timestep_for_noise(ALPHAS_CUMPROD, 0.0, 8.0) == 1
    assert start_timestep_for_noise(ALPHAS_CUMPROD, 1e6, 8.0) == 999
    with pytest.raises(ValueError):
        start_timestep_for_noise(ALPHAS_CUMPROD, float("nan"), 8.0)


def copy_of_demo_model(folder: Path) -> Path:
    """models/demo_all_doses/model_ema.pt and its card, copied into ``folder`` (the committed card stays as it is)."""
    folder.mkdir()
    for name in ("model_ema.pt", "model_ema.card.json"):
        shutil.copy(REPO / "models" / "demo_all_doses" / name, folder / name)
    return folder / "model_ema.pt"


def test_the_scale_is_fitted_on_pairs_from_disk(tmp_path):
    model = copy_of_demo_model(tmp_path / "model")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_phantoms.py"), "--out_dir", str(tmp_path / "pairs"),
                    "--num_subjects", "1", "--seed", "4100", "--voxel_size", "8", "--axial_extent_mm", "64",
                    "--dose_levels", "1/4,1/50", "--format", "nifti"], check=True, capture_output=True)
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "warm_start.py"), "--config", "demo",
                             "--model_path", str(model),
                             "--pairs", str(tmp_path / "pairs"), "--starts", "5,40", "--steps", "2",
                             "--patch_axial", "16", "--out", str(tmp_path / "scale.csv")],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "scale.csv").open()))
    assert [Path(r["case"]).name for r in rows] == ["subject000_dose1-4.nii.gz"] * 2 + ["subject000_dose1-50.nii.gz"] * 2
    noise = [float(r["noise_sd_model"]) for r in rows]
    assert noise[2] > 2 * noise[0] > 0  # 1/50 is noisier than 1/4
    best = {r["case"]: max((x for x in rows if x["case"] == r["case"]), key=lambda x: float(x["psnr"])) for r in rows}
    expected = math.exp(np.mean([math.log(float(r["level_ratio"])) for r in best.values()]))
    printed = float(result.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert printed == pytest.approx(expected, abs=0.01)
    # The card now holds this fit; its other sections are kept.
    card = read_own_card(model)
    scale = card["warm_start_scale"]
    assert scale["value"] == pytest.approx(printed, abs=0.006) and scale["table"] == str(tmp_path / "scale.csv")
    assert "benchmarks/warm_start.py" in scale["fitted_by"] and f"--pairs {tmp_path / 'pairs'}" in scale["fitted_by"]
    assert scale["fitted_on"]["folder"] == str(tmp_path / "pairs") and scale["fitted_on"]["num_pairs"] == 2
    assert scale["fitted_on"]["doses"] == [0.25, 0.02] and scale["fitted_on"]["seeds"] == [4100]
    committed = json.loads((REPO / "models" / "demo_all_doses" / "model_ema.card.json").read_text())
    assert {k: v for k, v in card.items() if k != "warm_start_scale"} == {
        k: v for k, v in committed.items() if k != "warm_start_scale"}


def test_a_card_of_other_weights_is_refused_before_the_fit(tmp_path, monkeypatch):
    model = copy_of_demo_model(tmp_path / "model")
    card = json.loads((tmp_path / "model" / "model_ema.card.json").read_text())
    card["weights"]["sha256"] = "0" * 64
    (tmp_path / "model" / "model_ema.card.json").write_text(json.dumps(card))
    monkeypatch.setattr(sys, "argv", ["warm_start.py", "--model_path", str(model), "--pairs", str(tmp_path / "none")])
    with benchmark_module("warm_start") as warm_start, pytest.raises(UserError, match="belongs to other weights"):
        warm_start.main()


def test_the_fit_maps_intensities_as_the_model_was_trained(tmp_path):
    model = copy_of_demo_model(tmp_path / "model")
    with benchmark_module("warm_start") as warm_start:
        assert warm_start.model_intensity(str(model)) == (16.0, 16.0)  # the demo card: the paper's mapping
        card_path = tmp_path / "model" / "model_ema.card.json"
        card = json.loads(card_path.read_text())
        card["intensity"] = {**card["intensity"], "suv_max": 12.0, "data_scale": 4.0}
        card_path.write_text(json.dumps(card))
        assert warm_start.model_intensity(str(model)) == (12.0, 4.0)
        assert warm_start.model_intensity(str(tmp_path / "no_card.pt")) == (16.0, 16.0)
