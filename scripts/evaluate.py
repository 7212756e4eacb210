"""Score denoised PET volumes against their full-dose references: image metrics, organ and lesion quantitation.

One case, any number of results:

    python scripts/evaluate.py --reference full.nii.gz --results ddpm=denoised.nii.gz gauss=gauss.nii.gz \\
        --labels labels.nii.gz --lesions lesions.nii.gz --out_dir evaluation

Simulated data (scripts/make_phantoms.py) also have a noiseless reconstruction
of each subject: with ``--clean subjectNNN_clean.nii.gz`` every metric that
reads the reference is also scored against it, in columns ``<metric>_clean``
(psnr_clean, lesion_suvmax_error_pct_clean, ...), and summary.md leads with
those tables. Score simulated data against it: a low dose's noise is part of
the full dose's, so the full dose penalises a perfect denoiser (README, "Nested noise").

Many (case, method) pairs in one call, listed in a CSV with the columns case,
reference, method, result, optionally labels, lesions and clean, and any
grouping columns (scanner, tracer, dose, ...; carried into every output):

    python scripts/evaluate.py --cases cases.csv --out_dir evaluation

Relative paths in the CSV are relative to the CSV's folder. Volumes are read
as scripts/test.py reads them (NIfTI, npz, DICOM series; SUV, or Bq/ml with
--input_units). Label maps (organs, lesions) are NIfTI or npz integers on the
reference's grid. Writes metrics.csv (a row per case and method),
cases/<case>__<method>.csv (a row per organ and lesion), summary.md (mean ±
SD per method and per group) and, with a dose column, figures/<metric>_vs_dose.png.
Every refusal is one line on stderr, exit status 1, nothing written.
"""

from __future__ import annotations

import argparse
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write_text
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, parse_args_with_config
from guided_diffusion.output_set import check_output_folder
from guided_diffusion.pet.eval.case_reference import prepare_reference, with_reference
from guided_diffusion.pet.eval.case_scores import metric_columns, region_columns, score_result
from guided_diffusion.pet.eval.dose_figures import metric_vs_dose_figure
from guided_diffusion.pet.eval.inputs import (
    SIMULATOR_LABEL_NAMES,
    check_same_grid,
    liver_label,
    read_label_map,
    read_label_names,
    read_scored_volume,
)
from guided_diffusion.pet.eval.metrics import PAPER_SUV_CLIP
from guided_diffusion.pet.eval.regions import BODY_THRESHOLD_SUV, LIVER_MARGIN_MM
from guided_diffusion.pet.eval.registry import (
    CLEAN,
    FULL_DOSE,
    REFERENCES,
    VS_DOSE,
    Reference,
    figure_columns,
    summary_columns,
    summary_order,
)
from guided_diffusion.pet.eval.reports import summary_by_reference, summary_markdown, write_csv
from guided_diffusion.pet.io import Volume
from guided_diffusion.pet.io.paths import volume_stem
from guided_diffusion.volume_files import INPUT_FLAGS, unit_options

#: Columns every --cases CSV needs, the optional label-map columns and the optional further references' columns.
REQUIRED_COLUMNS = ("case", "reference", "method", "result")
MAP_COLUMNS = ("labels", "lesions")
FURTHER_REFERENCE_COLUMNS = tuple(r.name for r in REFERENCES if r != FULL_DOSE)
KNOWN_COLUMNS = REQUIRED_COLUMNS + MAP_COLUMNS + FURTHER_REFERENCE_COLUMNS

#: Names of methods and cases become file names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._+-]+")


@dataclass
class Job:
    """One result to score: its case, method, files and grouping values."""

    case: str
    method: str
    reference: Path
    result: Path
    labels: Path | None
    lesions: Path | None
    groups: dict[str, str] = field(default_factory=dict)
    source: str = ""
    stem: str = ""
    clean: Path | None = None


def create_argparser() -> argparse.ArgumentParser:
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default="", help="the full-dose volume of one case (SUV)")
    parser.add_argument("--results", nargs="+", default=[], metavar="NAME=PATH",
                        help="the results of that case, each named (the name is the method column)")
    parser.add_argument("--labels", default="", help="organ label map of the case (0 = outside the body)")
    parser.add_argument("--lesions", default="", help="lesion map of the case (ids, or a 0/1 mask split into lesions)")
    parser.add_argument("--clean", default="",
                        help="the noiseless reconstruction of a simulated case (subjectNNN_clean.nii.gz): every "
                             "metric is also scored against it (columns <metric>_clean)")
    parser.add_argument("--cases", default="", help="CSV of many cases (instead of --reference/--results)")
    parser.add_argument("--out_dir", default="", help="output folder (required)")
    add_dict_to_argparser(parser, {
        "case": "",
        "label_names": "",
        "liver_label": 0,
        "liver_margin_mm": LIVER_MARGIN_MM,
        "body_threshold": BODY_THRESHOLD_SUV,
        "suv_clip": PAPER_SUV_CLIP,
        **INPUT_FLAGS,
        "overwrite": False,
    })
    return parser


