"""Faults while results are written: concurrent runs, stale files, unwritable or full folders, a bad volume in a
batch, signals. Each checks the exit status, the one line, and that no partial, mixed or temporary file remains."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import BIN, FAST, MODEL_FLAGS, REPO, run, write_random_model
from denoise_helpers import run_in_process as run_denoise_in_process

from guided_diffusion import output_set, volume_files
from guided_diffusion.atomic import is_temporary_name
from guided_diffusion.model_kinds.gaussian import GaussianKind

SCRIPT = REPO / "scripts" / "test.py"


def write_scan(path: Path, seed: int = 0, shape=(10, 12, 9)) -> Path:
    suv = np.random.default_rng(seed).gamma(2.0, 1.0, shape).astype(np.float32)
    if path.suffix == ".npz":
        np.savez(path, arr_0=suv, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    else:
        nib.save(nib.Nifti1Image(suv, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def run_in_process(monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    """scripts/test.py's main in this process: exit status and the non-blank stderr lines."""
    status, err = run_denoise_in_process(monkeypatch, capsys, *args)
    return status, [line for line in err.splitlines() if line.strip()]


def gaussian_args(inputs: Path, save: Path, fwhm: float = 6.0) -> list[str]:
    return ["--gaussian_fwhm_mm", str(fwhm), "--base_samples", str(inputs), "--save_dir", str(save)]


def hidden(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".")] if folder.exists() else []


def test_temporary_names_are_hidden_and_marked():
    for name in (".scan_denoised.nii.gz.k2j3.tmp.nii.gz", ".scan_denoised_dcm.ab12.tmp", ".scan_denoised.lock",
                 ".scan_denoised.ab12cd.staging", ".write-check.x1.tmp", ".scan_denoised_dcm.ab12.old"):
        assert is_temporary_name(name), name
    for name in ("scan.nii.gz", ".hidden_scan.nii.gz", "scan.tmp.nii.gz", "notes.lock"):
        assert not is_temporary_name(name), name


def test_two_concurrent_runs_into_one_folder_never_mix(tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        write_scan(inputs / f"scan{i}.nii.gz", seed=i, shape=(24, 24, 20))
    references = {}
    for fwhm in (6.0, 12.0):
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(inputs / "*.nii.gz", tmp_path / f"ref{fwhm}",
                                                                         fwhm))
        assert status == 0, err
        references[fwhm] = {i: np.asarray(nib.load(tmp_path / f"ref{fwhm}" / f"scan{i}_denoised.nii.gz").dataobj)
                            for i in range(3)}
    save = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, str(SCRIPT), *gaussian_args(inputs / "*.nii.gz", save, fwhm),
                              "--overwrite", "True"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env) for fwhm in (6.0, 12.0)]
    outcomes = [(proc.wait(timeout=120), proc.stderr.read()) for proc in runs]
    for status, err in outcomes:
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 0 or (status == 1 and len(lines) == 1 and "another run" in lines[0]), err
    assert any(status == 0 for status, _ in outcomes)
    for i in range(3):
        fwhm = json.loads((save / f"scan{i}_denoised.json").read_text())["flags"]["gaussian_fwhm_mm"]
        written = np.asarray(nib.load(save / f"scan{i}_denoised.nii.gz").dataobj)
        np.testing.assert_array_equal(written, references[fwhm][i])
    assert hidden(save) == []


def test_a_set_claimed_by_a_live_run_is_refused_and_a_dead_runs_claim_taken_over(tmp_path, monkeypatch, capsys):
    write_scan(tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    save.mkdir()
    lock = save / ".scan_denoised.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {holder.pid}\n")
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
        assert status == 1 and len(err) == 1 and f"another run (process {holder.pid}" in err[0], err
        assert sorted(os.listdir(save)) == [lock.name]
    finally:
        holder.kill()
        holder.wait()
    (save / ".scan_denoised.0123456789ab.staging").mkdir()  # what a killed writer leaves beside its claim
    status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    assert status == 0, err
    assert sorted(os.listdir(save)) == ["scan_denoised.json", "scan_denoised.nii.gz"]


