"""scripts/convert_to_suv.py: hand-computed SUV (QIBA) from DICOM and Bq/ml NIfTI, resampling, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from dicom_helpers import expected_suv, injection_info, pixels, suv_factor, write_pet_series

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "convert_to_suv.py"


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=120)


def test_dicom_series_to_suv_matches_the_hand_computation(tmp_path):
    stored, slopes = pixels(4, 8, 6), [0.5, 1.0, 2.0, 1.5]
    write_pet_series(tmp_path / "ima", stored, slopes=slopes, names=lambda k: f"1.3.12.2.{k}.IMA")
    result = convert(tmp_path / "ima", tmp_path / "suv.nii.gz")
    assert result.returncode == 0, result.stderr
    # Injection 10:00, series start 11:00: one hour of F-18 decay.
    expected = expected_suv(stored, slopes, suv_factor(3600.0))
    written = nib.load(tmp_path / "suv.nii.gz").get_fdata()
    np.testing.assert_allclose(written, expected, rtol=1e-4)
    record = json.loads((tmp_path / "suv.json").read_text())
    assert record["input_units"] == "BQML" and record["suv"]["delay_s"] == 3600.0


def test_bqml_nifti_with_a_bids_sidecar(tmp_path):
    bqml = np.random.default_rng(1).gamma(2.0, 1.0, (6, 5, 4)).astype(np.float32) * 8000
    nib.save(nib.Nifti1Image(bqml, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "pet.nii.gz")
    sidecar = {"Units": "Bq/mL", "BodyWeight": 80, "InjectedRadioactivity": 300, "InjectedRadioactivityUnits": "MBq",
               "TracerRadionuclide": "F18", "TimeZero": "10:00:00", "InjectionStart": 0, "ScanStart": 5400}
    (tmp_path / "pet.json").write_text(json.dumps(sidecar))
    result = convert(tmp_path / "pet.nii.gz", tmp_path / "suv.nii.gz")
    assert result.returncode == 0, result.stderr
    written = nib.load(tmp_path / "suv.nii.gz").get_fdata()
    np.testing.assert_allclose(written, bqml * suv_factor(5400.0, 80.0, 300e6), rtol=1e-4)


def test_voxel_size_resamples_onto_an_isotropic_grid(tmp_path):
    write_pet_series(tmp_path / "dcm", pixels(6, 8, 8))
    result = convert(tmp_path / "dcm", tmp_path / "iso.nii.gz", "--voxel_size", "4")
    assert result.returncode == 0, result.stderr
    image = nib.load(tmp_path / "iso.nii.gz")
    np.testing.assert_allclose(np.linalg.norm(image.affine[:3, :3], axis=0), [4.0, 4.0, 4.0])


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    write_pet_series(tmp_path / "late", pixels(4, 8, 8), info=injection_info(start_time="120000"))
    write_pet_series(tmp_path / "mbq", pixels(4, 8, 8), info=injection_info(dose_bq=370.0))  # MBq typed as Bq
    for folder in ("late", "mbq"):
        result = convert(tmp_path / folder, tmp_path / f"{folder}.nii.gz")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert not (tmp_path / f"{folder}.nii.gz").exists() and not (tmp_path / f"{folder}.json").exists()
    assert "RadionuclideTotalDose" in convert(tmp_path / "mbq", tmp_path / "x.nii.gz").stderr