def main() -> None:
    args = parse_args_with_config(create_argparser())
    if not args.out_dir:
        raise UserError("--out_dir is required: the folder for metrics.csv, summary.md, cases/ and figures/")
    check_output_folder(args.out_dir, "--out_dir")
    for flag in ("liver_margin_mm", "suv_clip"):
        if not getattr(args, flag) > 0:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.cases and (args.reference or args.results or args.labels or args.lesions or args.clean or args.case):
        raise UserError("--cases lists every file; leave out --reference, --results, --labels, --lesions, --clean "
                        "and --case")
    jobs, group_keys = cases_from_csv(Path(args.cases)) if args.cases else single_case(args)
    check_paths(jobs)
    assign_stems(jobs, group_keys)
    references = [FULL_DOSE, *([CLEAN] if any(job.clean for job in jobs) else [])]
    out_dir = Path(args.out_dir)
    figure_metrics = figure_columns(VS_DOSE, references) if "dose" in group_keys else ()
    targets = [out_dir / "metrics.csv", out_dir / "summary.md", *(out_dir / "cases" / f"{j.stem}.csv" for j in jobs),
               *(out_dir / "figures" / f"{m}_{VS_DOSE}.png" for m in figure_metrics)]
    if not args.overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise UserError(f"{existing[0]} exists ({len(existing)} outputs exist); pass --overwrite True "
                            "or choose another --out_dir")
    names = read_label_names(args.label_names) if args.label_names else dict(SIMULATOR_LABEL_NAMES)
    liver = args.liver_label if args.liver_label > 0 else liver_label(names)
    units = unit_options(args)

    scored, regions = {}, {}
    for case_jobs in by_reference(jobs).values():
        first = case_jobs[0]
        reference = read_scored_volume(first.reference, npz_key=args.npz_key or None, units=units)
        maps = {key: read_map(getattr(first, key), reference, key) for key in MAP_COLUMNS}
        try:
            prepared = prepare_reference(reference.data, reference.voxel_size, maps["labels"], maps["lesions"], names,
                                         liver, args.suv_clip, args.liver_margin_mm, args.body_threshold)
        except ValueError as exc:
            raise UserError(f"{first.reference}: cannot score against this reference ({exc})") from exc
        further = {}
        if first.clean is not None:
            clean = read_scored_volume(first.clean, npz_key=args.npz_key or None, units=units)
            check_same_grid(reference, clean.path, clean.shape, clean.affine, "clean")
            further[CLEAN] = with_reference(prepared, clean.data)
        for job in case_jobs:
            result = read_scored_volume(job.result, npz_key=args.npz_key or None, units=units)
            check_same_grid(reference, result.path, result.shape, result.affine, "result")
            try:
                metrics, regions[job.stem] = score_result(prepared, result.data, further)
            except ValueError as exc:
                raise UserError(f"{job.result} against {job.reference}: {exc}") from exc
            scored[job.stem] = {"case": job.case, "method": job.method, **job.groups, **metrics,
                                "regions_csv": f"cases/{job.stem}.csv", "reference": str(job.reference),
                                "clean": str(job.clean or ""), "result": str(job.result)}
            print(f"{job.case} {job.method}: " + "; ".join(_headline(metrics, against) for against in
                                                           [FULL_DOSE, *further]), flush=True)

    rows = [scored[job.stem] for job in jobs]  # in the order given
    figures = write_outputs(out_dir, rows, regions, group_keys, references, figure_metrics,
                            summary_notes(rows, args, references), args.overwrite)
    print(f"wrote {out_dir}: metrics.csv ({len(rows)} rows), summary.md, {len(regions)} region tables in cases/"
          + (f", {figures} figures in figures/" if figures else ""))


def single_case(args: argparse.Namespace) -> tuple[list[Job], list[str]]:
    """The jobs of --reference / --results (no grouping keys)."""
    if not args.reference or not args.results:
        raise UserError("give --reference FULL and --results NAME=PATH [NAME=PATH ...] for one case, "
                        "or --cases CSV for many")
    reference = Path(args.reference)
    case = args.case or volume_stem(reference)
    check_name(case, "--case (default: the reference's file name)")
    jobs = []
    for item in args.results:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--results {item!r}: expected NAME=PATH, e.g. ddpm=denoised.nii.gz")
        check_name(name, f"--results {item!r}: the name")
        if any(job.method == name for job in jobs):
            raise UserError(f"--results: the name {name!r} is given twice; give each result its own name")
        jobs.append(Job(case, name, reference, Path(path), _optional(args.labels), _optional(args.lesions),
                        source=f"--results {name}", clean=_optional(args.clean)))
    return jobs, []


