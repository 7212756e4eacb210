"""Tiny training pairs and command lines shared by the training tests."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from guided_diffusion.flags import add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.script_util import sr_model_and_diffusion_defaults

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "scripts" / "train.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
# A CPU-sized net: the tiny preset with two levels, on 8-voxel crops.
TINY_NET = ["--config", "tiny", "--channel_mult", "1,2", "--patch_size", "8"]


def tiny_flags() -> dict:
    """The model and diffusion flags of TINY_NET."""
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, sr_model_and_diffusion_defaults())
    parser.add_argument("--patch_size")
    return args_to_dict(parse_args_with_config(parser, TINY_NET), sr_model_and_diffusion_defaults().keys())


def body_pair(shape=(16, 16, 8), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(low, full) in SUV: an elliptic body (SUV about 1, a hot spot of 8) in air (0); low = full + noise in the body."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape[:2]), indexing="ij")
    body = np.repeat(((x / (shape[0] * 0.3)) ** 2 + (y / (shape[1] * 0.25)) ** 2 < 1)[..., None], shape[2], axis=2)
    full = body * (1.0 + 0.3 * np.sin(np.arange(shape[2]) / 2))
    full[shape[0] // 2 - 1: shape[0] // 2 + 1, shape[1] // 2 - 1: shape[1] // 2 + 1, shape[2] // 2:] = 8.0
    low = np.clip(full + body * rng.normal(0, 0.3, shape), 0, None)
    return low.astype(np.float32), full.astype(np.float32)


def write_npz_pair(path: Path, shape=(16, 16, 8), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, arr_0=np.stack(body_pair(shape, seed)), affine=np.eye(4))
    return path


def write_nifti(path: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), path)


def write_bad(folder: Path, kind: str) -> None:
    """Put one bad input of ``kind`` into ``folder`` (``empty`` leaves it empty)."""
    low, full = body_pair()
    if kind == "wrong shape":
        np.savez(folder / "x.npz", arr_0=np.stack([low, full, full]))
    elif kind == "mismatched pair":
        write_nifti(folder / "low.nii.gz", low)
        write_nifti(folder / "full.nii.gz", full[:, :, :6])
        (folder / "pairs.csv").write_text("low_dose,full_dose\nlow.nii.gz,full.nii.gz\n")
    elif kind == "NaN":
        low[3, 4, 5] = np.nan
        np.savez(folder / "x.npz", arr_0=np.stack([low, full]), affine=np.eye(4))  # the grid of write_npz_pair
    elif kind == "two voxel sizes":
        np.savez(folder / "a.npz", arr_0=np.stack([low, full]), affine=np.eye(4))
        np.savez(folder / "b.npz", arr_0=np.stack([low, full]), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    elif kind == "bad manifest":
        (folder / "pairs.csv").write_text("low,full\na.nii.gz,b.nii.gz\n")
    elif kind == "missing file":
        (folder / "pairs.csv").write_text("low_dose,full_dose\na.nii.gz,b.nii.gz\n")


def run_train(args: list[str], ranks: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run scripts/train.py (under mpiexec when ``ranks`` > 1) with one thread per rank."""
    command = [sys.executable, str(TRAIN), *args]
    if ranks > 1:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
