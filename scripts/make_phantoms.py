"""Write simulated low-dose / full-dose whole-body PET pairs from random phantoms.

Each subject is a random phantom (``guided_diffusion.pet.sim.phantom``, FDG
unless ``--tracer`` names another tracer) acquired and reconstructed at every
dose level (``guided_diffusion.pet.sim.simulation``), with the simulator's own
settings or those of a ``--scanner`` preset. Files in ``--out_dir``, all in SUV:

- ``subjectNNN_dose<label>.npz`` (npz/both): ``arr_0`` of shape ``(2, X, Y, Z)``
  = (low dose, full dose), float32, ``lesions`` (X, Y, Z; 0 outside lesions, ``i`` in
  lesion ``i``) and ``affine`` (4x4, RAS+ mm), one per dose < 1;
- ``subjectNNN_full.nii.gz``, ``subjectNNN_dose<label>.nii.gz`` and ``pairs.csv``
  (``low_dose,full_dose,dose_fraction,subject,clean,lesions``, paths relative to the CSV) (nifti/both);
- ``subjectNNN_truth.nii.gz``, ``_labels.nii.gz``, ``_lesions.nii.gz``, ``_clean.nii.gz`` and one
  ``manifest.json`` (seeds, settings, scanner and tracer, organ names, lesions, liver CV per dose).

``_clean`` is the noiseless reconstruction: the same phantom through the same
projector, OSEM and post-filter without Poisson noise. Score simulated results
against it (``scripts/evaluate.py --clean``): each low dose is a thinning of the
full dose, so their noise is nested and the full dose penalises a perfect
denoiser (README, "Nested noise"). It takes no random numbers: the other files
of a seed are the same with or without it.

Dose labels read ``1-20`` for 1/20. ``--crop_to_body`` crops every volume in-plane
to the body (the affines keep world coordinates; the manifest records the offset).
Example (one whole-body subject at 4 mm, all seven doses, about 30 s on 2 cores;
1.65 mm voxels take about 10 minutes and 8 GB)::

    python scripts/make_phantoms.py --out_dir data/phantoms --num_subjects 1
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write, atomic_write_text
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser
from guided_diffusion.pet.sim.cases import BODY_MARGIN, body_box, cropped_affine
from guided_diffusion.pet.sim.doses import dose_label, parse_dose_fractions
from guided_diffusion.pet.sim.phantom import LABEL_NAMES
from guided_diffusion.pet.sim.scanners import SCANNERS
from guided_diffusion.pet.sim.simulation import (
    DEFAULT_FWHM_MM,
    DEFAULT_ITERATIONS,
    DEFAULT_SUBSETS,
    DEFAULT_TRUES_PER_MM,
    SimulatedSubject,
    organ_cv,
    simulate_subject,
)
from guided_diffusion.pet.sim.tracers import TRACERS

DEFAULT_DOSE_LEVELS = "1,1/2,1/4,1/10,1/20,1/50,1/100"
FORMATS = ("npz", "nifti", "both")
#: Voxel size without --scanner (a preset brings its own clinical voxel).
DEFAULT_VOXEL_SIZE = 4.0


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", required=True, help="output folder (created if missing)")
    parser.add_argument("--num_subjects", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; subject i gets its own seed from (seed, i)")
    parser.add_argument("--scanner", choices=list(SCANNERS), default=None,
                        help="scanner preset; it sets the voxel size, resolution, sensitivity (counts), OSEM and "
                             "filter that are not given as flags (default: the simulator's own settings): "
                             + "; ".join(f"{k}: {v.description}" for k, v in SCANNERS.items()))
    parser.add_argument("--tracer", choices=list(TRACERS), default="fdg",
                        help="tracer preset: uptake of organs and lesions, counts, positron range: "
                             + "; ".join(f"{k}: {v.description}" for k, v in TRACERS.items()))
    parser.add_argument("--voxel_size", type=float, default=None,
                        help=f"isotropic voxel size in mm (default: the scanner's, {DEFAULT_VOXEL_SIZE:g} without "
                             "--scanner; 1.65 works, slower)")
    parser.add_argument("--dose_levels", default=DEFAULT_DOSE_LEVELS,
                        help="comma list of dose fractions, as 1/20 or 0.05; the full dose is always simulated")
    parser.add_argument("--counts", type=float, default=None,
                        help=f"full-dose trues per subject (default: {DEFAULT_TRUES_PER_MM:g} per mm of axial extent "
                             "times the scanner's sensitivity and the tracer's counts factor)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"OSEM iterations (default: the scanner's, {DEFAULT_ITERATIONS} without --scanner)")
    parser.add_argument("--subsets", type=int, default=None,
                        help=f"OSEM subsets, interleaved angles (default: the scanner's, {DEFAULT_SUBSETS} without "
                             "--scanner)")
    parser.add_argument("--fwhm_mm", type=float, default=None,
                        help=f"Gaussian post-filter FWHM in mm (default: the scanner's, {DEFAULT_FWHM_MM:g} without "
                             "--scanner)")
    parser.add_argument("--axial_extent_mm", type=float, default=None,
                        help="axial length in mm (default: head to thigh); a shorter slab is centred on the liver")
    parser.add_argument("--crop_to_body", action="store_true",
                        help=f"crop every volume in-plane to the body plus {BODY_MARGIN} voxels (less air to denoise)")
    parser.add_argument("--format", choices=FORMATS, default="npz", help="pair files to write")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    return parser


def subject_seed(seed: int, index: int) -> int:
    """The phantom-and-noise seed of subject ``index``, independent of ``--num_subjects``."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])


