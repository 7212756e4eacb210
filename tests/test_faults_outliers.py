"""Absurd voxels: the noise estimate (and so ``--start_timestep auto``) ignores a few of them, and a volume holding a
physically impossible SUV is refused in one line naming the file, by denoising, evaluation and training alike."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import FAST, run, write_random_model
from test_evaluate_cli import run_in_process, save, write_case
from test_warm_start import ALPHAS_CUMPROD, body_with_noise
from training_helpers import TINY_NET, body_pair, run_train, write_nifti

from guided_diffusion.errors import UserError
from guided_diffusion.pet.intensity import MAX_PLAUSIBLE_SUV, check_plausible_suv
from guided_diffusion.pet.noise_level import estimate_noise_sd
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.warm_start import DEMO_WARM_START_SCALE, start_timestep_for_noise

IMPOSSIBLE = "beyond the physically possible ±10000 SUV"


def auto_start(suv: np.ndarray, voxel_size: float) -> int:
    """The demo model's ``--start_timestep auto`` for ``suv`` (SUV max 16)."""
    return start_timestep_for_noise(ALPHAS_CUMPROD, estimate_noise_sd(suv, voxel_size) / 16.0, DEMO_WARM_START_SCALE)


@pytest.mark.parametrize("value", [1e6, -1e6, 3e38, -3e38])
@pytest.mark.parametrize("where", [(16, 16, 16), (1, 1, 1)], ids=["in the body", "in the air"])
def test_one_absurd_voxel_moves_neither_the_noise_estimate_nor_the_warm_start(value, where):
    clean = body_with_noise(0.1)
    spiked = clean.copy()
    spiked[where] = value
    assert estimate_noise_sd(spiked, 4.0) == pytest.approx(estimate_noise_sd(clean, 4.0), rel=0.02)
    assert auto_start(spiked, 4.0) == auto_start(clean, 4.0)


def test_the_estimate_on_a_simulated_subject_is_what_the_demo_scale_was_fitted_with():
    # Values of the estimate before outliers were clipped (a mean-based mask), which the demo model's scale fits.
    case = simulated_case(5000, 0.25, voxel_size=4.0, axial_extent_mm=96.0)
    assert estimate_noise_sd(case.low, 4.0) == pytest.approx(0.15132, rel=0.005)
    assert auto_start(case.low, 4.0) == 14


def test_plausible_volumes_pass_unchanged_and_impossible_ones_are_refused_naming_the_file():
    suv = np.zeros((4, 5, 6), np.float32)
    suv[0, 0, 0], suv[1, 1, 1] = MAX_PLAUSIBLE_SUV, -MAX_PLAUSIBLE_SUV
    assert check_plausible_suv(suv, "scan.nii.gz") is suv
    suv[2, 3, 4], suv[0, 1, 2] = 3e38, -2e4
    with pytest.raises(UserError) as refused:
        check_plausible_suv(suv, "scan.nii.gz")
    message = str(refused.value)
    assert message.startswith(f"scan.nii.gz: 2 voxel(s) {IMPOSSIBLE} (largest 3e+38 at index (2, 3, 4))")
    assert "set those voxels to 0" in message and "\n" not in message


@pytest.mark.parametrize("which", ["reference", "result"])
def test_evaluate_refuses_an_impossible_voxel_instead_of_scoring_it(tmp_path, monkeypatch, capsys, which):
    files = write_case(tmp_path)
    broken = np.asarray(nib.load(files["full" if which == "reference" else "noisy"]).dataobj, np.float32).copy()
    broken[4, 4, 4] = 3e38
    save(tmp_path / "broken.nii.gz", broken)
    reference = tmp_path / "broken.nii.gz" if which == "reference" else files["full"]
    result = tmp_path / "broken.nii.gz" if which == "result" else files["noisy"]
    status, lines = run_in_process(monkeypatch, capsys, tmp_path, "--reference", reference, "--results",
                                   f"ddpm={result}", "--out_dir", "out")
    assert status == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tmp_path / 'broken.nii.gz'}: 1 voxel(s) {IMPOSSIBLE}"), lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["npz pair", "manifest"])
def test_training_refuses_a_pair_with_an_impossible_voxel(tmp_path, layout):
    low, full = body_pair()
    full[3, 4, 5] = 1e6
    data = tmp_path / "data"
    data.mkdir()
    if layout == "npz pair":
        np.savez(data / "x.npz", arr_0=np.stack([low, full]), affine=np.eye(4))
        named = f"{data / 'x.npz'} arr_0[1] (full dose)"
    else:
        write_nifti(data / "low.nii.gz", low)
        write_nifti(data / "full.nii.gz", full)
        (data / "pairs.csv").write_text("low_dose,full_dose\nlow.nii.gz,full.nii.gz\n")
        named = str(data / "full.nii.gz")
    with pytest.raises(UserError) as refused:
        prepare_pairs(find_pairs(data), tmp_path / "cache", (8, 8, 8))
    assert str(refused.value).startswith(f"{named}: 1 voxel(s) {IMPOSSIBLE} (largest 1e+06 at index (3, 4, 5))")


@pytest.mark.slow
def test_the_training_script_refuses_it_in_one_line(tmp_path):
    low, full = body_pair()
    low[2, 2, 2] = -5e4
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "x.npz", arr_0=np.stack([low, full]), affine=np.eye(4))
    result = run_train([*TINY_NET, "--data_dir", str(tmp_path / "data"), "--result_folder", str(tmp_path / "run"),
                        "--max_steps", "2", "--num_workers", "0"], timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"arr_0[0] (low dose): 1 voxel(s) {IMPOSSIBLE} (largest -5e+04" in result.stderr


@pytest.mark.slow
@pytest.mark.mpi
def test_denoising_refuses_the_volume_on_every_rank_and_the_batch_goes_on(tmp_path: Path):
    model = write_random_model(tmp_path / "model.pt")
    rng = np.random.default_rng(4)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a_broken", "b_good"):
        suv = rng.gamma(2.0, 1.0, (10, 9, 12)).astype(np.float32)
        if name == "a_broken":
            suv[5, 4, 6] = 1e6
        nib.save(nib.Nifti1Image(suv, np.diag([2.0, 2.0, 3.0, 1.0])), inputs / f"{name}.nii.gz")
    save_dir = tmp_path / "out"
    result = run(["--model_path", str(model), "--base_samples", str(inputs), "--save_dir", str(save_dir), *FAST],
                 ranks=2)
    assert result.returncode == 1
    assert f"{inputs / 'a_broken.nii.gz'}: 1 voxel(s) {IMPOSSIBLE} (largest 1e+06" in result.stderr
    assert sorted(p.name for p in save_dir.iterdir()) == ["b_good_denoised.json", "b_good_denoised.nii.gz"]
