"""Fit the Gaussian-filter baseline on validation pairs: the FWHM with the best mean PSNR.

    python scripts/fit_gaussian.py --val_dir data/val --out results/gaussian.json
    python scripts/test.py --model_path results/gaussian.json --base_samples 'scans/*.nii.gz' --save_dir filtered

Pairs are found in --val_dir as training finds them (README.md, "Data layout"),
brought onto the model grid (--model_voxel_size mm, default 0: the voxel size the
pairs share) and cached; every FWHM of --fwhm_grid_mm (mm, 0 = no filter) is applied
to each low dose in SUV and scored by PSNR against its full dose. The FWHM with the
highest mean PSNR (the smallest on a tie), the grid and every score go to --out.
Fit on validation subjects, never on the ones you will evaluate.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from guided_diffusion import dist_util
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.pet.training.gaussian_fit import FIT_FWHM_GRID_MM, fit_gaussian_fwhm, write_fit
from guided_diffusion.pet.training.pairs import data_voxel_size, find_pairs, prepare_pairs


def create_argparser() -> argparse.ArgumentParser:
    defaults = {
        "val_dir": "",
        "out": "gaussian.json",
        "model_voxel_size": 0.0,
        "fwhm_grid_mm": ",".join(f"{f:g}" for f in FIT_FWHM_GRID_MM),
        "data_cache": "",
        "overwrite": False,
    }
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def parse_grid(text: str) -> list[float]:
    """``"0,2,4.5"`` -> [0.0, 2.0, 4.5]; UserError naming --fwhm_grid_mm otherwise."""
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        grid = []
    if not grid or min(grid) < 0:
        raise UserError(f"--fwhm_grid_mm {text!r} must be comma-separated FWHM values in mm, each >= 0 (0: no filter)")
    return grid


def main() -> None:
    if dist_util.world_size() > 1:
        raise UserError("scripts/fit_gaussian.py runs in one process; start it without mpiexec")
    args = parse_args_with_config(create_argparser())
    if not args.val_dir:
        raise UserError("--val_dir is required: the folder holding the validation pairs")
    if not args.model_voxel_size >= 0:
        raise UserError(f"--model_voxel_size {args.model_voxel_size}: give the grid's voxel size in mm, "
                        "or 0 to take it from the pairs")
    grid = parse_grid(args.fwhm_grid_mm)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite True to replace it")
    entries = find_pairs(args.val_dir, "--val_dir")
    voxel_size = args.model_voxel_size or data_voxel_size(entries)
    with tempfile.TemporaryDirectory(prefix="fit_gaussian_cache_") as scratch:
        pairs = prepare_pairs(entries, args.data_cache or scratch, (1, 1, 1), voxel_size)
        fit = fit_gaussian_fwhm(pairs, voxel_size, grid)
    extra = {"val_dir": str(args.val_dir), "num_pairs": len(pairs), "fwhm_grid_mm": sorted(set(grid))}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_fit(out, fit, extra, overwrite=args.overwrite)
    scores = ", ".join(f"{fwhm} mm {score:.2f} dB" for fwhm, score in fit.mean_psnr.items())
    print(f"{len(pairs)} validation pair(s) on a {voxel_size:g} mm grid; mean PSNR: {scores}")
    print(f"chosen FWHM {fit.fwhm_mm:g} mm -> {out}")


if __name__ == "__main__":
    dist_util.run_main(main)