def output_names(index: int, doses: list[float], fmt: str) -> dict[str, str]:
    """File names of one subject, keyed by role (``truth``, ``full``, ``npz 1-20``, ``nifti 1-20`` ...)."""
    stem = f"subject{index:03d}"
    names = {role: f"{stem}_{role}.nii.gz" for role in ("truth", "labels", "lesions", "clean")}
    low = [d for d in doses if d < 1]
    if fmt in ("npz", "both"):
        names.update({f"npz {dose_label(d)}": f"{stem}_dose{dose_label(d)}.npz" for d in low})
    if fmt in ("nifti", "both"):
        names["full"] = f"{stem}_full.nii.gz"
        names.update({f"nifti {dose_label(d)}": f"{stem}_dose{dose_label(d)}.nii.gz" for d in low})
    return names


def check_args(args: argparse.Namespace) -> list[float]:
    if args.num_subjects < 1:
        raise UserError(f"--num_subjects must be >= 1, got {args.num_subjects}")
    if args.voxel_size is None and args.scanner is None:
        args.voxel_size = DEFAULT_VOXEL_SIZE
    if args.voxel_size is not None and not args.voxel_size > 0:
        raise UserError(f"--voxel_size must be positive, got {args.voxel_size}")
    if args.counts is not None and not args.counts > 0:
        raise UserError(f"--counts must be positive, got {args.counts}")
    if any(n is not None and n < 1 for n in (args.iterations, args.subsets)):
        raise UserError("--iterations and --subsets must be >= 1")
    if args.fwhm_mm is not None and args.fwhm_mm < 0:
        raise UserError(f"--fwhm_mm must be >= 0, got {args.fwhm_mm}")
    if args.axial_extent_mm is not None and not args.axial_extent_mm > 0:
        raise UserError(f"--axial_extent_mm must be positive, got {args.axial_extent_mm}")
    doses = parse_dose_fractions(args.dose_levels, "--dose_levels")
    if not args.overwrite:
        out_dir = Path(args.out_dir)
        shared = ["manifest.json"] + (["pairs.csv"] if args.format != "npz" else [])
        for i in range(args.num_subjects):
            for name in [*output_names(i, doses, args.format).values(), *shared]:
                if (out_dir / name).exists():
                    raise UserError(f"{out_dir / name} exists; pass --overwrite to replace it")
    return doses


def _save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray, overwrite: bool) -> None:
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    atomic_write(path, lambda tmp: nib.save(image, tmp), overwrite=overwrite)


def _save_pair(path: Path, low: np.ndarray, full: np.ndarray, lesions: np.ndarray, affine: np.ndarray,
               overwrite: bool) -> None:
    pair = np.stack([low, full]).astype(np.float32)
    atomic_write(path, lambda tmp: np.savez(tmp, arr_0=pair, lesions=lesions, affine=affine), overwrite=overwrite)


