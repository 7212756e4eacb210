"""scripts/test.py end to end under mpiexec: same result for any rank count, formats, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import BIN, FAST, MODEL_FLAGS, REPO, run, write_random_model

from guided_diffusion.gaussian_diffusion import get_named_beta_schedule
from guided_diffusion.model_card import fit_record, update_card
from guided_diffusion.pet.noise_level import estimate_noise_sd
from guided_diffusion.warm_start import start_timestep_for_noise


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("denoise")
    write_random_model(root / "model.pt")
    rng = np.random.default_rng(1)
    suv = rng.gamma(2.0, 1.0, (13, 10, 21)).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -12], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(suv, affine), root / "scan.nii.gz")
    np.savez(root / "scan_npz.npz", arr_0=suv[None], affine=affine)
    return root


def test_same_output_for_1_2_3_ranks_and_any_batch_size(workdir):
    outputs = []
    for ranks, batch in ((1, 4), (2, 1), (3, 2)):
        save = workdir / f"out_{ranks}"
        result = run(["--model_path", str(workdir / "model.pt"), "--base_samples", str(workdir / "scan.nii.gz"),
                      "--save_dir", str(save), "--batch_size", str(batch), "--seed", "3", *FAST], ranks=ranks)
        assert result.returncode == 0, result.stderr
        image = nib.load(save / "scan_denoised.nii.gz")
        assert image.shape == (13, 10, 21)
        np.testing.assert_array_equal(image.affine, nib.load(workdir / "scan.nii.gz").affine)
        outputs.append(np.asarray(image.dataobj))
    assert outputs[0].std() > 0
    for other in outputs[1:]:
        # In the model's units (SUV / suv_max): batched convolutions may differ in the last float32 bits.
        np.testing.assert_allclose(other / 16.0, outputs[0] / 16.0, atol=1e-6, rtol=0)
    sidecar = json.loads((workdir / "out_3" / "scan_denoised.json").read_text())
    assert sidecar["seed"] == 3 and sidecar["num_ranks"] == 3 and sidecar["patch_plan"]["num_patches"] > 1
    assert len(sidecar["model_sha256"]) == 64


def test_npz_ensemble_keeps_format_and_geometry_and_refuses_to_overwrite(workdir):
    save = workdir / "out_npz"
    args = ["--model_path", str(workdir / "model.pt"), "--base_samples", str(workdir / "scan_npz.npz"),
            "--save_dir", str(save), "--num_ensemble", "2", *FAST]
    result = run(args, ranks=2)
    assert result.returncode == 0, result.stderr
    with np.load(save / "scan_npz_denoised.npz") as f:
        assert f["arr_0"].shape == (13, 10, 21)
        np.testing.assert_array_equal(f["affine"], np.load(workdir / "scan_npz.npz")["affine"])
    with np.load(save / "scan_npz_denoised_std.npz") as f:
        assert f["arr_0"].shape == (13, 10, 21) and f["arr_0"].max() > 0
    again = run(args, ranks=0)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def write_bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    nan = np.ones((9, 10, 11), np.float32)
    nan[1, 2, 3] = np.nan
    np.savez(root / "nan.npz", nan)
    np.savez(root / "flat.npz", np.ones((5, 6), np.float32))
    np.savez(root / "zeros.npz", np.zeros((5, 6, 7), np.float32))
    np.savez(root / "other_key.npz", volume=np.ones((5, 6, 7), np.float32))
    (root / "corrupt.nii.gz").write_bytes(b"garbage")
    return {
        "nan": (root / "nan.npz", "NaN"),
        "2d": (root / "flat.npz", "3 axes"),
        "empty": (root / "zeros.npz", "zero"),
        "key": (root / "other_key.npz", "arr_0"),
        "corrupt": (root / "corrupt.nii.gz", "corrupt.nii.gz"),
        "missing": (root / "missing.nii.gz", "missing.nii.gz"),
    }


@pytest.mark.parametrize("case", ["nan", "2d", "empty", "key", "corrupt", "missing"])
def test_bad_input_one_line_nonzero_exit_nothing_written(workdir, case):
    path, words = write_bad_inputs(workdir)[case]
    save = workdir / f"bad_{case}"
    result = run(["--model_path", str(workdir / "model.pt"), "--base_samples", str(path), "--save_dir", str(save),
                  *FAST], ranks=2)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words.lower() in lines[0].lower(), result.stderr
    assert not save.exists() or not any(save.iterdir())


def test_mismatched_checkpoint_and_bad_flag(workdir):
    save = workdir / "bad_ckpt"
    result = run(["--model_path", str(workdir / "model.pt"), "--base_samples", str(workdir / "scan.nii.gz"),
                  "--save_dir", str(save), "--num_channels", "64", *FAST], ranks=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "--num_channels 32" in lines[0]
    assert not save.exists()
    result = run(["--model_path", str(workdir / "model.pt"), "--base_samples", str(workdir / "scan.nii.gz"),
                  "--save_dir", str(save), "--batch_size", "0"], ranks=0)
    assert result.returncode != 0 and "--batch_size" in result.stderr


def test_a_bug_on_one_rank_ends_every_rank(tmp_path):
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(
        "from guided_diffusion import dist_util\n"
        "def main():\n"
        "    if dist_util.rank() == 1:\n"
        "        raise RuntimeError('boom on rank 1')\n"
        "    dist_util.COMM.bcast(None, root=1)  # rank 0 would wait here forever\n"
        "dist_util.run_main(main)\n"
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, str(script)], check=False, capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode != 0 and "boom on rank 1" in result.stderr


def run_launcher(workdir: Path, model: Path, save: Path, *args: str) -> subprocess.CompletedProcess:
    """test_DDPM_3d_mpi.sh on 2 ranks, configured from the environment, ``args`` after its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}", "NUM_GPUS": "2",
           "MODEL_PATH": str(model), "BASE_SAMPLES": str(workdir / "scan.nii.gz"),
           "SAVE_DIR": str(save), "MODEL_FLAGS": " ".join(MODEL_FLAGS),
           "DIFFUSION_FLAGS": "--noise_schedule linear"}
    return subprocess.run(["bash", str(REPO / "test_DDPM_3d_mpi.sh"), *args], check=False,
                          capture_output=True, text=True, timeout=240, env=env)


