"""Image quality of a model on unseen simulated subjects, against the low dose and the best Gaussian filter.

    python benchmarks/quality.py --model_path models/demo/model_ema.pt --config tiny --seeds 5000,5001,5002

Patches are sampled with --sampler (a name of ``guided_diffusion.samplers.SAMPLERS``; DDIM by default)
over --timestep_respacing steps (``ddim10`` by default).

Prints PSNR / SSIM / NRMSE against full dose per subject and their means, and
writes them as JSON (--out). Runs in one process on the first GPU, or the CPU.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.pet.sim.doses import parse_dose_fraction
from guided_diffusion.samplers import get_sampler
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults


def create_argparser() -> argparse.ArgumentParser:
    defaults = {"model_path": "", "seeds": "5000,5001,5002", "dose": "0.05", "voxel_size": 4.0,
                "axial_extent_mm": 0.0, "num_ensemble": 2, "batch_size": 4, "patch_axial": 64,
                "max_patch_inplane": 320, "patch_overlap": 8, "start_timestep": 0, "sampler": "ddim", "out": ""}
    defaults.update(sr_model_and_diffusion_defaults())
    defaults["timestep_respacing"] = "ddim10"
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def main() -> None:
    args = parse_args_with_config(create_argparser())
    args.dose = parse_dose_fraction(args.dose, "--dose")  # "1/20" or "0.05" -> 0.05, as make_phantoms.py reads it
    get_sampler(args.sampler)
    model, diffusion = sr_create_model_and_diffusion(
        **args_to_dict(args, sr_model_and_diffusion_defaults().keys()), start_timestep=args.start_timestep)
    load_model_weights(model, args.model_path)
    model.to(dist_util.dev()).eval()
    sampling = SamplingOptions(sampler=args.sampler, batch_size=args.batch_size, num_ensemble=args.num_ensemble,
                               warm_start=args.start_timestep > 0)
    denoiser = VolumeDenoiser(
        model, MODEL_KINDS["diffusion"].predictor(diffusion, sampling), sampling,
        PatchingOptions(patch_axial=args.patch_axial, max_patch_inplane=args.max_patch_inplane,
                        overlap=args.patch_overlap), suv_max=16.0)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        case = simulated_case(seed, args.dose, voxel_size=args.voxel_size,
                              axial_extent_mm=args.axial_extent_mm or None)
        simulated = time.perf_counter()
        denoised = denoiser.denoise(case.low, f"subject{seed}").mean
        row = {"seed": seed, "shape": list(case.low.shape), **score_against_full_dose(case, denoised),
               "seconds": {"simulate": simulated - started, "denoise": time.perf_counter() - simulated}}
        fwhm = row["gaussian_fwhm_mm"]
        rows.append(row)
        m = row["metrics"]
        print(f"subject {seed} {tuple(case.low.shape)}: PSNR low {m['low_dose']['psnr']:.2f}  "
              f"gaussian({fwhm:g} mm) {m['gaussian']['psnr']:.2f}  denoised {m['denoised']['psnr']:.2f} dB; "
              f"SSIM {m['low_dose']['ssim']:.4f} / {m['gaussian']['ssim']:.4f} / {m['denoised']['ssim']:.4f}; "
              f"denoise {row['seconds']['denoise']:.1f} s", flush=True)
    means = {name: {k: float(np.mean([r["metrics"][name][k] for r in rows])) for k in rows[0]["metrics"][name]}
             for name in rows[0]["metrics"]}
    gain = means["denoised"]["psnr"] - means["low_dose"]["psnr"]
    print(f"mean over {len(rows)} subjects at dose {args.dose:g}: " + "  ".join(
        f"{name} PSNR {v['psnr']:.2f} SSIM {v['ssim']:.4f} NRMSE {v['nrmse']:.4f}" for name, v in means.items())
        + f"  | denoised - low = {gain:+.2f} dB, denoised - gaussian = "
        f"{means['denoised']['psnr'] - means['gaussian']['psnr']:+.2f} dB")
    if args.out:
        report = {"flags": vars(args), "device": str(dist_util.dev()), "torch": torch.__version__,
                  "subjects": rows, "means": means}
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    dist_util.run_main(main)
