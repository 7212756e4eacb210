"""Uncertainty targets for K members, the calibration factor's fit and card, and scripts/test.py applying it."""

from __future__ import annotations

import importlib.util
import json
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from denoise_helpers import FAST, REPO, denoising_script, run, write_random_model

from guided_diffusion.denoise_settings import ModelRecords, check_flags, resolve_settings
from guided_diffusion.errors import UserError
from guided_diffusion.model_card import fit_record, read_card, update_card
from guided_diffusion.pet.eval.uncertainty import (
    calibrated_targets,
    fit_factor,
    required_factors,
    uncertainty_statistics,
    with_targets,
)
from guided_diffusion.script_util import sr_model_and_diffusion_defaults

# -- targets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("members", [2, 3, 5])
def test_a_calibrated_ensemble_meets_its_targets_by_monte_carlo(members):
    rng = np.random.default_rng(members)
    shape = (60, 60, 60)
    mu, sigma = rng.uniform(0.5, 3.0, shape), rng.uniform(0.05, 0.5, shape)
    draws = mu + sigma * rng.standard_normal((members + 1, *shape))  # K members and the reference: K + 1 draws
    ensemble, reference = draws[:members], draws[members]
    stats = uncertainty_statistics(ensemble.mean(0), ensemble.std(0, ddof=1), reference, np.ones(shape, bool))
    targets = calibrated_targets(members)
    assert stats["rmse_over_sd"] == pytest.approx(targets["rmse_over_sd"], abs=0.01)
    assert stats["coverage_2sd"] == pytest.approx(targets["coverage_2sd"], abs=0.005)


def test_targets_for_two_members_and_many():
    assert calibrated_targets(2) == pytest.approx({"rmse_over_sd": 1.5**0.5, "coverage_2sd": 0.650}, abs=1e-3)
    assert calibrated_targets(10_000) == pytest.approx({"rmse_over_sd": 1.0, "coverage_2sd": 0.9545}, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        calibrated_targets(1)
    text = with_targets({"rmse": 0.12, "rmse_over_sd": 1.41, "coverage_2sd": 0.5}, 2)
    assert text == {"rmse": "0.120", "rmse_over_sd": "1.410 (target for K = 2: 1.225)",
                    "coverage_2sd": "0.500 (target for K = 2: 0.650)"}


def test_required_factors_and_the_fitted_quantile():
    mean = np.array([[[1.0, 2.0, 3.0, 1.0]]])
    sd = np.array([[[1.0, 0.5, 0.0, 0.0]]])
    required = required_factors(mean, sd, np.ones_like(mean), np.ones_like(mean, bool))
    np.testing.assert_array_equal(required, [0.0, 1.0, np.inf, 0.0])  # |error| / (2 SD); 0 / 0 is covered
    assert fit_factor(required, 0.5) == 0.0 and fit_factor(required, 0.6) == 1.0
    assert fit_factor(np.arange(1.0, 101.0), 0.95) == 95.0


# -- the calibration script -------------------------------------------------------------------------------------


def calibration_script(monkeypatch):
    """benchmarks/calibrate_uncertainty.py as a module, registered in ``sys.modules`` for this test."""
    spec = importlib.util.spec_from_file_location("calibrate_uncertainty",
                                                  REPO / "benchmarks" / "calibrate_uncertainty.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def write_cases(root, true_factor: float, num_cases: int = 3, shape=(20, 20, 20)):
    """Cases whose error is ``true_factor`` x SD x N(0, 1) against ``clean``, with a full dose that differs from it;
    a cases CSV in scripts/evaluate.py's layout. Returns its path."""
    rng = np.random.default_rng(7)
    lines = ["case,method,result,reference,clean"]
    for i in range(num_cases):
        clean = rng.uniform(0.5, 2.0, shape)
        sd = rng.uniform(0.05, 0.2, shape)
        mean = clean + true_factor * sd * rng.standard_normal(shape)
        full = clean + 0.5 * rng.standard_normal(shape)
        for name, volume in {f"s{i}_denoised": mean, f"s{i}_denoised_std": sd, f"s{i}_clean": clean,
                             f"s{i}_full": np.maximum(full, 0.2)}.items():
            nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), root / f"{name}.nii.gz")
        lines.append(f"s{i},ddpm,s{i}_denoised.nii.gz,s{i}_full.nii.gz,s{i}_clean.nii.gz")
        lines.append(f"s{i},low_dose,s{i}_full.nii.gz,s{i}_full.nii.gz,")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"


def run_calibration(monkeypatch, *args: str) -> None:
    monkeypatch.setattr("sys.argv", ["calibrate_uncertainty.py", *map(str, args)])
    calibration_script(monkeypatch).main()


