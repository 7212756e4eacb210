"""benchmarks/compare.py's design: the test grid, the cases tables, the command list of its pipeline (warm-start and
uncertainty fits included) and the uncertainty tables (nothing trained or run)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, benchmark_module

from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.eval.uncertainty import calibrated_targets


@pytest.fixture(scope="module")
def compare():
    with benchmark_module("compare") as module:
        yield module


def test_every_scanner_with_fdg_and_every_tracer_on_the_training_scanner(compare):
    conditions = compare.test_conditions(compare.BUDGETS["cpu"])
    assert ("quadra", "fdg") in conditions and len(conditions) == len(set(conditions)) == 7
    assert {s for s, t in conditions if t == "fdg"} == {"quadra", "vision600", "discovery_mi", "mct"}
    assert {t for s, t in conditions if s == "quadra"} == {"fdg", "psma", "dotatate", "fapi"}
    assert compare.test_conditions(compare.BUDGETS["demo"]) == [("default", "fdg")]
    assert "--scanner" not in compare.phantom_flags(compare.BUDGETS["demo"], "default", "fdg", 1, 1, (0.5,))


def test_every_budget_read_for_numbers_tests_at_least_3_anatomies_per_condition(compare):
    assert compare.MIN_TEST_SUBJECTS == 3
    assert all(budget.test_subjects >= compare.MIN_TEST_SUBJECTS for name, budget in compare.BUDGETS.items()
               if name != "smoke")


def test_cases_table_has_a_row_per_condition_subject_dose_and_method(compare):
    budget = compare.BUDGETS["cpu"]
    rows = compare.cases_table(REPO, budget, ["low_dose", "gaussian", "ddpm3d"])
    assert len(rows) == 7 * budget.test_subjects * 6 * 3
    low = next(r for r in rows if r["method"] == "low_dose" and r["tracer"] == "psma" and r["dose"] == 0.05)
    assert low["result"] == "data/test/quadra_psma/subject000_dose1-20.nii.gz"
    assert low["reference"] == "data/test/quadra_psma/subject000_full.nii.gz"
    ddpm = next(r for r in rows if r["method"] == "ddpm3d" and r["case"] == low["case"])
    assert ddpm["result"] == "denoised/ddpm3d/quadra_psma/subject000_dose1-20_denoised.nii.gz"


def test_uncertainty_table_scores_the_raw_ensemble_sd_against_full_dose_and_clean_with_k_targets(compare, tmp_path):
    rng = np.random.default_rng(0)
    full = rng.uniform(1, 2, (6, 6, 6)).astype(np.float32)
    files = {"data/s_full.nii.gz": full, "data/s_clean.nii.gz": full + 0.5, "data/s_truth.nii.gz": full + 9,
             "data/labels.nii.gz": np.ones_like(full), "out/a_denoised.nii.gz": full + 0.1,
             "out/a_denoised_std.nii.gz": np.full_like(full, 0.2)}
    for name, volume in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / name)
    (tmp_path / "out" / "a_denoised.json").write_text(json.dumps({"uncertainty_factor": 2.0}))  # calibrated map
    row = {"case": "c", "reference": "data/s_full.nii.gz", "clean": "data/s_clean.nii.gz",
           "labels": "data/labels.nii.gz", "scanner": "quadra", "tracer": "fdg", "dose": 0.5}
    rows = [row | {"method": "low_dose", "result": "data/s_full.nii.gz"},
            row | {"method": "ddpm3d", "result": "out/a_denoised.nii.gz"}]
    table = compare.uncertainty_table(rows, tmp_path, num_members=2)
    assert [(r["method"], r["against"]) for r in table] == [("ddpm3d", "full_dose"), ("ddpm3d", "clean")]
    assert all(r["factor_divided_out"] == 2.0 and r["sd_mean"] == pytest.approx(0.1) for r in table)
    assert table[0]["rmse"] == pytest.approx(0.1, abs=1e-6) and table[0]["coverage_2sd"] == 1.0
    assert table[1]["rmse"] == pytest.approx(0.4, abs=1e-6) and table[1]["rmse_over_sd"] == pytest.approx(4.0)
    targets = calibrated_targets(2)
    assert table[1]["rmse_over_sd_target"] == targets["rmse_over_sd"]
    assert table[1]["coverage_2sd_target"] == targets["coverage_2sd"]
    assert list(table[1]).index("rmse_over_sd_target") == list(table[1]).index("rmse_over_sd") + 1


class RecordingRunner:
    """Stands in for compare.Runner: records each command (script, flags, done marker) and runs nothing."""

    def __init__(self):
        self.calls: list[dict] = []
        self.commands: list[str] = []
        self.seconds: dict[str, float] = {}

    def python(self, stage, script, *argv, mpi=False, done=None, mark=False):
        self.calls.append({"stage": stage, "script": script, "argv": list(argv), "done": done, "mark": mark})
        self.commands.append(" ".join([script, *argv]))


def flag(call: dict, name: str) -> str:
    return call["argv"][call["argv"].index(name) + 1]


@pytest.fixture(scope="module")
def pipeline(compare, tmp_path_factory):
    """The commands of a whole smoke-budget comparison with an extra (demo) model, none of them run."""
    root = tmp_path_factory.mktemp("comparison")
    demo = root / "demo_model_ema.pt"
    demo.write_bytes(b"weights")
    runner = RecordingRunner()
    compare.run_comparison(runner, compare.BUDGETS["smoke"], root / "work", root / "out", {"ddpm3d_demo": demo})
    return runner.calls, root / "work", root / "out", demo


def test_each_trained_ddpm_fits_its_warm_start_on_the_validation_subjects_into_its_card(compare, pipeline):
    calls, work, out, _ = pipeline
    budget = compare.BUDGETS["smoke"]
    fits = {Path(flag(c, "--model_path")).parent.name: c for c in calls if c["script"] == "benchmarks/warm_start.py"}
    assert sorted(fits) == ["ddpm2d", "ddpm3d"]  # not the one-pass networks, not the demo model
    for name, fit in fits.items():
        assert flag(fit, "--pairs") == str(work / "data" / "val")
        assert (flag(fit, "--config"), flag(fit, "--model_voxel_size"), flag(fit, "--patch_axial")) == ("tiny", "4", "32")
        assert flag(fit, "--steps") == str(budget.sample_steps) and flag(fit, "--starts") == compare.WARM_START_STARTS
        assert flag(fit, "--out") == str(out / f"warm_start_{name}.csv")
        assert fit["done"] == work / "models" / name / "WARM_START_FITTED" and fit["mark"]
        assert "--update_card" not in fit["argv"]
    assert flag(fits["ddpm2d"], "--dims") == "2" and "--dims" not in fits["ddpm3d"]["argv"]


def test_denoising_takes_the_warm_start_scale_from_the_cards(compare, pipeline):
    calls = pipeline[0]
    denoising = [c for c in calls if c["script"] == "scripts/test.py"]
    assert any(flag(c, "--model_path") == str(pipeline[3]) for c in denoising)
    assert not any("--warm_start_scale" in c["argv"] for c in denoising)
    assert "--warm_start_scale" not in compare.denoise_flags("ddpm3d", compare.BUDGETS["cpu"])
    assert "--start_timestep" in compare.denoise_flags("ddpm3d", compare.BUDGETS["cpu"])


def test_each_trained_ddpm_is_calibrated_on_denoised_validation_subjects_before_the_tests(compare, pipeline):
    calls, work, out, demo = pipeline
    order = [(c["script"], c["stage"], flag(c, "--model_path") if "--model_path" in c["argv"] else "") for c in calls]
    for name in ("ddpm3d", "ddpm2d"):
        model = str(work / "models" / name / "ema_0.999_0000004.pt")
        warm_start = order.index(("benchmarks/warm_start.py", "fit warm start", model))
        val_denoise = order.index(("scripts/test.py", "calibrate", model))
        fit = order.index(("benchmarks/calibrate_uncertainty.py", "calibrate", model))
        test_denoise = order.index(("scripts/test.py", "denoise", model))
        evaluate = next(i for i, c in enumerate(calls) if c["script"] == "scripts/evaluate.py")
        coverage = len(order) - 1 - order[::-1].index(("benchmarks/calibrate_uncertainty.py", "calibrate", model))
        assert warm_start < val_denoise < fit < test_denoise < evaluate < coverage
        val = calls[val_denoise]
        assert flag(val, "--base_samples") == str(work / "data" / "val" / "*" / "subject*_dose1-*.nii.gz")
        assert flag(val, "--uncertainty_factor") == "1" and flag(val, "--num_ensemble") == "2"
        assert val["done"] == work / "denoised_val" / name / "DONE" and val["mark"]
        assert (flag(calls[fit], "--cases"), flag(calls[fit], "--method")) == (str(work / "val_cases.csv"), name)
        assert calls[fit]["done"] == work / "models" / name / "UNCERTAINTY_CALIBRATED" and calls[fit]["mark"]
        assert "--update_card" not in calls[fit]["argv"]
        report = calls[coverage]
        assert (flag(report, "--test_cases"), flag(report, "--update_card")) == (str(work / "cases.csv"), "False")
        assert flag(report, "--out") == str(out / f"calibration_{name}.csv") and report["done"] is None
    assert not any(flag(c, "--model_path") == str(demo) for c in calls
                   if c["script"] in ("benchmarks/warm_start.py", "benchmarks/calibrate_uncertainty.py"))


def test_validation_cases_list_each_ddpm_result_with_its_clean_reference(compare, pipeline):
    work = pipeline[1]
    with (work / "val_cases.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * compare.BUDGETS["smoke"].val_subjects * 2
    row = next(r for r in rows if r["method"] == "ddpm2d" and float(r["dose"]) == 0.25)
    assert row["result"] == "denoised_val/ddpm2d/subject000_dose1-4_denoised.nii.gz"
    assert row["clean"] == "data/val/1-4/subject000_clean.nii.gz"
    assert row["reference"] == "data/val/1-4/subject000_full.nii.gz"


def test_report_pools_the_coverage_before_and_after_calibration_over_voxels(compare, tmp_path):
    rows = [{"set": "fit", "voxels": 100, "coverage_2sd": 0.5, "coverage_2sd_calibrated": 0.95},
            {"set": "test", "voxels": 300, "coverage_2sd": 0.6, "coverage_2sd_calibrated": 0.9},
            {"set": "test", "voxels": 100, "coverage_2sd": 0.2, "coverage_2sd_calibrated": 1.0}]
    write_csv(tmp_path / "calibration_ddpm3d.csv", rows, list(rows[0]))
    lines = compare.calibration_lines(tmp_path, ["low_dose", "ddpm3d", "ddpm2d"])
    assert lines[-2:] == ["| ddpm3d | fit | 1 | 0.500 | 0.950 |", "| ddpm3d | test | 2 | 0.500 | 0.925 |"]
    assert compare.calibration_lines(tmp_path, ["ddpm2d"]) == []
