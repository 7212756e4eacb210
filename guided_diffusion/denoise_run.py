"""One denoising run over MPI: survey the inputs, build the model, denoise each volume, write results and sidecars.

``scripts/test.py`` wires its flags and ``load_data_for_worker`` into
:func:`run_denoising`; any program can do the same with its own reader. The
reader is called twice with the same arguments: once with ``header_only=True``
on rank 0 (the survey: names, shapes and geometry, and the outputs that would
be written, all checked before any sampling), then on every rank to read the
volumes one at a time. Every rank reads each volume once.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import dist_util
from .atomic import atomic_write_text
from .denoise import VolumeResult
from .denoise_settings import RunSettings
from .errors import UserError
from .model_card import file_sha256
from .model_kinds import VolumeMethod
from .pet.io import Volume
from .pet.io.grid import GridMapping, plan_grid
from .pet.io.source import VolumeInfo
from .pet.io.volume import voxel_spacing
from .pet.patches import PatchPlan
from .volume_files import check_output_format, result_paths, units_written, write_result

#: ``reader(header_only)`` yields the run's volumes (:class:`Volume`), or with ``header_only`` what their
#: headers say (:class:`VolumeInfo`, or volumes), in the same order on every call and every rank.
Reader = Callable[[bool], Iterator[Volume | VolumeInfo]]


@dataclass(frozen=True)
class SurveyEntry:
    """One input as the survey saw it: its name and its shape on the model grid (X, Y, Z)."""

    name: str
    model_shape: tuple[int, int, int]


def outputs_for(volume: Volume | VolumeInfo, settings: RunSettings) -> dict[str, dict[str, Path]]:
    """Every path one input's results take: the mean, the standard deviation (K > 1), the sidecar."""
    flags = settings.flags
    outputs = {"denoised": result_paths(flags["save_dir"], volume, "denoised", flags["output_format"])}
    if settings.sampling.num_ensemble > 1:
        outputs["std"] = result_paths(flags["save_dir"], volume, "denoised_std", flags["output_format"])
    outputs["sidecar"] = {"json": Path(flags["save_dir"]) / f"{volume.name}_denoised.json"}
    return outputs


def survey_inputs(read: Reader, settings: RunSettings) -> list[SurveyEntry]:
    """Check every input before any sampling (rank 0): unique names, output formats, no clobbering."""
    survey: list[SurveyEntry] = []
    for volume in read(True):
        if any(volume.name == entry.name for entry in survey):
            raise UserError(f"two inputs are named {volume.name!r}; their outputs would collide")
        check_output_format(volume, settings.flags["output_format"])
        if not settings.flags["overwrite"]:
            existing = [str(p) for paths in outputs_for(volume, settings).values() for p in paths.values()
                        if p.exists()]
            if existing:
                raise UserError(f"{existing[0]} exists; pass --overwrite True to replace it")
        grid = plan_grid(volume.shape, volume.affine, settings.model_voxel_size)
        survey.append(SurveyEntry(volume.name, grid.model_shape))
    return survey


def provenance(settings: RunSettings, method: VolumeMethod, model_sha: str | None) -> dict:
    """What every sidecar of the run records about the model and the process."""
    return {"model_kind": settings.kind, "model_flags": settings.model_flags or None, "model_sha256": model_sha,
            "model_voxel_size_mm": settings.model_voxel_size,
            "model_voxel_size_from": settings.sources.get("model_voxel_size"), "settings_from": settings.sources,
            "warm_start_scale": settings.warm_start_scale, "suv_max": settings.suv_max, "seed": settings.flags["seed"],
            "num_ranks": dist_util.world_size(), "device": str(dist_util.dev()), "sampler": method.record}


