"""The paper's comparison, reproducible: simulate, train the 3D DDPM and the baselines on one budget, denoise, score.

    python benchmarks/compare.py --budget cpu \
        --extra_model ddpm3d_demo=models/demo_all_doses/model_ema.pt   # `make compare`; about 30 min on 2 idle cores
    python benchmarks/compare.py --budget gpu --ranks 1       # the same on one GPU, larger

Every stage is a call of the project's own scripts, so the comparison takes
the path users take (nothing here denoises or scores by itself):

1. ``scripts/make_phantoms.py``: training and validation subjects on the
   training scanner (``quadra``) with FDG at the six doses; test subjects, the
   same anatomies (one seed) on every scanner with FDG and on the training
   scanner with every other tracer, at the six doses.
2. ``scripts/train.py``: the 3D DDPM, the 3D UNet regression (the same backbone,
   L1), the 3D GAN (that UNet against a patch discriminator) and the 2D DDPM
   (``--dims 2``), each on the same data, steps, batch and crops; ``scripts/fit_gaussian.py``: the Gaussian filter's FWHM per dose,
   chosen on the validation subjects; ``benchmarks/warm_start.py --pairs``: each trained DDPM's warm-start scale,
   fitted on the validation subjects and written into its card, as the Gaussian its FWHM.
3. Uncertainty calibration of each trained DDPM: ``scripts/test.py`` denoises the
   validation subjects (the raw ensemble SD, ``--uncertainty_factor 1``), and
   ``benchmarks/calibrate_uncertainty.py`` fits the factor that makes mean +- 2 SD
   cover 95 % of their body voxels against the noiseless reconstruction and writes
   it into the card, so the test results' SD maps are calibrated.
4. ``scripts/test.py``: every test volume through every method; the DDPMs
   as an ensemble (``--num_ensemble``), with the warm start chosen from each
   input's measured noise (``--start_timestep auto``, the card's scale). ``--extra_model
   NAME=PATH`` adds a committed diffusion model (e.g. the demo model) as one
   more method, trained elsewhere on another budget; its card is used as it is.
5. ``scripts/evaluate.py``: every (case, method) against the noiseless
   reconstruction of its subject (``--cases`` column ``clean``; columns
   ``<metric>_clean``, read first) and against the full dose, as the paper;
   the raw ensemble standard deviation against the actual error, next to the targets of a
   calibrated K-member ensemble (:mod:`guided_diffusion.pet.eval.uncertainty`);
   ``benchmarks/calibrate_uncertainty.py --test_cases``: the coverage of +- 2 SD on the
   validation and test cases before and after calibration.

Stages whose outputs exist are skipped, so an interrupted run resumes.
``--out_dir`` receives metrics.csv, summary.md, figures/, uncertainty.csv,
warm_start_<ddpm>.csv, calibration_<ddpm>.csv, commands.sh (every command run,
in order, with its seeds) and report.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from calibrate_uncertainty import recorded_factor, sidecar_of

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser
from guided_diffusion.pet.eval.inputs import read_label_map
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.eval.uncertainty import (
    UNCERTAINTY_COLUMNS,
    calibrated_targets,
    uncertainty_statistics,
    with_targets,
)
from guided_diffusion.pet.io import read_volume
from guided_diffusion.pet.sim.doses import DEFAULT_DOSE_FRACTIONS, dose_label
from guided_diffusion.pet.sim.scanners import REFERENCE_SCANNER, SCANNERS
from guided_diffusion.pet.sim.tracers import TRACERS

REPO = Path(__file__).resolve().parent.parent
DOSES = tuple(d for d in DEFAULT_DOSE_FRACTIONS if d < 1)
#: Seeds of the three splits (make_phantoms.py derives one seed per subject from each).
TRAIN_SEED, VAL_SEED, TEST_SEED = 101, 202, 303


@dataclass(frozen=True)
class Budget:
    """Sizes of one comparison run; every trained method gets the same steps, batch and crops.

    Attributes:
        train_subjects / val_subjects / test_subjects: simulated subjects per split (test subjects: anatomies per
            test condition, at least :data:`MIN_TEST_SUBJECTS` where the numbers are read).
        axial_extent_mm: slab length of each subject (centred on the liver).
        voxel_size: mm, every scanner (the CPU budget cannot afford 1.65 mm).
        train_steps, batch_size, patch_size: training of each network (3D crops "X,Y,Z";
            the 2D DDPM gets the same number of voxels per batch as slices).
        config: network preset of every network.
        sample_steps, num_ensemble: the DDPM samplers' steps and ensemble size at test time.
        presets: simulate with the scanner and tracer presets (training on ``quadra`` FDG; tests on
            every scanner and tracer); False: the simulator's own settings, FDG, for every split
            (the data the demo models were trained on).
    """

    train_subjects: int
    val_subjects: int
    test_subjects: int
    axial_extent_mm: float
    voxel_size: float
    train_steps: int
    batch_size: int
    patch_size: tuple[int, int, int]
    config: str
    sample_steps: int
    num_ensemble: int
    presets: bool = True


#: Test anatomies (subject seeds) per test condition of every budget but ``smoke``: lesion rows of one anatomy are
#: the same few lesions in every condition.
MIN_TEST_SUBJECTS = 3

BUDGETS = {
    "cpu": Budget(train_subjects=8, val_subjects=2, test_subjects=3, axial_extent_mm=96.0, voxel_size=4.0,
                  train_steps=400, batch_size=2, patch_size=(32, 32, 16), config="tiny", sample_steps=5,
                  num_ensemble=2),
    # A few minutes, to check the pipeline end to end; its numbers mean nothing.
    "smoke": Budget(train_subjects=1, val_subjects=1, test_subjects=1, axial_extent_mm=48.0, voxel_size=4.0,
                    train_steps=4, batch_size=2, patch_size=(32, 32, 8), config="tiny", sample_steps=2,
                    num_ensemble=2),
    # No training: the committed demo models (--extra_model) on their own kind of data, at every dose.
    "demo": Budget(train_subjects=0, val_subjects=2, test_subjects=3, axial_extent_mm=128.0, voxel_size=4.0,
                   train_steps=0, batch_size=0, patch_size=(0, 0, 0), config="demo", sample_steps=5,
                   num_ensemble=2, presets=False),
    "gpu": Budget(train_subjects=24, val_subjects=4, test_subjects=4, axial_extent_mm=0.0, voxel_size=4.0,
                  train_steps=4000, batch_size=8, patch_size=(96, 96, 32), config="tiny", sample_steps=5,
                  num_ensemble=4),
}

#: The trained networks: method name -> extra train.py flags.
NETWORKS = {
    "ddpm3d": [],
    "unet3d": ["--model_kind", "regression", "--regression_loss", "l1"],
    "gan3d": ["--model_kind", "gan", "--regression_loss", "l1"],
    "ddpm2d": ["--dims", "2"],
}
#: Axial patch length (model voxels) of every denoising run; neighbouring patches overlap by 8.
PATCH_AXIAL = 32
#: The start steps each trained DDPM's warm-start fit tries on every validation pair (few, to keep it cheap).
WARM_START_STARTS = "10,25,50,100,200"


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--work_dir", default=str(REPO / "results" / "comparison"),
                        help="data, models and denoised volumes (large; not committed)")
    parser.add_argument("--out_dir", default=str(REPO / "docs" / "comparison"), help="tables, figures, commands")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of training and denoising")
    parser.add_argument("--extra_model", action="append", default=[],
                        help="NAME=PATH: a trained diffusion checkpoint to evaluate as one more method")
    return parser


class Runner:
    """Runs and records the commands of a comparison; each command's outputs decide whether it runs."""

    def __init__(self, ranks: int):
        self.ranks = ranks
        self.commands: list[str] = []
        self.seconds: dict[str, float] = {}

    def python(self, stage: str, script: str, *argv: str, mpi: bool = False, done: Path | None = None,
               mark: bool = False) -> None:
        """Run ``python script argv`` (under ``mpiexec -n ranks`` when ``mpi``) unless ``done`` exists.

        ``mark``: ``done`` is a marker this creates after success (for commands whose outputs
        appear one by one, so that an interrupted command runs again).
        """
        command = [sys.executable, str(REPO / script), *argv]
        if mpi and self.ranks > 1:
            command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(self.ranks), *command]
        shown = " ".join(shlex.quote(os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c) for c in command)
        self.commands.append(shown.replace(os.path.relpath(sys.executable, REPO), "python"))
        if done is not None and done.exists():
            print(f"[{stage}] done already: {done}", flush=True)
            return
        print(f"[{stage}] {self.commands[-1]}", flush=True)
        started = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if mpi else "2")}
        if subprocess.run(command, cwd=REPO, env=env, check=False).returncode != 0:
            raise UserError(f"[{stage}] failed: {self.commands[-1]}")
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
        if mark and done is not None:
            done.touch()


