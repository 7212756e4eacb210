"""Does putting the noisy input back above --suv_max help? Every method with and without it, against the clean image.

    python benchmarks/restore_saturated.py --out docs/restore_saturated.csv   # 3 subjects x 2 doses, ~5 min, 2 cores

Simulates unseen subjects (``--seeds``, test seeds 5000+) at 4 mm on a slab of
``--axial_extent_mm`` centred on the liver (0: head to thigh), at each dose of
``--doses``, with their noiseless reconstruction. Denoises each low dose with the
demo model (``--model_path``, preset ``demo``) as ``scripts/test.py`` does with
``--start_timestep auto`` (the card's warm-start scale), ``--sampler ddpm --steps
10``, bf16, K = 1, and with the Gaussian filter of the best FWHM against the clean
image (an oracle). Each result is scored as it is and after
:func:`~guided_diffusion.pet.intensity.restore_saturated` (``--keep_saturated``):
PSNR against the clean reconstruction in the body, and the lesions' SUVmax error
(percent of the clean SUVmax) over every lesion of the slab, signed and absolute,
with how many lesions and voxels the restore changed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
from common import format_table
from sampler_quality import demo_flags

from guided_diffusion import dist_util
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, warm_start_for_volume
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.model_card import read_card
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.eval.baselines import best_gaussian_filter
from guided_diffusion.pet.eval.metrics import percent_error, psnr
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX, restore_saturated
from guided_diffusion.pet.sim.cases import EvaluationCase, simulated_case
from guided_diffusion.pet.sim.doses import parse_dose_fractions
from guided_diffusion.script_util import diffusion_from_flags, sr_create_model_and_diffusion

COLUMNS = [("dose", "dose", "{:.3g}"), ("method", "method", "{}"), ("restore", "restore", "{}"),
           ("PSNR clean", "psnr_clean", "{:.2f}"), ("lesion SUVmax err %", "lesion_suvmax_error_pct", "{:+.1f}"),
           ("|err| %", "lesion_suvmax_abs_error_pct", "{:.1f}"), ("lesions", "lesions", "{:.0f}"),
           ("lesions hit", "lesions_restored", "{:.0f}"), ("voxels hit", "voxels_restored", "{:.0f}")]


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default="models/demo_all_doses/model_ema.pt", help="a demo-preset model")
    parser.add_argument("--seeds", default="5000,5001,5002", help="simulated test subjects")
    parser.add_argument("--doses", default="1/2,1/100", help="low-dose fractions")
    parser.add_argument("--axial_extent_mm", type=float, default=192.0, help="slab length (0: head to thigh)")
    parser.add_argument("--steps", type=int, default=10, help="DDPM steps from the automatic warm start")
    parser.add_argument("--out", default="", help="also write the per-subject rows to this CSV")
    return parser


class DiffusionDenoiser:
    """The demo model as ``scripts/test.py --start_timestep auto --sampler ddpm`` runs it, without the restore."""

    def __init__(self, model_path: str, steps: int):
        card = read_card(model_path) or {}
        if "warm_start_scale" not in card:
            raise UserError(f"--model_path {model_path}: its card has no warm-start scale; fit one with "
                            "benchmarks/warm_start.py")
        self.scale = float(card["warm_start_scale"]["value"])
        self.flags = demo_flags()
        self.steps = steps
        model, process = sr_create_model_and_diffusion(**self.flags)
        self.alphas_cumprod = process.alphas_cumprod
        load_model_weights(model, model_path, flag="--model_path")
        self.network = InferenceNetwork(model.to(dist_util.dev()).eval(), "bf16")

    def __call__(self, case: EvaluationCase) -> np.ndarray:
        """The denoised (X, Y, Z) SUV volume of ``case.low``, one sample."""
        start = warm_start_for_volume(case.low, case.voxel_size, self.alphas_cumprod, DEFAULT_SUV_MAX,
                                      self.scale)["start_timestep"]
        sampling = SamplingOptions(batch_size=4, num_ensemble=1, warm_start=True, sampler="ddpm")
        diffusion = diffusion_from_flags(self.flags, timestep_respacing=str(self.steps), start_timestep=start)
        denoiser = VolumeDenoiser(self.network, MODEL_KINDS["diffusion"].predictor(diffusion, sampling), sampling,
                                  PatchingOptions(patch_axial=24, overlap=8), DEFAULT_SUV_MAX, keep_saturated=False)
        return denoiser.denoise(case.low, f"subject{case.seed}").mean


def lesion_scores(result: np.ndarray, case: EvaluationCase, restored: np.ndarray) -> dict:
    """Mean signed and absolute SUVmax error (% of the clean SUVmax) over the case's lesions, and how many
    lesions hold a voxel of ``restored`` (boolean (X, Y, Z): voxels the restore replaced)."""
    ids = [int(i) for i in np.unique(case.lesions) if i]
    errors = [percent_error(float(result[case.lesions == i].max()), float(case.clean[case.lesions == i].max()))
              for i in ids]
    return {"lesions": len(ids), "lesion_suvmax_error_pct": float(np.mean(errors)),
            "lesion_suvmax_abs_error_pct": float(np.mean(np.abs(errors))),
            "lesions_restored": sum(bool(restored[case.lesions == i].any()) for i in ids)}


def score(case: EvaluationCase, method: str, result: np.ndarray, fwhm_mm: float = float("nan")) -> Iterator[dict]:
    """Rows of ``result`` without and with the restore (only without for the low dose itself); ``fwhm_mm``:
    the Gaussian filter's."""
    body = case.labels > 0
    restored = case.low > DEFAULT_SUV_MAX
    for restore in (False, True) if method != "low_dose" else (False,):
        image = restore_saturated(result, case.low, DEFAULT_SUV_MAX) if restore else result
        yield {"seed": case.seed, "dose": case.dose, "method": method, "restore": restore, "fwhm_mm": fwhm_mm,
               "psnr_clean": psnr(image, case.clean, mask=body),
               **lesion_scores(image, case, restored if restore else np.zeros_like(restored)),
               "voxels_restored": int(restored.sum()) if restore else 0}


def mean_rows(rows: list[dict]) -> list[dict]:
    """Means over subjects per (dose, method, restore); the counts are summed."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dose"], row["method"], row["restore"]), []).append(row)
    summed = ("lesions", "lesions_restored", "voxels_restored")
    return [{"dose": dose, "method": method, "restore": restore,
             **{key: float(np.sum([r[key] for r in group]) if key in summed else np.mean([r[key] for r in group]))
                for key in group[0] if key not in ("seed", "dose", "method", "restore")}}
            for (dose, method, restore), group in groups.items()]


def main() -> None:
    args = create_argparser().parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    doses = parse_dose_fractions(args.doses, "--doses")
    diffusion = DiffusionDenoiser(args.model_path, args.steps)
    rows = []
    started = time.perf_counter()
    for seed in seeds:
        for dose in doses:
            case = simulated_case(seed, dose, voxel_size=4.0, axial_extent_mm=args.axial_extent_mm or None,
                                  clean=True)
            fwhm, gaussian = best_gaussian_filter(case.low, case.clean, case.voxel_size)
            rows.extend(score(case, "low_dose", case.low))
            rows.extend(score(case, "gaussian", gaussian, fwhm))
            rows.extend(score(case, "diffusion", diffusion(case)))
            print(f"subject {seed} dose {dose:g}: done, {time.perf_counter() - started:.0f} s", flush=True)
    print(format_table(mean_rows(rows), COLUMNS))
    if args.out:
        write_csv(args.out, rows, list(rows[0]), overwrite=True)


if __name__ == "__main__":
    dist_util.run_main(main)