def cases_from_csv(path: Path) -> tuple[list[Job], list[str]]:
    """The jobs of a --cases CSV and its grouping keys (every column beyond the known ones, in order)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            records = [{(k or "").strip(): (v or "").strip() for k, v in record.items()} for record in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"--cases {path}: cannot read the CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserError(f"--cases {path}: missing column(s) {', '.join(missing)}; the columns are "
                        f"{', '.join(REQUIRED_COLUMNS)}, optionally {', '.join(MAP_COLUMNS + FURTHER_REFERENCE_COLUMNS)}"
                        " and grouping columns (scanner, tracer, dose, ...)")
    if len(set(columns)) != len(columns) or "" in columns:
        raise UserError(f"--cases {path}: column names must be distinct and non-empty, got {', '.join(columns)}")
    group_keys = [c for c in columns if c not in KNOWN_COLUMNS]
    reserved = set(metric_columns(REFERENCES)) | {"regions_csv"}
    if reserved & set(group_keys):
        raise UserError(f"--cases {path}: column(s) {', '.join(sorted(reserved & set(group_keys)))} are names of "
                        "output columns; rename them")
    if not records:
        raise UserError(f"--cases {path}: no rows; add one row per (case, method)")
    folder = path.parent
    jobs, seen = [], {}
    for line, record in enumerate(records, start=2):
        source = f"--cases {path} line {line}"
        for column in REQUIRED_COLUMNS:
            if not record.get(column):
                raise UserError(f"{source}: the {column} column is empty")
        check_name(record["case"], f"{source}: case")
        check_name(record["method"], f"{source}: method")
        job = Job(record["case"], record["method"], folder / record["reference"], folder / record["result"],
                  _optional(record.get("labels", ""), folder), _optional(record.get("lesions", ""), folder),
                  {key: record.get(key, "") for key in group_keys}, source, clean=_optional(record.get("clean", ""),
                                                                                            folder))
        key = (job.case, job.method, *job.groups.values())
        if key in seen:
            raise UserError(f"{source}: case {job.case!r}, method {job.method!r} and the same grouping values as "
                            f"line {seen[key]}; each (case, method) appears once per group")
        seen[key] = line
        jobs.append(job)
    return jobs, group_keys


def check_name(name: str, what: str) -> None:
    """Refuse a case or method name unusable in a file name."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{what} {name!r}: use letters, digits and . _ + - only (it becomes a file name)")


def check_paths(jobs: list[Job]) -> None:
    """Refuse a missing file before any volume is read (a long run fails at once, not at its end)."""
    for job in jobs:
        for what, path in (("reference", job.reference), ("result", job.result), ("labels", job.labels),
                           ("lesions", job.lesions), ("clean", job.clean)):
            if path is not None and not path.exists():
                raise UserError(f"{job.source}: {what} {path}: no such file or directory")


def assign_stems(jobs: list[Job], group_keys: list[str]) -> None:
    """File stems of the region tables: ``<case>__<method>``, plus the grouping values where that repeats."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[f"{job.case}__{job.method}"] = counts.get(f"{job.case}__{job.method}", 0) + 1
    taken: set[str] = set()
    for job in jobs:
        stem = f"{job.case}__{job.method}"
        if counts[stem] > 1:
            stem += "".join(f"__{key}-{re.sub(r'[^A-Za-z0-9._+-]', '_', job.groups[key])}" for key in group_keys)
        unique, n = stem, 1
        while unique.lower() in taken:  # values that differ only in characters replaced above, or in case
            n += 1
            unique = f"{stem}__{n}"
        taken.add(unique.lower())
        job.stem = unique


def by_reference(jobs: list[Job]) -> dict[tuple, list[Job]]:
    """Jobs by (reference, clean, labels, lesions), in order of first appearance: each reference is read once."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.reference, job.clean, job.labels, job.lesions), []).append(job)
    return groups


def read_map(path: Path | None, reference: Volume, what: str):
    """A label map on the reference's grid, or None."""
    if path is None:
        return None
    data, affine = read_label_map(path)
    check_same_grid(reference, path, data.shape, affine, what)
    return data


