"""Calibrate the ensemble SD on validation cases: one factor c so that mean +- 2 c SD covers 95 % of body voxels.

    # denoise validation subjects with an ensemble and the raw SD (factor 1), then fit:
    python scripts/test.py --model_path M --base_samples 'val/*_dose1-4.nii.gz' --save_dir val_denoised \
        --num_ensemble 4 --uncertainty_factor 1 ...
    python benchmarks/calibrate_uncertainty.py --model_path M --cases val_cases.csv \
        [--test_cases test_cases.csv] [--out calibration.csv]

``--cases`` (and ``--test_cases``) is a CSV in the layout of ``scripts/evaluate.py
--cases``, one row per denoised volume: ``case``, ``result`` (the ensemble mean
``<name>_denoised.nii.gz``), ``reference`` (the full dose) and optionally
``clean`` (the noiseless reconstruction of simulated subjects, ``scripts/make_phantoms.py``),
``labels`` (the body is ``labels > 0``, else the full dose above 0.1 SUV), ``std``
(default: ``<name>_denoised_std`` beside the result) and ``method`` (with
``--method NAME`` only its rows are read). Relative paths are relative to the
CSV's folder. The error is taken against ``clean`` where given, else against the
full dose. When the result's sidecar (``<name>_denoised.json``) records an
``uncertainty_factor``, the SD map is divided by it first, so maps written with a
calibration can be fitted again; a sidecar of other weights than ``--model_path`` is refused.

The factor is the 95th percentile (``--coverage``) over every body voxel of every
case of ``|mean - reference| / (2 SD)``. Prints the coverage before (c = 1) and
after, per set, next to the target of a calibrated K-member ensemble
(:func:`guided_diffusion.pet.eval.uncertainty.calibrated_targets`), and writes
the factor into the model's card (``uncertainty_calibration``, see
:mod:`guided_diffusion.model_card`; ``--update_card False`` leaves it alone), which
``scripts/test.py`` applies to the SD map it writes. A card that belongs to other
weights is refused before anything is read.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guided_diffusion import dist_util, storage
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser
from guided_diffusion.model_card import current_command, file_sha256, fit_record, read_own_card, update_card
from guided_diffusion.pet.eval.inputs import read_label_map, read_scored_volume
from guided_diffusion.pet.eval.regions import body_mask
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.pet.eval.uncertainty import (
    CALIBRATION_COVERAGE,
    INTERVAL_SDS,
    calibrated_targets,
    fit_factor,
    required_factors,
    uncertainty_statistics,
)
from guided_diffusion.pet.io.paths import volume_stem, volume_suffix

REQUIRED_COLUMNS = ("case", "result", "reference")


@dataclass(frozen=True)
class CaseErrors:
    """One case's body voxels: the factor each needs (:func:`required_factors`), and its table row."""

    required: np.ndarray
    row: dict


def read_cases(path: Path, method: str) -> list[dict[str, Path | str]]:
    """The rows of a cases CSV (of ``method`` when given), with paths resolved against the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read the cases CSV ({err})")
    missing = [c for c in REQUIRED_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: give case, result, reference "
                        "(and optionally clean, labels, std, method)")
    if method:
        rows = [row for row in rows if row.get("method") == method]
    if not rows:
        raise UserError(f"{path} lists no cases{f' of --method {method}' if method else ''}")
    cases = []
    for row in rows:
        case: dict[str, Path | str] = {"case": row["case"]}
        for column in ("result", "reference", "clean", "labels", "std"):
            if row.get(column):
                case[column] = path.parent / row[column]
        result = Path(case["result"])
        case.setdefault("std", result.with_name(f"{volume_stem(result)}_std{volume_suffix(result)}"))
        cases.append(case)
    return cases


def sidecar_of(result: Path) -> dict:
    """The JSON sidecar scripts/test.py wrote beside ``result`` (``{}`` without one)."""
    path = result.with_name(f"{volume_stem(result)}.json")
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: the result's sidecar is corrupt ({err}); denoise the case again")


def recorded_factor(sidecar: dict) -> float:
    """The factor scripts/test.py multiplied a result's SD map by, from its sidecar (1 without one)."""
    return float(sidecar.get("uncertainty_factor") or 1.0)


def read_sidecar(result: Path, model_sha: str) -> dict:
    """The sidecar beside ``result`` (``{}`` without one), checked to come from the weights of ``model_sha``."""
    sidecar = sidecar_of(result)
    path = result.with_name(f"{volume_stem(result)}.json")
    recorded = sidecar.get("model_sha256")
    if recorded and recorded != model_sha:
        raise UserError(f"{result} was denoised by other weights (sidecar {path}: sha256 {recorded}) than "
                        f"--model_path (sha256 {model_sha}); give the model that made it")
    return sidecar


