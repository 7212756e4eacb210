"""Choose the warm start by measurement on validation cases: PSNR against the start step.

    python benchmarks/warm_start.py --config demo --model_path models/demo/model_ema.pt --seeds 4000,4001 \
        --out docs/warm_start_validation.csv
    # your model on your own validation pairs (the layout of scripts/train.py --data_dir):
    python benchmarks/warm_start.py --config paper --model_path model.pt --pairs data/val --patch_axial 96 \
        --out warm_start_val.csv

The cases are simulated subjects (``--seeds``, >= 1000 and not the test seeds
5000+, at every dose of ``--doses``) or, with ``--pairs DIR``, every (low dose,
full dose) pair found there, brought onto the model grid as training does. For
every case and start step ``T0`` of ``--starts``, denoises the low dose with the
production path (:class:`~guided_diffusion.denoise.VolumeDenoiser`) and scores
it against the full dose. Each row also holds the input's measured noise
(:func:`~guided_diffusion.pet.noise_level.estimate_noise_sd`) and the ratio of
``T0``'s noise level to it; the scale printed at the end, the geometric mean of
that ratio at each case's best ``T0``, is what ``--start_timestep auto`` uses
(``scripts/test.py --warm_start_scale``). Also scores the pure-noise start (the
paper's full reverse process) for the simulated doses of ``--from_noise_doses``.

The scale goes into the model's card (``<model>.card.json``, see
:mod:`guided_diffusion.model_card`; started from the weights file when there is
none) with this command, the data, the date and the table (``--out``, or the
best row of each case); ``--update_card False`` leaves the card alone. A card
that belongs to other weights is refused before anything runs.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from guided_diffusion import dist_util
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.model_card import current_command, fit_record, read_card, read_own_card, update_card
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.eval.baselines import best_gaussian_filter
from guided_diffusion.pet.eval.metrics import psnr
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.noise_level import estimate_noise_sd
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.pet.sim.doses import parse_dose_fractions
from guided_diffusion.pet.training.data_description import describe_pairs
from guided_diffusion.pet.training.pairs import PairEntry, data_voxel_size, find_pairs, prepare_pairs
from guided_diffusion.script_util import (
    diffusion_from_flags,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.warm_start import noise_levels


@dataclass(frozen=True)
class Case:
    """One validation case on the model grid: (X, Y, Z) SUV volumes and their voxel size (mm).

    ``dose`` is the simulated dose fraction (NaN for pairs read from disk).
    """

    name: str
    dose: float
    low: np.ndarray
    full: np.ndarray
    voxel_size: float


def simulated_cases(seeds: list[int], doses: list[float], axial_extent_mm: float) -> Iterator[Case]:
    """Simulated subjects at 4 mm, every dose of each seed."""
    for seed in seeds:
        for dose in doses:
            case = simulated_case(seed, dose, voxel_size=4.0, axial_extent_mm=axial_extent_mm)
            yield Case(f"seed{seed}_dose{dose:g}", dose, case.low, case.full, 4.0)


def simulated_description(seeds: list[int], doses: list[float], axial_extent_mm: float) -> dict:
    """What :func:`simulated_cases` draws, for the model card."""
    return {"simulated": "guided_diffusion.pet.sim.cases.simulated_case, 4 mm voxels", "seeds": seeds,
            "doses": doses, "axial_extent_mm": axial_extent_mm}


def pair_cases(entries: list[PairEntry], model_voxel_size: float, cache_dir: str) -> Iterator[Case]:
    """The pairs ``entries`` (found as ``scripts/train.py --data_dir`` finds them) on the model grid:
    ``model_voxel_size`` mm, or with 0 the voxel size the pairs share."""
    voxel = model_voxel_size or data_voxel_size(entries)
    for entry, pair in zip(entries, prepare_pairs(entries, cache_dir, (1, 1, 1), voxel)):
        low, full = pair.open()
        yield Case(entry.name if entry.index else str(entry.low), math.nan, np.array(low), np.array(full), voxel)


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, {
        "model_path": "models/demo/model_ema.pt", "seeds": "4000,4001", "pairs": "",
        "doses": "1/2,1/4,1/10,1/20,1/50,1/100", "starts": "10,25,50,100,200,300", "sampler": "ddpm", "steps": 5,
        "axial_extent_mm": 96.0, "patch_axial": 24, "num_ensemble": 1, "precision": "bf16",
        "from_noise_doses": "", "from_noise_steps": 50, "out": "", "model_voxel_size": 0.0, "update_card": True,
        **sr_model_and_diffusion_defaults()})
    return parser


def model_intensity(model_path: str) -> tuple[float, float]:
    """The model's ``(suv_max, data_scale)`` from its card: SUV is clipped at the first and divided by the second
    (the paper's 16 and 16 for a model without a card)."""
    intensity = (read_card(model_path) or {}).get("intensity") or {}
    suv_max = float(intensity.get("suv_max") or DEFAULT_SUV_MAX)
    return suv_max, float(intensity.get("data_scale") or suv_max)


def main() -> None:
    args = parse_args_with_config(create_argparser())
    try:
        starts = [int(s) for s in args.starts.split(",")]
    except ValueError:
        starts = []
    if not starts or min(starts) < 1:
        raise UserError(f"--starts takes start steps >= 1 like 10,25,50, got {args.starts!r}")
    if args.update_card:
        read_own_card(args.model_path)
    entries = find_pairs(args.pairs, flag="--pairs") if args.pairs else []
    seeds = [] if args.pairs else [int(s) for s in args.seeds.split(",")]
    doses = [] if args.pairs else parse_dose_fractions(args.doses, "--doses")
    flags = {key: getattr(args, key) for key in sr_model_and_diffusion_defaults()}
    model, full_process = sr_create_model_and_diffusion(**flags)
    load_model_weights(model, args.model_path)
    network = InferenceNetwork(model.to(dist_util.dev()).eval(), args.precision)
    suv_max, data_scale = model_intensity(args.model_path)
    levels = noise_levels(full_process.alphas_cumprod)
    patching = PatchingOptions(patch_axial=args.patch_axial, overlap=8)
    from_noise = set(parse_dose_fractions(args.from_noise_doses, "--from_noise_doses")) if args.from_noise_doses else set()

    def run(case: Case, start: int, steps: int) -> tuple[float, float]:
        diffusion = diffusion_from_flags(flags, timestep_respacing=str(steps), start_timestep=start)
        sampling = SamplingOptions(batch_size=4, num_ensemble=args.num_ensemble, warm_start=start > 0,
                                   sampler=args.sampler)
        started = time.perf_counter()
        predictor = MODEL_KINDS["diffusion"].predictor(diffusion, sampling)
        result = VolumeDenoiser(network, predictor, sampling, patching, suv_max,
                                data_scale=data_scale).denoise(case.low, case.name)
        return psnr(result.mean, case.full), time.perf_counter() - started

    rows = []
    with tempfile.TemporaryDirectory(prefix="warm_start_pairs_") as cache:
        cases = pair_cases(entries, args.model_voxel_size, cache) if args.pairs else simulated_cases(
            seeds, doses, args.axial_extent_mm)
        for case in cases:
            noise = estimate_noise_sd(case.low, case.voxel_size) / data_scale
            fwhm, gaussian = best_gaussian_filter(case.low, case.full, case.voxel_size)
            base = {"case": case.name, "dose": case.dose, "noise_sd_model": noise, "psnr_low": psnr(case.low, case.full),
                    "gaussian_fwhm_mm": fwhm, "psnr_gaussian": psnr(gaussian, case.full)}
            settings = [(start, args.steps) for start in starts]
            if case.dose in from_noise:
                settings.append((0, args.from_noise_steps))
            for start, steps in settings:
                score, seconds = run(case, start, steps)
                ratio = (levels[start] if start else math.inf) / noise
                rows.append({**base, "start_timestep": start, "steps": steps, "level_ratio": ratio,
                             "psnr": score, "seconds": seconds})
                print(f"{case.name} noise {noise:.4f}: T0 {start or 'noise'} ({steps} steps) PSNR {score:.2f} dB "
                      f"(low {base['psnr_low']:.2f}, Gaussian {base['psnr_gaussian']:.2f}), ratio {ratio:.1f}, "
                      f"{seconds:.0f} s", flush=True)
    best = {}
    for row in rows:
        if row["start_timestep"] and (row["case"] not in best or row["psnr"] > best[row["case"]]["psnr"]):
            best[row["case"]] = row
    scale = math.exp(np.mean([math.log(r["level_ratio"]) for r in best.values()]))
    if args.out:
        write_csv(args.out, rows, list(rows[0]), overwrite=True)
    if args.update_card:
        fitted_on = describe_pairs(args.pairs, entries) if args.pairs else simulated_description(
            seeds, doses, args.axial_extent_mm)
        record = fit_record(round(scale, 2), fitted_by=current_command(), fitted_on=fitted_on,
                            table=args.out or list(best.values()))
        update_card(args.model_path, warm_start_scale=record)
        print(f"wrote the scale into the model card of {args.model_path}")
    print(f"best T0 per case: {[(name, r['start_timestep']) for name, r in best.items()]}")
    print(f"scale for --start_timestep auto (geometric mean of the best ratio): {scale:.2f}")


if __name__ == "__main__":
    dist_util.run_main(main)