#: The scanner name of the simulator's own settings (no --scanner preset).
DEFAULT_SCANNER = "default"


def test_conditions(budget: Budget) -> list[tuple[str, str]]:
    """(scanner, tracer) pairs of the test set: every scanner with FDG, the training scanner with every tracer."""
    if not budget.presets:
        return [(DEFAULT_SCANNER, "fdg")]
    return [(s, "fdg") for s in SCANNERS] + [(REFERENCE_SCANNER, t) for t in TRACERS if t != "fdg"]


def training_scanner(budget: Budget) -> str:
    return REFERENCE_SCANNER if budget.presets else DEFAULT_SCANNER


def phantom_flags(budget: Budget, scanner: str, tracer: str, subjects: int, seed: int, doses: tuple[float, ...]):
    doses_text = ",".join(dose_label(d).replace("-", "/") for d in doses)
    flags = ["--num_subjects", str(subjects), "--seed", str(seed), "--voxel_size", f"{budget.voxel_size:g}",
             "--tracer", tracer, "--dose_levels", doses_text, "--format", "nifti", "--crop_to_body"]
    if scanner != DEFAULT_SCANNER:
        flags += ["--scanner", scanner]
    if budget.axial_extent_mm:
        flags += ["--axial_extent_mm", f"{budget.axial_extent_mm:g}"]
    return flags


