"""The noiseless reference of simulated data: written by the simulator, scored by evaluate.py, measured as nested noise.

A low dose is a thinning of the full dose, so its noise is part of the full
dose's; these tests pin the clean reconstruction that fixes the scoring, the
reference dimension of the metric registry, and the nested-noise figures.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, benchmark_module
from test_evaluate_cli import read_csv, run_in_process, save, write_case

from guided_diffusion.pet.eval.case_reference import prepare_reference, with_reference
from guided_diffusion.pet.eval.case_scores import metric_columns, region_columns, score_result
from guided_diffusion.pet.eval.nested_noise import expected_penalty_db, nested_noise
from guided_diffusion.pet.eval.registry import CLEAN, FULL_DOSE, axis_label, figure_columns, summary_columns
from guided_diffusion.pet.sim.simulation import simulate_subject

SMALL = {"voxel_size": 8.0, "axial_extent_mm": 96.0}


def test_the_clean_reconstruction_draws_no_random_numbers_and_has_less_noise():
    plain = simulate_subject(7, dose_fractions=(1 / 4,), **SMALL)
    with_clean = simulate_subject(7, dose_fractions=(1 / 4,), clean=True, **SMALL)
    assert plain.clean is None
    for dose, volume in plain.reconstructions.items():
        np.testing.assert_array_equal(with_clean.reconstructions[dose], volume)
    clean, full = with_clean.clean, with_clean.full_dose
    assert clean.shape == full.shape and clean.dtype == np.float32
    body = with_clean.labels > 0
    # The same mean (the same pipeline), and the full dose's deviation from it is noise.
    assert clean[body].mean() == pytest.approx(full[body].mean(), rel=0.02)
    quarter = with_clean.reconstructions[1 / 4]
    assert np.std((quarter - clean)[body]) > 1.5 * np.std((full - clean)[body]) > 0


@pytest.mark.slow
def test_make_phantoms_writes_and_lists_the_clean_volume(tmp_path):
    out = tmp_path / "phantoms"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_phantoms.py"), "--out_dir", str(out),
                             "--voxel_size", "8", "--axial_extent_mm", "96", "--dose_levels", "1/4",
                             "--format", "nifti", "--crop_to_body"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    with open(out / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["clean"] == "subject000_clean.nii.gz"
    manifest = json.loads((out / "manifest.json").read_text())
    subject = manifest["subjects"][0]
    assert subject["files"]["clean"] == "subject000_clean.nii.gz"
    assert subject["liver_cv"]["clean"] < subject["liver_cv"]["1"] < subject["liver_cv"]["1-4"]
    clean, full = nib.load(out / "subject000_clean.nii.gz"), nib.load(out / rows[0]["full_dose"])
    assert clean.shape == full.shape
    np.testing.assert_array_equal(clean.affine, full.affine)


def test_the_registry_scores_each_metric_once_per_reference():
    both = (FULL_DOSE, CLEAN)
    columns = metric_columns(both)
    assert columns[:len(metric_columns()) - 1] == metric_columns()[:-1]  # the full dose's columns come first, as ever
    assert {"psnr_clean", "ssim_clean", "liver_cv_reference_clean", "lesion_suvmax_error_pct_clean"} <= set(columns)
    assert "liver_cv_clean" not in columns and "lesion_count_clean" not in columns  # the result's own values
    assert columns.count("body_mask") == 1
    regions = region_columns(both)
    assert "suvmax_error_pct_clean" in regions and "contrast_recovery_clean" in regions
    assert "suvmax_result_clean" not in regions
    assert summary_columns(CLEAN)[:2] == ("psnr_clean", "psnr_body_clean") and "liver_cv" in summary_columns(CLEAN)
    assert "psnr_clean" in figure_columns("vs_dose", both)
    assert axis_label("psnr_clean") == "PSNR vs clean (dB)"
    assert axis_label("psnr") == "PSNR (dB)"


def test_a_further_reference_scores_the_same_regions():
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 12, 12), np.int16)
    labels[1:-1, 1:-1, 1:-1] = 9
    lesions = np.zeros_like(labels)
    lesions[5:7, 5:7, 5:7] = 1
    clean = np.where(labels > 0, 2.0, 0.0) + 6.0 * (lesions > 0)
    full = clean + rng.normal(0, 0.2, clean.shape) * (labels > 0)
    case = prepare_reference(full, (4.0,) * 3, labels, lesions, {9: "liver"}, liver_label=9, liver_margin_mm=4.0)
    against_clean = with_reference(case, clean)
    assert against_clean.liver_cv_reference == pytest.approx(0.0, abs=1e-6)
    assert case.liver_cv_reference > 0.05
    row, regions = score_result(case, 1.1 * clean, {CLEAN: against_clean})
    assert list(row) == list(metric_columns((FULL_DOSE, CLEAN)))
    assert row["nrmse_clean"] == pytest.approx(0.1, rel=1e-5) and row["nrmse"] != pytest.approx(0.1, rel=1e-2)
    assert row["lesion_suvmax_error_pct_clean"] == pytest.approx(10.0, rel=1e-5)
    lesion = regions[-1]
    assert lesion["suvmax_error_pct_clean"] == pytest.approx(10.0, rel=1e-5)
    assert lesion["suvmax_reference_clean"] == pytest.approx(8.0)
    assert row["psnr"] == score_result(case, 1.1 * clean)[0]["psnr"]  # the full dose's scores do not move


def _cases_csv(folder, clean: bool) -> str:
    header = "case,reference,labels,lesions,method,result,dose" + (",clean" if clean else "")
    lines = [header] + [f"s1,noisy.nii.gz,labels.nii.gz,lesions.nii.gz,{method},{result}.nii.gz,1/4"
                        + (",full.nii.gz" if clean else "") for method, result in (("perfect", "full"),
                                                                                   ("scaled", "scaled"))]
    path = folder / ("clean.csv" if clean else "plain.csv")
    path.write_text("\n".join(lines) + "\n")
    return path.name


@pytest.mark.slow
def test_evaluate_scores_against_both_references(tmp_path, monkeypatch, capsys):
    # The noisy volume plays the full dose; the noiseless one (full.nii.gz) the clean reconstruction.
    write_case(tmp_path)
    for clean in (False, True):
        run_in_process(monkeypatch, capsys, tmp_path, "--cases", _cases_csv(tmp_path, clean), "--out_dir",
                       f"out_{clean}", status=0)
    plain, both = read_csv(tmp_path / "out_False" / "metrics.csv"), read_csv(tmp_path / "out_True" / "metrics.csv")
    assert "psnr_clean" not in plain[0] and "clean" not in plain[0]
    for row_plain, row_both in zip(plain, both, strict=True):
        assert {key: row_both[key] for key in row_plain} == row_plain  # the full dose's columns unchanged
    perfect, scaled = both
    assert perfect["psnr_clean"] == "inf" and float(perfect["psnr"]) < 60
    assert float(scaled["lesion_suvmax_error_pct_clean"]) == pytest.approx(10.0, abs=1e-3)
    assert perfect["clean"].endswith("full.nii.gz")
    regions = read_csv(tmp_path / "out_True" / "cases" / "s1__scaled.csv")
    assert all(float(r["suvmean_error_pct_clean"]) == pytest.approx(10.0, abs=1e-3) for r in regions)
    summary = (tmp_path / "out_True" / "summary.md").read_text()
    first, paper = summary.index("## Against the noiseless reconstruction: per method"), summary.index(
        "## Against the full dose (the paper's reference): per method")
    assert first < paper and "| psnr_clean |" in summary[first:paper] and "Nested noise" in summary
    figures = {p.name for p in (tmp_path / "out_True" / "figures").iterdir()}
    assert {"psnr_vs_dose.png", "psnr_clean_vs_dose.png"} <= figures
    assert not any("clean" in p.name for p in (tmp_path / "out_False" / "figures").iterdir())


def test_evaluate_clean_flag_for_one_case_and_its_refusals(tmp_path, monkeypatch, capsys):
    files = write_case(tmp_path)
    args = ("--reference", files["noisy"], "--results", f"scaled={files['scaled']}", "--labels", files["labels"])
    run_in_process(monkeypatch, capsys, tmp_path, *args, "--clean", files["full"], "--out_dir", "one", status=0)
    row = read_csv(tmp_path / "one" / "metrics.csv")[0]
    assert float(row["nrmse_clean"]) == pytest.approx(0.1, abs=1e-5)
    save(tmp_path / "cut.nii.gz", np.ones((16, 14, 11), np.float32))
    status, lines = run_in_process(monkeypatch, capsys, tmp_path, *args, "--clean", tmp_path / "cut.nii.gz",
                                   "--out_dir", "cut")
    assert status == 1 and len(lines) == 1 and "clean" in lines[0] and not (tmp_path / "cut").exists()
    (tmp_path / "cases.csv").write_text("case,reference,method,result\ns1,noisy.nii.gz,a,scaled.nii.gz\n")
    status, lines = run_in_process(monkeypatch, capsys, tmp_path, "--cases", "cases.csv", "--clean", files["full"],
                                   "--out_dir", "both")
    assert status == 1 and "--clean" in lines[0]


def test_nested_noise_of_poisson_thinning_matches_theory():
    rng = np.random.default_rng(0)
    rate = 400.0  # counts per voxel at full dose
    clean = np.ones((32, 32, 32))
    counts = rng.poisson(rate * clean)
    full = counts / rate
    for dose in (1 / 2, 1 / 4, 1 / 10):
        low = rng.binomial(counts, dose) / (rate * dose)
        nested = nested_noise(low, full, clean, dose)
        assert nested["covariance_ratio"] == pytest.approx(1.0, abs=0.05)
        assert nested["penalty_db"] == pytest.approx(expected_penalty_db(dose), abs=0.1)
        independent = nested_noise(rng.poisson(rate * dose * clean) / (rate * dose), full, clean, dose)
        assert independent["covariance_ratio"] == pytest.approx(0.0, abs=0.05)
    assert expected_penalty_db(0.5) == pytest.approx(3.01, abs=0.005)


def test_nested_noise_of_a_simulated_subject():
    with benchmark_module("nested_noise") as benchmark:
        rows = benchmark.measure(11, [1 / 2, 1 / 10], **SMALL)
    half, tenth = rows
    assert half["covariance_ratio"] == pytest.approx(1.0, abs=0.1)
    assert half["penalty_db"] == pytest.approx(expected_penalty_db(0.5), abs=0.5)
    assert tenth["penalty_db"] == pytest.approx(expected_penalty_db(0.1), abs=0.3)


def test_compare_passes_the_clean_reference_of_each_test_subject():
    with benchmark_module("compare") as compare:
        rows = compare.cases_table(REPO, compare.BUDGETS["cpu"], ["low_dose", "ddpm3d"])
    assert all(r["clean"] == r["reference"].replace("_full.nii.gz", "_clean.nii.gz") for r in rows)
    assert rows[0]["clean"] == "data/test/quadra_fdg/subject000_clean.nii.gz"