def sidecar(settings: RunSettings, volume: Volume, outputs: dict, grid: GridMapping, plan: PatchPlan | None,
            run_record: dict, timings: dict) -> dict:
    """The JSON record written beside each result."""
    return {
        "input": str(volume.path),
        "input_series_uid": getattr(volume.header, "series_uid", None),
        "outputs": {kind: {k: str(v) for k, v in paths.items()} for kind, paths in outputs.items() if kind != "sidecar"},
        "units": {"input": volume.source_units, "written": units_written(volume, settings.flags["output_units"]),
                  "suv": volume.suv_record},
        "model_grid": grid.describe(),
        "flags": dict(settings.flags),
        **run_record,
        "patch_plan": None if plan is None else {
            "shape": plan.shape, "padded_shape": plan.padded_shape, "patch_size": plan.patch_size,
            "overlap": plan.overlap, "num_patches": len(plan), "starts": plan.starts, "blend": settings.flags["blend"]},
        "timings_s": timings,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def write_outputs(settings: RunSettings, volume: Volume, grid: GridMapping, result: VolumeResult,
                  description: str) -> dict[str, dict[str, Path]]:
    """Write one volume's mean and SD (K > 1), on the input's grid and in the units asked for; return the paths."""
    outputs = outputs_for(volume, settings)
    units, overwrite = settings.flags["output_units"], settings.flags["overwrite"]
    write_result(outputs["denoised"], grid.to_input(result.mean), volume, units, description,
                 series_offset=1000, overwrite=overwrite)
    if result.std is not None:
        write_result(outputs["std"], grid.to_input(result.std), volume, units,
                     f"{description} uncertainty (ensemble SD)", series_offset=1001, overwrite=overwrite)
    return outputs


def run_denoising(settings: RunSettings, read: Reader) -> None:
    """Denoise every input of ``read`` with the run's model kind; collective over all ranks; rank 0 writes."""
    is_root = dist_util.rank() == 0
    for note in settings.notes:
        if is_root:
            print(f"note: {note}", file=sys.stderr, flush=True)
    survey = dist_util.from_root(lambda: survey_inputs(read, settings))
    method = settings.model_kind.prepare(settings)
    run_plan = dist_util.agree(lambda: method.plan_run([entry.model_shape for entry in survey]))
    model_sha = dist_util.from_root(lambda: file_sha256(settings.model_path) if settings.model_path else None)
    details = method.details + ([f"model {model_sha[:8]}"] if model_sha else [])
    description = f"{method.what} ({', '.join(details)})"
    run_record = provenance(settings, method, model_sha)

    bar = None
    volumes = read(False)
    for entry, plan, offset in zip(survey, run_plan.plans, run_plan.offsets):
        started = time.perf_counter()
        volume = dist_util.agree(partial(_next_as_surveyed, volumes, entry))
        if bar is None:  # once the first volume is read, so a refused input leaves no bar behind
            bar = tqdm(total=run_plan.rank_steps, unit="patch-step", disable=not is_root or not run_plan.rank_steps,
                       desc=f"rank 0 of {dist_util.world_size()}")
            method.on_step = bar.update
        grid = plan_grid(volume.shape, volume.affine, settings.model_voxel_size)
        result, volume_record = method.denoise(grid.to_model(volume.data), voxel_spacing(grid.model_affine),
                                               volume.name, offset)
        if not is_root:
            continue
        outputs = write_outputs(settings, volume, grid, result, description)
        result.timings["total_s"] = time.perf_counter() - started
        record = sidecar(settings, volume, outputs, grid, plan, {**run_record, **volume_record}, result.timings)
        atomic_write_text(outputs["sidecar"]["json"], json.dumps(record, indent=2) + "\n",
                          overwrite=settings.flags["overwrite"])
        written = ", ".join(str(p) for p in outputs["denoised"].values())
        how = "filtered" if plan is None else f"in {len(plan)} patches x {settings.sampling.num_ensemble} sample(s)"
        if "warm_start" in volume_record:
            how += f" from t={volume_record['warm_start']['start_timestep']}"
        bar.write(f"{entry.name}: {volume.shape} -> model grid {grid.model_shape} {how}, "
                  f"{result.timings['total_s']:.1f} s -> {written}")
    if bar is not None:
        bar.close()


def _next_as_surveyed(volumes: Iterator[Volume], entry: SurveyEntry) -> Volume:
    """The next volume, checked to be the one the survey saw (a reader must yield the same inputs every call)."""
    volume = next(volumes, None)
    if volume is None or volume.name != entry.name:
        found = "nothing" if volume is None else repr(volume.name)
        raise UserError(f"the reader gave {found} where its survey gave {entry.name!r}: load_data_for_worker must "
                        "yield the same inputs, in the same order, with header_only True and False")
    if not isinstance(volume.data, np.ndarray):
        raise UserError(f"{volume.name}: load_data_for_worker must yield Volumes with their data when header_only "
                        "is False")
    return volume
