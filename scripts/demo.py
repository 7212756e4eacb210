"""The whole method end to end on a simulated subject, with no data and no GPU.

    python scripts/demo.py            # what `make demo` runs

1. Simulates an unseen whole-body FDG subject (4 mm voxels, a 256 mm slab
   around the liver): full-dose and low-dose OSEM reconstructions (``--dose``,
   1/20 by default; any of the six levels 1/2 ... 1/100, e.g. ``make demo DOSE=1/100``).
2. Denoises the low dose with the committed demo model (``models/demo_all_doses``,
   trained on every dose) through the paper's launcher, ``test_DDPM_3d_mpi.sh``:
   2 MPI ranks on the CPU, 5 ancestral (DDPM) steps from a warm start chosen from
   the input's measured noise (``--start_timestep auto``, fitted on validation
   subjects by ``benchmarks/warm_start.py``), bf16, and a 2-sample ensemble.
3. Writes to ``results/demo/``: low_dose, full_dose, denoised and
   denoised_std (NIfTI), demo.png and metrics.json (PSNR/SSIM/NRMSE of the
   low dose, the best Gaussian filter and the denoised result against full dose).

The demo model was trained on simulated phantoms only; it is not for clinical data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write, atomic_write_text
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser
from guided_diffusion.pet.eval.figures import demo_figure
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.sim.cases import EvaluationCase, simulated_case
from guided_diffusion.pet.sim.doses import DEFAULT_DOSE_FRACTIONS, dose_label, parse_dose_fraction

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "models" / "demo_all_doses" / "model_ema.pt"
#: Seeds 0-999 are reserved for training data; the demo subject is unseen.
DEMO_SEED = 20261127
#: The six reduced dose levels the demo model was trained and evaluated on.
DEMO_DOSES = tuple(d for d in DEFAULT_DOSE_FRACTIONS if d < 1)


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default=str(REPO / "results" / "demo"))
    parser.add_argument("--model_path", default=str(DEMO_MODEL))
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="subject seed (>= 1000: not in the training set)")
    parser.add_argument("--dose", default="1/20", help="low-dose fraction, one of 1/2, 1/4, 1/10, 1/20, 1/50, 1/100")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--sampler", default="ddpm", help="ddpm, ddim or dpmpp2m")
    parser.add_argument("--steps", type=int, default=5, help="sampler steps between --start_timestep and 0")
    parser.add_argument("--precision", default="bf16", help="fp32, bf16 or fp16 (network arithmetic)")
    parser.add_argument("--start_timestep", default="auto",
                        help="warm start: begin at this step from the diffused low dose (0: from pure noise; "
                             "auto: from the input's measured noise)")
    parser.add_argument("--num_ensemble", type=int, default=2)
    parser.add_argument("--axial_extent_mm", type=float, default=256.0)
    return parser


def save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(volume.astype(np.float32), affine)
    image.header.set_xyzt_units("mm", "sec")
    atomic_write(path, lambda tmp: nib.save(image, tmp))


def simulate(args: argparse.Namespace, out_dir: Path) -> EvaluationCase:
    """Simulate the demo subject and write low_dose / full_dose NIfTI files."""
    case = simulated_case(args.seed, args.dose, voxel_size=4.0, axial_extent_mm=args.axial_extent_mm)
    save_nifti(out_dir / "low_dose.nii.gz", case.low, case.affine)
    save_nifti(out_dir / "full_dose.nii.gz", case.full, case.affine)
    return case


def denoise(args: argparse.Namespace, out_dir: Path) -> None:
    """Run the paper's launcher on low_dose.nii.gz; rename its outputs to denoised(_std).nii.gz."""
    work = out_dir / "run"
    env = {
        **os.environ, "NUM_GPUS": str(args.ranks), "MODEL_PATH": args.model_path,
        "BASE_SAMPLES": str(out_dir / "low_dose.nii.gz"), "SAVE_DIR": str(work),
        "MODEL_FLAGS": "--config demo", "DIFFUSION_FLAGS": "--diffusion_steps 1000 --noise_schedule linear",
        "SAMPLE_FLAGS": f"--sampler {args.sampler} --steps {args.steps} --start_timestep {args.start_timestep} "
                        f"--precision {args.precision} --channels_last True --batch_size 1 "
                        f"--num_ensemble {args.num_ensemble} --patch_axial 64 --patch_overlap 8 --seed 0",
        "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
    }
    command = ["bash", str(REPO / "test_DDPM_3d_mpi.sh"), "--overwrite", "True"]
    if subprocess.run(command, env=env, check=False).returncode != 0:
        raise UserError("denoising failed (see the messages above)")
    (work / "low_dose_denoised.nii.gz").replace(out_dir / "denoised.nii.gz")
    (work / "low_dose_denoised_std.nii.gz").replace(out_dir / "denoised_std.nii.gz")
    (work / "low_dose_denoised.json").replace(out_dir / "denoised.json")
    work.rmdir()


def main() -> None:
    args = create_argparser().parse_args()
    args.dose = parse_dose_fraction(args.dose, "--dose")
    if not any(abs(args.dose - d) < 1e-9 for d in DEMO_DOSES):
        raise UserError(f"--dose {dose_label(args.dose).replace('-', '/')}: the demo runs at "
                        f"{', '.join(dose_label(d).replace('-', '/') for d in DEMO_DOSES)}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not Path(args.model_path).is_file():
        raise UserError(f"{args.model_path}: demo model not found (see README: 'The demo model')")
    started = time.perf_counter()
    label = dose_label(args.dose).replace("-", "/")
    print(f"simulating subject {args.seed} ({label} dose, 4 mm voxels) ...", flush=True)
    case = simulate(args, out_dir)
    simulated = time.perf_counter()
    print(f"denoising {case.low.shape} with {args.ranks} ranks, {args.sampler} {args.steps} steps ({args.precision}), "
          f"{args.num_ensemble} samples ...", flush=True)
    denoise(args, out_dir)
    denoised_at = time.perf_counter()

    denoised = np.asarray(nib.load(out_dir / "denoised.nii.gz").dataobj, dtype=np.float32)
    std = np.asarray(nib.load(out_dir / "denoised_std.nii.gz").dataobj, dtype=np.float32)
    scores = score_against_full_dose(case, denoised)
    metrics = {
        "against_full_dose": scores["metrics"], "gaussian_fwhm_mm": scores["gaussian_fwhm_mm"],
        "lesions": scores["lesions"],
        "subject_seed": args.seed, "dose_fraction": args.dose, "shape": list(case.low.shape),
        "voxel_size_mm": list(case.voxel_size), "sampler": args.sampler, "steps": args.steps,
        "precision": args.precision, "start_timestep": args.start_timestep,
        "num_ensemble": args.num_ensemble, "ranks": args.ranks,
        "timings_s": {"simulate": simulated - started, "denoise": denoised_at - simulated},
        "note": "PSNR peak = full-dose max - min; psnr_body = inside the body only; "
                "gaussian = best FWHM chosen with the full dose (an oracle baseline).",
    }
    demo_figure(out_dir / "demo.png", case.low, denoised, case.full, std, case.voxel_size,
                titles=(f"Low dose ({label})", "Denoised (DDPM)", "Full dose"))
    metrics["timings_s"]["total"] = time.perf_counter() - started
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    table = metrics["against_full_dose"]
    for name, row in table.items():
        print(f"  {name:>16}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}  NRMSE {row['nrmse']:.4f}")
    print(f"done in {metrics['timings_s']['total']:.0f} s -> {out_dir}/ (demo.png, metrics.json, *.nii.gz)")


if __name__ == "__main__":
    dist_util.run_main(main)
