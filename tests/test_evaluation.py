"""Baselines, quality tables, the demo figure; scoring a case, its reports (CSV, summary) and dose figures."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from guided_diffusion.pet.eval.baselines import best_gaussian_filter
from guided_diffusion.pet.eval.case_reference import prepare_reference
from guided_diffusion.pet.eval.case_scores import metric_columns, region_columns, score_result
from guided_diffusion.pet.eval.dose_figures import dose_value, metric_vs_dose_figure
from guided_diffusion.pet.eval.figures import demo_figure
from guided_diffusion.pet.eval.reports import csv_text, format_cell, mean_sd, summary_markdown, write_csv
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.eval.tables import quality_table
from guided_diffusion.pet.sim.cases import EvaluationCase


def smooth_truth_and_noisy(seed: int = 0):
    x, y, z = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 16), np.linspace(-1, 1, 24), indexing="ij")
    truth = (2.0 + np.cos(2 * x) * np.cos(2 * y) * np.cos(z)).astype(np.float32)
    noisy = truth + np.random.default_rng(seed).normal(0, 0.6, truth.shape).astype(np.float32)
    return truth, noisy


def test_best_gaussian_filter_smooths_noise_and_beats_the_input():
    truth, noisy = smooth_truth_and_noisy()
    fwhm, filtered = best_gaussian_filter(noisy, truth, (4.0, 4.0, 4.0))
    table = quality_table({"low": noisy, "gauss": filtered}, truth, mask=truth > 1.5)
    assert fwhm >= 4.0
    assert table["gauss"]["psnr"] > table["low"]["psnr"] + 3
    assert table["gauss"]["nrmse"] < table["low"]["nrmse"] and table["gauss"]["ssim"] > table["low"]["ssim"]
    assert set(table["low"]) == {"psnr", "ssim", "nrmse", "psnr_body"}


def test_demo_figure_writes_a_png(tmp_path):
    truth, noisy = smooth_truth_and_noisy()
    demo_figure(tmp_path / "demo.png", noisy, truth, truth, np.abs(noisy - truth), (4.0, 4.0, 4.0))
    data = (tmp_path / "demo.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_demo_figure_leaves_the_callers_backend_alone(tmp_path):
    # A caller's backend (here the non-GUI "svg") must survive drawing; matplotlib.use("Agg") inside
    # the library would switch it, and pyplot would keep an open figure.
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        import matplotlib.pyplot as plt

        truth, noisy = smooth_truth_and_noisy()
        demo_figure(tmp_path / "demo.png", noisy, truth, truth, None, (4.0, 4.0, 4.0))
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []
    finally:
        matplotlib.use(before)
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_against_full_dose_lists_every_method():
    truth, noisy = smooth_truth_and_noisy()
    lesions = np.zeros(truth.shape, np.uint16)
    lesions[8:11, 6:9, 10:13] = 1
    case = EvaluationCase(seed=0, dose=0.05, low=noisy, full=truth, truth=truth, labels=(truth > 0).astype(np.uint8),
                          lesions=lesions, affine=np.eye(4), voxel_size=(4.0, 4.0, 4.0))
    scores = score_against_full_dose(case, truth)
    assert set(scores["metrics"]) == {"low_dose", "gaussian", "denoised"}
    assert scores["metrics"]["denoised"]["psnr"] == float("inf") and scores["gaussian_fwhm_mm"] > 0
    assert scores["lesions"]["num_lesions"] == 1 and "truth" in scores["lesions"]


def phantom_case(shape=(18, 16, 14)):
    """Labels (body 2, liver 9), two lesions and a reference in SUV on 4 mm voxels."""
    labels = np.zeros(shape, np.int64)
    labels[1:-1, 1:-1, 1:-1] = 2
    labels[3:15, 3:13, 2:12] = 9
    lesions = np.zeros(shape, np.int64)
    lesions[6:8, 6:8, 5:7] = 1
    lesions[11:13, 9:11, 8:10] = 2
    rng = np.random.default_rng(3)
    reference = np.where(labels == 9, 2.0, np.where(labels > 0, 1.0, 0.0)) * (1 + 0.05 * rng.standard_normal(shape))
    reference[lesions > 0] = 9.0
    return reference.astype(np.float32), labels, lesions


def test_identical_result_scores_perfectly():
    reference, labels, lesions = phantom_case()
    case = prepare_reference(reference, (4.0, 4.0, 4.0), labels, lesions, {9: "liver"}, liver_label=9,
                             liver_margin_mm=4.0)
    row, regions = score_result(case, reference.copy())
    assert list(row) == list(metric_columns())
    assert row["psnr"] == math.inf and row["psnr_body"] == math.inf and row["psnr_challenge"] == math.inf
    assert row["ssim"] == pytest.approx(1.0) and row["ssim_challenge"] == pytest.approx(1.0)
    assert row["nrmse"] == 0.0 and row["nrmse_challenge"] == 0.0
    assert row["liver_cv"] == pytest.approx(row["liver_cv_reference"]) and row["liver_cv"] > 0
    assert row["lesion_count"] == 2 and row["lesion_cr"] == 1.0
    for name in ("suvmax", "suvmean", "tla"):
        assert row[f"lesion_{name}_error_pct"] == 0.0 and row[f"lesion_{name}_abs_error_pct"] == 0.0
    assert row["body_mask"] == "labels > 0"
    assert [r["region"] for r in regions] == ["label_2", "liver", "lesion_1", "lesion_2"]
    assert all(list(r) == list(region_columns()) for r in regions)


def test_scaled_result_errors_are_the_factor():
    reference, labels, lesions = phantom_case()
    case = prepare_reference(reference, (4.0, 4.0, 4.0), labels, lesions, liver_label=9, liver_margin_mm=4.0)
    row, regions = score_result(case, 0.9 * reference)
    for name in ("suvmax", "suvmean", "tla"):
        assert row[f"lesion_{name}_error_pct"] == pytest.approx(-10.0, abs=1e-4)
        assert row[f"lesion_{name}_abs_error_pct"] == pytest.approx(10.0, abs=1e-4)
    assert row["lesion_cr"] == pytest.approx(1.0) and row["ssim_challenge"] == pytest.approx(1.0)
    assert row["liver_cv"] == pytest.approx(row["liver_cv_reference"], rel=1e-5)  # CV is scale-free
    assert all(r["suvmean_error_pct"] == pytest.approx(-10.0, abs=1e-4) for r in regions)
    assert row["nrmse"] == pytest.approx(0.1, rel=1e-5)


def test_without_labels_the_body_is_a_threshold_and_region_metrics_are_empty():
    reference, _, _ = phantom_case()
    case = prepare_reference(reference, (4.0, 4.0, 4.0))
    row, regions = score_result(case, reference + 0.1)
    assert regions == [] and row["body_mask"] == "reference > 0.1 SUV"
    assert all(math.isnan(row[key]) for key in ("liver_cv", "lesion_count", "lesion_cr", "lesion_suvmax_error_pct"))
    # Offset 0.1 everywhere: the body's MSE is the whole volume's, PSNR = 20 log10(max / 0.1).
    assert row["psnr_body"] == pytest.approx(row["psnr"], abs=1e-3)
    assert row["psnr"] == pytest.approx(20 * math.log10(reference.max() / 0.1), abs=1e-3)


def test_csv_cells_and_text():
    assert [format_cell(v) for v in (1.0 / 3, float("nan"), float("inf"), None, 7, "x")] == \
        ["0.333333", "", "inf", "", "7", "x"]
    text = csv_text([{"a": 1.5, "b": "x"}, {"a": float("nan")}], ["a", "b"])
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ["1.5", "x"], ["", ""]]


def test_mean_sd_skips_empty_cells():
    assert mean_sd([1.0, 3.0, float("nan"), ""]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    mean, sd, count = mean_sd(["5"])
    assert (mean, count) == (5.0, 1) and math.isnan(sd)
    assert mean_sd([float("inf"), 3.0])[0] == math.inf


def tiny_run_rows():
    """Metrics rows of a tiny run: two methods, two doses, two cases each."""
    rows = []
    for method, base in (("ddpm", 40.0), ("gauss", 35.0)):
        for dose, drop in (("1/4", 0.0), ("1/20", 4.0)):
            for case, jitter in (("s1", -1.0), ("s2", 1.0)):
                rows.append({"case": case, "method": method, "scanner": "quadra", "dose": dose,
                             "psnr": base - drop + jitter, "ssim": 0.9, "nrmse": 0.1, "liver_cv": float("nan"),
                             "lesion_suvmax_error_pct": -drop})
    return rows


def test_summary_tables_per_method_and_per_group(tmp_path):
    rows = tiny_run_rows()
    text = summary_markdown(rows, ["scanner", "dose"], ["psnr", "ssim", "liver_cv"], notes=["two methods"])
    lines = text.splitlines()
    assert lines[0] == "# Evaluation summary" and "two methods" in lines
    assert "| method | n | psnr | ssim |" in lines  # liver_cv has no value: left out
    # ddpm: PSNR 39, 41, 35, 37 -> mean 38, sample SD sqrt(20 / 3) = 2.6
    assert "| ddpm | 4 | 38.00 ± 2.6 | 0.9000 ± 0 |" in lines
    assert "## Per method x scanner x dose" in lines
    assert "| method | scanner | dose | n | psnr | ssim |" in lines
    assert "| gauss | quadra | 1/20 | 2 | 31.00 ± 1.4 | 0.9000 ± 0 |" in lines
    write_csv(tmp_path / "metrics.csv", rows, ["case", "method", "dose", "psnr"])
    with open(tmp_path / "metrics.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 8 and written[0] == {"case": "s1", "method": "ddpm", "dose": "1/4", "psnr": "39"}


def test_dose_values():
    assert dose_value("1/20") == pytest.approx(0.05)
    assert dose_value("0.25") == 0.25 and dose_value("1-20") == pytest.approx(0.05)
    assert math.isnan(dose_value("low"))


def test_metric_vs_dose_figure_draws_a_panel_per_scanner(tmp_path):
    rows = tiny_run_rows() + [{**row, "scanner": "vision"} for row in tiny_run_rows()]
    assert metric_vs_dose_figure(tmp_path / "psnr.png", rows, "psnr", ["scanner"])
    assert (tmp_path / "psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not metric_vs_dose_figure(tmp_path / "cv.png", rows, "liver_cv")  # no values: nothing drawn
    categorical = [{**row, "dose": {"1/4": "low", "1/20": "ultra-low"}[row["dose"]]} for row in tiny_run_rows()]
    assert metric_vs_dose_figure(tmp_path / "labels.png", categorical, "psnr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.png", "psnr.png"]