def simulate(runner: Runner, budget: Budget, work: Path) -> None:
    """Training, validation (one folder per dose, for the Gaussian's fit) and test subjects."""
    if budget.train_steps:
        train = phantom_flags(budget, training_scanner(budget), "fdg", budget.train_subjects, TRAIN_SEED, DOSES)
        runner.python("simulate", "scripts/make_phantoms.py", "--out_dir", str(work / "data" / "train"), *train,
                      done=work / "data" / "train" / "SIMULATED", mark=True)
    for dose in DOSES:
        folder = work / "data" / "val" / dose_label(dose)
        val = phantom_flags(budget, training_scanner(budget), "fdg", budget.val_subjects, VAL_SEED, (dose,))
        runner.python("simulate", "scripts/make_phantoms.py", "--out_dir", str(folder), *val,
                      done=folder / "SIMULATED", mark=True)
    for scanner, tracer in test_conditions(budget):
        folder = work / "data" / "test" / f"{scanner}_{tracer}"
        test = phantom_flags(budget, scanner, tracer, budget.test_subjects, TEST_SEED, DOSES)
        runner.python("simulate", "scripts/make_phantoms.py", "--out_dir", str(folder), *test,
                      done=folder / "SIMULATED", mark=True)


def train(runner: Runner, budget: Budget, work: Path) -> dict[str, Path]:
    """Train the networks and fit the Gaussian per dose; returns method -> model path (Gaussians per dose)."""
    models = {}
    for name, flags in NETWORKS.items() if budget.train_steps else ():
        folder = work / "models" / name
        patch = budget.patch_size
        batch = budget.batch_size
        if "--dims" in flags:  # the same voxels per batch, as axial slices
            patch, batch = (patch[0], patch[1], 1), budget.batch_size * patch[2]
        final = folder / f"ema_0.999_{budget.train_steps:07d}.pt"
        runner.python(
            "train", "scripts/train.py", "--config", budget.config, "--data_dir", str(work / "data" / "train"),
            "--result_folder", str(folder), "--patch_size", ",".join(map(str, patch)), "--batch_size", str(batch),
            "--lr", "2e-4", "--ema_rate", "0.999", "--max_steps", str(budget.train_steps),
            "--save_interval", str(budget.train_steps), "--log_interval", "50", "--precision", "bf16",
            "--seed", "0", *flags, mpi=True, done=final)
        models[name] = final
    for dose in DOSES:
        fit = work / "models" / f"gaussian_{dose_label(dose)}.json"
        runner.python("train", "scripts/fit_gaussian.py", "--val_dir", str(work / "data" / "val" / dose_label(dose)),
                      "--out", str(fit), "--data_cache", str(work / "cache" / "gaussian"), done=fit)
    return models


