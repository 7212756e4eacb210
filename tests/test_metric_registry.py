"""The metric registry: it gives today's tables and figures, and a metric added by one line reaches every output."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from test_evaluate_cli import read_csv, run_in_process, write_case

from guided_diffusion.pet.eval import registry
from guided_diffusion.pet.eval.case_metrics import lesion_mean
from guided_diffusion.pet.eval.case_scores import metric_columns, region_columns
from guided_diffusion.pet.eval.registry import VS_DOSE, Metric, axis_label, figure_columns, summary_columns


def test_the_registry_gives_the_columns_summary_and_figures_in_their_order():
    assert metric_columns() == (
        "psnr", "psnr_body", "psnr_challenge", "ssim", "ssim_challenge", "nrmse", "nrmse_challenge",
        "liver_cv", "liver_cv_reference", "lesion_count",
        "lesion_suvmax_error_pct", "lesion_suvmean_error_pct", "lesion_tla_error_pct",
        "lesion_suvmax_abs_error_pct", "lesion_suvmean_abs_error_pct", "lesion_tla_abs_error_pct",
        "lesion_count_small", "lesion_suvmax_bias_pct_small", "lesion_suvmax_abs_error_pct_small",
        "lesion_count_large", "lesion_suvmax_bias_pct_large", "lesion_suvmax_abs_error_pct_large", "lesion_cr",
        "body_mask",
    )
    assert region_columns() == (
        "region", "kind", "label", "voxels", "volume_ml", "size_bin", "visible",
        "suvmean_result", "suvmean_reference", "suvmean_error_pct",
        "suvmax_result", "suvmax_reference", "suvmax_error_pct",
        "tla_result", "tla_reference", "tla_error_pct", "contrast_recovery",
    )
    not_summarised = {"liver_cv_reference", "lesion_count", "lesion_count_small", "lesion_count_large", "body_mask"}
    assert summary_columns() == tuple(c for c in metric_columns() if c not in not_summarised)
    assert figure_columns(VS_DOSE) == ("psnr", "ssim", "nrmse", "lesion_suvmax_error_pct",
                                       "lesion_suvmax_bias_pct_small", "lesion_suvmax_bias_pct_large")
    assert [axis_label(m) for m in figure_columns(VS_DOSE)] == [
        "PSNR (dB)", "SSIM", "NRMSE", "lesion SUVmax error (%)", "lesion SUVmax bias < 1 ml (%)",
        "lesion SUVmax bias >= 1 ml (%)"]
    assert axis_label("not_a_metric") == "not_a_metric"


def mean_absolute_error(case, result, regions) -> float:
    return float(np.abs(result - case.reference).mean())


def suvmean_ratio(case, result, regions) -> list[dict]:
    """Per region: result SUVmean / reference SUVmean (reads the columns of the built-in "suv" metric)."""
    return [{"suvmean_ratio": r["suvmean_result"] / r["suvmean_reference"]} for r in regions]


def test_a_registered_metric_reaches_every_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.METRICS, "toy_mae", Metric(mean_absolute_error, "MAE", "SUV",
                                                            higher_is_better=False, figures=(VS_DOSE,)))
    monkeypatch.setitem(registry.METRICS, "toy_ratio", Metric(suvmean_ratio, region_columns=("suvmean_ratio",)))
    monkeypatch.setitem(registry.METRICS, "lesion_suvmean_ratio", Metric(lesion_mean("suvmean_ratio")))
    files = write_case(tmp_path / "data")
    (tmp_path / "cases.csv").write_text("case,reference,labels,lesions,method,result,dose\n" + "".join(
        f"s1,data/full.nii.gz,data/labels.nii.gz,data/lesions.nii.gz,{m},data/{m}.nii.gz,1/4\n"
        for m in ("noisy", "scaled")))
    run_in_process(monkeypatch, capsys, tmp_path, "--cases", "cases.csv", "--out_dir", "out", status=0)
    out = tmp_path / "out"

    rows = read_csv(out / "metrics.csv")
    assert list(rows[0])[-7:] == ["lesion_cr", "toy_mae", "lesion_suvmean_ratio", "body_mask", "regions_csv",
                                  "reference", "result"]
    scaled = rows[1]  # 1.1 x the full dose
    full = np.asarray(nib.load(files["full"]).dataobj, dtype=np.float64)
    assert float(scaled["toy_mae"]) == pytest.approx(0.1 * full.mean(), rel=1e-5)
    assert float(scaled["lesion_suvmean_ratio"]) == pytest.approx(1.1, rel=1e-5)

    regions = read_csv(out / "cases" / "s1__scaled.csv")
    assert list(regions[0])[-2:] == ["contrast_recovery", "suvmean_ratio"]
    assert all(float(r["suvmean_ratio"]) == pytest.approx(1.1, rel=1e-5) for r in regions)

    summary = (out / "summary.md").read_text()
    assert "| method | n | psnr |" in summary and "| lesion_cr | toy_mae | lesion_suvmean_ratio |" in summary

    figure = out / "figures" / "toy_mae_vs_dose.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
