"""Denoise low-dose PET volumes of any shape with the 3D diffusion model.

    mpiexec -n N python scripts/test.py --config paper --model_path model.pt \
        --base_samples 'scans/*.nii.gz' --save_dir denoised --sampler ddpm --steps 10 --start_timestep auto

Every rank reads the inputs (NIfTI, npz, DICOM series found in a folder tree),
converts them to SUV, reorients and resamples them to the model's grid, and
samples its share of the patches; rank 0 stitches, brings the result back to
the input's exact grid and writes ``<name>_denoised`` (same format, shape and
affine as the input; and/or a DICOM series), ``<name>_denoised_std`` when
--num_ensemble > 1, and a JSON sidecar.

Baselines take the same path (README.md, "Baselines"): a regression or GAN checkpoint
(``--model_kind regression|gan``, read from the checkpoint) is one forward pass per
patch; a 2D network (``--dims 2``) denoises slice by slice; ``--model_path
gaussian.json`` (from scripts/fit_gaussian.py) or ``--gaussian_fwhm_mm F`` filters
each volume on the model grid with no network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from guided_diffusion import dist_util, storage
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.checkpoint import load_model_weights, stored_flags
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, VolumeResult, job_offsets, warm_start_for_volume
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.patch_jobs import SAMPLERS, SamplingOptions
from guided_diffusion.pet.filters import gaussian_smooth
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.io import UnitOptions, Volume, list_volumes, read_volume
from guided_diffusion.pet.io.grid import GridMapping, plan_grid
from guided_diffusion.pet.training.gaussian_fit import GAUSSIAN_KIND, is_fit_file, read_fit
from guided_diffusion.precision import check_precision, choose_precision, precision_note
from guided_diffusion.script_util import (
    check_model_kind,
    diffusion_defaults,
    diffusion_from_flags,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.volume_files import (
    INPUT_FLAGS,
    OUTPUT_FLAGS,
    check_output_flags,
    check_output_format,
    given_on_command_line,
    last_given,
    model_voxel_size,
    result_paths,
    unit_options,
    units_written,
    write_result,
)
from guided_diffusion.warm_start import AUTO, DEFAULT_WARM_START_SCALE, read_start_timestep


def load_data_for_worker(base_samples: str, num_samples: int, npz_key: str | None, units: UnitOptions | None = None,
                         exclude: Sequence[str] = (), on_note: Callable[[str], None] = lambda note: None,
                         ) -> Iterator[Volume]:
    """Yield the volumes to denoise, one at a time. THE place to adapt for a new data format.

    Every rank calls this and must get the same volumes in the same order.
    Each yielded :class:`~guided_diffusion.pet.io.Volume` needs:

    * ``data``: float32 array (X, Y, Z) in SUV, finite (any orientation: the
      affine says which axis is head-foot);
    * ``affine``: 4x4 voxel-to-world matrix in mm, RAS+ (written to the output);
    * ``name``: unique stem for the output files (``<name>_denoised...``);
    * ``fmt`` and ``path`` (and ``header`` for NIfTI / DICOM): the output is
      written in this format ("npz" or "nifti"; "dicom" input as NIfTI and/or
      a DICOM series, see --output_format);
    * ``source_units`` / ``to_suv`` when the file was not in SUV (for --output_units input).

    For another format, replace the body, e.g. read your file into a numpy
    array ``suv`` and ``yield Volume(suv, affine, "nifti", path, name)``.
    Raise :class:`~guided_diffusion.errors.UserError` for bad files.

    Args:
        base_samples: a file, a directory (DICOM series are found in it and below
            it by content), or a glob (``.npz`` / ``.nii`` / ``.nii.gz``).
        num_samples: at most this many volumes (<= 0: all).
        npz_key: array name in ``.npz`` files (default ``arr_0``, as in the paper).
        units: how to read NIfTI values (SUV or Bq/ml) and SUV timing.
        exclude: folders not searched for DICOM (the output folder).
        on_note: receives one line per series passed over (CT, SEG, ...).
    """
    sources = list_volumes(base_samples, exclude=exclude)
    for note in sources.notes:
        on_note(note)
    if num_samples > 0:
        sources = sources[:num_samples]
    for source in sources:
        yield read_volume(source, npz_key=npz_key, units=units)


def create_argparser() -> argparse.ArgumentParser:
    defaults = {
        "base_samples": "",
        "num_samples": 0,
        "batch_size": 4,
        "save_dir": "denoised",
        "model_path": "",
        "weights": "ema",
        "model_voxel_size": 0.0,
        "clip_denoised": True,
        "sampler": "",
        "steps": 0,
        "precision": "",
        "channels_last": False,
        "compile": False,
        "use_ddim": True,
        "ddim_eta": 0.0,
        "start_timestep": "0",
        "warm_start_scale": DEFAULT_WARM_START_SCALE,
        "seed": 0,
        "num_ensemble": 1,
        "suv_max": DEFAULT_SUV_MAX,
        "keep_saturated": True,
        "patch_axial": 96,
        "max_patch_inplane": 320,
        "patch_overlap": 10,
        "blend": "linear",
        "gaussian_fwhm_mm": 0.0,
        **INPUT_FLAGS,
        **OUTPUT_FLAGS,
    }
    defaults.update(sr_model_and_diffusion_defaults())
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flag values that cannot work, naming the flag."""
    if not args.base_samples:
        raise UserError("--base_samples is required (a file, a directory or a glob)")
    if not (math.isfinite(args.gaussian_fwhm_mm) and args.gaussian_fwhm_mm >= 0):
        raise UserError(f"--gaussian_fwhm_mm must be a FWHM in mm (> 0; 0: off), got {args.gaussian_fwhm_mm}")
    if not args.model_path and not args.gaussian_fwhm_mm:
        raise UserError("--model_path is required (a state_dict, a training checkpoint or a Gaussian fit .json; "
                        "or give --gaussian_fwhm_mm)")
    for flag in ("batch_size", "num_ensemble", "patch_axial", "max_patch_inplane"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.patch_overlap < 0:
        raise UserError(f"--patch_overlap must be >= 0, got {args.patch_overlap}")
    if args.blend not in ("linear", "gaussian"):
        raise UserError(f"--blend must be 'linear' or 'gaussian', got {args.blend!r}")
    check_precision(args.precision)
    check_output_flags(args)
    unit_options(args)
    args.start_timestep = read_start_timestep(args.start_timestep)
    if not (math.isfinite(args.warm_start_scale) and args.warm_start_scale > 0):
        raise UserError(f"--warm_start_scale must be a positive number, got {args.warm_start_scale}")


#: Flags a network's training checkpoint records that say what the network is; the command line beats them.
KIND_FLAGS = ("model_kind", "dims")


def read_model_record(model_path: str) -> dict | None:
    """The flags the --model_path file records: a Gaussian fit's, a training checkpoint's, or None."""
    if not model_path:
        return None
    return read_fit(model_path) if is_fit_file(model_path) else stored_flags(model_path)


def choose_model_kind(args: argparse.Namespace, argv: Sequence[str], stored: dict | None) -> str:
    """What denoises: "gaussian", "regression", "gan" or "diffusion"; sets ``args`` to match.

    The Gaussian filter when --gaussian_fwhm_mm is given (it beats a fit file's
    FWHM) or --model_path is a fit file. For a network, --model_kind and --dims
    come from the command line, then from the checkpoint's training flags, then
    from the preset or default. A deterministic model refuses --num_ensemble > 1.
    """
    stored = stored or {}
    if args.gaussian_fwhm_mm or stored.get("model_kind") == GAUSSIAN_KIND:
        if args.model_path and not is_fit_file(args.model_path):
            raise UserError(f"--gaussian_fwhm_mm {args.gaussian_fwhm_mm:g} and the network --model_path "
                            f"{args.model_path}: give one")
        args.gaussian_fwhm_mm = args.gaussian_fwhm_mm or stored["gaussian_fwhm_mm"]
        args.model_kind = GAUSSIAN_KIND
    else:
        for flag in KIND_FLAGS:
            if not given_on_command_line(flag, argv) and stored.get(flag) is not None:
                setattr(args, flag, stored[flag])
        check_model_kind(args.model_kind)
    if args.model_kind != "diffusion" and args.num_ensemble > 1:
        raise UserError(f"--num_ensemble {args.num_ensemble}: a {args.model_kind} model is deterministic, so every "
                        "member would be the same; use --num_ensemble 1")
    return args.model_kind


def choose_sampler(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The sampler from --sampler and --steps, or from the paper's --use_ddim / --timestep_respacing.

    ``--steps N`` becomes ``--timestep_respacing N`` (N steps evenly spaced over the
    process, both ends kept). When both of --steps / --timestep_respacing, or of
    --sampler / --use_ddim, are on the command line, the later one wins, as for a
    repeated flag (so arguments after the launcher's defaults override them).
    """
    paper_flag_last = last_given(("sampler", "use_ddim"), argv) == "use_ddim"
    sampler = args.sampler if args.sampler and not paper_flag_last else ("ddim" if args.use_ddim else "ddpm")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    if args.steps < 0 or args.steps == 1:
        raise UserError(f"--steps must be at least 2 (0: from --timestep_respacing), got {args.steps}")
    if args.steps and (not args.timestep_respacing or last_given(("steps", "timestep_respacing"), argv) == "steps"):
        args.timestep_respacing = str(args.steps)
    return sampler


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.open_binary_for_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def outputs_for(volume: Volume, args: argparse.Namespace) -> dict[str, dict[str, Path]]:
    """Every path one input's results take: the mean, the standard deviation (K > 1), the sidecar."""
    outputs = {"denoised": result_paths(args.save_dir, volume, "denoised", args.output_format)}
    if args.num_ensemble > 1:
        outputs["std"] = result_paths(args.save_dir, volume, "denoised_std", args.output_format)
    outputs["sidecar"] = {"json": Path(args.save_dir) / f"{volume.name}_denoised.json"}
    return outputs


def read_inputs(args: argparse.Namespace, on_note: Callable[[str], None] = lambda note: None) -> Iterator[Volume]:
    return load_data_for_worker(args.base_samples, args.num_samples, args.npz_key or None, unit_options(args),
                                exclude=[args.save_dir], on_note=on_note)


def survey_inputs(args: argparse.Namespace, voxel_mm: float) -> list[tuple[str, tuple[int, int, int]]]:
    """Read and check every input before any sampling (rank 0): names, model-grid shapes, no clobbering."""
    survey = []
    for volume in read_inputs(args, on_note=lambda note: print(f"note: {note}", file=sys.stderr, flush=True)):
        if any(volume.name == name for name, _ in survey):
            raise UserError(f"two inputs are named {volume.name!r}; their outputs would collide")
        check_output_format(volume, args.output_format)
        if not args.overwrite:
            existing = [str(p) for paths in outputs_for(volume, args).values() for p in paths.values() if p.exists()]
            if existing:
                raise UserError(f"{existing[0]} exists; pass --overwrite True to replace it")
        survey.append((volume.name, plan_grid(volume.shape, volume.affine, voxel_mm).model_shape))
    return survey


def gaussian_filter(suv: np.ndarray, fwhm_mm: float, grid: GridMapping) -> VolumeResult:
    """The Gaussian-filter baseline: the whole (X, Y, Z) SUV volume on the model grid, filtered at once."""
    started = time.perf_counter()
    spacing = np.linalg.norm(grid.model_affine[:3, :3], axis=0)
    return VolumeResult(mean=gaussian_smooth(suv, fwhm_mm, spacing), std=None,
                        timings={"filter_s": time.perf_counter() - started})


def sidecar(args: argparse.Namespace, volume: Volume, outputs: dict, grid: GridMapping, plan, provenance: dict,
            timings: dict) -> dict:
    """The JSON record written beside each result."""
    source = volume.header
    return {
        "input": str(volume.path),
        "input_series_uid": getattr(source, "series_uid", None),
        "outputs": {kind: {k: str(v) for k, v in paths.items()} for kind, paths in outputs.items() if kind != "sidecar"},
        "units": {"input": volume.source_units, "written": units_written(volume, args.output_units),
                  "suv": volume.suv_record},
        "model_grid": grid.describe(),
        "flags": vars(args),
        **provenance,
        "patch_plan": None if plan is None else {
            "shape": plan.shape, "padded_shape": plan.padded_shape, "patch_size": plan.patch_size,
            "overlap": plan.overlap, "num_patches": len(plan), "starts": plan.starts, "blend": args.blend},
        "timings_s": timings,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def fixed_start(args: argparse.Namespace) -> int:
    """The process's start step at build time (with ``auto`` the step is chosen per volume, see main)."""
    return 0 if args.start_timestep == AUTO else args.start_timestep


def build_denoiser(args: argparse.Namespace, kind: str, sampler: str) -> tuple[VolumeDenoiser, dict, str, list[str]]:
    """The network's denoiser (every rank), its record for the sidecar, and what the results' description says."""
    def build():
        model, process = sr_create_model_and_diffusion(
            **args_to_dict(args, sr_model_and_diffusion_defaults().keys()), start_timestep=fixed_start(args))
        load_model_weights(model, args.model_path, weights=args.weights)
        model = model.to(dist_util.dev()).eval()
        precision = choose_precision(args.precision, args.use_fp16, dist_util.dev())
        note = precision_note(precision, dist_util.dev())
        if note and dist_util.rank() == 0:
            print(f"note: {note}", file=sys.stderr, flush=True)
        return InferenceNetwork(model, precision, args.channels_last, args.compile), process

    model, process = dist_util.agree(build)
    sampling = SamplingOptions(sampler=sampler, eta=args.ddim_eta, clip_denoised=args.clip_denoised,
                               batch_size=args.batch_size, seed=args.seed, num_ensemble=args.num_ensemble,
                               warm_start=args.start_timestep == AUTO or args.start_timestep > 0)
    patching = PatchingOptions(patch_axial=args.patch_axial, max_patch_inplane=args.max_patch_inplane,
                               overlap=args.patch_overlap, blend=args.blend)
    denoiser = VolumeDenoiser(model, process, sampling, patching, args.suv_max, args.keep_saturated)
    network = {"precision": model.precision, "channels_last": args.channels_last, "compile": args.compile,
               "dims": model.dims}
    if kind != "diffusion":  # regression or GAN: the generator's one forward pass
        record = {"process": f"{kind}, one forward pass per patch", "batch_size": args.batch_size,
                  "clip_denoised": args.clip_denoised, **network}
        return denoiser, record, f"UNet{model.dims}D {kind} denoised", ["one pass"]
    record = {**asdict(sampling), "steps": process.num_timesteps, "start_timestep": args.start_timestep, **network}
    start = f" from t={args.start_timestep}" if args.start_timestep else ""
    steps = f"{sampler} {process.num_timesteps} steps{start}"
    return denoiser, record, f"DDPM{model.dims}D denoised", [steps, f"K={args.num_ensemble}"]


def main() -> None:
    args = dist_util.agree(lambda: parse_args_with_config(create_argparser()))
    dist_util.agree(lambda: check_flags(args))
    argv = sys.argv[1:]
    sampler = dist_util.agree(lambda: choose_sampler(args, argv))
    stored = dist_util.from_root(lambda: read_model_record(args.model_path))
    kind = dist_util.agree(lambda: choose_model_kind(args, argv, stored))
    voxel_mm, voxel_source = dist_util.agree(lambda: model_voxel_size(args, argv, stored))
    survey = dist_util.from_root(lambda: survey_inputs(args, voxel_mm))

    if kind == GAUSSIAN_KIND:
        fwhm = f"FWHM {args.gaussian_fwhm_mm:g} mm"
        denoiser, process_record, what, details = None, {"process": f"Gaussian filter, {fwhm}"}, "Gaussian filtered", [fwhm]
        plans, offsets, steps = [None] * len(survey), [0] * len(survey), 0
    else:
        denoiser, process_record, what, details = build_denoiser(args, kind, sampler)
        plans = dist_util.agree(lambda: [denoiser.plan(shape) for _, shape in survey])
        offsets = job_offsets(plans, args.num_ensemble)
        steps = denoiser.rank_job_count(plans) * denoiser.diffusion.num_timesteps
        diffusion_flags = args_to_dict(args, diffusion_defaults().keys())
        full_process = diffusion_from_flags(diffusion_flags, timestep_respacing="")
    model_sha = dist_util.from_root(lambda: sha256(args.model_path) if args.model_path else None)
    description = f"{what} ({', '.join(details + ([f'model {model_sha[:8]}'] if model_sha else []))})"
    provenance = {"model_kind": kind, "model_sha256": model_sha, "model_voxel_size_mm": voxel_mm,
                  "model_voxel_size_from": voxel_source, "seed": args.seed, "num_ranks": dist_util.world_size(),
                  "device": str(dist_util.dev()), "sampler": process_record}

    is_root = dist_util.rank() == 0
    bar = tqdm(total=steps, unit="patch-step", disable=not is_root or denoiser is None,
               desc=f"rank 0 of {dist_util.world_size()}")
    if denoiser is not None:
        denoiser.on_step = bar.update

    volumes = read_inputs(args)
    for (name, _), plan, offset in zip(survey, plans, offsets):
        started = time.perf_counter()
        volume = dist_util.agree(lambda: next(volumes))
        grid = plan_grid(volume.shape, volume.affine, voxel_mm)
        model_suv = grid.to_model(volume.data)
        volume_provenance = provenance
        if denoiser is None:
            result = gaussian_filter(model_suv, args.gaussian_fwhm_mm, grid) if is_root else None
        else:
            if kind == "diffusion" and args.start_timestep == AUTO:
                spacing = np.linalg.norm(grid.model_affine[:3, :3], axis=0)
                warm = dist_util.from_root(partial(warm_start_for_volume, model_suv, spacing,
                                                   full_process.alphas_cumprod, args.suv_max, args.warm_start_scale))
                denoiser.diffusion = diffusion_from_flags(diffusion_flags, start_timestep=warm["start_timestep"])
                volume_provenance = {**provenance, "warm_start": warm}
            result = denoiser.denoise(model_suv, volume.name, offset)
        if not is_root:
            continue
        outputs = outputs_for(volume, args)
        write_result(outputs["denoised"], grid.to_input(result.mean), volume, args.output_units, description,
                     series_offset=1000, overwrite=args.overwrite)
        if result.std is not None:
            write_result(outputs["std"], grid.to_input(result.std), volume, args.output_units,
                         f"{description} uncertainty (ensemble SD)", series_offset=1001, overwrite=args.overwrite)
        result.timings["total_s"] = time.perf_counter() - started
        record = sidecar(args, volume, outputs, grid, plan, volume_provenance, result.timings)
        atomic_write_text(outputs["sidecar"]["json"], json.dumps(record, indent=2) + "\n", overwrite=args.overwrite)
        written = ", ".join(str(p) for p in outputs["denoised"].values())
        how = "filtered" if plan is None else f"in {len(plan)} patches x {args.num_ensemble} sample(s)"
        if "warm_start" in volume_provenance:
            how += f" from t={volume_provenance['warm_start']['start_timestep']}"
        bar.write(f"{name}: {volume.shape} -> model grid {grid.model_shape} {how}, "
                  f"{result.timings['total_s']:.1f} s -> {written}")
    bar.close()


if __name__ == "__main__":
    dist_util.run_main(main)
