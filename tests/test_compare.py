"""benchmarks/compare.py's design: the test grid, the cases table and the uncertainty table (no training)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, benchmark_module


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


def test_uncertainty_table_reads_the_ensemble_sd_beside_each_ddpm_result(compare, tmp_path):
    rng = np.random.default_rng(0)
    full = rng.uniform(1, 2, (6, 6, 6)).astype(np.float32)
    files = {"data/s_full.nii.gz": full, "data/s_truth.nii.gz": full + 0.5, "data/labels.nii.gz": np.ones_like(full),
             "out/a_denoised.nii.gz": full + 0.1, "out/a_denoised_std.nii.gz": np.full_like(full, 0.1)}
    for name, volume in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / name)
    row = {"case": "c", "reference": "data/s_full.nii.gz", "labels": "data/labels.nii.gz", "scanner": "quadra",
           "tracer": "fdg", "dose": 0.5}
    rows = [row | {"method": "low_dose", "result": "data/s_full.nii.gz"},
            row | {"method": "ddpm3d", "result": "out/a_denoised.nii.gz"}]
    table = compare.uncertainty_table(rows, tmp_path)
    assert [(r["method"], r["against"]) for r in table] == [("ddpm3d", "full_dose"), ("ddpm3d", "truth")]
    assert table[0]["rmse"] == pytest.approx(0.1, abs=1e-6) and table[0]["coverage_2sd"] == 1.0
    assert table[1]["rmse"] == pytest.approx(0.4, abs=1e-6) and table[1]["rmse_over_sd"] == pytest.approx(4.0)
