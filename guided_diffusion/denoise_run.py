"""One denoising run over MPI: survey the inputs, build the model, denoise each volume, write results and sidecars.

``scripts/test.py`` wires its flags and ``load_data_for_worker`` into
:func:`run_denoising`; any program can do the same with its own reader. The
reader is called twice with the same arguments: once with ``header_only=True``
on rank 0 (the survey: names, shapes and geometry, and the outputs that would
be written, all checked before any sampling), then on every rank to read the
volumes one at a time. Every rank reads each volume once.

A volume's results are one set (:mod:`guided_diffusion.output_set`): the run
checks ``--save_dir`` before loading the model, claims every set before
sampling (a second run into the folder stops in one line), and publishes each
set whole. A volume that cannot be read, denoised or written is reported in one
line and the batch goes on; the run ends with status 1 and the list of them.
"""

from __future__ import annotations

import contextlib
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
from .output_set import HEADER_ALLOWANCE_BYTES, check_output_folder, claim, release, write_set
from .pet.intensity import check_plausible_suv
from .pet.io import Volume
from .pet.io.grid import GridMapping, plan_grid
from .pet.io.source import VolumeInfo
from .pet.io.volume import voxel_spacing
from .pet.patches import PatchPlan
from .volume_files import check_output_format, result_paths, units_written, write_result

#: ``reader(header_only)`` yields the run's volumes (:class:`Volume`), or with ``header_only`` what their
#: headers say (:class:`VolumeInfo`, or volumes), in the same order on every call and every rank. Without
#: ``header_only`` it may yield a :class:`UserError` for a volume it could not read: the batch goes on.
Reader = Callable[[bool], Iterator[Volume | VolumeInfo | UserError]]


@dataclass(frozen=True)
class SurveyEntry:
    """One input as the survey saw it: its name, its shape on the model grid (X, Y, Z) and the bytes its
    outputs will take at most (float32 voxels per output, plus headers)."""

    name: str
    model_shape: tuple[int, int, int]
    output_bytes: int


def outputs_for(volume: Volume | VolumeInfo, settings: RunSettings) -> dict[str, dict[str, Path]]:
    """Every path one input's results take: the mean, the standard deviation (K > 1), the sidecar."""
    flags = settings.flags
    return _outputs(volume, flags["save_dir"], flags["output_format"], settings.sampling.num_ensemble > 1)


def every_output_of(volume: Volume | VolumeInfo, save_dir: str | Path) -> list[Path]:
    """Every path any run could write for ``volume`` (each format, with an SD map): its old set's files."""
    return [path for paths in _outputs(volume, save_dir, "both", with_std=True).values() for path in paths.values()]


def _outputs(volume: Volume | VolumeInfo, save_dir: str | Path, output_format: str,
             with_std: bool) -> dict[str, dict[str, Path]]:
    outputs = {"denoised": result_paths(save_dir, volume, "denoised", output_format)}
    if with_std:
        outputs["std"] = result_paths(save_dir, volume, "denoised_std", output_format)
    outputs["sidecar"] = {"json": Path(save_dir) / f"{volume.name}_denoised.json"}
    return outputs


def set_name(name: str) -> str:
    """The name of one input's set of results (its claim and staging folder are named after it)."""
    return f"{name}_denoised"


def survey_inputs(read: Reader, settings: RunSettings) -> list[SurveyEntry]:
    """Check every input before any sampling (rank 0): unique names, output formats, no clobbering (no file of
    an earlier set, e.g. an SD map, unless --overwrite)."""
    survey: list[SurveyEntry] = []
    for volume in read(True):
        if any(volume.name == entry.name for entry in survey):
            raise UserError(f"two inputs are named {volume.name!r}; their outputs would collide")
        check_output_format(volume, settings.flags["output_format"])
        if not settings.flags["overwrite"]:
            existing = [path for path in every_output_of(volume, settings.flags["save_dir"]) if path.exists()]
            if existing:
                raise UserError(f"{existing[0]} exists; pass --overwrite True to replace it")
        grid = plan_grid(volume.shape, volume.affine, settings.model_voxel_size)
        outputs = outputs_for(volume, settings)
        data_outputs = sum(len(paths) for kind, paths in outputs.items() if kind != "sidecar")
        output_bytes = data_outputs * int(np.prod(volume.shape)) * 4 + (data_outputs + 1) * HEADER_ALLOWANCE_BYTES
        survey.append(SurveyEntry(volume.name, grid.model_shape, output_bytes))
    return survey