def test_the_fit_recovers_a_known_factor_and_writes_it_into_the_card(tmp_path, monkeypatch, capsys):
    cases = write_cases(tmp_path, true_factor=3.0)
    weights = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    run_calibration(monkeypatch, "--model_path", weights, "--cases", cases, "--method", "ddpm",
                    "--out", tmp_path / "table.csv")
    # Errors 3 SD x N(0, 1): mean +- 2 c SD covers 95 % where 2 c = 1.96 x 3.
    calibration = read_card(weights)["uncertainty_calibration"]
    assert calibration["factor"] == pytest.approx(3.0 * 1.96 / 2, rel=0.03)
    assert calibration["fitted_on"]["against"] == ["clean"] and calibration["table"] == str(tmp_path / "table.csv")
    out = capsys.readouterr().out
    assert "coverage of mean +- 2 SD 0.49" in out and f"x {calibration['factor']:.3f} SD 0.95" in out
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert len(table) == 4 and "coverage_2sd_calibrated" in table[0]

    # SD maps written with a factor (their sidecars say so) are fitted as the raw SD.
    for i in range(3):
        sd = nib.load(tmp_path / f"s{i}_denoised_std.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(sd.dataobj) * 2, np.eye(4)), tmp_path / f"s{i}_denoised_std.nii.gz")
        (tmp_path / f"s{i}_denoised.json").write_text(json.dumps({"uncertainty_factor": 2.0,
                                                                   "flags": {"num_ensemble": 2}}))
    run_calibration(monkeypatch, "--model_path", weights, "--cases", cases, "--method", "ddpm")
    assert read_card(weights)["uncertainty_calibration"]["factor"] == pytest.approx(calibration["factor"], abs=2e-3)
    assert "(target for K = 2: 0.650)" in capsys.readouterr().out


def test_a_card_or_sidecar_of_other_weights_is_refused(tmp_path, monkeypatch):
    cases = write_cases(tmp_path, true_factor=1.0, num_cases=1)
    weights = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    update_card(weights, notes="first weights")
    torch.save({"w": torch.ones(2)}, weights)
    card = (tmp_path / "model.card.json").read_text()
    with pytest.raises(UserError, match="belongs to other weights"):
        run_calibration(monkeypatch, "--model_path", weights, "--cases", cases, "--method", "ddpm")
    assert (tmp_path / "model.card.json").read_text() == card
    (tmp_path / "model.card.json").unlink()
    (tmp_path / "s0_denoised.json").write_text(json.dumps({"model_sha256": "0" * 64}))
    with pytest.raises(UserError, match="denoised by other weights"):
        run_calibration(monkeypatch, "--model_path", weights, "--cases", cases, "--method", "ddpm")
    (tmp_path / "s0_denoised.json").unlink()
    with pytest.raises(UserError, match="no SD map"):  # the low dose's rows have none
        run_calibration(monkeypatch, "--model_path", weights, "--cases", cases, "--update_card", "False")
    assert not (tmp_path / "model.card.json").exists()


# -- denoising applies the factor -------------------------------------------------------------------------------


def settings_with(records: ModelRecords, *flags: str):
    argv = ["--base_samples", "x.npz", "--model_path", "m.pt", *flags]
    args = denoising_script().parse_args_with_config(denoising_script().create_argparser(), argv)
    check_flags(args)
    return resolve_settings(args, argv, records, sr_model_and_diffusion_defaults().keys())


@pytest.mark.parametrize(("flags", "card", "factor", "source"), [
    ((), None, 1.0, "no calibration in the model card"),
    ((), {"uncertainty_calibration": {"factor": 2.5}}, 2.5, "model card"),
    (("--uncertainty_factor", "0"), {"uncertainty_calibration": {"factor": 2.5}}, 2.5, "model card"),
    (("--uncertainty_factor", "1"), {"uncertainty_calibration": {"factor": 2.5}}, 1.0, "--uncertainty_factor"),
])
def test_the_factor_comes_from_the_flag_then_the_card_then_one(flags, card, factor, source):
    settings = settings_with(ModelRecords(None, card), *flags)
    assert settings.uncertainty_factor == factor and settings.sources["uncertainty_factor"] == source


def test_bad_factors_are_refused_naming_the_flag_or_the_card():
    with pytest.raises(UserError, match="--uncertainty_factor must be a positive number"):
        settings_with(ModelRecords(None, None), "--uncertainty_factor", "-1")
    with pytest.raises(UserError, match="calibrate_uncertainty.py"):
        settings_with(ModelRecords(None, {"uncertainty_calibration": {"factor": "big"}}))


@pytest.mark.slow
def test_the_denoising_script_multiplies_the_sd_map_by_the_cards_factor(tmp_path):
    model = write_random_model(tmp_path / "model.pt")
    rng = np.random.default_rng(3)
    nib.save(nib.Nifti1Image(rng.gamma(2.0, 1.0, (12, 10, 14)).astype(np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    update_card(model, uncertainty_calibration=fit_record(3.0, key="factor", fitted_by="test", fitted_on="test",
                                                          table=[]))
    outputs = {}
    for name, flags in (("raw", ["--uncertainty_factor", "1"]), ("calibrated", [])):
        save = tmp_path / name
        result = run(["--model_path", str(model), "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir",
                      str(save), "--num_ensemble", "2", "--seed", "5", *FAST, *flags], ranks=0)
        assert result.returncode == 0, result.stderr
        sidecar = json.loads((save / "scan_denoised.json").read_text())
        outputs[name] = (np.asarray(nib.load(save / "scan_denoised_std.nii.gz").dataobj),
                         np.asarray(nib.load(save / "scan_denoised.nii.gz").dataobj), sidecar)
    (raw_sd, raw_mean, raw_sidecar), (sd, mean, sidecar) = outputs["raw"], outputs["calibrated"]
    assert raw_sd.max() > 0
    np.testing.assert_allclose(sd, 3.0 * raw_sd, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(mean, raw_mean)
    assert sidecar["uncertainty_factor"] == 3.0 and sidecar["settings_from"]["uncertainty_factor"] == "model card"
    assert raw_sidecar["uncertainty_factor"] == 1.0
    assert raw_sidecar["settings_from"]["uncertainty_factor"] == "--uncertainty_factor"