def test_launcher_takes_environment_and_passes_arguments_through(workdir):
    model = workdir / "fitted" / "model.pt"
    model.parent.mkdir(exist_ok=True)
    shutil.copy(workdir / "model.pt", model)
    update_card(model, warm_start_scale=fit_record(6.3, fitted_by="a test", fitted_on="none", table=[]))
    save = workdir / "out_launcher"
    result = run_launcher(workdir, model, save, *FAST, "--seed", "3")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((save / "scan_denoised.json").read_text())
    assert sidecar["num_ranks"] == 2 and sidecar["flags"]["timestep_respacing"] == "ddim3"  # passed through, later
    # the launcher's own sampler defaults: ancestral, from the warm start measured on the input, scaled by the card
    assert sidecar["sampler"]["sampler"] == "ddpm" and sidecar["flags"]["start_timestep"] == "auto"
    assert sidecar["warm_start"]["start_timestep"] >= 1 and sidecar["warm_start"]["scale"] == 6.3
    assert sidecar["settings_from"]["warm_start_scale"] == "model card"


def test_launcher_runs_the_papers_process_for_a_model_without_a_fitted_scale(workdir):
    save = workdir / "out_launcher_paper"
    result = run_launcher(workdir, workdir / "model.pt", save, *FAST)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no fitted --warm_start_scale" in notes[0] and "benchmarks/warm_start.py" in notes[0]
    sidecar = json.loads((save / "scan_denoised.json").read_text())
    assert sidecar["sampler"]["sampler"] == "ddim" and sidecar["sampler"]["steps"] == 50
    assert sidecar["sampler"]["start_timestep"] == 0 and "warm_start" not in sidecar
    # scripts/test.py itself refuses auto without a scale, naming the flag
    refused = run([*scan_args(workdir, workdir / "out_refused"), *FAST, "--start_timestep", "auto"], ranks=0)
    assert refused.returncode == 1 and "--warm_start_scale" in refused.stderr.strip().splitlines()[-1]