def claim_sets(survey: list[SurveyEntry], save_dir: str | Path) -> dict[str, Path]:
    """Claim every input's set of results in ``save_dir`` (rank 0); return the locks by input name.

    Raises:
        UserError: another run is writing one of them (nothing stays claimed).
    """
    locks: dict[str, Path] = {}
    try:
        for entry in survey:
            locks[entry.name] = claim(save_dir, set_name(entry.name))
    except BaseException:
        for lock in locks.values():
            release(lock)
        raise
    return locks


def provenance(settings: RunSettings, method: VolumeMethod, model_sha: str | None) -> dict:
    """What every sidecar of the run records about the model and the process."""
    return {"model_kind": settings.kind, "model_flags": settings.model_flags or None, "model_sha256": model_sha,
            "model_voxel_size_mm": settings.model_voxel_size,
            "model_voxel_size_from": settings.sources.get("model_voxel_size"), "settings_from": settings.sources,
            "warm_start_scale": settings.warm_start_scale, "uncertainty_factor": settings.uncertainty_factor,
            "suv_max": settings.suv_max, "data_scale": settings.data_scale, "seed": settings.flags["seed"],
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
                  description: str, record: Callable[[dict], dict]) -> dict[str, dict[str, Path]]:
    """Write one volume's set as one unit, on the input's grid and in the units asked for: the mean, the SD
    (K > 1; times the run's uncertainty factor) and the sidecar (``record(outputs)``), published together;
    return the paths.

    With --overwrite the earlier set is replaced whole: its files this set does not write go too.

    Raises:
        UserError: the result holds NaN or infinite voxels (naming the model), a file of the set appeared
            meanwhile (without --overwrite), or writing failed (e.g. a full disk); nothing of the new set remains.
    """
    for what, data in (("result", result.mean), ("SD map", result.std)):
        bad = 0 if data is None else int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            model = settings.model_path or f"the {settings.kind} model"
            raise UserError(f"{volume.name}: {bad} of {data.size} voxels of the {what} are NaN or infinite: the model "
                            f"{model} gave non-finite output (a diverged model?); nothing written")
    outputs = outputs_for(volume, settings)
    units = settings.flags["output_units"]
    targets = [path for paths in outputs.values() for path in paths.values()]  # the sidecar last
    others = [path for path in every_output_of(volume, settings.flags["save_dir"]) if path not in targets]

    def write(staged: dict[Path, Path]) -> None:
        def staged_paths(kind: str) -> dict[str, Path]:
            return {key: staged[path] for key, path in outputs[kind].items()}

        write_result(staged_paths("denoised"), grid.to_input(result.mean), volume, units, description,
                     series_offset=1000, overwrite=False)
        if result.std is not None:
            write_result(staged_paths("std"), grid.to_input(result.std * settings.uncertainty_factor), volume, units,
                         f"{description} uncertainty (ensemble SD)", series_offset=1001, overwrite=False)
        atomic_write_text(staged[outputs["sidecar"]["json"]], json.dumps(record(outputs), indent=2) + "\n",
                          overwrite=False)

    write_set(targets, write, settings.flags["overwrite"], others, name=set_name(volume.name))
    return outputs


def run_denoising(settings: RunSettings, read: Reader) -> None:
    """Denoise every input of ``read`` with the run's model kind; collective over all ranks; rank 0 writes.

    Raises:
        UserError: on every rank: before any sampling, for a bad flag, input or --save_dir; at the end, when
            volumes failed (each reported in one line as it failed), naming them.
    """
    is_root = dist_util.rank() == 0
    for note in settings.notes:
        if is_root:
            print(f"note: {note}", file=sys.stderr, flush=True)
    survey = dist_util.from_root(lambda: survey_inputs(read, settings))
    save_dir = settings.flags["save_dir"]
    dist_util.from_root(lambda: check_output_folder(save_dir, "--save_dir",
                                                    sum(entry.output_bytes for entry in survey)))
    method = settings.model_kind.prepare(settings)
    run_plan = dist_util.agree(lambda: method.plan_run([entry.model_shape for entry in survey],
                                                       [entry.name for entry in survey]))
    model_sha = dist_util.from_root(lambda: file_sha256(settings.model_path) if settings.model_path else None)
    details = method.details + ([f"model {model_sha[:8]}"] if model_sha else [])
    batch = _Batch(settings, method, f"{method.what} ({', '.join(details)})", provenance(settings, method, model_sha),
                   read(False), run_plan.rank_steps)

    made_save_dir = dist_util.from_root(lambda: not Path(save_dir).exists())
    locks = dist_util.from_root(lambda: claim_sets(survey, save_dir))
    failures: dict[str, UserError] = {}
    try:
        for entry, plan, offset in zip(survey, run_plan.plans, run_plan.offsets):
            try:
                line = batch.denoise(entry, plan, offset)
            except UserError as err:
                if not (getattr(err, "collective", False) or dist_util.world_size() == 1):
                    raise  # raised on one rank only: run_main ends the job
                failures[entry.name] = err
                if is_root and len(survey) > 1:
                    tqdm.write(f"error: {err}; going on with the next volume", file=sys.stderr)
                continue
            finally:
                if is_root:
                    release(locks.pop(entry.name))
            if is_root:
                batch.bar.write(line)
    finally:
        batch.close()
        if is_root:
            for lock in locks.values():
                release(lock)
            if made_save_dir:  # a run that wrote nothing leaves no folder behind
                with contextlib.suppress(OSError):
                    Path(save_dir).rmdir()
    if failures:
        dist_util.agree(partial(_report_failures, failures, len(survey)))