def test_overwrite_replaces_the_whole_set_and_a_stale_sd_map_is_never_kept(tmp_path, monkeypatch, capsys):
    write_random_model(tmp_path / "model.pt")
    write_scan(tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    args = [*MODEL_FLAGS, "--model_path", str(tmp_path / "model.pt"), "--base_samples", str(tmp_path / "scan.nii.gz"),
            "--save_dir", str(save), *FAST]
    status, err = run_in_process(monkeypatch, capsys, *args, "--num_ensemble", "2")
    assert status == 0, err
    assert (save / "scan_denoised_std.nii.gz").exists()
    status, err = run_in_process(monkeypatch, capsys, *args, "--overwrite", "True")
    assert status == 0, err
    assert sorted(os.listdir(save)) == ["scan_denoised.json", "scan_denoised.nii.gz"]
    assert json.loads((save / "scan_denoised.json").read_text())["flags"]["num_ensemble"] == 1
    # an SD map left alone (its result removed by hand) still belongs to the set: refused without --overwrite
    stale = save / "scan_denoised_std.nii.gz"
    stale.write_bytes(b"old")
    (save / "scan_denoised.nii.gz").unlink()
    (save / "scan_denoised.json").unlink()
    status, err = run_in_process(monkeypatch, capsys, *args)
    assert status == 1 and err == [f"error: {stale} exists; pass --overwrite True to replace it"]


def test_an_unwritable_save_dir_is_refused_before_the_model_is_prepared(tmp_path, monkeypatch, capsys):
    def not_prepared(self, settings):
        raise AssertionError("the model was prepared before --save_dir was checked")

    monkeypatch.setattr(GaussianKind, "prepare", not_prepared)
    write_scan(tmp_path / "scan.nii.gz")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if not os.access(read_only, os.W_OK):  # as root, permissions do not bite: the simulated case below stands
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", read_only / "out"))
        assert status == 1 and len(err) == 1 and "--save_dir" in err[0] and "cannot write" in err[0], err

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    save = tmp_path / "new" / "out"
    with monkeypatch.context() as patch:
        patch.setattr(output_set.tempfile, "mkstemp", refused)
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    expected = (f"error: --save_dir {save}: cannot write there (Permission denied); choose a writable --save_dir "
                "or fix its permissions")
    assert status == 1 and err == [expected]
    assert not (tmp_path / "new").exists()  # the folders made for the check are gone

    usage = namedtuple("usage", "total used free")
    with monkeypatch.context() as patch:
        patch.setattr(output_set.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    assert status == 1 and len(err) == 1 and "0 MB free, the results need about 2 MB" in err[0], err

    (tmp_path / "a_file").write_text("")
    status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", tmp_path / "a_file"))
    assert status == 1 and len(err) == 1 and "is a file, not a folder" in err[0], err


def test_a_full_disk_while_writing_leaves_no_partial_set_and_a_rerun_works(tmp_path, monkeypatch, capsys):
    write_scan(tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    real_write = volume_files.write_volume

    def fills_the_disk(path, data, like, overwrite=False):
        real_write(path, data, like, overwrite)  # the result is complete: the disk fills on the next file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(volume_files, "write_volume", fills_the_disk)
        status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {save}: No space left on device while writing scan_denoised; nothing of it")
    assert not save.exists()  # nothing written: not even the folder the run made
    status, err = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    assert status == 0, err
    assert sorted(os.listdir(save)) == ["scan_denoised.json", "scan_denoised.nii.gz"]


def test_sigterm_while_writing_removes_what_was_staged(tmp_path, monkeypatch, capsys):
    write_scan(tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    real_write = volume_files.write_volume

    def terminated_after_writing(path, data, like, overwrite=False):
        real_write(path, data, like, overwrite)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(volume_files, "write_volume", terminated_after_writing)
    status, _ = run_in_process(monkeypatch, capsys, *gaussian_args(tmp_path / "scan.nii.gz", save))
    assert status == 143
    assert not save.exists()  # nothing written: not even the folder the run made


def batch_of_three(folder: Path) -> Path:
    """a.npz, b.npz (one NaN voxel: refused when read), c.npz."""
    folder.mkdir()
    for name in "abc":
        write_scan(folder / f"{name}.npz", seed=ord(name))
    with np.load(folder / "b.npz") as f:
        bad, affine = f["arr_0"].copy(), f["affine"]
    bad[1, 2, 3] = np.nan
    np.savez(folder / "b.npz", arr_0=bad, affine=affine)
    return folder


@pytest.mark.mpi
def test_a_batch_goes_on_past_a_bad_volume_on_two_ranks(tmp_path):
    inputs = batch_of_three(tmp_path / "in")
    save = tmp_path / "out"
    result = run([*gaussian_args(inputs / "*.npz", save)], ranks=2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 2 and "b.npz" in errors[0] and "NaN" in errors[0], result.stderr
    assert errors[0].endswith("; going on with the next volume")
    assert errors[1] == "error: 1 of 3 volumes failed (b; see the lines above); the others were written"
    assert sorted(os.listdir(save)) == ["a_denoised.json", "a_denoised.npz", "c_denoised.json", "c_denoised.npz"]


@pytest.mark.mpi
def test_a_write_failure_on_rank_0_only_is_agreed_and_the_batch_goes_on(tmp_path):
    inputs = batch_of_three(tmp_path / "in")
    np.savez(inputs / "b.npz", arr_0=np.ones((10, 12, 9), np.float32), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    wrapper = tmp_path / "disk_full_for_b.py"
    wrapper.write_text(
        "import errno, runpy, sys\n"
        "from guided_diffusion import volume_files\n"
        "real_write = volume_files.write_volume\n"
        "def write(path, data, like, overwrite=False):\n"
        "    if like.name == 'b':\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return real_write(path, data, like, overwrite)\n"
        "volume_files.write_volume = write\n"
        f"sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    save = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, str(wrapper),
                             *gaussian_args(inputs / "*.npz", save)], capture_output=True, text=True, timeout=120,
                            env=env, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 2 and "No space left on device while writing b_denoised" in errors[0], result.stderr
    assert errors[1] == "error: 1 of 3 volumes failed (b; see the lines above); the others were written"
    assert sorted(os.listdir(save)) == ["a_denoised.json", "a_denoised.npz", "c_denoised.json", "c_denoised.npz"]


def start_sampling(tmp_path: Path, ranks: int) -> tuple[subprocess.Popen, Path]:
    """scripts/test.py sampling a volume of many patch-steps, returned once its progress bar has started."""
    write_random_model(tmp_path / "model.pt")
    write_scan(tmp_path / "scan.nii.gz", shape=(24, 24, 24))
    save = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), *MODEL_FLAGS, "--model_path", str(tmp_path / "model.pt"),
               "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir", str(save), "--timestep_respacing",
               "ddim100", "--patch_axial", "8", "--max_patch_inplane", "8", "--patch_overlap", "3"]
    if ranks:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen, deadline = b"", time.monotonic() + 120
    while b"patch-step" not in seen:
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk and time.monotonic() < deadline, seen.decode(errors="replace")
        seen += chunk
    time.sleep(0.5)
    return proc, save


def test_sigterm_during_sampling_leaves_no_temporary_files(tmp_path):
    proc, save = start_sampling(tmp_path, ranks=0)
    assert hidden(save) == [".scan_denoised.lock"]  # the run's claim, while it samples
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not save.exists()  # nothing written: not even the folder the run made


@pytest.mark.mpi
def test_sigterm_during_sampling_on_two_ranks_leaves_no_temporary_files(tmp_path):
    proc, save = start_sampling(tmp_path, ranks=2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert not save.exists(), os.listdir(save)
