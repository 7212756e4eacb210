"""Image quality against network evaluations, per sampler and step count, on simulated subjects.

Part of ``benchmarks/speed.py`` (see there for the command); on its own it runs
the same table at several doses, e.g. to check the default sampler of
``test_DDPM_3d_mpi.sh`` (README, *Speed*)::

    python benchmarks/sampler_quality.py --quality_model models/demo_all_doses/model_ema.pt \
        --start_timestep auto --doses 1/4,1/20,1/100 --quality_samplers ddpm,dpmpp2m --quality_steps 5,10 \
        --quality_precision bf16 --out docs/default_sampler_cpu.csv

Each subject is denoised through :class:`~guided_diffusion.denoise.VolumeDenoiser`,
the production path of patching and seeding, with a demo model. Every sampler
and step count starts from the same point: with a warm start at step T0 (fixed,
or ``auto``: chosen from the subject's measured noise as ``scripts/test.py
--start_timestep auto`` does), the low-dose volume diffused to T0 with the same
noise field (the step counts are spread evenly over 0..T0, end points included,
so all of them start at T0; a count above T0 + 1 runs every step). The reference
is the full ancestral chain from that start: DDPM over every step of the process
from T0 down to 0 (T0 + 1 steps). Each setting is scored against the full dose
and against that reference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from common import format_table

from guided_diffusion import dist_util
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, warm_start_for_volume
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.pet.eval.metrics import psnr, ssim
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.sim.cases import EvaluationCase, simulated_case
from guided_diffusion.pet.sim.doses import parse_dose_fractions
from guided_diffusion.samplers import SAMPLERS, get_sampler
from guided_diffusion.script_util import (
    diffusion_from_flags,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.warm_start import AUTO, DEMO_WARM_START_SCALE, read_start_timestep

#: Columns of the quality table: (header, key, format).
QUALITY_COLUMNS = [("method", "method", "{}"), ("steps", "steps", "{:.0f}"), ("T0", "start_timestep", "{:.1f}"),
                   ("evals", "evaluations", "{:.1f}"), ("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"),
                   ("dPSNR vs chain", "delta_psnr", "{:+.2f}"), ("PSNR to chain", "psnr_vs_chain", "{:.2f}"),
                   ("SSIM to chain", "ssim_vs_chain", "{:.4f}"), ("s/subject", "seconds", "{:.1f}")]


@dataclass(frozen=True)
class QualitySetup:
    """What the quality table measures.

    Attributes:
        model_path: the demo model's weights (its flags are the ``demo`` preset).
        seeds: simulated subjects (>= 1000: not in the demo models' training sets).
        dose: low-dose fraction, e.g. 0.05.
        axial_extent_mm: axial slab of each subject (4 mm voxels).
        patch_axial: axial patch size in voxels; in-plane, patches span the body.
        start_timestep: warm start T0 (0: from pure noise at the last step), or
            ``"auto"``: per subject, from its measured noise and ``warm_start_scale``.
        precision: the network's precision ("fp32", "bf16", "fp16").
        samplers: the samplers compared, names of ``guided_diffusion.samplers.SAMPLERS``.
        steps: their step counts.
        num_ensemble: samples per subject (K).
        batch_size: patches per network call.
        warm_start_scale: the ``auto`` start's ratio of step noise to input noise.
    """

    model_path: Path
    seeds: tuple[int, ...]
    dose: float
    axial_extent_mm: float
    patch_axial: int
    start_timestep: int | str
    precision: str
    samplers: tuple[str, ...]
    steps: tuple[int, ...]
    num_ensemble: int = 1
    batch_size: int = 4
    warm_start_scale: float = DEMO_WARM_START_SCALE


def demo_flags() -> dict:
    """The model and diffusion flags of the ``demo`` preset, as the scripts read them."""
    defaults = sr_model_and_diffusion_defaults()
    parser = FlagParser()
    add_dict_to_argparser(parser, {**defaults, "model_voxel_size": 0.0})
    args = parse_args_with_config(parser, ["--config", "demo"])
    return {key: getattr(args, key) for key in defaults}


def case_start(setup: QualitySetup, case: EvaluationCase, alphas_cumprod: np.ndarray) -> int:
    """The subject's start step: ``setup.start_timestep``, or with ``"auto"`` the step its noise asks for."""
    if setup.start_timestep != AUTO:
        return int(setup.start_timestep)
    warm = warm_start_for_volume(case.low, case.voxel_size, alphas_cumprod, DEFAULT_SUV_MAX, setup.warm_start_scale)
    return warm["start_timestep"]


def settings(setup: QualitySetup, full_chain: int) -> list[tuple[str, int, int]]:
    """(sampler, requested steps, steps run) to run, the reference (DDPM over all ``full_chain`` steps)
    first; a request above ``full_chain`` runs every step."""
    return [("ddpm", full_chain, full_chain)] + [
        (s, n, min(n, full_chain)) for s in setup.samplers for n in setup.steps]


class SubjectScorer:
    """Denoises subjects with every setting of a :class:`QualitySetup` and scores the results."""

    def __init__(self, setup: QualitySetup, device: torch.device):
        self.setup = setup
        self.flags = demo_flags()
        model, _ = sr_create_model_and_diffusion(**self.flags)
        self.full_process = diffusion_from_flags(self.flags, timestep_respacing="")
        load_model_weights(model, setup.model_path, flag="--quality_model")
        self.network = InferenceNetwork(model.to(device).eval(), setup.precision)
        self.patching = PatchingOptions(patch_axial=setup.patch_axial, overlap=8)

    def rows(self, case: EvaluationCase, log: Callable[[str], None]) -> list[dict]:
        """One row per method for one subject (baselines, full chain, then each setting), as
        :func:`sampler_quality` describes, before averaging."""
        start = case_start(self.setup, case, self.full_process.alphas_cumprod)
        full_chain = start + 1 if start else self.flags["diffusion_steps"]
        sampling = SamplingOptions(batch_size=self.setup.batch_size, num_ensemble=self.setup.num_ensemble,
                                   warm_start=start > 0)
        rows, reference = [], None
        for sampler, requested, steps in settings(self.setup, full_chain):
            diffusion = diffusion_from_flags(self.flags, timestep_respacing=str(steps), start_timestep=start)
            options = replace(sampling, sampler=sampler)
            denoiser = VolumeDenoiser(self.network, MODEL_KINDS["diffusion"].predictor(diffusion, options), options,
                                      self.patching, DEFAULT_SUV_MAX)
            started = time.perf_counter()
            denoised = denoiser.denoise(case.low, f"subject{case.seed}").mean
            seconds = time.perf_counter() - started
            reference = denoised if reference is None else reference
            rows.append({"method": sampler if rows else f"{sampler} (full chain)", "steps": requested,
                         "start_timestep": start, "psnr": psnr(denoised, case.full), "ssim": ssim(denoised, case.full),
                         "psnr_vs_chain": psnr(denoised, reference), "ssim_vs_chain": ssim(denoised, reference),
                         "evaluations": len(denoiser.plan(case.low.shape)) * steps * self.setup.num_ensemble,
                         "seconds": seconds})
            log(f"  subject {case.seed}, T0 {start}: {rows[-1]['method']} {steps} steps: "
                f"PSNR {rows[-1]['psnr']:.2f} dB, {seconds:.0f} s")
        scores = score_against_full_dose(case, reference)["metrics"]
        baselines = [{"method": name, "steps": 0, "start_timestep": start, "evaluations": 0, "seconds": 0.0,
                      "psnr": scores[name]["psnr"], "ssim": scores[name]["ssim"],
                      "psnr_vs_chain": float("nan"), "ssim_vs_chain": float("nan")} for name in ("low_dose", "gaussian")]
        for row in baselines + rows:
            row["delta_psnr"] = row["psnr"] - rows[0]["psnr"]
        return baselines + rows


def mean_rows(per_subject: list[list[dict]]) -> list[dict]:
    """Means over subjects of rows that list the same methods in the same order."""
    return [{"method": group[0]["method"],
             **{key: float(np.mean([row[key] for row in group])) for key in group[0] if key != "method"}}
            for group in zip(*per_subject)]


def sampler_quality(setup: QualitySetup, device: torch.device, log: Callable[[str], None] = print) -> list[dict]:
    """Score every sampler and step count of ``setup`` on its subjects; means over subjects.

    Returns:
        One row per method: "low_dose" and "gaussian" (the best Gaussian filter, an
        oracle), then the full chain and each (sampler, steps). Keys: method, steps
        (requested), start_timestep (T0, mean over subjects), evaluations (network
        evaluations of a patch per subject: patches x steps run x K), psnr / ssim against
        full dose, psnr_vs_chain / ssim_vs_chain against the full chain's result (NaN for
        the baselines), delta_psnr (psnr minus the full chain's), seconds (sampling time
        per subject on ``device``).
    """
    scorer = SubjectScorer(setup, device)
    per_subject = []
    for seed in setup.seeds:
        case = simulated_case(seed, setup.dose, voxel_size=4.0, axial_extent_mm=setup.axial_extent_mm)
        per_subject.append(scorer.rows(case, log))
    return mean_rows(per_subject)


def add_quality_flags(parser: argparse.ArgumentParser, repo: Path) -> None:
    """The quality table's flags (``--quality_*``, ``--start_timestep``, ``--skip_quality``)."""
    add_dict_to_argparser(parser, {
        "skip_quality": False, "quality_model": str(repo / "models" / "demo" / "model_ema.pt"),
        "quality_seeds": "5000,5001", "quality_dose": 0.05, "quality_extent_mm": 96.0, "quality_patch_axial": 24,
        "quality_samplers": ",".join(SAMPLERS), "quality_steps": "5,10,20,50", "quality_precision": "fp32",
        "quality_ensemble": 1, "start_timestep": "100", "warm_start_scale": DEMO_WARM_START_SCALE,
    })


def setup_from_args(args: argparse.Namespace) -> QualitySetup:
    """The :class:`QualitySetup` named by the ``--quality_*`` flags."""
    samplers = tuple(args.quality_samplers.split(","))
    for name in samplers:
        get_sampler(name, "--quality_samplers")
    return QualitySetup(
        model_path=Path(args.quality_model), seeds=tuple(int(s) for s in args.quality_seeds.split(",")),
        dose=args.quality_dose, axial_extent_mm=args.quality_extent_mm, patch_axial=args.quality_patch_axial,
        start_timestep=read_start_timestep(args.start_timestep), precision=args.quality_precision,
        samplers=samplers, steps=tuple(int(s) for s in args.quality_steps.split(",")),
        num_ensemble=args.quality_ensemble, warm_start_scale=args.warm_start_scale,
    )


def main() -> None:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_quality_flags(parser, Path(__file__).resolve().parent.parent)
    add_dict_to_argparser(parser, {"doses": "", "out": ""})
    args = parser.parse_args()
    setup = setup_from_args(args)
    if not setup.model_path.is_file():
        raise UserError(f"--quality_model {setup.model_path}: no such file")
    doses = parse_dose_fractions(args.doses, "--doses") if args.doses else [setup.dose]
    rows = []
    for dose in doses:
        print(f"dose {dose:g}: subjects {setup.seeds}, {setup.axial_extent_mm:g} mm slabs, "
              f"start {setup.start_timestep}, K={setup.num_ensemble}, {setup.precision}", flush=True)
        table = sampler_quality(replace(setup, dose=dose), dist_util.dev(), log=lambda line: print(line, flush=True))
        print(format_table(table, QUALITY_COLUMNS), flush=True)
        rows += [{"dose": dose, **row} for row in table]
    if args.out:
        write_csv(args.out, rows, ["dose"] + [key for _, key, _ in QUALITY_COLUMNS], overwrite=True)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    dist_util.run_main(main)
