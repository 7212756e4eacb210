"""Train the 3D conditional diffusion model on pairs of low-dose / full-dose PET volumes.

    mpiexec -n N python scripts/train.py --config paper --data_dir data/train \
        --result_folder results/train --batch_size 1 --max_steps 400000

Baselines on the same data, crops and loop (README.md, "Baselines"):
``--model_kind regression [--regression_loss l1|l2]`` trains the same UNet to map the
low dose to the full dose in one pass; ``--model_kind gan [--adv_weight W --disc_channels C]``
trains it against a patch discriminator (the 3D GAN baseline); both learn a correction to
their input unless ``--one_pass_output direct``. ``--dims 2`` trains a 2D network on axial slices.

Pairs are found recursively in --data_dir (see README.md, "Data layout") and brought onto
the model grid: RAS orientation, --model_voxel_size mm voxels (default 0: the voxel size
the data share), which every checkpoint records. Random crops of --patch_size feed one
process per GPU; --lesion_crop_fraction F centres a share F of them on a lesion of
pairs that carry a lesion mask. Checkpoints, EMA weights and progress.csv go to
--result_folder; a run started again with the same folder resumes from its newest checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from guided_diffusion import dist_util, storage
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config
from guided_diffusion.model_kinds import get_model_kind
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX, check_data_scale, check_suv_max
from guided_diffusion.pet.training.crops import (
    PairCropDataset,
    check_patch_fits_network,
    crop_loader,
    parse_patch_size,
)
from guided_diffusion.pet.training.data_description import describe_pairs
from guided_diffusion.pet.training.pairs import data_voxel_size, find_pairs, prepare_pairs, shard
from guided_diffusion.pet.training.validation import CropEvaluator
from guided_diffusion.resample import check_max_train_timestep
from guided_diffusion.samplers import get_sampler
from guided_diffusion.script_util import (
    check_model_kind,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.train_util import TrainLoop, TrainOptions, check_start_files, train_defaults


def create_argparser() -> argparse.ArgumentParser:
    defaults = {
        "data_dir": "",
        "val_dir": "",
        "data_cache": "",
        "patch_size": "96",
        "model_voxel_size": 0.0,
        "flip": False,
        "lesion_crop_fraction": 0.0,
        "num_workers": 2,
        "suv_max": DEFAULT_SUV_MAX,
        "data_scale": 0.0,
        "val_crops": 4,
        "val_respacing": "ddim10",
        "val_sampler": "ddim",
        "val_start_timestep": 0,
    }
    defaults.update(train_defaults())
    defaults.update(sr_model_and_diffusion_defaults())
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    return parser


def check_flags(args: argparse.Namespace, options: TrainOptions) -> tuple[int, int, int]:
    """Refuse flags that cannot work, naming the flag; return the patch size (X, Y, Z)."""
    if not args.data_dir:
        raise UserError("--data_dir is required: the folder holding the training pairs")
    if args.dims not in (2, 3):
        raise UserError(f"--dims {args.dims}: use 3 (volumes) or 2 (axial slices)")
    check_model_kind(args.model_kind, args.regression_loss)
    if not args.model_voxel_size >= 0:
        raise UserError(f"--model_voxel_size {args.model_voxel_size}: give the model's voxel size in mm, "
                        "or 0 to take it from the data")
    if not 0 <= args.lesion_crop_fraction <= 1:
        raise UserError(f"--lesion_crop_fraction must be a share from 0 to 1, got {args.lesion_crop_fraction}")
    if args.num_workers < 0 or args.val_crops < 1:
        raise UserError("--num_workers must be >= 0 and --val_crops >= 1")
    get_sampler(args.val_sampler, "--val_sampler")
    if storage.is_url(args.data_cache or args.result_folder):
        raise UserError("--data_cache must be a local folder (the .npy cache is memory-mapped); "
                        "give one when --result_folder is a URL")
    check_suv_max(args.suv_max)
    if args.data_scale:
        check_data_scale(args.data_scale)
    options.check()
    check_max_train_timestep(args.max_train_timestep, args.diffusion_steps)
    if args.max_train_timestep and args.val_dir and not 0 < args.val_start_timestep <= args.max_train_timestep:
        raise UserError(f"--max_train_timestep {args.max_train_timestep} trains only the steps of a warm start up to "
                        f"it: validate from such a warm start, --val_start_timestep 1..{args.max_train_timestep} "
                        f"(got {args.val_start_timestep})")
    if args.snr_gamma and args.use_kl:
        raise UserError("--snr_gamma weights the MSE loss, --use_kl trains the variational bound only: drop one")
    patch = parse_patch_size(args.patch_size, args.dims)
    get_model_kind(args.model_kind, trainable=True).check_train_flags(args, patch)
    return patch


def main() -> None:
    # Every rank parses the same command line: a bad flag is reported once, and every rank exits.
    args = dist_util.agree(lambda: parse_args_with_config(create_argparser()))
    options = TrainOptions(**args_to_dict(args, train_defaults().keys()))
    patch = dist_util.agree(lambda: check_flags(args, options))
    # An unreadable checkpoint to start from is reported before any data is converted into the cache.
    dist_util.from_root(lambda: check_start_files(options))
    flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    # The same initial weights for any number of ranks (DDP also broadcasts rank 0's).
    torch.manual_seed(args.seed)
    model, diffusion = dist_util.agree(lambda: sr_create_model_and_diffusion(**flags))
    dist_util.agree(lambda: check_patch_fits_network(patch, model.spatial_divisor))

    rank, world_size = dist_util.rank(), dist_util.world_size()
    cache = Path(args.data_cache or Path(args.result_folder) / "data_cache")
    entries = dist_util.agree(lambda: find_pairs(args.data_dir))
    # Every rank derives the grid from all pairs, not from its share, so all ranks agree.
    voxel_size = args.model_voxel_size or dist_util.agree(lambda: data_voxel_size(entries))
    pairs = dist_util.agree(lambda: prepare_pairs(shard(entries, rank, world_size), cache, patch, voxel_size))

    # SUV -> model value: clip(SUV, 0, --suv_max) / --data_scale (0: --suv_max, the paper's [0, 1]).
    data_scale = args.data_scale or args.suv_max
    evaluator = None
    if args.val_dir:
        val_entries = dist_util.agree(lambda: find_pairs(args.val_dir, "--val_dir"))
        val_pairs = dist_util.agree(lambda: prepare_pairs(val_entries, cache, patch, voxel_size))
        # A diffusion model is scored on a short run of --val_sampler, a one-pass baseline on its forward pass.
        predictor = dist_util.agree(lambda: get_model_kind(args.model_kind).validation_predictor(
            diffusion, flags, args.val_sampler, args.val_respacing, args.val_start_timestep,
            clip_max=max(1.0, args.suv_max / data_scale)))
        evaluator = CropEvaluator(val_pairs, predictor, patch, args.val_crops, dist_util.dev(), args.suv_max,
                                  dims=args.dims, data_scale=data_scale)

    def data(start_batch: int) -> torch.utils.data.DataLoader:
        dataset = PairCropDataset(pairs, patch, args.batch_size, seed=args.seed, rank=rank, start_batch=start_batch,
                                  flip=args.flip, suv_max=args.suv_max, dims=args.dims, data_scale=data_scale,
                                  lesion_fraction=args.lesion_crop_fraction)
        return crop_loader(dataset, args.num_workers, pin_memory=dist_util.dev().type == "cuda")

    # The model's grid travels with its weights (read back by scripts/test.py), as do model_kind and dims; the
    # intensity clip and scale and a description of the data go on the model cards too.
    stored = {**flags, "model_voxel_size": voxel_size, "suv_max": args.suv_max, "data_scale": data_scale,
              "training_data": describe_pairs(args.data_dir, entries)}
    TrainLoop(model=model, diffusion=diffusion, data=data, options=options, flags=stored, evaluator=evaluator,
              predating_flags=get_model_kind(args.model_kind).predating_flags).run_loop()


if __name__ == "__main__":
    dist_util.run_main(main)