def is_diffusion(name: str) -> bool:
    """Whether the method ``name`` is a DDPM (sampled as an ensemble from a warm start)."""
    return name.startswith("ddpm")


def fit_warm_starts(runner: Runner, budget: Budget, work: Path, out: Path, models: dict[str, Path]) -> None:
    """Fit each trained DDPM's warm-start scale on the validation subjects (every dose) into its card;
    the table of PSNR per start goes to ``out/warm_start_<name>.csv``."""
    for name, model in models.items():
        if is_diffusion(name):
            runner.python(
                "fit warm start", "benchmarks/warm_start.py", "--config", budget.config, "--model_path", str(model),
                "--pairs", str(work / "data" / "val"), "--model_voxel_size", f"{budget.voxel_size:g}",
                "--patch_axial", str(PATCH_AXIAL), "--starts", WARM_START_STARTS, "--steps", str(budget.sample_steps),
                "--out", str(out / f"warm_start_{name}.csv"), *NETWORKS[name],
                done=model.parent / "WARM_START_FITTED", mark=True)


def denoise_flags(name: str, budget: Budget) -> list[str]:
    """scripts/test.py flags of a method (after --model_path); a DDPM's warm-start scale comes from its card."""
    patching = ["--patch_axial", str(PATCH_AXIAL), "--patch_overlap", "8"]
    if is_diffusion(name):
        return ["--sampler", "ddpm", "--steps", str(budget.sample_steps), "--start_timestep", "auto",
                "--num_ensemble", str(budget.num_ensemble), "--precision", "bf16", *patching]
    return patching


def calibrate_uncertainty(runner: Runner, budget: Budget, work: Path, models: dict[str, Path]) -> Path:
    """Denoise the validation subjects with each trained DDPM (raw SD) and fit its SD factor into its card;
    returns the validation cases CSV (rows of every DDPM, ``method`` picks one)."""
    ddpms = [name for name in models if is_diffusion(name)]
    for name in ddpms:
        out = work / "denoised_val" / name
        runner.python("calibrate", "scripts/test.py", "--config", budget.config, "--model_path", str(models[name]),
                      "--base_samples", str(work / "data" / "val" / "*" / "subject*_dose1-*.nii.gz"),
                      "--save_dir", str(out), *denoise_flags(name, budget), "--uncertainty_factor", "1",
                      mpi=True, done=out / "DONE", mark=True)
    val_csv = work / "val_cases.csv"
    rows = validation_cases_table(budget, ddpms)
    if rows:
        write_csv(val_csv, rows, list(rows[0]), overwrite=True)
    for name in ddpms:
        runner.python("calibrate", "benchmarks/calibrate_uncertainty.py", "--model_path", str(models[name]),
                      "--cases", str(val_csv), "--method", name,
                      done=models[name].parent / "UNCERTAINTY_CALIBRATED", mark=True)
    return val_csv


def report_calibration(runner: Runner, val_csv: Path, cases_csv: Path, out: Path, models: dict[str, Path]) -> None:
    """Coverage of +- 2 SD before and after each trained DDPM's calibration, on the validation and the test cases
    (``out/calibration_<name>.csv``; the card is left as fitted)."""
    for name, model in models.items():
        if is_diffusion(name):
            runner.python("calibrate", "benchmarks/calibrate_uncertainty.py", "--model_path", str(model),
                          "--cases", str(val_csv), "--test_cases", str(cases_csv), "--method", name,
                          "--update_card", "False", "--out", str(out / f"calibration_{name}.csv"))


def denoise(runner: Runner, budget: Budget, work: Path, models: dict[str, Path]) -> list[str]:
    """Every test volume through every method; returns the method names."""
    for scanner, tracer in test_conditions(budget):
        condition = f"{scanner}_{tracer}"
        for name, model in models.items():
            out = work / "denoised" / name / condition
            runner.python("denoise", "scripts/test.py", "--config", budget.config, "--model_path", str(model),
                          "--base_samples",
                          str(work / "data" / "test" / condition / "subject*_dose1-*.nii.gz"), "--save_dir", str(out),
                          *denoise_flags(name, budget), mpi=True, done=out / "DONE", mark=True)
        for dose in DOSES:
            label = dose_label(dose)
            out = work / "denoised" / "gaussian" / condition
            runner.python("denoise", "scripts/test.py", "--model_path", str(work / "models" / f"gaussian_{label}.json"),
                          "--base_samples", str(work / "data" / "test" / condition / f"subject*_dose{label}.nii.gz"),
                          "--save_dir", str(out), done=out / f"DONE_{label}", mark=True)
    return ["low_dose", "gaussian", *models]


