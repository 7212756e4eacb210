"""Choose the warm start by measurement on validation subjects: PSNR against the start step, per dose.

    python benchmarks/warm_start.py --config demo --model_path models/demo/model_ema.pt --seeds 4000,4001 \
        --out docs/warm_start_validation.csv

For every validation subject (seeds >= 1000 and not the test seeds 5000+), dose
and start step ``T0``, denoises the low dose with the production path
(:class:`~guided_diffusion.denoise.VolumeDenoiser`) and scores it against the
full dose. Each row also holds the input's measured noise
(:func:`~guided_diffusion.pet.noise_level.estimate_noise_sd`) and the ratio of
``T0``'s noise level to it; the scale printed at the end, the geometric mean of
that ratio at each case's best ``T0``, is what ``--start_timestep auto`` uses.
Also scores the pure-noise start (the paper's full reverse process) at the
doses given by ``--from_noise_doses``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import time

import numpy as np

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.inference import InferenceNetwork
from guided_diffusion.patch_sampling import SamplingOptions
from guided_diffusion.pet.eval.baselines import best_gaussian_filter
from guided_diffusion.pet.eval.metrics import psnr
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.noise_level import estimate_noise_sd
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.pet.sim.doses import parse_dose_fractions
from guided_diffusion.script_util import (
    diffusion_from_flags,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.warm_start import noise_levels


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, {
        "model_path": "models/demo/model_ema.pt", "seeds": "4000,4001",
        "doses": "1/2,1/4,1/10,1/20,1/50,1/100", "starts": "10,25,50,100,200,300", "sampler": "ddpm", "steps": 5,
        "axial_extent_mm": 96.0, "patch_axial": 24, "num_ensemble": 1, "precision": "bf16",
        "from_noise_doses": "", "from_noise_steps": 50, "out": "", "model_voxel_size": 0.0,
        **sr_model_and_diffusion_defaults()})
    return parser


def main() -> None:
    args = parse_args_with_config(create_argparser())
    flags = {key: getattr(args, key) for key in sr_model_and_diffusion_defaults()}
    model, full_process = sr_create_model_and_diffusion(**flags)
    load_model_weights(model, args.model_path)
    network = InferenceNetwork(model.to(dist_util.dev()).eval(), args.precision)
    levels = noise_levels(full_process.alphas_cumprod)
    patching = PatchingOptions(patch_axial=args.patch_axial, overlap=8)
    starts = [int(s) for s in args.starts.split(",")]
    from_noise = set(parse_dose_fractions(args.from_noise_doses, "--from_noise_doses")) if args.from_noise_doses else set()

    def run(case, start: int, steps: int) -> tuple[float, float]:
        diffusion = diffusion_from_flags(flags, timestep_respacing=str(steps), start_timestep=start)
        sampling = SamplingOptions(batch_size=4, num_ensemble=args.num_ensemble, warm_start=start > 0,
                                   sampler=args.sampler)
        started = time.perf_counter()
        result = VolumeDenoiser(network, diffusion, sampling, patching, DEFAULT_SUV_MAX).denoise(case.low, "case")
        return psnr(result.mean, case.full), time.perf_counter() - started

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for dose in parse_dose_fractions(args.doses, "--doses"):
            case = simulated_case(seed, dose, voxel_size=4.0, axial_extent_mm=args.axial_extent_mm)
            noise = estimate_noise_sd(case.low, case.voxel_size) / DEFAULT_SUV_MAX
            fwhm, gaussian = best_gaussian_filter(case.low, case.full, case.voxel_size)
            base = {"seed": seed, "dose": dose, "noise_sd_model": noise, "psnr_low": psnr(case.low, case.full),
                    "gaussian_fwhm_mm": fwhm, "psnr_gaussian": psnr(gaussian, case.full)}
            settings = [(start, args.steps) for start in starts]
            if dose in from_noise:
                settings.append((0, args.from_noise_steps))
            for start, steps in settings:
                score, seconds = run(case, start, steps)
                ratio = (levels[start] if start else math.inf) / noise
                rows.append({**base, "start_timestep": start, "steps": steps, "level_ratio": ratio,
                             "psnr": score, "seconds": seconds})
                print(f"seed {seed} dose {dose:g} noise {noise:.4f}: T0 {start or 'noise'} ({steps} steps) "
                      f"PSNR {score:.2f} dB (low {base['psnr_low']:.2f}, Gaussian {base['psnr_gaussian']:.2f}), ratio {ratio:.1f}, {seconds:.0f} s",
                      flush=True)
    best = {}
    for row in rows:
        key = (row["seed"], row["dose"])
        if row["start_timestep"] and (key not in best or row["psnr"] > best[key]["psnr"]):
            best[key] = row
    scale = math.exp(np.mean([math.log(r["level_ratio"]) for r in best.values()]))
    print(f"best T0 per case: {[(k, r['start_timestep']) for k, r in best.items()]}")
    print(f"scale for --start_timestep auto (geometric mean of the best ratio): {scale:.2f}")
    if args.out:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.out, buffer.getvalue())


if __name__ == "__main__":
    dist_util.run_main(main)
