"""Nested noise, measured: what scoring against the full dose costs the noiseless image of one simulated subject.

    python benchmarks/nested_noise.py                  # one whole-body subject at 4 mm, six doses; ~25 s on 2 cores
    python benchmarks/nested_noise.py --out nested_noise.csv

Simulates one subject (``--seed``) at every dose of ``--doses`` with its
noiseless reconstruction (:func:`~guided_diffusion.pet.sim.simulation.simulate_subject`,
``clean=True``) and prints, per dose, the covariance ratio
cov(low - clean, full - clean) / var(full - clean) and the paper's PSNR against
the full dose of the noiseless image and of the best prediction
``clean + dose (low - clean)``: their difference is the penalty the full dose
puts on a perfect denoiser, next to its value in theory, -10 log10(1 - dose)
(:mod:`guided_diffusion.pet.eval.nested_noise`). Statistics and PSNR are taken
in the body (labels > 0).
"""

from __future__ import annotations

import argparse
import time

from common import format_table

from guided_diffusion import dist_util
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser
from guided_diffusion.pet.eval.nested_noise import nested_noise
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.sim.doses import parse_dose_fractions
from guided_diffusion.pet.sim.simulation import simulate_subject

COLUMNS = [("dose", "dose", "{:.3g}"), ("cov ratio", "covariance_ratio", "{:.3f}"),
           ("PSNR clean", "psnr_clean", "{:.2f}"), ("PSNR best", "psnr_best", "{:.2f}"),
           ("penalty dB", "penalty_db", "{:.2f}"), ("theory dB", "expected_penalty_db", "{:.2f}")]


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=303, help="the subject's seed (phantom and noise)")
    parser.add_argument("--voxel_size", type=float, default=4.0, help="mm")
    parser.add_argument("--axial_extent_mm", type=float, default=None, help="slab length (default: head to thigh)")
    parser.add_argument("--doses", default="1/2,1/4,1/10,1/20,1/50,1/100", help="low-dose fractions, below 1")
    parser.add_argument("--out", default="", help="also write the table to this CSV")
    return parser


def measure(seed: int, doses: list[float], voxel_size: float, axial_extent_mm: float | None) -> list[dict]:
    """One row of :func:`~guided_diffusion.pet.eval.nested_noise.nested_noise` per dose, in the body."""
    subject = simulate_subject(seed, voxel_size=voxel_size, dose_fractions=doses, axial_extent_mm=axial_extent_mm,
                               clean=True)
    body = subject.labels > 0
    return [nested_noise(subject.reconstructions[d], subject.full_dose, subject.clean, d, mask=body) for d in doses]


def main() -> None:
    args = create_argparser().parse_args()
    doses = [d for d in parse_dose_fractions(args.doses, "--doses") if d < 1]
    if not doses:
        raise UserError(f"--doses {args.doses}: give at least one fraction below 1, e.g. 1/2,1/4,1/10")
    started = time.perf_counter()
    rows = measure(args.seed, doses, args.voxel_size, args.axial_extent_mm)
    print(format_table(rows, COLUMNS))
    print(f"seed {args.seed}, {args.voxel_size:g} mm voxels, {time.perf_counter() - started:.0f} s")
    if args.out:
        write_csv(args.out, rows, list(rows[0]), overwrite=True)


if __name__ == "__main__":
    dist_util.run_main(main)