def case_row(case: str, data: Path, stem: str, method: str, result: Path) -> dict:
    """One row of a cases CSV: ``result`` of ``method`` for subject ``stem`` of the folder ``data``, with its
    references (full dose, noiseless reconstruction), labels and lesions."""
    return {"case": case, "reference": str(data / f"{stem}_full.nii.gz"), "clean": str(data / f"{stem}_clean.nii.gz"),
            "labels": str(data / f"{stem}_labels.nii.gz"), "lesions": str(data / f"{stem}_lesions.nii.gz"),
            "method": method, "result": str(result)}


def validation_cases_table(budget: Budget, methods: list[str]) -> list[dict]:
    """Rows of the validation cases CSV (paths relative to the work folder, where it lies) of the calibration:
    one per validation subject, dose and method, denoised into ``denoised_val/<method>/``."""
    rows = []
    for dose in DOSES:
        data = Path("data") / "val" / dose_label(dose)
        for subject in range(budget.val_subjects):
            low = f"subject{subject:03d}_dose{dose_label(dose)}"
            rows += [case_row(f"val_{low}", data, f"subject{subject:03d}", method,
                              Path("denoised_val") / method / f"{low}_denoised.nii.gz") | {"dose": dose}
                     for method in methods]
    return rows


def cases_table(work: Path, budget: Budget, methods: list[str]) -> list[dict]:
    """Rows of evaluate.py's --cases CSV (paths relative to ``work``, where the CSV lies): one per test
    subject, condition, dose and method."""
    rows = []
    for scanner, tracer in test_conditions(budget):
        condition = f"{scanner}_{tracer}"
        data = Path("data") / "test" / condition
        for subject in range(budget.test_subjects):
            stem = f"subject{subject:03d}"
            for dose in DOSES:
                low = f"{stem}_dose{dose_label(dose)}"
                for method in methods:
                    result = data / f"{low}.nii.gz" if method == "low_dose" else \
                        Path("denoised") / method / condition / f"{low}_denoised.nii.gz"
                    rows.append(case_row(f"{condition}_{low}", data, stem, method, result)
                                | {"scanner": scanner, "tracer": tracer, "dose": dose})
    return rows


def uncertainty_table(rows: list[dict], work: Path, num_members: int) -> list[dict]:
    """The raw ensemble SD (any calibration factor divided out) against the actual error of each DDPM result,
    against the full dose and the noiseless reconstruction (``clean``), with the ``<statistic>_target`` of a
    calibrated ensemble of ``num_members`` beside each statistic that has one."""
    targets = calibrated_targets(num_members)
    table = []
    for row in rows:
        std_path = row["result"].replace("_denoised.nii.gz", "_denoised_std.nii.gz")
        if not is_diffusion(row["method"]) or not (work / std_path).exists():
            continue
        factor = recorded_factor(sidecar_of(work / row["result"]))
        mean, sd = (read_volume(work / p).data for p in (row["result"], std_path))
        labels = read_label_map(work / row["labels"])[0]
        for reference_name, column in (("full_dose", "reference"), ("clean", "clean")):
            stats = uncertainty_statistics(mean, sd / factor, read_volume(work / row[column]).data, labels > 0)
            entry = {key: row[key] for key in ("case", "method", "scanner", "tracer", "dose")} | {
                "against": reference_name, "factor_divided_out": factor}
            for statistic, value in stats.items():
                entry[statistic] = value
                if statistic in targets:
                    entry[f"{statistic}_target"] = targets[statistic]
            table.append(entry)
    return table