def write_subject(out_dir: Path, index: int, subject: SimulatedSubject, doses: list[float], fmt: str,
                  overwrite: bool, crop_to_body: bool = False) -> tuple[dict, list[dict]]:
    """Write one subject's files (cropped in-plane to the body if asked); return its manifest entry and its
    ``pairs.csv`` rows. ``subject`` holds its clean reconstruction (``simulate_subject(..., clean=True)``)."""
    phantom = subject.phantom
    box = body_box(phantom.activity) if crop_to_body else (slice(0, None), slice(0, None))
    affine = cropped_affine(phantom.affine, box)
    names = output_names(index, doses, fmt)
    _save_nifti(out_dir / names["truth"], phantom.activity[box], affine, overwrite)
    _save_nifti(out_dir / names["labels"], phantom.labels[box], affine, overwrite)
    _save_nifti(out_dir / names["lesions"], phantom.lesion_mask[box], affine, overwrite)
    _save_nifti(out_dir / names["clean"], subject.clean[box], affine, overwrite)
    full = subject.full_dose[box]
    if "full" in names:
        _save_nifti(out_dir / names["full"], full, affine, overwrite)
    rows = []
    for d in (d for d in doses if d < 1):
        label = dose_label(d)
        if f"npz {label}" in names:
            _save_pair(out_dir / names[f"npz {label}"], subject.reconstructions[d][box], full,
                       phantom.lesion_mask[box], affine, overwrite)
        if f"nifti {label}" in names:
            _save_nifti(out_dir / names[f"nifti {label}"], subject.reconstructions[d][box], affine, overwrite)
            rows.append({"low_dose": names[f"nifti {label}"], "full_dose": names["full"], "dose_fraction": d,
                         "subject": f"subject{index:03d}", "clean": names["clean"], "lesions": names["lesions"]})
    entry = {
        "subject": index,
        "seed": phantom.seed,
        "shape": list(full.shape),
        "affine": affine.tolist(),
        "crop_offset_voxels": [box[0].start, box[1].start, 0],
        "files": names,
        "simulation": subject.parameters,
        "liver_cv": {dose_label(d): _liver_cv(v, subject) for d, v in subject.reconstructions.items()}
        | {"clean": _liver_cv(subject.clean, subject)},
        "lesions": [lesion._asdict() for lesion in phantom.lesions],
    }
    return entry, rows


def _liver_cv(volume: np.ndarray, subject: SimulatedSubject) -> float | None:
    """Noise check recorded in the manifest; ``None`` when the slab or voxels leave no liver interior."""
    try:
        return organ_cv(volume, subject.phantom)
    except UserError:
        return None


def _pairs_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["low_dose", "full_dose", "dose_fraction", "subject", "clean",
                                                "lesions"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> None:
    doses = check_args(args)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "scripts/make_phantoms.py",
        "arguments": vars(args),
        "dose_levels": doses,
        "scanner": asdict(SCANNERS[args.scanner]) if args.scanner else None,
        "tracer": asdict(TRACERS[args.tracer]),
        "label_names": {str(k): v for k, v in LABEL_NAMES.items()},
        "axes": "X, Y, Z with Z axial; RAS+ affine in mm: +X patient right, +Y anterior, +Z head",
        "units": {"volumes": "SUV", "mu": "1/mm"},
        "subjects": [],
    }
    all_rows: list[dict] = []
    for index in tqdm(range(args.num_subjects), desc="subjects", unit="subject", file=sys.stderr):
        subject = simulate_subject(
            subject_seed(args.seed, index),
            voxel_size=args.voxel_size,
            dose_fractions=doses,
            counts=args.counts,
            iterations=args.iterations,
            subsets=args.subsets,
            fwhm_mm=args.fwhm_mm,
            axial_extent_mm=args.axial_extent_mm,
            scanner=args.scanner,
            tracer=args.tracer,
            clean=True,
        )
        entry, rows = write_subject(out_dir, index, subject, doses, args.format, args.overwrite, args.crop_to_body)
        manifest["subjects"].append(entry)
        all_rows.extend(rows)
        # Rewritten after every subject so that an interrupted run leaves a valid index of what exists.
        atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        if args.format != "npz":
            atomic_write_text(out_dir / "pairs.csv", _pairs_csv(all_rows))


def main(argv: list[str] | None = None) -> None:
    args = create_argparser().parse_args(argv)
    run(args)
    print(f"wrote {args.num_subjects} subject(s) to {args.out_dir}")


if __name__ == "__main__":
    dist_util.run_main(main)
