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

Settings come from the command line, then the model's card (``<model>.card.json``:
voxel size, --suv_max, --warm_start_scale), then the preset. This script only
wires flags and files: the run is :func:`guided_diffusion.denoise_run.run_denoising`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence

from guided_diffusion import dist_util
from guided_diffusion.denoise_run import run_denoising
from guided_diffusion.denoise_settings import check_flags as check_run_flags
from guided_diffusion.denoise_settings import read_model_records, resolve_settings
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.pet.intensity import DEFAULT_SUV_MAX
from guided_diffusion.pet.io import UnitOptions, Volume, VolumeInfo, list_volumes, read_volume, survey_volume
from guided_diffusion.script_util import sr_model_and_diffusion_defaults
from guided_diffusion.volume_files import INPUT_FLAGS, OUTPUT_FLAGS, unit_options


def load_data_for_worker(base_samples: str, num_samples: int, npz_key: str | None, units: UnitOptions | None = None,
                         exclude: Sequence[str] = (), on_note: Callable[[str], None] = lambda note: None,
                         header_only: bool = False) -> Iterator[Volume | VolumeInfo | UserError]:
    """Yield the volumes to denoise, one at a time. THE place to adapt for a new data format.

    Every rank calls this and must get the same volumes in the same order. Rank 0
    first calls it with ``header_only=True`` to check every input before any
    sampling; then it may yield what the headers say (a
    :class:`~guided_diffusion.pet.io.VolumeInfo`: name, format, path, shape, affine),
    or the volumes themselves. A format registered in
    :data:`guided_diffusion.pet.io.FORMATS` (see ``guided_diffusion/pet/io/FORMATS.md``)
    is found and read here with no edit.
    Each yielded :class:`~guided_diffusion.pet.io.Volume` needs:

    * ``data``: float32 array (X, Y, Z) in SUV, finite (any orientation: the
      affine says which axis is head-foot);
    * ``affine``: 4x4 voxel-to-world matrix in mm, RAS+ (written to the output);
    * ``name``: unique stem for the output files (``<name>_denoised...``);
    * ``fmt`` and ``path`` (and ``header`` for NIfTI / DICOM): the output is
      written in this format ("npz" or "nifti"; "dicom" input as NIfTI and/or
      a DICOM series, see --output_format);
    * ``source_units`` / ``to_suv`` when the file was not in SUV (for --output_units input).

    For a one-off format, replace the body, e.g. read your file into a numpy
    array ``suv`` and ``yield Volume(validated(suv, path), affine, "nifti", path, name)``
    (:func:`~guided_diffusion.pet.io.volume.validated` applies the readers' checks:
    3D, finite, not empty). For a bad file, yield its :class:`~guided_diffusion.errors.UserError`
    (the run reports it and goes on with the next volume) or raise it (ends the batch).

    Args:
        base_samples: a file, a directory (DICOM series are found in it and below
            it by content), or a glob (files of the registered formats: ``.npz``, ``.nii``, ``.nii.gz``, ...).
        num_samples: at most this many volumes (<= 0: all).
        npz_key: array name in ``.npz`` files (default ``arr_0``, as in the paper).
        units: how to read NIfTI values (SUV or Bq/ml) and SUV timing.
        exclude: folders not searched by content (the output folder).
        on_note: receives one line per series passed over (CT, SEG, ...).
        header_only: yield what the headers say (the survey) instead of the volumes.
    """
    sources = list_volumes(base_samples, exclude=exclude)
    for note in sources.notes:
        on_note(note)
    if num_samples > 0:
        sources = sources[:num_samples]
    for source in sources:
        if header_only:
            yield survey_volume(source, npz_key=npz_key, units=units)
            continue
        try:
            volume = read_volume(source, npz_key=npz_key, units=units)
        except UserError as err:  # yielded, not raised: the run reports this volume and goes on with the next
            volume = err
        yield volume


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
        "warm_start_scale": 0.0,
        "uncertainty_factor": 0.0,
        "unfitted_model": "refuse",
        "seed": 0,
        "num_ensemble": 1,
        "suv_max": DEFAULT_SUV_MAX,
        "data_scale": 0.0,
        "keep_saturated": False,
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


def main() -> None:
    args = dist_util.agree(lambda: parse_args_with_config(create_argparser()))
    dist_util.agree(lambda: check_run_flags(args))
    records = dist_util.from_root(lambda: read_model_records(args.model_path))
    settings = dist_util.agree(lambda: resolve_settings(args, sys.argv[1:], records,
                                                         sr_model_and_diffusion_defaults().keys()))

    def read(header_only: bool) -> Iterator[Volume | VolumeInfo | UserError]:
        def on_note(note: str) -> None:
            if header_only:
                print(f"note: {note}", file=sys.stderr, flush=True)

        return load_data_for_worker(args.base_samples, args.num_samples, args.npz_key or None, unit_options(args),
                                    exclude=[args.save_dir], on_note=on_note, header_only=header_only)

    run_denoising(settings, read)


if __name__ == "__main__":
    dist_util.run_main(main)
