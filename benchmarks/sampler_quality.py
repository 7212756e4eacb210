"""Image quality against network evaluations, per sampler and step count, on simulated subjects.

Part of ``benchmarks/speed.py`` (see there for the command). Each subject is
denoised through :class:`~guided_diffusion.denoise.VolumeDenoiser`, the
production path of patching and seeding, with the demo model. Every sampler
and step count starts from the same point: with a warm start at step T0, the
low-dose volume diffused to T0 with the same noise field (the step counts are
spread evenly over 0..T0, end points included, so all of them start at T0).
The reference is the full ancestral chain from that start: DDPM over every
step of the process from T0 down to 0 (T0 + 1 steps). Each setting is scored
against the full dose and against that reference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.inference import InferenceNetwork
from guided_diffusion.patch_sampling import SamplingOptions
from guided_diffusion.pet.eval.metrics import psnr, ssim
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.script_util import (
    diffusion_from_flags,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


@dataclass(frozen=True)
class QualitySetup:
    """What the quality table measures.

    Attributes:
        model_path: the demo model's weights (its flags are the ``demo`` preset).
        seeds: simulated subjects (>= 1000: not in the demo model's training set).
        dose: low-dose fraction, e.g. 0.05.
        axial_extent_mm: axial slab of each subject (4 mm voxels).
        patch_axial: axial patch size in voxels; in-plane, patches span the body.
        start_timestep: warm start T0 (0: from pure noise at the last step).
        precision: the network's precision ("fp32", "bf16", "fp16").
        samplers: the samplers compared ("ddpm", "ddim", "dpmpp2m").
        steps: their step counts (each below the full chain's).
        num_ensemble: samples per subject (K).
        batch_size: patches per network call.
    """

    model_path: Path
    seeds: tuple[int, ...]
    dose: float
    axial_extent_mm: float
    patch_axial: int
    start_timestep: int
    precision: str
    samplers: tuple[str, ...]
    steps: tuple[int, ...]
    num_ensemble: int = 1
    batch_size: int = 4


def demo_flags() -> dict:
    """The model and diffusion flags of the ``demo`` preset, as the scripts read them."""
    defaults = sr_model_and_diffusion_defaults()
    parser = FlagParser()
    add_dict_to_argparser(parser, {**defaults, "model_voxel_size": 0.0})
    args = parse_args_with_config(parser, ["--config", "demo"])
    return {key: getattr(args, key) for key in defaults}


def settings(setup: QualitySetup, full_chain: int) -> list[tuple[str, int]]:
    """(sampler, steps) pairs to run, the reference (DDPM over all ``full_chain`` steps) first."""
    return [("ddpm", full_chain)] + [(s, n) for s in setup.samplers for n in setup.steps if n < full_chain]


def sampler_quality(setup: QualitySetup, device: torch.device, log: Callable[[str], None] = print) -> list[dict]:
    """Score every sampler and step count of ``setup`` on its subjects; means over subjects.

    Returns:
        One row per method: "low_dose" and "gaussian" (the best Gaussian filter, an
        oracle), then the full chain and each (sampler, steps). Keys: method, steps,
        evaluations (network evaluations of a patch per subject: patches x steps x K),
        psnr / ssim against full dose, psnr_vs_chain / ssim_vs_chain against the full
        chain's result (NaN for the baselines), delta_psnr (psnr minus the full
        chain's), seconds (sampling time per subject on ``device``).
    """
    flags = demo_flags()
    model, _ = sr_create_model_and_diffusion(**flags)
    load_model_weights(model, setup.model_path, flag="--quality_model")
    network = InferenceNetwork(model.to(device).eval(), setup.precision)
    full_chain = setup.start_timestep + 1 if setup.start_timestep else flags["diffusion_steps"]
    patching = PatchingOptions(patch_axial=setup.patch_axial, overlap=8)
    sampling = SamplingOptions(batch_size=setup.batch_size, num_ensemble=setup.num_ensemble,
                               warm_start=setup.start_timestep > 0)
    cases = [simulated_case(seed, setup.dose, voxel_size=4.0, axial_extent_mm=setup.axial_extent_mm)
             for seed in setup.seeds]
    references: list[np.ndarray] = []
    rows = []
    for sampler, steps in settings(setup, full_chain):
        diffusion = diffusion_from_flags(flags, timestep_respacing=str(steps), start_timestep=setup.start_timestep)
        denoiser = VolumeDenoiser(network, diffusion, replace(sampling, sampler=sampler), patching, DEFAULT_SUV_MAX)
        subject_rows = []
        for index, case in enumerate(cases):
            started = time.perf_counter()
            denoised = denoiser.denoise(case.low, f"subject{case.seed}").mean
            seconds = time.perf_counter() - started
            if not rows:  # the full chain, run first: the reference of the others
                references.append(denoised)
            subject_rows.append({
                "psnr": psnr(denoised, case.full), "ssim": ssim(denoised, case.full),
                "psnr_vs_chain": psnr(denoised, references[index]), "ssim_vs_chain": ssim(denoised, references[index]),
                "evaluations": len(denoiser.plan(case.low.shape)) * steps * setup.num_ensemble, "seconds": seconds})
        mean = {key: float(np.mean([r[key] for r in subject_rows])) for key in subject_rows[0]}
        method = sampler if rows else f"{sampler} (full chain)"
        chain_psnr = rows[0]["psnr"] if rows else mean["psnr"]
        rows.append({"method": method, "steps": steps, **mean, "delta_psnr": mean["psnr"] - chain_psnr})
        log(f"  {method} {steps} steps: PSNR {mean['psnr']:.2f} dB, {mean['seconds']:.0f} s per subject")
    scores = [score_against_full_dose(case, reference)["metrics"] for case, reference in zip(cases, references)]
    baselines = [{"method": name, "steps": 0, "evaluations": 0, "seconds": 0.0,
                  "psnr": float(np.mean([s[name]["psnr"] for s in scores])),
                  "ssim": float(np.mean([s[name]["ssim"] for s in scores])),
                  "psnr_vs_chain": float("nan"), "ssim_vs_chain": float("nan")} for name in ("low_dose", "gaussian")]
    for row in baselines:
        row["delta_psnr"] = row["psnr"] - rows[0]["psnr"]
    return baselines + rows


def add_quality_flags(parser: argparse.ArgumentParser, repo: Path) -> None:
    """The quality table's flags (``--quality_*``, ``--start_timestep``, ``--skip_quality``)."""
    add_dict_to_argparser(parser, {
        "skip_quality": False, "quality_model": str(repo / "models" / "demo" / "model_ema.pt"),
        "quality_seeds": "5000,5001", "quality_dose": 0.05, "quality_extent_mm": 96.0, "quality_patch_axial": 24,
        "quality_samplers": "ddpm,ddim,dpmpp2m", "quality_steps": "5,10,20,50", "quality_precision": "fp32",
        "quality_ensemble": 1, "start_timestep": 100,
    })


def setup_from_args(args: argparse.Namespace) -> QualitySetup:
    """The :class:`QualitySetup` named by the ``--quality_*`` flags."""
    return QualitySetup(
        model_path=Path(args.quality_model), seeds=tuple(int(s) for s in args.quality_seeds.split(",")),
        dose=args.quality_dose, axial_extent_mm=args.quality_extent_mm, patch_axial=args.quality_patch_axial,
        start_timestep=args.start_timestep, precision=args.quality_precision,
        samplers=tuple(args.quality_samplers.split(",")), steps=tuple(int(s) for s in args.quality_steps.split(",")),
        num_ensemble=args.quality_ensemble,
    )
