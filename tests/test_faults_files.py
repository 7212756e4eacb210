"""File-system faults: symlink loops and cycles, hidden temporary files, earlier results among the inputs, headers
claiming more voxels than memory holds, broken checkpoints, volumes thinner than the patch overlap, a truncated
NIfTI, an output folder that is a file. Each ends in a note and a result, or in one line naming the file or flag."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from denoise_helpers import FAST, REPO, run, write_random_model
from dicom_helpers import pixels, write_pet_series

from guided_diffusion.checkpoint import read_checkpoint
from guided_diffusion.denoise import PatchingOptions, make_plan
from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import list_volumes, read_volume, survey_volume
from guided_diffusion.pet.io import volume as volume_module

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def write_scan(path: Path, shape=(10, 12, 9), affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).gamma(2.0, 1.0, shape).astype(np.float32), affine), path)
    return path


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- discovery


def test_a_glob_over_a_tree_with_symlink_loops_returns_each_volume_once(tmp_path):
    write_scan(tmp_path / "tree" / "a.nii.gz")
    write_scan(tmp_path / "tree" / "sub" / "b.nii.gz")
    (tmp_path / "tree" / "up").symlink_to("..")  # glob's ** would walk tree/up/tree/up/... in two branches
    (tmp_path / "tree" / "sub" / "back").symlink_to("..")
    listing = ("from guided_diffusion.pet.io import list_volumes\n"
               "for spec in ('tree/**', 'tree/**/*.nii.gz', 'tree'):\n"
               "    found = list_volumes(spec)\n"
               "    print(spec, [s.name for s in found], sum('symlink loop' in n for n in found.notes))\n")
    result = subprocess.run([sys.executable, "-c", listing], check=False, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["tree/** ['a', 'b'] 2", "tree/**/*.nii.gz ['a', 'b'] 2", "tree ['a'] 0"]


def test_a_folder_linked_twice_is_searched_once_by_each_double_star(tmp_path):
    write_scan(tmp_path / "data" / "x" / "pet" / "a.nii.gz")
    write_scan(tmp_path / "data" / "y" / "pet" / "b.nii.gz")
    (tmp_path / "data" / "y" / "link").symlink_to("../x")
    for pattern in ("data/**/pet/**", "data/**/*.nii.gz"):
        found = list_volumes(str(tmp_path / pattern))
        assert [s.name for s in found] == ["a", "b"], pattern
        link, target = tmp_path / "data" / "y" / "link", tmp_path / "data" / "x"
        assert found.notes == [f"{link}: skipped, the same folder as {target} (through a symlink), searched once"]


def test_a_dicom_file_symlink_cycle_is_skipped_with_a_note(tmp_path):
    write_pet_series(tmp_path / "pet", pixels())
    (tmp_path / "pet" / "x").symlink_to("y")
    (tmp_path / "pet" / "y").symlink_to("x")
    for spec in (tmp_path, tmp_path / "pet", tmp_path / "pet" / "slice00.dcm", tmp_path / "**"):
        found = list_volumes(str(spec))
        assert [s.name for s in found] == ["P1_PET_WB_20240305"] and len(found[0].files) == 4
        assert sorted(n.split(":")[0] for n in found.notes if "symlink loop" in n) == [
            str(tmp_path / "pet" / "x"), str(tmp_path / "pet" / "y")]
    assert read_volume(tmp_path / "pet").shape == (8, 8, 4)


def test_hidden_and_temporary_files_are_never_inputs(tmp_path):
    write_scan(tmp_path / "scan.nii.gz")
    (tmp_path / ".scan_denoised.nii.gz.k2j4.tmp.nii.gz").write_bytes(b"half written")  # an interrupted atomic write
    (tmp_path / ".hidden.npz").write_bytes(b"x")
    for spec in (tmp_path, tmp_path / "*", tmp_path / "**", tmp_path / "*.nii.gz"):
        assert [s.name for s in list_volumes(str(spec))] == ["scan"]


def test_results_and_the_output_folder_are_passed_over_with_a_note(tmp_path):
    write_scan(tmp_path / "data" / "scan.nii.gz")
    write_scan(tmp_path / "data" / "scan_denoised.nii.gz")
    write_scan(tmp_path / "data" / "scan_denoised_std.nii.gz")
    write_scan(tmp_path / "data" / "out" / "other.nii.gz")
    write_pet_series(tmp_path / "data" / "scan_denoised_dcm", pixels())
    write_pet_series(tmp_path / "data" / "out" / "series", pixels())
    for spec in (tmp_path / "data", tmp_path / "data" / "**", tmp_path / "data" / "*.nii.gz"):
        found = list_volumes(str(spec), exclude=[tmp_path / "data" / "out"])
        assert [s.name for s in found] == ["scan"], spec
        assert any("scan_denoised.nii.gz: skipped, named like a result" in n for n in found.notes)
    found = list_volumes(str(tmp_path / "data" / "**"), exclude=[tmp_path / "data" / "out"])
    assert f"{tmp_path / 'data' / 'out'}: skipped, the output folder: nothing in it is read as an input" in found.notes
    assert sum("scan_denoised_dcm: skipped, named like a result" in n for n in found.notes) == 1
    assert len(found.notes) == 4  # the output folder once, three results (not each file in them)
    # Asked for by name, or searched inside the output folder itself, a file is taken.
    assert [s.name for s in list_volumes(tmp_path / "data" / "scan_denoised.nii.gz")] == ["scan_denoised"]
    assert [s.name for s in list_volumes(tmp_path / "data" / "out", exclude=[tmp_path / "data" / "out"])] == [
        "other", "P1_PET_WB_20240305"]


@pytest.mark.slow
def test_a_rerun_with_the_save_dir_equal_to_the_input_folder_denoises_only_the_inputs(tmp_path):
    data = tmp_path / "data"
    write_scan(data / "scan.nii.gz")
    args = ["--gaussian_fwhm_mm", "6", "--base_samples", str(data), "--save_dir", str(data)]
    first = run(args, ranks=0)
    assert first.returncode == 0, first.stderr
    again = run([*args, "--overwrite", "True"], ranks=0)
    assert again.returncode == 0, again.stderr
    assert any("scan_denoised.nii.gz: skipped, named like a result" in line for line in error_lines(again))
    assert sorted(p.name for p in data.iterdir()) == ["scan.nii.gz", "scan_denoised.json", "scan_denoised.nii.gz"]


# ----------------------------------------------------------------------------- headers against memory


def huge_nifti_header() -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    return header.binaryblock + b"\0" * 4 + np.ones(64, np.float32).tobytes()


def write_huge_npz(path: Path) -> Path:
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (30000, 30000, 30000)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", member.getvalue() + np.ones(64, np.float32).tobytes())
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz", "huge.npz"])
def test_a_header_claiming_more_voxels_than_memory_holds_is_refused_before_reading(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".npz"):
        write_huge_npz(path)
    else:
        path.write_bytes(gzip.compress(huge_nifti_header()) if name.endswith(".gz") else huge_nifti_header())
    for read in (survey_volume, read_volume):
        with pytest.raises(UserError) as info:
            read(path)
        message = str(info.value)
        assert message.startswith(f"{path}: its header gives shape (30000, 30000, 30000), 100,582.8 GiB to read")
        assert "of memory available" in message and "\n" not in message


def test_a_dicom_header_claiming_more_pixels_than_memory_holds_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(volume_module, "available_memory", lambda: 2**30)
    for file in write_pet_series(tmp_path / "pet", pixels()):
        ds = pydicom.dcmread(file)
        ds.Rows = ds.Columns = 65535
        ds.save_as(file)
    with pytest.raises(UserError, match=r"pet: its header gives shape \(65535, 65535, 4\), 64.0 GiB"):
        survey_volume(tmp_path / "pet")
    with pytest.raises(UserError, match=r"slice\d\d.dcm: its header gives shape \(65535, 65535, 1\), 32.0 GiB"):
        read_volume(tmp_path / "pet")


def test_a_truncated_nifti_is_refused_in_one_line(tmp_path):
    whole = write_scan(tmp_path / "scan.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(whole[:-100])
    with pytest.raises(UserError, match=r"cut.nii: cannot read as NIfTI \(.*could the file be damaged\?\)") as info:
        read_volume(tmp_path / "cut.nii")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- checkpoints


class RunsCode:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_checkpoint(path: Path, case: str) -> None:
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("these are not weights\n")
    elif case == "torch.save of code":
        torch.save({"weight": torch.zeros(1), "payload": RunsCode(path.with_suffix(".ran"))}, path)
    else:  # a plain pickle of protocol 4: torch warns of the protocol before refusing it
        path.write_bytes(pickle.dumps({"payload": RunsCode(path.with_suffix(".ran"))}, protocol=4))


@pytest.mark.parametrize("case,words", [
    ("empty", "the checkpoint is unreadable or corrupt (it ends early: empty or cut short)"),
    ("text", "the checkpoint is unreadable or corrupt (not a torch file)"),
    ("torch.save of code", ("refused for safety: it needs unpickling of code or objects (posix.system) that "
                            "weights-only loading does not run")),
    ("plain pickle", "refused for safety: it is a pickle torch.save did not write"),
])
def test_a_broken_or_unsafe_checkpoint_is_one_line_naming_the_flag(tmp_path, case, words):
    path = tmp_path / "model.pt"
    write_checkpoint(path, case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError) as info:
            read_checkpoint(path, flag="--init_weights")
    message = str(info.value)
    assert message.startswith(f"--init_weights {path}: {words}") and "\n" not in message, message
    assert not caught, [str(w.message) for w in caught]
    assert not path.with_suffix(".ran").exists()


@pytest.mark.slow
@pytest.mark.mpi
def test_an_unsafe_checkpoint_through_the_script_is_one_line_on_two_ranks(tmp_path):
    write_scan(tmp_path / "scan.nii.gz")
    write_checkpoint(tmp_path / "model.pt", "plain pickle")
    result = run(["--model_path", str(tmp_path / "model.pt"), "--base_samples", str(tmp_path / "scan.nii.gz"),
                  "--save_dir", str(tmp_path / "out"), *FAST], ranks=2)
    assert result.returncode == 1 and len(error_lines(result)) == 1, result.stderr
    assert error_lines(result)[0].startswith(f"error: --model_path {tmp_path / 'model.pt'}: refused for safety")
    assert not (tmp_path / "model.ran").exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- thin volumes


def test_a_volume_thinner_than_the_overlap_is_planned_with_a_smaller_overlap_where_one_patch_covers_it():
    plan = make_plan((4, 40, 120), PatchingOptions(), 4)
    assert plan.patch_size == (4, 40, 96) and plan.overlap == (3, 10, 10) and len(plan) == 2
    with pytest.raises(UserError, match=r"^--patch_overlap 10 is not smaller than the 8-voxel patches \(--patch_axial\) "
                                        r"that a volume of \(4, 40, 120\) voxels .* along Z; lower --patch_overlap "
                                        r"below 8 or raise --patch_axial$"):
        make_plan((4, 40, 120), PatchingOptions(patch_axial=8), 4)
    with pytest.raises(UserError, match=r"the 8-voxel patches \(--max_patch_inplane\) .* along Y"):
        make_plan((4, 40, 120), PatchingOptions(max_patch_inplane=8), 4)


@pytest.mark.slow
@pytest.mark.mpi
def test_a_thin_volume_is_denoised_and_a_conflicting_overlap_names_the_volume_and_flags(tmp_path):
    write_random_model(tmp_path / "model.pt")
    write_scan(tmp_path / "thin.nii.gz", shape=(4, 12, 20), affine=np.diag([1.65, 1.65, 1.65, 1.0]))
    args = ["--model_path", str(tmp_path / "model.pt"), "--base_samples", str(tmp_path / "thin.nii.gz"),
            "--timestep_respacing", "ddim3", "--max_patch_inplane", "16", "--patch_overlap", "10"]
    result = run([*args, "--save_dir", str(tmp_path / "out"), "--patch_axial", "24"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert nib.load(tmp_path / "out" / "thin_denoised.nii.gz").shape == (4, 12, 20)
    result = run([*args, "--save_dir", str(tmp_path / "refused"), "--patch_axial", "8"], ranks=2)
    assert result.returncode == 1 and len(error_lines(result)) == 1, result.stderr
    assert error_lines(result)[0].startswith("error: thin: --patch_overlap 10 is not smaller than the 8-voxel patches "
                                             "(--patch_axial)")
    assert not (tmp_path / "refused").exists()


# ----------------------------------------------------------------------------- evaluate.py


@pytest.mark.slow
def test_evaluate_refuses_an_out_dir_that_is_a_file_in_one_line(tmp_path):
    write_scan(tmp_path / "full.nii.gz")
    write_scan(tmp_path / "low.nii.gz")
    (tmp_path / "out").write_text("a file")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), "--reference", "full.nii.gz",
                             "--results", "low=low.nii.gz", "--out_dir", "out"], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert error_lines(result) == ["error: --out_dir out: out is a file, not a folder; choose another --out_dir"]
    assert (tmp_path / "out").read_text() == "a file"
