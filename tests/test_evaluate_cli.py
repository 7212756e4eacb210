"""scripts/evaluate.py end to end on tiny NIfTI files: one case, a --cases CSV with two doses, refusals."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from guided_diffusion import dist_util

SCRIPT = REPO / "scripts" / "evaluate.py"
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
SHAPE = (16, 14, 12)


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          check=False, timeout=120)


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def write_case(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Full dose, labels (body 2, liver 9), two lesions and two results (noisy, scaled) as NIfTI files."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(SHAPE, np.int16)
    labels[1:-1, 1:-1, 1:-1] = 2
    labels[3:13, 3:11, 2:10] = 9
    lesions = np.zeros(SHAPE, np.int16)
    lesions[5:7, 5:7, 4:6] = 1
    lesions[10:12, 8:10, 7:9] = 2
    full = np.where(labels == 9, 2.0, np.where(labels > 0, 1.0, 0.0))
    full[lesions > 0] = 8.0
    noise = np.random.default_rng(seed).normal(0, 0.2, SHAPE) * (labels > 0)
    return {
        "full": save(folder / "full.nii.gz", full.astype(np.float32)),
        "noisy": save(folder / "noisy.nii.gz", (full + noise).astype(np.float32)),
        "scaled": save(folder / "scaled.nii.gz", (1.1 * full).astype(np.float32)),
        "labels": save(folder / "labels.nii.gz", labels),
        "lesions": save(folder / "lesions.nii.gz", lesions),
    }


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_case_with_two_results_labels_and_lesions(tmp_path, monkeypatch, capsys):
    files = write_case(tmp_path / "data")
    result = evaluate("--reference", files["full"], "--results", f"ddpm={files['noisy']}",
                      f"scaled={files['scaled']}", "--labels", files["labels"], "--lesions", files["lesions"],
                      "--liver_margin_mm", "4", "--out_dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    rows = read_csv(out / "metrics.csv")
    assert [(r["case"], r["method"]) for r in rows] == [("full", "ddpm"), ("full", "scaled")]
    assert list(rows[0])[:9] == ["case", "method", "psnr", "psnr_body", "psnr_challenge", "ssim", "ssim_challenge",
                                 "nrmse", "nrmse_challenge"]
    scaled = rows[1]
    for column in ("lesion_suvmax_error_pct", "lesion_suvmean_error_pct", "lesion_tla_error_pct"):
        assert float(scaled[column]) == pytest.approx(10.0, abs=1e-3)
    assert float(scaled["lesion_cr"]) == pytest.approx(1.0) and float(scaled["nrmse"]) == pytest.approx(0.1, abs=1e-5)
    assert scaled["lesion_count"] == "2" and scaled["liver_cv"] != "" and scaled["body_mask"] == "labels > 0"
    assert float(rows[0]["psnr"]) < 60 and float(rows[0]["ssim"]) < 1
    regions = read_csv(out / "cases" / "full__scaled.csv")
    assert [r["region"] for r in regions] == ["muscle", "liver", "lesion_1", "lesion_2"]
    assert all(float(r["suvmean_error_pct"]) == pytest.approx(10.0, abs=1e-3) for r in regions)
    assert float(regions[2]["tla_reference"]) == pytest.approx(8.0 * 8 * 0.064)  # 8 voxels of 0.064 ml at SUV 8
    assert (out / "cases" / "full__ddpm.csv").is_file() and scaled["regions_csv"] == "cases/full__scaled.csv"
    summary = (out / "summary.md").read_text()
    assert "## Per method" in summary and "| ddpm | 1 |" in summary and "| scaled | 1 |" in summary
    assert not (out / "figures").exists()  # no dose column
    # A second run refuses to overwrite, unless asked.
    args = ("--reference", files["full"], "--results", f"ddpm={files['noisy']}", "--out_dir", "out")
    status, lines = run_in_process(monkeypatch, capsys, tmp_path, *args)
    assert status == 1 and len(lines) == 1 and "pass --overwrite True" in lines[0]
    run_in_process(monkeypatch, capsys, tmp_path, *args, "--overwrite", "True", status=0)
    assert len(read_csv(out / "metrics.csv")) == 1


def test_cases_csv_with_two_doses_and_grouping_columns(tmp_path):
    for dose, seed in (("1-4", 0), ("1-20", 1)):
        write_case(tmp_path / "data" / dose, seed)
    # One subject: the full dose and maps of the first folder, results at two doses (relative to the CSV).
    lines = ["case,reference,labels,lesions,method,result,scanner,tracer,dose"]
    for dose in ("1-4", "1-20"):
        for method, result in (("ddpm", "noisy"), ("gauss", "scaled")):
            lines.append(f"s1,1-4/full.nii.gz,1-4/labels.nii.gz,1-4/lesions.nii.gz,{method},"
                         f"{dose}/{result}.nii.gz,quadra,fdg,{dose.replace('-', '/')}")
    (tmp_path / "data" / "cases.csv").write_text("\n".join(lines) + "\n")
    result = evaluate("--cases", "data/cases.csv", "--out_dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    rows = read_csv(out / "metrics.csv")
    assert len(rows) == 4 and list(rows[0])[:5] == ["case", "method", "scanner", "tracer", "dose"]
    assert [(r["method"], r["dose"]) for r in rows] == [("ddpm", "1/4"), ("gauss", "1/4"), ("ddpm", "1/20"),
                                                        ("gauss", "1/20")]
    # (case, method) repeats over doses: the region tables carry the grouping values.
    stems = [f"s1__{m}__scanner-quadra__tracer-fdg__dose-1_{d}" for m in ("ddpm", "gauss") for d in (20, 4)]
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"{stem}.csv" for stem in stems]
    assert rows[0]["regions_csv"] == f"cases/{stems[1]}.csv"
    assert float(rows[1]["lesion_suvmax_error_pct"]) == pytest.approx(10.0, abs=1e-3)  # 1.1 x the full dose
    summary = (out / "summary.md").read_text()
    assert "## Per method x scanner x tracer x dose" in summary
    assert "| gauss | quadra | fdg | 1/20 | 1 |" in summary
    figures = sorted(p.name for p in (out / "figures").iterdir())
    # Both lesions are under 1 ml: no figure of the >= 1 ml bin, which has no values.
    assert figures == ["lesion_suvmax_bias_pct_small_vs_dose.png", "lesion_suvmax_error_pct_vs_dose.png",
                       "nrmse_vs_dose.png", "psnr_vs_dose.png", "ssim_vs_dose.png"]
    assert all((out / "figures" / name).read_bytes()[:4] == b"\x89PNG" for name in figures)
    # Evaluated again with --overwrite and without the Gaussian: its tables (and a figure no metric makes) go.
    (out / "figures" / "old_metric_vs_dose.png").write_bytes(b"\x89PNG")
    (tmp_path / "data" / "cases.csv").write_text("\n".join(line for line in lines if ",gauss," not in line) + "\n")
    again = evaluate("--cases", "data/cases.csv", "--out_dir", "out", "--overwrite", "True", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {r["method"] for r in read_csv(out / "metrics.csv")} == {"ddpm"}
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"{stem}.csv" for stem in stems[:2]]
    assert sorted(p.name for p in (out / "figures").iterdir()) == figures


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_in_process(monkeypatch, capsys, cwd: Path, *args: str, status: int = 1) -> tuple[int, list[str]]:
    """Run the script's main through dist_util.run_main here (no interpreter start): exit status, stderr lines.

    A run that succeeds returns (0, lines) instead of raising SystemExit; ``status`` says which to expect.
    """
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", *map(str, args)])
    if status == 0:
        dist_util.run_main(load_script(monkeypatch).main)
        return 0, capsys.readouterr().err.strip().splitlines()
    with pytest.raises(SystemExit) as exit_info:
        dist_util.run_main(load_script(monkeypatch).main)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("problem,named", [
    ("missing file", "missing.nii.gz: no such file"),
    ("shape mismatch", "has shape (16, 14, 11) but the reference"),
    ("other geometry", "different geometry"),
    ("NaN", "NaN"),
    ("bad NAME=PATH", "expected NAME=PATH"),
    ("label shape", "lesions"),
    ("csv column", "missing column(s) result"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, problem, named):
    files = write_case(tmp_path)
    results = [f"ddpm={files['noisy']}"]
    extra: list[str] = []
    if problem == "missing file":
        results = [f"ddpm={tmp_path / 'missing.nii.gz'}"]
    elif problem == "shape mismatch":
        save(tmp_path / "cut.nii.gz", np.ones((16, 14, 11), np.float32))
        results = [f"cut={tmp_path / 'cut.nii.gz'}"]
    elif problem == "other geometry":
        save(tmp_path / "moved.nii.gz", np.ones(SHAPE, np.float32), AFFINE + _shift(5.0))
        results = [f"moved={tmp_path / 'moved.nii.gz'}"]
    elif problem == "NaN":
        bad = np.ones(SHAPE, np.float32)
        bad[3, 3, 3] = np.nan
        save(tmp_path / "nan.nii.gz", bad)
        results = [f"nan={tmp_path / 'nan.nii.gz'}"]
    elif problem == "bad NAME=PATH":
        results = [str(files["noisy"])]
    elif problem == "label shape":
        save(tmp_path / "small_lesions.nii.gz", np.zeros((8, 8, 8), np.int16))
        extra = ["--lesions", str(tmp_path / "small_lesions.nii.gz")]
    if problem == "csv column":
        (tmp_path / "cases.csv").write_text("case,reference,method\ns1,full.nii.gz,ddpm\n")
        args = ["--cases", "cases.csv", "--out_dir", "out"]
    else:
        args = ["--reference", str(files["full"]), "--results", *results, *extra, "--out_dir", "out"]
    status, lines = run_in_process(monkeypatch, capsys, tmp_path, *args)
    assert status == 1
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert not (tmp_path / "out").exists()


def _shift(mm: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[0, 3] = mm
    return shift


def test_a_refusal_from_the_command_line(tmp_path):
    result = evaluate("--reference", "missing.nii.gz", "--results", "a=b.nii.gz", "--out_dir", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: --results a: reference missing.nii.gz: no such file or directory"]
