"""Network speed and memory per patch, and the time to denoise a whole-body volume.

    python benchmarks/speed.py --config paper --patch 96,192,288 --precisions fp32,fp16,bf16

Times one forward pass of the conditional UNet on a batch of patches (Z, X, Y
as the network sees them) and extrapolates the sampling time of a volume:
patches x steps x ensemble members. Prints a table; CUDA if available.
"""

from __future__ import annotations

import argparse
import time

import torch

from guided_diffusion import dist_util
from guided_diffusion.denoise import PatchingOptions, make_plan
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def create_argparser() -> argparse.ArgumentParser:
    defaults = {"patch": "96,192,288", "batch": 1, "precisions": "fp32,fp16,bf16", "repeats": 5,
                "volume": "192,288,520", "steps": 50, "ensemble": 1}
    defaults.update(sr_model_and_diffusion_defaults())
    # Presets state the model's grid; --patch and --volume are already counted in its voxels.
    defaults["model_voxel_size"] = 0.0
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def time_forward(model, x: torch.Tensor, dtype: torch.dtype | None, repeats: int) -> tuple[float, float]:
    """Seconds per forward pass and peak GPU memory (GiB; 0 on the CPU)."""
    device = x.device
    t = torch.full((x.shape[0],), 500, device=device)
    context = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(device.type,
                                                                                               enabled=False)
    with torch.no_grad(), context:
        model(x, t, low_res=x)  # warm-up (kernel selection)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(repeats):
            model(x, t, low_res=x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return (time.perf_counter() - start) / repeats, memory


def main() -> None:
    args = parse_args_with_config(create_argparser())
    flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    flags["use_fp16"] = False  # precision is chosen per run below
    model, _ = sr_create_model_and_diffusion(**flags)
    device = dist_util.dev()
    model.to(device).eval()
    z, x, y = (int(v) for v in args.patch.split(","))
    volume = tuple(int(v) for v in args.volume.split(","))
    plan = make_plan(volume, PatchingOptions(patch_axial=z, max_patch_inplane=max(x, y)), model.spatial_divisor)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params:,} parameters on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}); "
          f"patch (Z,X,Y)=({z},{x},{y}) x batch {args.batch}; volume {volume} -> {len(plan)} patches of "
          f"{plan.patch_size}")
    batch = torch.randn(args.batch, 1, z, x, y, device=device)
    for name in args.precisions.split(","):
        seconds, memory = time_forward(model, batch, AUTOCAST[name], args.repeats)
        per_patch = seconds / args.batch
        total = per_patch * len(plan) * args.steps * args.ensemble
        print(f"{name:>5}: {seconds * 1000:8.1f} ms/forward  {per_patch * 1000:8.1f} ms/patch  peak {memory:6.2f} GiB"
              f"  -> volume: {len(plan)} patches x {args.steps} steps x {args.ensemble} = {total:7.1f} s", flush=True)


if __name__ == "__main__":
    dist_util.run_main(main)