def case_errors(case: dict, model_sha: str, fit_set: str) -> CaseErrors:
    """Read one case and measure its SD (the raw ensemble SD: any factor its sidecar records divided out)."""
    result = Path(case["result"])
    if not Path(case["std"]).is_file():
        raise UserError(f"{case['std']}: no SD map for {result}; denoise with scripts/test.py --num_ensemble 2 or "
                        "more, name it in a 'std' column, or pick the ensemble's rows with --method")
    sidecar = read_sidecar(result, model_sha)
    factor = recorded_factor(sidecar)
    mean, sd, full = (read_scored_volume(case[key]).data for key in ("result", "std", "reference"))
    against = "clean" if "clean" in case else "full_dose"
    reference = read_scored_volume(case["clean"]).data if "clean" in case else full
    labels = read_label_map(case["labels"])[0] if "labels" in case else None
    if len({a.shape for a in (mean, sd, full, reference)} | ({labels.shape} if labels is not None else set())) > 1:
        raise UserError(f"case {case['case']}: result, SD map, references and labels differ in shape; give "
                        "volumes on one grid")
    body, _ = body_mask(full, labels)
    sd = sd / factor
    stats = uncertainty_statistics(mean, sd, reference, body)
    members = (sidecar.get("flags") or {}).get("num_ensemble")
    row = {"set": fit_set, "case": case["case"], "against": against, "num_members": members,
           "voxels": int(body.sum()), "factor_in_sd_map": factor, **stats}
    return CaseErrors(required_factors(mean, sd, reference, body), row)


def coverage_line(name: str, errors: list[CaseErrors], factor: float) -> str:
    """One line: the set's pooled coverage of mean +- 2 SD, with the K target, and of mean +- 2 c SD."""
    required = np.concatenate([e.required for e in errors])
    members = {e.row["num_members"] for e in errors}
    target = ""
    if len(members) == 1 and isinstance(k := members.pop(), int) and k >= 2:
        target = f" (target for K = {k}: {calibrated_targets(k)['coverage_2sd']:.3f})"
    return (f"{name}: {len(errors)} case(s), {required.size} body voxels: coverage of mean +- {INTERVAL_SDS:g} SD "
            f"{np.mean(required <= 1):.3f}{target}; of mean +- {INTERVAL_SDS:g} x {factor:.3f} SD "
            f"{np.mean(required <= factor):.3f}")


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, {"model_path": "", "cases": "", "test_cases": "", "method": "",
                                   "coverage": CALIBRATION_COVERAGE, "out": "", "update_card": True})
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    if not args.model_path or not args.cases:
        raise UserError("--model_path and --cases are required: the model and a CSV of its denoised validation cases")
    if not 0 < args.coverage < 1:
        raise UserError(f"--coverage must lie between 0 and 1 (e.g. 0.95), got {args.coverage}")
    if not storage.is_file(args.model_path):
        raise UserError(f"--model_path {args.model_path}: no such weights file")
    if args.update_card:
        read_own_card(args.model_path)
    model_sha = file_sha256(args.model_path)
    sets = {"fit": read_cases(Path(args.cases), args.method)}
    if args.test_cases:
        sets["test"] = read_cases(Path(args.test_cases), args.method)
    errors = {name: [case_errors(case, model_sha, name) for case in cases] for name, cases in sets.items()}
    fitted = fit_factor(np.concatenate([e.required for e in errors["fit"]]), args.coverage)
    if not math.isfinite(fitted):
        raise UserError(f"the SD maps of {args.cases} are 0 where more than {1 - args.coverage:.0%} of the errors "
                        "are not: no factor covers them; check that they are ensemble SDs (--num_ensemble >= 2)")
    factor = math.ceil(fitted * 1000) / 1000  # rounded up, so the card's factor still covers --coverage
    rows = []
    for name, cases in errors.items():
        print(coverage_line(name, cases, factor))
        rows += [e.row | {"coverage_2sd_calibrated": float(np.mean(e.required <= factor))} for e in cases]
    if args.out:
        write_csv(args.out, rows, list(rows[0]), overwrite=True)
    print(f"factor c = {factor:.3f} (mean +- {INTERVAL_SDS:g} c SD covers {args.coverage:.0%} of the fit cases' "
          "body voxels)")
    if args.update_card:
        fitted_on = {"cases": args.cases, "method": args.method or None, "num_cases": len(errors["fit"]),
                     "against": sorted({e.row["against"] for e in errors["fit"]}), "coverage": args.coverage}
        record = fit_record(factor, key="factor", fitted_by=current_command(), fitted_on=fitted_on,
                            table=args.out or rows)
        update_card(args.model_path, uncertainty_calibration=record)
        print(f"wrote the factor into the model card of {args.model_path}")


if __name__ == "__main__":
    dist_util.run_main(main)