def _report_failures(failures: dict[str, UserError], num_volumes: int) -> None:
    """End the run: the one volume's own error, or how many volumes of the batch failed and which."""
    if num_volumes == 1:
        raise UserError(str(next(iter(failures.values()))))
    raise UserError(f"{len(failures)} of {num_volumes} volumes failed ({', '.join(failures)}; see the lines above); "
                    "the others were written")


@dataclass
class _Batch:
    """What every volume of a run shares: settings, method, description, provenance, the reader, the bar."""

    settings: RunSettings
    method: VolumeMethod
    description: str
    run_record: dict
    volumes: Iterator[Volume | UserError]
    rank_steps: int
    bar: tqdm | None = None

    def denoise(self, entry: SurveyEntry, plan: PatchPlan | None, offset: int) -> str:
        """Read, denoise and write one volume (collective; errors agreed on every rank); rank 0's line for it."""
        started = time.perf_counter()
        settings = self.settings
        volume = dist_util.agree(partial(_next_as_surveyed, self.volumes, entry))
        if self.bar is None:  # once the first volume is read, so a refused input leaves no bar behind
            is_root = dist_util.rank() == 0
            self.bar = tqdm(total=self.rank_steps, unit="patch-step", disable=not is_root or not self.rank_steps,
                            desc=f"rank 0 of {dist_util.world_size()}", leave=False)
            self.method.on_step = self.bar.update
        grid = plan_grid(volume.shape, volume.affine, settings.model_voxel_size)
        result, volume_record = dist_util.agree(partial(
            self.method.denoise, grid.to_model(volume.data), voxel_spacing(grid.model_affine), volume.name, offset))

        def record(outputs: dict) -> dict:
            result.timings["total_s"] = time.perf_counter() - started
            return sidecar(settings, volume, outputs, grid, plan, {**self.run_record, **volume_record},
                           result.timings)

        outputs = dist_util.from_root(partial(write_outputs, settings, volume, grid, result, self.description,
                                              record))
        if dist_util.rank() != 0:
            return ""
        written = ", ".join(str(p) for p in outputs["denoised"].values())
        how = "filtered" if plan is None else f"in {len(plan)} patches x {settings.sampling.num_ensemble} sample(s)"
        if "warm_start" in volume_record:
            how += f" from t={volume_record['warm_start']['start_timestep']}"
        return (f"{entry.name}: {volume.shape} -> model grid {grid.model_shape} {how}, "
                f"{result.timings['total_s']:.1f} s -> {written}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _next_as_surveyed(volumes: Iterator[Volume], entry: SurveyEntry) -> Volume:
    """The next volume, checked to be the one the survey saw (a reader must yield the same inputs every call)."""
    volume = next(volumes, None)
    if isinstance(volume, UserError):
        raise volume
    if volume is None or volume.name != entry.name:
        found = "nothing" if volume is None else repr(volume.name)
        raise UserError(f"the reader gave {found} where its survey gave {entry.name!r}: load_data_for_worker must "
                        "yield the same inputs, in the same order, with header_only True and False")
    if not isinstance(volume.data, np.ndarray):
        raise UserError(f"{volume.name}: load_data_for_worker must yield Volumes with their data when header_only "
                        "is False")
    check_plausible_suv(volume.data, volume.path)
    return volume