def scan_args(workdir: Path, save: Path) -> list[str]:
    """The fixture's model and NIfTI scan, written to ``save``."""
    return ["--model_path", str(workdir / "model.pt"), "--base_samples", str(workdir / "scan.nii.gz"),
            "--save_dir", str(save)]


def test_sampler_and_steps_flags(workdir):
    save = workdir / "out_dpm"
    args = [*scan_args(workdir, save), *FAST[2:]]  # FAST without its --timestep_respacing
    result = run([*args, "--sampler", "dpmpp2m", "--steps", "3"], ranks=0)
    assert result.returncode == 0, result.stderr
    sampler = json.loads((save / "scan_denoised.json").read_text())["sampler"]
    assert sampler["sampler"] == "dpmpp2m" and sampler["steps"] == 3
    # the later of --steps / --timestep_respacing and of --sampler / --use_ddim wins, as the launcher needs
    later = run([*args, "--sampler", "dpmpp2m", "--steps", "3", "--use_ddim", "True", "--timestep_respacing", "ddim2",
                 "--overwrite", "True"], ranks=0)
    assert later.returncode == 0, later.stderr
    sampler = json.loads((save / "scan_denoised.json").read_text())["sampler"]
    assert sampler["sampler"] == "ddim" and sampler["steps"] == 2
    unknown = run([*args, "--sampler", "heun", "--overwrite", "True"], ranks=0)
    assert unknown.returncode == 1 and "--sampler must be one of ddpm, ddim, dpmpp2m" in unknown.stderr


def test_precision_and_layout_flags(workdir):
    save = workdir / "out_bf16"
    args = [*scan_args(workdir, save), *FAST]
    result = run([*args, "--precision", "bf16", "--channels_last", "True"], ranks=0)
    assert result.returncode == 0, result.stderr
    sampler = json.loads((save / "scan_denoised.json").read_text())["sampler"]
    assert sampler["precision"] == "bf16" and sampler["channels_last"] is True
    refused = run([*args, "--precision", "fp8", "--overwrite", "True"], ranks=0)
    assert refused.returncode == 1 and "--precision must be one of fp32, bf16, fp16" in refused.stderr


def test_warm_start_chosen_from_the_measured_noise(workdir):
    save = workdir / "out_auto"
    args = [*scan_args(workdir, save), *FAST[2:], "--steps", "3"]
    result = run([*args, "--start_timestep", "auto", "--warm_start_scale", "5"], ranks=2)
    assert result.returncode == 0, result.stderr
    warm = json.loads((save / "scan_denoised.json").read_text())["warm_start"]
    suv = np.asarray(nib.load(workdir / "scan.nii.gz").dataobj, dtype=np.float32)
    noise_sd = estimate_noise_sd(suv, (2.0, 2.0, 3.0))  # the model grid is the input's (flipped to RAS)
    alphas_cumprod = np.cumprod(1 - get_named_beta_schedule("linear", 100))
    assert warm["noise_sd_suv"] == pytest.approx(noise_sd, rel=1e-5)
    assert warm["start_timestep"] == start_timestep_for_noise(alphas_cumprod, noise_sd / 16.0, 5.0) > 1
    refused = run([*args, "--start_timestep", "soon", "--overwrite", "True"], ranks=0)
    assert refused.returncode == 1 and "--start_timestep must be a step (0: from pure noise) or 'auto'" in refused.stderr
