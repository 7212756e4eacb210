"""Convert a PET scan to an SUV NIfTI: a DICOM series (Siemens .IMA, any file names) or a NIfTI in Bq/ml.

    python scripts/convert_to_suv.py scans/patient1/PET_WB patient1_suv.nii.gz
    python scripts/convert_to_suv.py pet_bqml.nii.gz pet_suv.nii.gz --input_units bqml   # timing from pet_bqml.json
    python scripts/convert_to_suv.py scans/patient1/PET_WB patient1_4mm.nii.gz --voxel_size 4

The reading, the SUV arithmetic (QIBA, body weight) and the refusals are those
of scripts/test.py, with the same flags. The result is on the input's grid, or,
with --voxel_size MM, reoriented (head-foot axis last, RAS) and resampled to
MM isotropic as the denoiser's model grid would be. A JSON record of how SUV
was computed is written beside it (<output stem>.json). Every refusal is one
line on stderr, exit status 1, nothing written; an output folder that cannot be
written or is too full is refused before the scan is read, and the volume and
its record are published together (a full disk leaves neither).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.output_set import HEADER_ALLOWANCE_BYTES, check_output_folder, write_set
from guided_diffusion.pet.io import Volume, read_volume, survey_volume, write_volume
from guided_diffusion.pet.io.grid import plan_grid
from guided_diffusion.pet.io.paths import NIFTI_SUFFIXES, volume_stem
from guided_diffusion.volume_files import INPUT_FLAGS, unit_options


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a DICOM series (folder or one of its files), or a .nii / .nii.gz / .npz file")
    parser.add_argument("output", help="the SUV volume to write (.nii or .nii.gz)")
    add_dict_to_argparser(parser, {"voxel_size": 0.0, **INPUT_FLAGS, "overwrite": False})
    return parser


def main() -> None:
    args = parse_args_with_config(create_argparser())
    output = Path(args.output)
    if not output.name.lower().endswith(NIFTI_SUFFIXES):
        raise UserError(f"{output}: the output must end in .nii or .nii.gz")
    record_path = output.with_name(volume_stem(output) + ".json")
    if not args.overwrite:
        for path in (output, record_path):
            if path.exists():
                raise UserError(f"{path} exists; pass --overwrite True to replace it")
    info = survey_volume(args.input, npz_key=args.npz_key or None, units=unit_options(args))
    shape = plan_grid(info.shape, info.affine, args.voxel_size).model_shape if args.voxel_size > 0 else info.shape
    check_output_folder(output.parent, "output folder", int(np.prod(shape)) * 4 + 2 * HEADER_ALLOWANCE_BYTES)
    volume = read_volume(args.input, npz_key=args.npz_key or None, units=unit_options(args))
    grid = plan_grid(volume.shape, volume.affine, args.voxel_size) if args.voxel_size > 0 else None
    header = volume.header if volume.fmt == "nifti" and grid is None else None
    suv = Volume(grid.to_model(volume.data) if grid else volume.data, grid.model_affine if grid else volume.affine,
                 "nifti", output, volume.name, header)
    record = {"input": str(volume.path), "output": str(output), "input_units": volume.source_units,
              "suv": volume.suv_record, "grid": grid.describe() if grid else None}

    def write(staged: dict[Path, Path]) -> None:
        write_volume(staged[output], suv.data, like=suv)
        atomic_write_text(staged[record_path], json.dumps(record, indent=2) + "\n")

    write_set([output, record_path], write, overwrite=args.overwrite)
    factor = (volume.suv_record or {}).get("factor", 1.0)
    print(f"{volume.path} ({volume.source_units}, SUV factor {factor}) -> {output} {suv.shape}")


if __name__ == "__main__":
    dist_util.run_main(main)
