"""Lesions are scored where visible (SUVmax >= 1.5 x local background, judged in the clean reference when given), in
size bins (< 1 ml, >= 1 ml), with the signed and the absolute SUVmax error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_evaluate_cli import read_csv, run_in_process, save

from guided_diffusion.pet.eval.case_reference import prepare_reference, with_reference
from guided_diffusion.pet.eval.case_scores import score_result
from guided_diffusion.pet.eval.regions import lesion_background, lesion_size_bin, lesion_visible
from guided_diffusion.pet.eval.registry import CLEAN, FULL_DOSE, visibility_reference

VOXEL_MM = 4.0  # 0.064 ml per voxel
SHAPE = (30, 14, 12)
#: Lesion id -> (box, reference SUV, result / reference). Background SUV 1: lesion 4 sits at it (not visible).
LESIONS = {
    1: ((slice(2, 5), slice(5, 8), slice(5, 7)), 5.0, 1.2),  # 18 voxels = 1.152 ml: large, +20 %
    2: ((slice(9, 12), slice(5, 8), slice(5, 7)), 4.0, 0.9),  # large, -10 %
    3: ((slice(16, 18), slice(5, 7), slice(5, 7)), 4.0, 0.7),  # 8 voxels = 0.512 ml: small, -30 %
    4: ((slice(23, 25), slice(5, 7), slice(5, 7)), 1.0, 3.0),  # small, at background: +200 %, not scored
}


def synthetic_case() -> dict[str, np.ndarray]:
    """Labels (body 1), the lesion map, the full dose (background 1 SUV) and a result with the errors of LESIONS."""
    labels = np.zeros(SHAPE, np.int16)
    labels[1:-1, 1:-1, 1:-1] = 1
    lesions = np.zeros(SHAPE, np.int16)
    full = labels.astype(np.float32)
    result = full.copy()
    for lesion_id, (box, suv, factor) in LESIONS.items():
        lesions[box] = lesion_id
        full[box] = suv
        result[box] = suv * factor
    return {"labels": labels, "lesions": lesions, "full": full, "result": result}


def test_a_lesion_is_visible_from_1_5_times_its_background():
    volume = np.ones((12, 12, 12), np.float32)
    lesions = np.zeros(volume.shape, np.int16)
    lesions[5:7, 5:7, 5:7] = 1
    box, lesion, background = lesion_background(lesions, 1)
    for peak, visible in ((1.0, False), (1.49, False), (1.5, True), (6.0, True)):
        volume[lesions == 1] = peak
        assert lesion_visible(volume[box], lesion, background) is visible
    assert lesion_visible(volume[box], lesion, np.zeros_like(background)) is False  # no background to stand out of


def test_size_bins_split_at_1_ml():
    assert [lesion_size_bin(v) for v in (0.064, 0.999, 1.0, 30.0)] == ["small", "small", "large", "large"]
    data = synthetic_case()
    case = prepare_reference(data["full"], (VOXEL_MM,) * 3, data["labels"], data["lesions"])
    lesions = [r for r in case.regions if r["kind"] == "lesion"]
    assert [(r["voxels"], r["size_bin"]) for r in lesions] == [(18, "large"), (18, "large"), (8, "small"),
                                                               (8, "small")]
    assert [r["visible"] for r in lesions] == [True, True, True, False]
    organ = next(r for r in case.regions if r["kind"] == "organ")
    assert organ["size_bin"] is None and organ["visible"] is None


def test_summaries_average_visible_lesions_signed_and_absolute_per_bin():
    data = synthetic_case()
    case = prepare_reference(data["full"], (VOXEL_MM,) * 3, data["labels"], data["lesions"])
    row, regions = score_result(case, data["result"])
    assert row["lesion_count"] == 3 and row["lesion_count_large"] == 2 and row["lesion_count_small"] == 1
    assert row["lesion_suvmax_bias_pct_large"] == pytest.approx(5.0, abs=1e-4)  # (+20 - 10) / 2
    assert row["lesion_suvmax_abs_error_pct_large"] == pytest.approx(15.0, abs=1e-4)  # (20 + 10) / 2
    assert row["lesion_suvmax_bias_pct_small"] == pytest.approx(-30.0, abs=1e-4)  # lesion 4's +200 % left out
    assert row["lesion_suvmax_abs_error_pct_small"] == pytest.approx(30.0, abs=1e-4)
    assert row["lesion_suvmax_error_pct"] == pytest.approx(-20.0 / 3, abs=1e-4)  # all sizes, visible only
    assert row["lesion_suvmax_abs_error_pct"] == pytest.approx(20.0, abs=1e-4)
    invisible = regions[-1]  # still in the case's table, marked
    assert invisible["region"] == "lesion_4" and invisible["visible"] is False
    assert invisible["suvmax_error_pct"] == pytest.approx(200.0, abs=1e-3)


def test_an_empty_bin_and_no_visible_lesion_give_nan():
    data = synthetic_case()
    flat = data["labels"].astype(np.float32)  # every lesion at background in the reference
    case = prepare_reference(flat, (VOXEL_MM,) * 3, data["labels"], data["lesions"])
    row, regions = score_result(case, data["result"])
    assert row["lesion_count"] == 0 and row["lesion_count_small"] == 0
    assert all(math.isnan(row[c]) for c in ("lesion_suvmax_error_pct", "lesion_suvmax_bias_pct_large",
                                            "lesion_suvmax_abs_error_pct_small", "lesion_cr"))
    assert [r["visible"] for r in regions if r["kind"] == "lesion"] == [False] * 4


def test_visibility_is_judged_in_the_clean_reference_for_every_column_set():
    assert visibility_reference([FULL_DOSE]) == FULL_DOSE and visibility_reference([FULL_DOSE, CLEAN]) == CLEAN
    data = synthetic_case()
    clean = data["full"].copy()
    clean[data["lesions"] == 4] = 3.0  # lesion 4: hidden in the full dose, visible in the noiseless reconstruction
    case = prepare_reference(data["full"], (VOXEL_MM,) * 3, data["labels"], data["lesions"])
    alone, _ = score_result(case, data["result"])
    row, regions = score_result(case, data["result"], {CLEAN: with_reference(case, clean)})
    assert regions[-1]["visible"] is True and alone["lesion_count_small"] == 1
    assert row["lesion_count_small"] == 2  # the same lesions for both column sets
    assert row["lesion_suvmax_bias_pct_small"] == pytest.approx((-30.0 + 200.0) / 2, abs=1e-3)  # vs the full dose
    assert row["lesion_suvmax_bias_pct_small_clean"] == pytest.approx((-30.0 + 0.0) / 2, abs=1e-3)  # 3 x 1 = 3
    assert row["lesion_suvmax_bias_pct_large_clean"] == pytest.approx(5.0, abs=1e-4)


def test_evaluate_writes_the_bins_and_visibility(tmp_path, monkeypatch, capsys):
    data = synthetic_case()
    for name, volume in data.items():
        save(tmp_path / f"{name}.nii.gz", volume)
    run_in_process(monkeypatch, capsys, tmp_path, "--reference", "full.nii.gz", "--results", "model=result.nii.gz",
                   "--labels", "labels.nii.gz", "--lesions", "lesions.nii.gz", "--out_dir", "out", status=0)
    (row,) = read_csv(tmp_path / "out" / "metrics.csv")
    assert (row["lesion_count"], row["lesion_count_small"], row["lesion_count_large"]) == ("3", "1", "2")
    assert float(row["lesion_suvmax_bias_pct_large"]) == pytest.approx(5.0, abs=1e-3)
    assert float(row["lesion_suvmax_abs_error_pct_large"]) == pytest.approx(15.0, abs=1e-3)
    assert float(row["lesion_suvmax_bias_pct_small"]) == pytest.approx(-30.0, abs=1e-3)
    regions = read_csv(tmp_path / "out" / "cases" / "full__model.csv")
    assert [(r["region"], r["size_bin"], r["visible"]) for r in regions] == [
        ("fat", "", ""), ("lesion_1", "large", "True"), ("lesion_2", "large", "True"),
        ("lesion_3", "small", "True"), ("lesion_4", "small", "False")]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "lesion_suvmax_bias_pct_small | lesion_suvmax_abs_error_pct_small |" in summary
    assert "lesion_count_small" not in summary