def calibration_lines(out: Path, methods: list[str]) -> list[str]:
    """report.md's table of the pooled coverage of +- 2 SD before and after calibration, per method and set, from
    ``out/calibration_<method>.csv`` (methods without one are left out)."""
    lines = []
    for method in methods:
        path = out / f"calibration_{method}.csv"
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for fit_set in sorted({r["set"] for r in rows}):
            chosen = [r for r in rows if r["set"] == fit_set]
            voxels = np.array([float(r["voxels"]) for r in chosen])
            before, after = (np.array([float(r[c]) for r in chosen]) @ voxels / voxels.sum()
                             for c in ("coverage_2sd", "coverage_2sd_calibrated"))
            lines.append(f"| {method} | {fit_set} | {len(chosen)} | {before:.3f} | {after:.3f} |")
    if not lines:
        return []
    return ["", "## Calibrated SD: coverage of mean +- 2 SD over body voxels, against the noiseless reconstruction",
            "", "Fitted on the validation cases (`fit`) to cover 95 %; `calibration_<method>.csv` per case.", "",
            "| method | set | cases | before (c = 1) | after (fitted c) |", "| --- | --- | --- | --- | --- |", *lines]


def report(out: Path, budget: Budget, runner: Runner, uncertainty: list[dict], methods: list[str]) -> None:
    """report.md: the budget, stage timings, the uncertainty summary and the calibration's coverage;
    commands.sh: the command sequence."""
    invocation = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    atomic_write_text(out / "commands.sh", "#!/usr/bin/env bash\n# The commands run, in order, by:\n"
                      f"#   {invocation}\nset -euo pipefail\n" + "\n".join(runner.commands) + "\n")
    lines = ["# Comparison run", "", f"Budget: `{json.dumps(asdict(budget))}`", "",
             "| stage | seconds |", "| --- | --- |"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in runner.seconds.items()]
    if uncertainty:
        lines += ["", "## Raw ensemble SD against the actual error (mean over cases)", "",
                  "| method | against | " + " | ".join(UNCERTAINTY_COLUMNS) + " |",
                  "| --- | --- |" + " --- |" * len(UNCERTAINTY_COLUMNS)]
        groups = sorted({(r["method"], r["against"]) for r in uncertainty})
        for method, against in groups:
            chosen = [r for r in uncertainty if r["method"] == method and r["against"] == against]
            means = with_targets({c: float(np.nanmean([r[c] for r in chosen])) for c in UNCERTAINTY_COLUMNS},
                                 budget.num_ensemble)
            lines.append(f"| {method} | {against} | " + " | ".join(means.values()) + " |")
    lines += calibration_lines(out, methods)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def main() -> None:
    args = create_argparser().parse_args()
    budget = BUDGETS[args.budget]
    work, out = Path(args.work_dir), Path(args.out_dir)
    extra = {}
    for item in args.extra_model:
        name, _, path = item.partition("=")
        if not is_diffusion(name) or not Path(path).is_file():
            raise UserError(f"--extra_model {item}: give ddpm<NAME>=PATH of an existing diffusion checkpoint")
        extra[name] = Path(path)
    run_comparison(Runner(args.ranks), budget, work, out, extra)
    print(f"done -> {out}/ (summary.md, metrics.csv, figures/, uncertainty.csv, calibration_*.csv, report.md, "
          "commands.sh)")


def run_comparison(runner: Runner, budget: Budget, work: Path, out: Path, extra: dict[str, Path]) -> None:
    """Every stage, in order (see the module docstring); ``extra``: method -> diffusion checkpoint used as it is."""
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    simulate(runner, budget, work)
    trained = train(runner, budget, work)
    fit_warm_starts(runner, budget, work, out, trained)
    val_csv = calibrate_uncertainty(runner, budget, work, trained)
    methods = denoise(runner, budget, work, trained | extra)
    rows = cases_table(work, budget, methods)
    cases_csv = work / "cases.csv"
    write_csv(cases_csv, rows, list(rows[0]), overwrite=True)
    runner.python("evaluate", "scripts/evaluate.py", "--cases", str(cases_csv), "--out_dir", str(out),
                  "--overwrite", "True")
    report_calibration(runner, val_csv, cases_csv, out, trained)
    uncertainty = uncertainty_table(rows, work, budget.num_ensemble)
    if uncertainty:
        write_csv(out / "uncertainty.csv", uncertainty, list(uncertainty[0]), overwrite=True)
    report(out, budget, runner, uncertainty, methods)


if __name__ == "__main__":
    dist_util.run_main(main)
