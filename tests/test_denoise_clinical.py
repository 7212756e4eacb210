"""scripts/test.py on clinical inputs under mpiexec: DICOM trees in and out, units, the model grid, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import FAST, run, write_random_model
from dicom_helpers import injection_info, pixels, write_ct_series, write_pet_series

from guided_diffusion.pet.io import read_volume


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt")


def write_tree(root: Path) -> None:
    """Two patients whose series folders share a name, Siemens-style .IMA files, per-slice slopes, a CT beside."""
    for patient, seed in (("P1", 3), ("P2", 4)):
        study = root / patient / "study1"
        write_pet_series(study / "series1", pixels(4, 8, 8, seed), slopes=[0.5, 1.0, 2.0, 1.5],
                         names=lambda k, p=patient: f"{p}.PT.WB.{k + 1:04d}.IMA", PatientID=patient)
        write_ct_series(study / "series2", PatientID=patient)


def test_dicom_tree_in_nifti_and_dicom_out_aligned_in_input_units(tmp_path, model):
    write_tree(tmp_path / "tree")
    save = tmp_path / "out"
    result = run(["--model_path", str(model), "--base_samples", str(tmp_path / "tree"), "--save_dir", str(save),
                  "--output_format", "both", "--output_units", "input", "--num_ensemble", "2", *FAST], ranks=2)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note:") == 2  # one per CT series
    sidecars = sorted(save.glob("*_denoised.json"))
    assert len(sidecars) == 2
    for path in sidecars:
        record = json.loads(path.read_text())
        source = read_volume(record["input"])  # the folder holds one PET series (the CT sits elsewhere)
        assert record["units"]["input"] == "BQML" and record["units"]["written"] == "BQML"
        assert record["units"]["suv"]["weight_kg"] == 70.0
        nifti = nib.load(record["outputs"]["denoised"]["file"])
        series = read_volume(record["outputs"]["denoised"]["dicom"])
        std_series = read_volume(record["outputs"]["std"]["dicom"])
        # Voxel for voxel: the source's geometry in both outputs.
        np.testing.assert_allclose(nifti.affine, source.affine, atol=1e-6)
        np.testing.assert_allclose(series.affine, source.affine, atol=1e-6)
        assert series.shape == std_series.shape == source.shape
        # NIfTI in Bq/ml; the DICOM series in Bq/ml too, read back as SUV through the source's own factor.
        bqml = np.asarray(nifti.dataobj)
        np.testing.assert_allclose(bqml * source.to_suv, series.data,
                                   atol=float(series.data.max()) / 32767 * 1.01, rtol=1e-5)
        assert series.header.datasets[0].SeriesInstanceUID != source.header.series_uid
        assert series.header.datasets[0].StudyInstanceUID == source.header.datasets[0].StudyInstanceUID


def test_dicom_refused_with_one_line_and_nothing_written(tmp_path, model):
    tree = tmp_path / "tree"
    # Injection at 12:00, scan at 11:00: the injection comes after the scan.
    write_pet_series(tree / "late", pixels(4, 8, 8), info=injection_info(start_time="120000"))
    save = tmp_path / "out"
    result = run(["--model_path", str(model), "--base_samples", str(tree), "--save_dir", str(save),
                  "--output_format", "both", *FAST], ranks=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "after" in lines[0], result.stderr
    assert not save.exists()


def test_bqml_nifti_needs_its_numbers(tmp_path, model):
    rng = np.random.default_rng(0)
    bqml = (rng.gamma(2.0, 1.0, (8, 8, 6)) * 5000).astype(np.float32)  # about 10 kBq/ml: SUV about 2
    nib.save(nib.Nifti1Image(bqml, np.diag([4.0, 4.0, 4.0, 1.0])), tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    refused = run(["--model_path", str(model), "--base_samples", str(tmp_path / "scan.nii.gz"),
                   "--save_dir", str(save), *FAST], ranks=0)
    assert refused.returncode == 1 and "--input_units bqml" in refused.stderr and not save.exists()
    timing = ["--input_units", "bqml", "--weight_kg", "70", "--injected_mbq", "370", "--injection_time", "10:00",
              "--scan_time", "11:00", "--half_life_s", "6586.2"]
    done = run(["--model_path", str(model), "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir", str(save),
                *timing, "--output_units", "input", *FAST], ranks=0)
    assert done.returncode == 0, done.stderr
    record = json.loads((save / "scan_denoised.json").read_text())
    factor = 70e3 / (370e6 * 2 ** (-3600 / 6586.2))  # g / Bq decayed to the scan: SUV per Bq/ml
    assert record["units"]["suv"]["factor"] == pytest.approx(factor, rel=1e-6)
    written = np.asarray(nib.load(save / "scan_denoised.nii.gz").dataobj)
    assert np.median(written[written > 0]) > 1000  # written back in Bq/ml, not SUV


def test_coronal_input_on_a_coarser_model_grid_comes_back_on_its_own_grid(tmp_path, model):
    suv = np.random.default_rng(2).gamma(2.0, 1.0, (10, 12, 9)).astype(np.float32)
    # Coronal: array axis 1 runs head to foot (-S), axis 2 anterior-posterior; 2 x 2 x 3 mm voxels.
    affine = np.array([[2.0, 0, 0, -10], [0, 0, -3.0, 20], [0, -2.0, 0, 30], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(suv, affine), tmp_path / "coronal.nii.gz")
    save = tmp_path / "out"
    result = run(["--model_path", str(model), "--base_samples", str(tmp_path / "coronal.nii.gz"),
                  "--save_dir", str(save), "--model_voxel_size", "4", *FAST], ranks=0)
    assert result.returncode == 0, result.stderr
    out = nib.load(save / "coronal_denoised.nii.gz")
    assert out.shape == suv.shape
    np.testing.assert_array_equal(out.affine, affine)
    grid = json.loads((save / "coronal_denoised.json").read_text())["model_grid"]
    assert grid["model"]["voxel_size_mm"] == [4.0, 4.0, 4.0]
    # Z of the model grid is head-foot: the 12 slices of 2 mm along S become 6 of 4 mm.
    assert grid["model"]["shape"][2] == 6
