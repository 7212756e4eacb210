"""A sampling script written the way users' copies of the paper's scripts are: only the module API kept for them.

Each rank denoises its own random low-dose crop (``--crop Z,X,Y`` voxels, values in the model range [0, 1]); the
crop, its starting noise and the sampling steps' noises come from torch's global generator seeded with
``--seed + rank``. Rank 0 gathers every rank's samples and saves them, with the crops and the ranks they came from,
as ``samples_<shape>.npz`` in the logger's folder. tests/test_paper_api.py runs it under ``mpiexec -n 2``.
"""

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist

from guided_diffusion import dist_util, logger
from guided_diffusion.script_util import (
    add_dict_to_argparser,
    args_to_dict,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


def main():
    args = create_argparser().parse_args()

    dist_util.setup_dist()
    logger.configure(dir=args.log_dir)

    logger.log("creating model...")
    model, diffusion = sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))
    model.load_state_dict(dist_util.load_state_dict(args.model_path, map_location="cpu"))
    model.to(dist_util.dev())
    if args.use_fp16:
        model.convert_to_fp16()
    model.eval()

    logger.log("sampling...")
    shape = (args.batch_size, 1, *(int(size) for size in args.crop.split(",")))
    torch.manual_seed(args.seed + dist.get_rank())
    low = torch.rand(shape).to(dist_util.dev())
    noise = torch.randn(shape).to(dist_util.dev())
    with torch.no_grad():
        sample = diffusion.p_sample_loop(model, shape, noise, clip_denoised=True, model_kwargs={"low_res": low})

    samples = [torch.zeros_like(sample) for _ in range(dist.get_world_size())]
    dist.all_gather(samples, sample)
    lows = [torch.zeros_like(low) for _ in range(dist.get_world_size())]
    dist.all_gather(lows, low)
    ranks = [torch.zeros(1, dtype=torch.long, device=dist_util.dev()) for _ in range(dist.get_world_size())]
    dist.all_gather(ranks, torch.full((1,), dist.get_rank(), dtype=torch.long, device=dist_util.dev()))
    logger.logkv("samples", len(samples) * args.batch_size)
    logger.logkv_mean("sample_mean", sample.mean().item())
    logger.dumpkvs()

    if dist.get_rank() == 0:
        arr = torch.cat(samples).cpu().numpy()
        out_path = os.path.join(logger.get_dir(), f"samples_{'x'.join(str(x) for x in arr.shape)}.npz")
        logger.log(f"saving to {out_path}")
        np.savez(out_path, arr, low=torch.cat(lows).cpu().numpy(), ranks=torch.cat(ranks).cpu().numpy())

    dist.barrier()
    logger.log("sampling complete")


def create_argparser():
    defaults = {"model_path": "", "log_dir": "", "batch_size": 1, "crop": "8,16,16", "seed": 0}
    defaults.update(sr_model_and_diffusion_defaults())
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, defaults)
    return parser


if __name__ == "__main__":
    main()
