"""The registry of model kinds: lookups, and a kind added with one module and one registry line."""

from __future__ import annotations

import json
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import run_in_process
from scipy.ndimage import median_filter

from guided_diffusion import dist_util
from guided_diffusion.denoise import VolumeResult
from guided_diffusion.errors import UserError
from guided_diffusion.model_kinds import MODEL_KINDS, ModelKind, VolumeMethod, get_model_kind


class MedianMethod(VolumeMethod):
    """A 3-voxel median filter of the whole volume on rank 0."""

    def denoise(self, suv, spacing, name, job_offset):
        if dist_util.rank() != 0:
            return None, {}
        return VolumeResult(mean=median_filter(suv, size=3), std=None), {"median": {"size": 3}}


@dataclass(frozen=True)
class MedianKind(ModelKind):
    """A kind with no network and no model file: what a user adds in one module."""

    needs_model_file: bool = False

    def prepare(self, settings):
        return MedianMethod({"process": "median filter, 3 voxels"}, "median filtered", ["3 voxels"])


def test_every_kind_is_found_by_its_name_and_unknown_names_are_refused():
    assert set(MODEL_KINDS) == {"diffusion", "regression", "gan", "gaussian"}
    assert all(get_model_kind(name).name == name for name in MODEL_KINDS)
    assert not MODEL_KINDS["diffusion"].deterministic and MODEL_KINDS["regression"].deterministic
    with pytest.raises(UserError, match="--model_kind must be one of diffusion, regression, gan, gaussian"):
        get_model_kind("unet")
    with pytest.raises(UserError, match="must be one of diffusion, regression, gan, got 'gaussian'"):
        get_model_kind("gaussian", trainable=True)


def test_a_kind_added_with_one_registry_line_denoises_through_the_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODEL_KINDS, "median", MedianKind("median", "a 3-voxel median filter", trainable=False))
    suv = np.random.default_rng(0).gamma(2.0, 1.0, (10, 12, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(suv, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "scan.nii.gz")
    status, err = run_in_process(monkeypatch, capsys, "--model_kind", "median", "--base_samples",
                             str(tmp_path / "scan.nii.gz"), "--save_dir", str(tmp_path / "out"))
    assert status == 0, err
    result = np.asarray(nib.load(tmp_path / "out" / "scan_denoised.nii.gz").dataobj)
    np.testing.assert_allclose(result, median_filter(suv, size=3), rtol=1e-6)
    record = json.loads((tmp_path / "out" / "scan_denoised.json").read_text())
    assert record["model_kind"] == "median" and record["median"] == {"size": 3}
    assert record["settings_from"]["model_kind"] == "--model_kind"


def test_a_network_kind_without_its_model_file_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    status, err = run_in_process(monkeypatch, capsys, "--model_kind", "regression", "--base_samples",
                             str(tmp_path / "scan.nii.gz"))
    expected = ("error: --model_path is required (a state_dict, a training checkpoint or a Gaussian fit .json; "
                "or give --gaussian_fwhm_mm)")
    assert status == 1 and err.strip().splitlines() == [expected]
