"""Wall time to denoise one whole volume through ``scripts/test.py``, per set of flags (speed only).

    python benchmarks/volume_timing.py --config paper --volume 192,288,520 --steps 10 \
        --settings "fp16 eager=--use_fp16 True;bf16 compiled=--precision bf16 --compile True" \
        --out_dir results/volume_timing

The network has random weights (seeded), since only time is measured; the input
is a synthetic body (an elliptic cylinder of SUV 1 with Gaussian noise, on the
preset's grid so nothing is resampled) of ``--volume`` voxels (X, Y, Z). Every
setting runs the production path: ``scripts/test.py`` (under ``mpiexec -n
--ranks`` when ``--ranks`` > 0) with ``--sampler --steps`` from a fixed warm
start ``--start_timestep`` (fixed, so the number of network evaluations does not
depend on the synthetic input's noise), then the setting's flags. Reported per
setting: the script's wall time (start-up, reading, compilation and writing
included) and the sidecar's sampling and total times of the volume.
Writes ``volume_timing.csv`` to ``--out_dir``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from common import format_table, parse_shape

from guided_diffusion import dist_util
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

REPO = Path(__file__).resolve().parent.parent
#: Voxel size (mm) of the synthetic input when the preset keeps the input's grid.
DEFAULT_VOXEL_MM = 1.65
#: Columns of the table: (header, key, format).
COLUMNS = [("setting", "setting", "{}"), ("patches", "patches", "{:d}"), ("steps", "steps", "{:d}"),
           ("evaluations", "evaluations", "{:d}"), ("wall s", "wall_s", "{:.1f}"),
           ("sampling s", "sample_s", "{:.1f}"), ("volume total s", "total_s", "{:.1f}"), ("device", "device", "{}")]


def create_argparser() -> FlagParser:
    defaults = {"volume": "192,288,520", "steps": 10, "start_timestep": 100, "sampler": "ddpm", "batch_size": 1,
                "ranks": 0, "settings": "fp32=--precision fp32", "seed": 0, "out_dir": str(REPO / "results" / "volume_timing")}
    defaults.update(sr_model_and_diffusion_defaults())
    defaults["model_voxel_size"] = 0.0
    parser = FlagParser(description=__doc__)
    add_dict_to_argparser(parser, defaults)
    return parser


def parse_settings(text: str) -> list[tuple[str, list[str]]]:
    """``"name=flags;name=flags"`` as (name, flag list) pairs."""
    settings = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, flags = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--settings: expected 'name=flags' items separated by ';', got {item!r}")
        settings.append((name.strip(), shlex.split(flags)))
    if not settings:
        raise UserError("--settings names no setting")
    return settings


def synthetic_body(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """An (X, Y, Z) elliptic cylinder of SUV 1 filling 80 % of the field, plus N(0, 0.3) noise, clipped at 0."""
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = ((x / 0.8) ** 2 + (y / 0.8) ** 2 <= 1).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 0.3, shape).astype(np.float32)
    return np.clip(body[..., None] + noise * body[..., None], 0, None)


def write_inputs(args, shape: tuple[int, int, int], out_dir: Path) -> tuple[Path, Path]:
    """The random-weight checkpoint and the synthetic NIfTI volume of ``shape`` (X, Y, Z), written to ``out_dir``."""
    torch.manual_seed(args.seed)
    model, _ = sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))
    checkpoint = out_dir / "random_weights.pt"
    torch.save(model.state_dict(), checkpoint)
    voxel = args.model_voxel_size or DEFAULT_VOXEL_MM
    volume = out_dir / "synthetic_body.nii.gz"
    body = synthetic_body(shape, args.seed)
    nib.save(nib.Nifti1Image(body, np.diag([voxel] * 3 + [1.0])), volume)
    return checkpoint, volume


def run_setting(args, name: str, flags: list[str], checkpoint: Path, volume: Path, out_dir: Path) -> dict:
    """Run ``scripts/test.py`` once with ``flags``; its timings as one table row."""
    save = out_dir / name.replace(" ", "_")
    command = [sys.executable, str(REPO / "scripts" / "test.py"), *(["--config", args.config] if args.config else []),
               "--model_path", str(checkpoint), "--base_samples", str(volume), "--save_dir", str(save),
               "--input_units", "suv", "--sampler", args.sampler, "--steps", str(args.steps),
               "--start_timestep", str(args.start_timestep), "--batch_size", str(args.batch_size),
               "--seed", str(args.seed), "--overwrite", "True", *flags]
    if args.ranks > 0:
        command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(args.ranks), *command]
    print(f"{name}: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise UserError(f"setting {name!r} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    record = json.loads((save / "synthetic_body_denoised.json").read_text())
    patches, steps = record["patch_plan"]["num_patches"], record["sampler"]["steps"]
    return {"setting": name, "flags": shlex.join(flags), "patches": patches, "steps": steps,
            "evaluations": patches * steps, "wall_s": wall, "sample_s": record["timings_s"]["sample_s"],
            "total_s": record["timings_s"]["total_s"], "device": record["device"]}


def main() -> None:
    args = parse_args_with_config(create_argparser())
    settings = parse_settings(args.settings)
    shape = parse_shape(args.volume, "--volume")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, volume = write_inputs(args, shape, out_dir)
    rows = []
    for name, flags in settings:
        rows.append(run_setting(args, name, flags, checkpoint, volume, out_dir))
        print(format_table(rows[-1:], COLUMNS), flush=True)
    print(format_table(rows, COLUMNS))
    write_csv(out_dir / "volume_timing.csv", rows, [key for _, key, _ in COLUMNS] + ["flags"], overwrite=True)
    print(f"wrote {out_dir / 'volume_timing.csv'}")


if __name__ == "__main__":
    dist_util.run_main(main)