def write_outputs(out_dir: Path, rows: list[dict], regions: dict[str, list[dict]], group_keys: list[str],
                  references: list[Reference], figure_metrics: tuple[str, ...], notes: list[str],
                  overwrite: bool) -> int:
    """metrics.csv, the region tables, summary.md and the dose figures, each written atomically.

    ``references``: the full dose, and the noiseless reconstruction when some case has one; their
    columns, summary tables and figures.

    Returns:
        the number of figures written (a metric without values gets none).
    """
    (out_dir / "cases").mkdir(parents=True, exist_ok=True)
    for stem, region_rows in regions.items():
        write_csv(out_dir / "cases" / f"{stem}.csv", region_rows, region_columns(references), overwrite)
    files = [reference.name for reference in references]  # "reference" (the full dose's column), "clean"
    columns = ["case", "method", *group_keys, *metric_columns(references), "regions_csv", *files, "result"]
    write_csv(out_dir / "metrics.csv", rows, columns, overwrite)
    if references == [FULL_DOSE]:
        summary = summary_markdown(rows, group_keys, summary_columns(), notes)
    else:
        summary = summary_by_reference(rows, group_keys, {r.title: summary_columns(r) for r in
                                                          summary_order(references)}, notes)
    atomic_write_text(out_dir / "summary.md", summary, overwrite=overwrite)
    figures = set()
    if figure_metrics:
        (out_dir / "figures").mkdir(exist_ok=True)
        panels = [key for key in ("scanner", "tracer") if key in group_keys]
        for metric in figure_metrics:
            name = f"{metric}_{VS_DOSE}.png"
            if metric_vs_dose_figure(out_dir / "figures" / name, rows, metric, panels):
                figures.add(name)
    if overwrite:
        remove_stale_outputs(out_dir, {f"{stem}.csv" for stem in regions}, figures)
    return len(figures)


def remove_stale_outputs(out_dir: Path, tables: set[str], figures: set[str]) -> None:
    """With --overwrite, an earlier evaluation's region tables and figures that this one did not write go, so
    ``cases/`` and ``figures/`` describe ``metrics.csv`` and nothing else (a figure with no values is not written)."""
    for folder, kept, pattern in (("cases", tables, "*.csv"), ("figures", figures, f"*_{VS_DOSE}.png")):
        for path in (out_dir / folder).glob(pattern):
            if path.name not in kept:
                path.unlink()


def summary_notes(rows: list[dict], args: argparse.Namespace, references: list[Reference]) -> list[str]:
    """The lines under summary.md's title: what was scored and how each metric is defined."""
    cases, methods = len({row["case"] for row in rows}), len({row["method"] for row in rows})
    clean = [] if CLEAN not in references else [
        "",
        (f"Columns ending in {CLEAN.suffix} score against the noiseless reconstruction of the simulated subject "
         "(the same phantom, projector, OSEM and filter without Poisson noise); columns without a suffix against "
         "the full dose, as the paper. A simulated low dose is a thinning of the full dose, so its noise is part "
         "of the full dose's: against the full dose even the noiseless image loses about -10 log10(1 - dose) dB "
         "to the best achievable score (3.0 dB at 1/2, 1.25 at 1/4, 0.46 at 1/10), and keeping the input's "
         "noise is rewarded (README, \"Nested noise\"). Read the noiseless tables first."),
    ]
    return [
        f"{len(rows)} results: {cases} case(s), {methods} method(s); mean ± sample SD over the results of each group.",
        "",
        (f"psnr, psnr_body, ssim: the paper's (SUV clipped to [0, {args.suv_clip:g}]; PSNR peak = max SUV of the "
         "unclipped reference; psnr_body: MSE inside the body mask, see metrics.csv's body_mask). psnr_challenge, "
         "ssim_challenge, nrmse_challenge: the UDPET challenge's. nrmse: RMSE / RMS of the reference. liver_cv: "
         f"SD / mean in the liver more than {args.liver_margin_mm:g} mm from its edge and from lesions. lesion_*: "
         "means over the visible lesions (SUVmax >= 1.5 x the mean of a background shell in the noiseless "
         "reconstruction when given, else the full dose; cases/ lists every lesion with its mark), _small below "
         "1 ml, _large from 1 ml; errors in % = 100 (result - reference) / reference, _bias_ signed, _abs_ "
         "absolute; lesion_cr: contrast recovery against the background shell (1 = the reference's contrast)."),
        *clean,
    ]


def _headline(metrics: dict, reference: Reference) -> str:
    """PSNR, SSIM and NRMSE of a metrics row against ``reference``, for the log."""
    text = (f"PSNR {metrics['psnr' + reference.suffix]:.2f} dB, SSIM {metrics['ssim' + reference.suffix]:.4f}, "
            f"NRMSE {metrics['nrmse' + reference.suffix]:.4f}")
    return text if reference == FULL_DOSE else f"against {reference.name}: {text}"


def _optional(text: str, folder: Path | None = None) -> Path | None:
    if not text:
        return None
    return folder / text if folder is not None else Path(text)


if __name__ == "__main__":
    dist_util.run_main(main)
