"""Network speed per precision / layout / compile choice, and image quality per sampler and step count.

The demo network on the CPU (both tables, as the README reports them):

    python benchmarks/speed.py --config demo --patch 64,88,72 --volume 88,70,64 --steps 10 --ensemble 2 \\
        --quality_precision bf16 --out_dir docs --overwrite True

The paper's network on a GPU (the speed table only; about 4 minutes on an H100,
as each compiled choice compiles for about 1.5 minutes; ``--precisions
fp32,bf16,fp16 --layouts contiguous,channels_last`` is the full grid, about 10):

    python benchmarks/speed.py --config paper --patch 96,192,288 --volume 192,288,520 --steps 10 \\
        --precisions fp32,bf16 --layouts contiguous --compile_choices False,True --repeats 3 \\
        --skip_quality True --out_dir results/speed_gpu

1. Speed: for each choice, one batch of ``--batch`` patches at the patch size
   the volume's plan uses (``--patch`` gives the axial size Z and caps the
   in-plane size) runs through
   :class:`~guided_diffusion.inference_network.InferenceNetwork` under
   ``torch.inference_mode``: the first call (with compilation, when chosen),
   ``--warmup`` calls in all, then the median of ``--repeats`` timed calls.
   Seconds per evaluation (one patch through the network) x evaluations per
   volume (patches x ``--steps`` x ``--ensemble``) gives the network's time per
   volume (the sampler's own arithmetic and the stitching are not counted).
   Peak memory: CUDA, the peak allocated by torch; CPU, the peak resident set
   of the whole process (weights and Python included) since the choice began
   (Linux: VmHWM, reset per choice; elsewhere the process's lifetime peak).
2. Quality (``benchmarks/sampler_quality.py``): PSNR / SSIM against full dose
   and against the full ancestral chain from the same warm start, per sampler
   and step count, with the demo model on simulated subjects.

Writes ``speed_<device>.csv``, ``sampler_quality_<device>.csv`` and
``speed_<device>.png`` (device: cpu or cuda) to ``--out_dir``, atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import format_table, parse_shape
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from sampler_quality import QUALITY_COLUMNS, add_quality_flags, sampler_quality, setup_from_args

from guided_diffusion import dist_util
from guided_diffusion.atomic import atomic_write
from guided_diffusion.denoise import PatchingOptions, make_plan
from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, args_to_dict, parse_args_with_config, str2bool
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.pet.eval.reports import write_csv
from guided_diffusion.precision import PRECISIONS
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = ("contiguous", "channels_last")
#: Columns of the speed table: (header, key, format).
SPEED_COLUMNS = [("precision", "precision", "{}"), ("layout", "layout", "{}"), ("compile", "compile", "{}"),
                 ("first call s", "first_call_s", "{:.2f}"), ("s/eval", "seconds_per_eval", "{:.4f}"),
                 ("evals/volume", "evals_per_volume", "{:d}"), ("s/volume", "seconds_per_volume", "{:.1f}"),
                 ("peak GiB", "peak_memory_gib", "{:.2f}"), ("speed-up", "speedup", "{:.2f}x")]


@dataclass(frozen=True)
class Choice:
    """One way of running the network: precision, memory layout, compilation."""

    precision: str
    layout: str
    compile: bool

    def label(self) -> str:
        return f"{self.precision} {self.layout} {'compiled' if self.compile else 'eager'}"


def create_argparser() -> argparse.ArgumentParser:
    defaults = {"patch": "96,192,288", "volume": "192,288,520", "batch": 1, "steps": 50, "ensemble": 1,
                "precisions": "", "layouts": ",".join(LAYOUTS), "compile_choices": "False", "warmup": 2,
                "repeats": 5, "out_dir": str(REPO / "results" / "speed"), "overwrite": False}
    defaults.update(sr_model_and_diffusion_defaults())
    # Presets state the model's grid; --patch and --volume are already counted in its voxels.
    defaults["model_voxel_size"] = 0.0
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, defaults)
    add_quality_flags(parser, REPO)
    return parser


def device_name(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and its torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads of {len(os.sched_getaffinity(0))} cores)"


def default_precisions(device: torch.device) -> list[str]:
    """fp32 and bf16, and fp16 on CUDA: on the CPU, autocast accepts fp16 but its 3D
    convolutions take a slow path (minutes per evaluation of the demo network)."""
    if device.type != "cuda":
        return ["fp32", "bf16"]
    return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]


def parse_choices(args: argparse.Namespace, device: torch.device) -> list[Choice]:
    """The choices named by --precisions, --layouts and --compile_choices, fp32 contiguous eager first."""
    precisions = args.precisions.split(",") if args.precisions else default_precisions(device)
    layouts = args.layouts.split(",")
    for flag, values, allowed in (("--precisions", precisions, PRECISIONS), ("--layouts", layouts, LAYOUTS)):
        if not values or not set(values) <= set(allowed):
            raise UserError(f"{flag} takes a comma-separated list of {', '.join(allowed)}, got {','.join(values)!r}")
    try:
        compiles = [str2bool(v) for v in args.compile_choices.split(",")]
    except argparse.ArgumentTypeError as err:
        raise UserError(f"--compile_choices: {err}")
    return [Choice(p, layout, c) for c in compiles for p in precisions for layout in layouts]


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA: allocator statistics; Linux CPU: the process's VmHWM)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak_memory`, GiB: CUDA, allocated by torch; CPU, the
    process's resident set (VmHWM; without /proc, ``ru_maxrss``: the lifetime peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**30  # bytes on macOS


def time_choice(model: torch.nn.Module, choice: Choice, x: torch.Tensor, warmup: int, repeats: int) -> dict:
    """Time ``model`` run as ``choice`` on the batch ``x`` (N, 1, Z, X, Y).

    Returns:
        first_call_s (the first call, compilation included), seconds_per_forward (median of
        ``repeats`` calls after ``warmup`` calls in all) and peak_memory_gib.
    """
    device = x.device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.to(memory_format=torch.contiguous_format)  # a previous channels-last choice converted the weights
    if choice.compile:
        torch.compiler.reset()
    network = InferenceNetwork(model, choice.precision, choice.layout == "channels_last", choice.compile)
    t = torch.full((x.shape[0],), 50, device=device)
    reset_peak_memory(device)
    times = []
    with torch.inference_mode():
        for _ in range(max(1, warmup) + repeats):
            synchronize()
            started = time.perf_counter()
            network(x, t, low_res=x)
            synchronize()
            times.append(time.perf_counter() - started)
    return {"first_call_s": times[0], "seconds_per_forward": statistics.median(times[-repeats:]),
            "peak_memory_gib": peak_memory_gib(device)}


def speed_table(args: argparse.Namespace, device: torch.device, choices: list[Choice],
                patch: tuple[int, int, int], volume: tuple[int, int, int]) -> list[dict]:
    """The speed table: one row per choice (keys of SPEED_COLUMNS, plus label and seconds_per_forward).

    ``patch`` (Z, X, Y) gives the axial patch size and caps the in-plane one; ``volume`` is (X, Y, Z).
    """
    flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    model, _ = sr_create_model_and_diffusion(**flags)
    model.to(device).eval()
    z, x, y = patch
    plan = make_plan(volume, PatchingOptions(patch_axial=z, max_patch_inplane=max(x, y)), model.spatial_divisor)
    px, py, pz = plan.patch_size
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters on {device_name(device)}, torch {torch.__version__}; "
          f"batch of {args.batch} patch(es) (Z,X,Y)=({pz},{px},{py}); volume (X,Y,Z)={volume}: {len(plan)} patches "
          f"x {args.steps} steps x {args.ensemble} member(s)", flush=True)
    batch = torch.randn(args.batch, 1, pz, px, py, device=device)
    evals = len(plan) * args.steps * args.ensemble
    rows = []
    for choice in choices:
        timing = time_choice(model, choice, batch, args.warmup, args.repeats)
        per_eval = timing["seconds_per_forward"] / args.batch
        rows.append({"label": choice.label(), "precision": choice.precision, "layout": choice.layout,
                     "compile": choice.compile, **timing, "seconds_per_eval": per_eval, "evals_per_volume": evals,
                     "seconds_per_volume": per_eval * evals, "speedup": rows[0]["seconds_per_eval"] / per_eval
                     if rows else 1.0})
        print(f"  {choice.label()}: {per_eval:.4f} s per evaluation (first call {timing['first_call_s']:.1f} s, "
              f"peak {timing['peak_memory_gib']:.2f} GiB)", flush=True)
    return rows


def figure(speed: list[dict], quality: list[dict], title: str) -> Figure:
    """Seconds per evaluation per choice; with a quality table, PSNR against full dose and
    against the full chain over the number of evaluations, one line per sampler."""
    fig = Figure(figsize=(17 if quality else 6, max(4.5, 0.45 * len(speed) + 1.5)), layout="constrained")
    axes = fig.subplots(1, 3 if quality else 1, squeeze=False)[0]
    labels = [row["label"] for row in speed]
    times = [row["seconds_per_eval"] * 1000 for row in speed]
    axes[0].barh(labels, times, color="tab:blue")
    axes[0].invert_yaxis()
    for i, row in enumerate(speed):
        axes[0].annotate(f" {row['speedup']:.2f}x", (times[i], i), va="center", fontsize=8)
    axes[0].set_xlabel("ms per network evaluation (one patch)")
    axes[0].set_title("Speed per choice (speed-up vs the first)")
    if quality:
        chain = next(row for row in quality if row["method"].endswith("(full chain)"))
        for method in dict.fromkeys(row["method"] for row in quality if row["evaluations"] > 0 and row is not chain):
            points = sorted((r["evaluations"], r["psnr"], r["psnr_vs_chain"]) for r in quality if r["method"] == method)
            evals, vs_full, vs_chain = zip(*points)
            axes[1].plot(evals, vs_full, "o-", label=method)
            axes[2].plot(evals, vs_chain, "o-", label=method)
        axes[1].plot(chain["evaluations"], chain["psnr"], "k*", markersize=12, label=chain["method"])
        axes[1].axhline(chain["psnr"] - 0.3, color="k", linestyle="--", linewidth=0.8, label="full chain - 0.3 dB")
        for row, style in zip((r for r in quality if r["evaluations"] == 0), (":", "-.")):
            axes[1].axhline(row["psnr"], color="gray", linestyle=style, linewidth=0.8, label=row["method"])
        axes[1].set_ylabel("PSNR against full dose (dB)")
        axes[2].set_ylabel("PSNR against the full chain (dB)")
        for ax in axes[1:]:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("network evaluations per subject")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        axes[1].set_title("Quality against evaluations (mean over subjects)")
    fig.suptitle(title, fontsize=9)
    return fig


def main() -> None:
    args = parse_args_with_config(create_argparser())
    device = dist_util.dev()
    out_dir = Path(args.out_dir)
    tag = device.type
    paths = {"speed": out_dir / f"speed_{tag}.csv", "quality": out_dir / f"sampler_quality_{tag}.csv",
             "figure": out_dir / f"speed_{tag}.png"}
    for path in paths.values():
        if path.exists() and not args.overwrite:
            raise UserError(f"{path} exists; pass --overwrite True to replace it")
    choices = parse_choices(args, device)
    patch, volume = parse_shape(args.patch, "--patch"), parse_shape(args.volume, "--volume")
    if args.repeats < 1 or args.batch < 1:
        raise UserError(f"--repeats and --batch must be at least 1, got {args.repeats} and {args.batch}")
    quality_setup = None if args.skip_quality else setup_from_args(args)
    if quality_setup is not None and not quality_setup.model_path.is_file():
        raise UserError(f"--quality_model {quality_setup.model_path}: no such file (or pass --skip_quality True)")

    speed = speed_table(args, device, choices, patch, volume)
    print(f"speed-up: against {speed[0]['label']}; peak memory: "
          + ("allocated by torch" if device.type == "cuda" else "resident set of the whole process"))
    print(format_table(speed, SPEED_COLUMNS), flush=True)
    quality = []
    if quality_setup is not None:
        print(f"quality: demo model, subjects {quality_setup.seeds} at dose {quality_setup.dose:g}, "
              f"{quality_setup.axial_extent_mm:g} mm slabs, warm start at t={quality_setup.start_timestep}, "
              f"K={quality_setup.num_ensemble}, {quality_setup.precision}", flush=True)
        quality = sampler_quality(quality_setup, device, log=lambda line: print(line, flush=True))
        print(format_table(quality, QUALITY_COLUMNS), flush=True)

    write_csv(paths["speed"], speed, [key for _, key, _ in SPEED_COLUMNS] + ["seconds_per_forward"], overwrite=True)
    if quality:
        write_csv(paths["quality"], quality, [key for _, key, _ in QUALITY_COLUMNS], overwrite=True)
    fig = figure(speed, quality, f"{args.config or 'flags'} network on {device_name(device)}, torch {torch.__version__}")
    atomic_write(paths["figure"], lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    print("wrote " + ", ".join(str(p) for key, p in paths.items() if key != "quality" or quality))


if __name__ == "__main__":
    dist_util.run_main(main)
