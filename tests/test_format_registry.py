"""The registry of volume formats: a format added by a test is found, read, written, surveyed and trained on."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_helpers import pixels, write_enhanced_pet, write_pet_series
from toy_format import TOY_FORMAT, TOY_LAUNCHER, write_toy
from training_helpers import REPO, TINY_NET

from guided_diffusion.errors import UserError
from guided_diffusion.model_card import read_card
from guided_diffusion.pet.io import (
    FORMATS,
    VolumeFormat,
    VolumeSource,
    list_volumes,
    output_path,
    read_volume,
    register_format,
    survey_volume,
    write_volume,
)
from guided_diffusion.pet.io import registry as registry_module
from guided_diffusion.pet.io.grid import plan_grid
from guided_diffusion.pet.training.pairs import data_voxel_size, find_pairs, prepare_pairs
from guided_diffusion.volume_files import check_output_format, result_paths, write_result

PATCH = (8, 8, 4)


@pytest.fixture
def toy(monkeypatch):
    """The toy format registered for one test."""
    monkeypatch.setitem(FORMATS, "toy", TOY_FORMAT)
    return TOY_FORMAT


def _volume(shape=(6, 5, 4), seed=0):
    return (np.random.default_rng(seed).random(shape) * 10 + 0.1).astype(np.float32)


# ----------------------------------------------------------------------------- reading and writing


def test_a_registered_format_is_listed_read_written_and_read_back(tmp_path, toy):
    data = _volume()
    write_toy(tmp_path / "scan.toy", data, (2.0, 2.0, 3.0))
    nib.save(nib.Nifti1Image(_volume(seed=1), np.eye(4)), tmp_path / "other.nii.gz")

    assert [(s.kind, s.name) for s in list_volumes(tmp_path)] == [("nifti", "other"), ("toy", "scan")]
    vol = read_volume(tmp_path / "scan.toy")
    assert (vol.fmt, vol.name, vol.path) == ("toy", "scan", tmp_path / "scan.toy")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == (2.0, 2.0, 3.0)

    out = output_path(tmp_path / "out", vol, "denoised")
    assert out == tmp_path / "out" / "scan_denoised.toy"
    with pytest.raises(UserError, match=r"must end in \.toy"):
        write_volume(tmp_path / "out" / "scan_denoised.nii.gz", vol.data, vol)
    write_volume(out, vol.data * 0.5, vol)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, data * 0.5)
    np.testing.assert_array_equal(back.affine, vol.affine)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scan_denoised.toy"]  # atomic: no temp file left

    # The scripts' output choices come from the registry too: a toy input is written as toy, never as DICOM.
    assert result_paths(tmp_path, vol, "denoised", "both") == {"file": tmp_path / "scan_denoised.toy"}
    with pytest.raises(UserError, match="--output_format dicom needs DICOM input; this is toy"):
        check_output_format(vol, "dicom")


def test_the_readers_checks_apply_to_a_registered_format(tmp_path, toy):
    data = _volume()
    data[1, 2, 3] = np.nan
    write_toy(tmp_path / "nan.toy", data)
    with pytest.raises(UserError, match=r"nan.toy: 1 voxels are NaN or infinite \(first at index \(1, 2, 3\)\)"):
        read_volume(tmp_path / "nan.toy")
    write_toy(tmp_path / "zero.toy", np.zeros((4, 4, 4)))
    with pytest.raises(UserError, match="zero.toy: every voxel is zero"):
        read_volume(tmp_path / "zero.toy")


def test_dicom_results_are_nifti_files_and_new_series_as_its_format_says(tmp_path):
    vol = read_volume(_write_dicom(tmp_path))
    paths = result_paths(tmp_path / "out", vol, "denoised", "both")
    assert paths == {"file": tmp_path / "out" / "P1_PET_WB_20240305_denoised.nii.gz",
                     "dicom": tmp_path / "out" / "P1_PET_WB_20240305_denoised_dcm"}
    write_result(paths, vol.data, vol, "suv", "denoised", 100, overwrite=False)
    np.testing.assert_allclose(read_volume(paths["file"]).data, vol.data)
    assert read_volume(paths["dicom"]).shape == vol.shape
    assert result_paths(tmp_path, vol, "x", "dicom").keys() == {"dicom"}


def test_an_unregistered_format_is_unknown(tmp_path):
    write_toy(tmp_path / "scan.toy", _volume())
    with pytest.raises(UserError, match="unknown volume format; use .npz, .nii, .nii.gz"):
        read_volume(tmp_path / "scan.toy")
    with pytest.raises(UserError, match="no volumes found; give a .npz/.nii/.nii.gz file"):
        list_volumes(tmp_path)


def test_a_format_found_by_content_is_searched_below_folders(tmp_path, monkeypatch):
    """A toy format without suffix, found like DICOM: by its first bytes, in a folder and below, beside DICOM."""
    content_toy = dataclasses.replace(
        TOY_FORMAT, name="rawtoy", suffixes=(), label="toy volume",
        detect=lambda path: path.read_bytes()[:4] == b"TOY ",
        group=lambda files: ([VolumeSource(f, f.name, "rawtoy", (f,)) for f in files], []),
    )
    monkeypatch.setitem(FORMATS, "rawtoy", content_toy)
    write_toy(tmp_path / "deep" / "er" / "volume_without_suffix", _volume())
    write_pet_series(tmp_path / "pet", pixels())
    found = list_volumes(tmp_path)
    assert [(s.kind, s.name) for s in found] == [("rawtoy", "volume_without_suffix"), ("dicom", "P1_PET_WB_20240305")]
    assert read_volume(found[0]).shape == (6, 5, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no DICOM PET series or toy volume found in this folder or below"):
        read_volume(tmp_path / "empty")


def test_register_format_refuses_a_format_it_cannot_find_or_write(monkeypatch):
    monkeypatch.setattr(registry_module, "FORMATS", dict(FORMATS))
    with pytest.raises(ValueError, match="give suffixes, or detect and group"):
        register_format(dataclasses.replace(TOY_FORMAT, suffixes=()))
    with pytest.raises(ValueError, match="either write or results_as"):
        register_format(dataclasses.replace(TOY_FORMAT, write=None))
    with pytest.raises(ValueError, match="lower case"):
        register_format(dataclasses.replace(TOY_FORMAT, suffixes=(".TOY",)))
    assert "toy" not in registry_module.FORMATS
    assert register_format(TOY_FORMAT) is registry_module.FORMATS["toy"]


def test_the_built_in_formats_are_described_by_the_registry():
    assert list(FORMATS)[:3] == ["npz", "nifti", "dicom"]
    dicom = FORMATS["dicom"]
    assert dicom.by_content and dicom.results_as == "nifti" and dicom.write is None and dicom.write_series
    assert all(isinstance(f, VolumeFormat) and f.survey for f in FORMATS.values())


# ----------------------------------------------------------------------------- training


def test_training_pairs_in_a_registered_format_are_found_and_prepared(tmp_path, toy):
    full = _volume((16, 16, 8), seed=2)
    low = full + _volume((16, 16, 8), seed=3) * 0.1
    write_toy(tmp_path / "s1" / "full.toy", full)
    write_toy(tmp_path / "s1" / "low.toy", low)
    (tmp_path / "s1" / "pairs.csv").write_text("low_dose,full_dose\nlow.toy,full.toy\n")

    entries = find_pairs(tmp_path)
    assert [(e.low.name, e.full.name) for e in entries] == [("low.toy", "full.toy")]
    assert data_voxel_size(entries) == 2.0
    pairs = prepare_pairs(entries, tmp_path / "cache", PATCH, model_voxel_size=4.0)
    grid = plan_grid(full.shape, np.diag([2.0, 2.0, 2.0, 1.0]), 4.0)
    assert pairs[0].shape == grid.model_shape == (8, 8, 4)
    cached_low, cached_full = pairs[0].open()
    np.testing.assert_array_equal(cached_full, grid.to_model(full))
    np.testing.assert_array_equal(cached_low, grid.to_model(low))


def test_training_pairs_in_a_registered_format_are_checked(tmp_path, toy):
    write_toy(tmp_path / "full.toy", _volume((16, 16, 8)))
    write_toy(tmp_path / "low.toy", _volume((16, 16, 6)))
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose\nlow.toy,full.toy\n")
    with pytest.raises(UserError, match=r"low.toy has shape \(16, 16, 6\) but full dose .*must share one grid"):
        prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)


# ----------------------------------------------------------------------------- survey


def _write_npz(folder: Path) -> Path:
    np.savez(folder / "v.npz", arr_0=_volume()[None], affine=np.diag([1.5, 2.0, 2.5, 1.0]))
    return folder / "v.npz"


def _write_nifti(folder: Path) -> Path:
    affine = np.array([[-2.0, 0, 0, 10], [0, 2.0, 0.1, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(_volume()[..., None], affine), folder / "v.nii.gz")
    return folder / "v.nii.gz"


def _write_dicom(folder: Path) -> Path:
    write_pet_series(folder / "pet", pixels(rows=8, columns=6), positions=[12.0, 0.0, 8.0, 4.0])
    return folder / "pet"


def _write_enhanced(folder: Path) -> Path:
    write_enhanced_pet(folder / "enh" / "object", pixels(rows=8, columns=6))
    return folder / "enh"


def _write_toy(folder: Path) -> Path:
    return write_toy(folder / "v.toy", _volume(), (1.0, 2.0, 3.0))


@pytest.mark.parametrize("write", [_write_npz, _write_nifti, _write_dicom, _write_enhanced, _write_toy])
@pytest.mark.parametrize("with_survey", [True, False])
def test_survey_gives_what_reading_gives(tmp_path, monkeypatch, write, with_survey):
    monkeypatch.setitem(FORMATS, "toy", TOY_FORMAT)
    path = write(tmp_path)
    if not with_survey:  # the fallback: the volume is read
        kind = list_volumes(path)[0].kind
        monkeypatch.setitem(FORMATS, kind, dataclasses.replace(FORMATS[kind], survey=None))
    info = survey_volume(path)
    vol = read_volume(path)
    assert (info.name, info.fmt, info.path, info.shape) == (vol.name, vol.fmt, vol.path, vol.shape)
    np.testing.assert_allclose(info.affine, vol.affine)
    assert info.voxel_size == pytest.approx(vol.voxel_size)
    assert output_path(tmp_path, info, "denoised") == output_path(tmp_path, vol, "denoised")


def test_survey_reads_no_voxels(tmp_path, monkeypatch):
    # NIfTI: voxels cut off, header intact.
    nib.save(nib.Nifti1Image(_volume((16, 16, 16)), np.eye(4)), tmp_path / "cut.nii")
    blob = (tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(blob[: len(blob) // 2])
    assert survey_volume(tmp_path / "cut.nii").shape == (16, 16, 16)
    with pytest.raises(UserError, match="cut.nii: cannot read as NIfTI"):
        read_volume(tmp_path / "cut.nii")

    # DICOM: a slice's pixel data cut off.
    files = write_pet_series(tmp_path / "pet", pixels(slices=2))
    files[1].write_bytes(files[1].read_bytes()[:-40])
    assert survey_volume(tmp_path / "pet").shape == (8, 8, 2)
    with pytest.raises(UserError, match="cannot decode pixels"):
        read_volume(tmp_path / "pet")

    # npz: no array is loaded at all (the grid is the default one).
    np.savez(tmp_path / "v.npz", pet=_volume((3, 4, 5)))

    def no_array_reads(*args, **kwargs):
        raise AssertionError("survey read an array")

    monkeypatch.setattr(np.lib.format, "read_array", no_array_reads)
    info = survey_volume(tmp_path / "v.npz", npz_key="pet", default_voxel_size=2.0)
    assert info.shape == (3, 4, 5) and info.voxel_size == (2.0, 2.0, 2.0)
    with pytest.raises(AssertionError, match="survey read an array"):
        read_volume(tmp_path / "v.npz", npz_key="pet")


def test_survey_refuses_what_reading_refuses_from_the_header(tmp_path):
    np.savez(tmp_path / "flat.npz", np.ones((4, 5)))
    with pytest.raises(UserError, match=r"flat.npz: volume has shape \(4, 5\); expected 3 axes"):
        survey_volume(tmp_path / "flat.npz")
    np.savez(tmp_path / "keys.npz", pet=np.ones((4, 5, 6)))
    with pytest.raises(UserError, match=r"no array named 'arr_0'; keys present: pet; choose one with --npz_key"):
        survey_volume(tmp_path / "keys.npz")
    with pytest.raises(UserError, match="no such file"):
        survey_volume(tmp_path / "missing.nii.gz")


# ----------------------------------------------------------------------------- scripts


def test_the_launcher_registers_the_format_for_a_script(tmp_path):
    write_toy(tmp_path / "scan.toy", _volume())
    script = tmp_path / "show.py"
    script.write_text("import sys\nfrom guided_diffusion.pet.io import read_volume\n"
                      "print(read_volume(sys.argv[1]).shape, sys.argv[0])\n")
    result = subprocess.run([sys.executable, str(TOY_LAUNCHER), str(script), str(tmp_path / "scan.toy")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(6,", "5,", "4)", str(script)]


@pytest.mark.slow
def test_a_registered_format_trains_and_denoises_through_the_scripts(tmp_path):
    """One module (tests/toy_format.py) and one line (register_format) take a format through both scripts."""
    full = _volume((16, 16, 8), seed=2)
    write_toy(tmp_path / "data" / "full.toy", full)
    write_toy(tmp_path / "data" / "low.toy", full + _volume((16, 16, 8), seed=3) * 0.5)
    (tmp_path / "data" / "pairs.csv").write_text("low_dose,full_dose\nlow.toy,full.toy\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(TOY_LAUNCHER), str(REPO / "scripts" / name), *args], env=env,
                              capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)

    trained = script("train.py", *TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder",
                     str(tmp_path / "run"), "--max_steps", "1", "--num_workers", "0")
    assert trained.returncode == 0, trained.stderr
    model = tmp_path / "run" / "ema_0.9999_0000001.pt"
    assert read_card(model)["training_data"]["num_pairs"] == 1
    denoised = script("test.py", *TINY_NET[:4], "--model_path", str(model), "--base_samples",
                      str(tmp_path / "data" / "low.toy"), "--save_dir", str(tmp_path / "out"),
                      "--timestep_respacing", "ddim2", "--patch_axial", "8", "--patch_overlap", "2")
    assert denoised.returncode == 0, denoised.stderr
    result = tmp_path / "out" / "low_denoised.toy"
    assert result.read_bytes().startswith(b"TOY 16 16 8 2.0 2.0 2.0\n")
    voxels = np.frombuffer(result.read_bytes().split(b"\n", 1)[1], dtype="<f4").reshape(full.shape)
    assert np.isfinite(voxels).all() and voxels.max() > 0
