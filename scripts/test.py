"""Denoise low-dose PET volumes of any shape with the 3D diffusion model.

    mpiexec -n N python scripts/test.py --config paper --model_path model.pt \
        --base_samples 'scans/*.nii.gz' --save_dir denoised --use_ddim True --timestep_respacing ddim50

Every rank reads the inputs, samples its share of the patches, and rank 0
stitches and writes ``<name>_denoised`` (same format, shape and affine as the
input), ``<name>_denoised_std`` when --num_ensemble > 1, and a JSON sidecar.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.checkpoint import load_model_weights
from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser, job_offsets
from guided_diffusion.errors import UserError
from guided_diffusion.patch_sampling import SamplingOptions
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.io import Volume, list_volumes, output_path, read_volume, write_volume
from guided_diffusion.script_util import (
    add_dict_to_argparser,
    args_to_dict,
    parse_args_with_config,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


def load_data_for_worker(base_samples: str, num_samples: int, npz_key: str | None) -> Iterator[Volume]:
    """Yield the volumes to denoise, one at a time. THE place to adapt for a new data format.

    Every rank calls this and must get the same volumes in the same order.
    Each yielded :class:`~guided_diffusion.pet.io.Volume` needs:

    * ``data``: float32 array (X, Y, Z), Z axial, in SUV, finite;
    * ``affine``: 4x4 voxel-to-world matrix in mm (written to the output);
    * ``name``: unique stem for the output files (``<name>_denoised...``);
    * ``fmt`` and ``path`` (and ``header`` for NIfTI): the output is written in
      this format ("npz" or "nifti"; "dicom" input is written as NIfTI).

    For another format, replace the body, e.g. read your file into a numpy
    array ``suv`` and ``yield Volume(suv, affine, "nifti", path, name)``.
    Raise :class:`~guided_diffusion.errors.UserError` for bad files.

    Args:
        base_samples: a file, a directory, or a glob (``.npz`` / ``.nii`` / ``.nii.gz`` / DICOM dirs).
        num_samples: at most this many volumes (<= 0: all).
        npz_key: array name in ``.npz`` files (default ``arr_0``, as in the paper).
    """
    paths = list_volumes(base_samples)
    if num_samples > 0:
        paths = paths[:num_samples]
    for path in paths:
        yield read_volume(path, npz_key=npz_key)


def create_argparser() -> argparse.ArgumentParser:
    defaults = {
        "base_samples": "",
        "num_samples": 0,
        "batch_size": 4,
        "save_dir": "denoised",
        "model_path": "",
        "weights": "ema",
        "clip_denoised": True,
        "use_ddim": True,
        "ddim_eta": 0.0,
        "start_timestep": 0,
        "seed": 0,
        "num_ensemble": 1,
        "npz_key": "",
        "suv_max": DEFAULT_SUV_MAX,
        "keep_saturated": True,
        "patch_axial": 96,
        "max_patch_inplane": 320,
        "patch_overlap": 10,
        "blend": "linear",
        "overwrite": False,
    }
    defaults.update(sr_model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flag values that cannot work, naming the flag."""
    if not args.base_samples:
        raise UserError("--base_samples is required (a file, a directory or a glob)")
    if not args.model_path:
        raise UserError("--model_path is required (a state_dict or a training checkpoint)")
    for flag in ("batch_size", "num_ensemble", "patch_axial", "max_patch_inplane"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.patch_overlap < 0:
        raise UserError(f"--patch_overlap must be >= 0, got {args.patch_overlap}")
    if args.blend not in ("linear", "gaussian"):
        raise UserError(f"--blend must be 'linear' or 'gaussian', got {args.blend!r}")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def outputs_for(volume: Volume, args: argparse.Namespace) -> dict[str, Path]:
    paths = {"denoised": output_path(args.save_dir, volume, "denoised")}
    if args.num_ensemble > 1:
        paths["std"] = output_path(args.save_dir, volume, "denoised_std")
    paths["sidecar"] = Path(args.save_dir) / f"{volume.name}_denoised.json"
    return paths


def survey_inputs(args: argparse.Namespace) -> list[tuple[str, tuple[int, int, int]]]:
    """Read and check every input before any sampling (rank 0): names, shapes, no clobbering."""
    survey = []
    for volume in load_data_for_worker(args.base_samples, args.num_samples, args.npz_key or None):
        if any(volume.name == name for name, _ in survey):
            raise UserError(f"two inputs are named {volume.name!r}; their outputs would collide")
        if not args.overwrite:
            existing = [str(p) for p in outputs_for(volume, args).values() if p.exists()]
            if existing:
                raise UserError(f"{existing[0]} exists; pass --overwrite True to replace it")
        survey.append((volume.name, volume.shape))
    return survey


def main() -> None:
    args = parse_args_with_config(create_argparser())
    dist_util.agree(lambda: check_flags(args))
    survey = dist_util.from_root(lambda: survey_inputs(args))

    def build():
        model, diffusion = sr_create_model_and_diffusion(
            **args_to_dict(args, sr_model_and_diffusion_defaults().keys()), start_timestep=args.start_timestep)
        load_model_weights(model, args.model_path, weights=args.weights)
        return model.to(dist_util.dev()).eval(), diffusion

    model, diffusion = dist_util.agree(build)
    model_sha = dist_util.from_root(lambda: sha256(args.model_path))

    sampling = SamplingOptions(use_ddim=args.use_ddim, eta=args.ddim_eta, clip_denoised=args.clip_denoised,
                               batch_size=args.batch_size, seed=args.seed, num_ensemble=args.num_ensemble,
                               warm_start=args.start_timestep > 0)
    patching = PatchingOptions(patch_axial=args.patch_axial, max_patch_inplane=args.max_patch_inplane,
                               overlap=args.patch_overlap, blend=args.blend)
    denoiser = VolumeDenoiser(model, diffusion, sampling, patching, args.suv_max, args.keep_saturated)
    plans = dist_util.agree(lambda: [denoiser.plan(shape) for _, shape in survey])

    is_root = dist_util.rank() == 0
    bar = tqdm(total=denoiser.rank_job_count(plans) * diffusion.num_timesteps, unit="patch-step", disable=not is_root,
               desc=f"rank 0 of {dist_util.world_size()}")
    denoiser.on_step = bar.update

    volumes = load_data_for_worker(args.base_samples, args.num_samples, args.npz_key or None)
    for (name, _), plan, offset in zip(survey, plans, job_offsets(plans, sampling.num_ensemble)):
        started = time.perf_counter()
        volume = dist_util.agree(lambda: next(volumes))
        result = denoiser.denoise(volume.data, volume.name, offset)
        if is_root:
            paths = outputs_for(volume, args)
            write_volume(paths["denoised"], result.mean, like=volume, overwrite=args.overwrite)
            if result.std is not None:
                write_volume(paths["std"], result.std, like=volume, overwrite=args.overwrite)
            result.timings["total_s"] = time.perf_counter() - started
            sidecar = {
                "input": str(volume.path),
                "outputs": {k: str(v) for k, v in paths.items() if k != "sidecar"},
                "flags": vars(args),
                "model_sha256": model_sha,
                "seed": args.seed,
                "num_ranks": dist_util.world_size(),
                "device": str(dist_util.dev()),
                "sampler": {**asdict(sampling), "steps": diffusion.num_timesteps},
                "patch_plan": {"shape": plan.shape, "padded_shape": plan.padded_shape,
                               "patch_size": plan.patch_size, "overlap": plan.overlap,
                               "num_patches": len(plan), "starts": plan.starts, "blend": patching.blend},
                "timings_s": result.timings,
                "versions": {"python": platform.python_version(), "torch": torch.__version__},
            }
            atomic_write_text(paths["sidecar"], json.dumps(sidecar, indent=2) + "\n", overwrite=args.overwrite)
            bar.write(f"{name}: {volume.shape} in {len(plan)} patches x {sampling.num_ensemble} "
                      f"sample(s), {result.timings['total_s']:.1f} s -> {paths['denoised']}")
    bar.close()


if __name__ == "__main__":
    dist_util.run_main(main)
