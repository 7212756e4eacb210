"""The settings of one denoising run, resolved once: the command line, then the model's card, then the preset.

``scripts/test.py`` parses its flags; :func:`resolve_settings` turns them, the
checkpoint's stored training flags and the model card (``<model>.card.json``,
:mod:`guided_diffusion.model_card`) into one read-only :class:`RunSettings`.
Nothing changes the parsed flags afterwards; what was resolved, and where each
setting came from, is in the settings (and so in every sidecar).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .checkpoint import stored_flags
from .errors import UserError
from .model_card import read_own_card
from .model_kinds import MODEL_KINDS, ModelKind, get_model_kind
from .patch_jobs import SamplingOptions
from .pet.intensity import check_data_scale, check_suv_max
from .pet.training.gaussian_fit import is_fit_file, read_fit
from .precision import check_precision
from .samplers import get_sampler
from .volume_files import check_output_flags, given_on_command_line, last_given, unit_options
from .warm_start import AUTO, read_start_timestep

#: What ``--start_timestep auto`` does for a model without a fitted ``--warm_start_scale`` (``--unfitted_model``).
UNFITTED_CHOICES = ("refuse", "paper")
#: The paper's own process, run by the launcher for a model without a fitted scale: DDIM, 50 steps from pure noise.
PAPER_PROCESS = {"sampler": "ddim", "timestep_respacing": "ddim50", "start_timestep": 0}
#: Flags a network's training checkpoint (or card) records that say what the network is; the command line beats them.
KIND_FLAGS = ("model_kind", "dims", "one_pass_output")


@dataclass(frozen=True)
class RunSettings:
    """One denoising run's settings, resolved from every source.

    Attributes:
        flags: the parsed command line, read-only (the sidecar's ``flags``).
        model_path: the network weights or Gaussian fit ("" for ``--gaussian_fwhm_mm`` alone).
        kind: the model kind's name (:data:`guided_diffusion.model_kinds.MODEL_KINDS`).
        model_flags: the model and diffusion flags the network is built with (``model_kind``, ``dims`` and
            ``timestep_respacing`` resolved).
        sampling: how patches are sampled (sampler, eta, clipping, batch, seed, ensemble size, warm start).
        start_timestep: a step (0: pure noise) or ``"auto"`` (from each input's noise).
        warm_start_scale: the ratio of step noise to input noise of ``auto``; None when not fitted.
        gaussian_fwhm_mm: the Gaussian kind's FWHM (mm); 0 for networks.
        model_voxel_size: the model grid's voxel size (mm; 0: the input's grid).
        suv_max: the intensity clip (values above it saturate).
        data_scale: the SUV the model maps to 1 (model value = ``clip(SUV, 0, suv_max) / data_scale``).
        uncertainty_factor: what the written ensemble SD map is multiplied by (the card's calibration, or 1).
        sources: where each resolved setting came from ("--flag", "model card", ...).
        notes: lines for the user (one each), e.g. why the paper's process runs.
    """

    flags: Mapping[str, Any]
    model_path: str
    kind: str
    model_flags: dict
    sampling: SamplingOptions
    start_timestep: int | str
    warm_start_scale: float | None
    gaussian_fwhm_mm: float
    model_voxel_size: float
    suv_max: float
    data_scale: float
    uncertainty_factor: float = 1.0
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def model_kind(self) -> ModelKind:
        return get_model_kind(self.kind)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flag values that cannot work, naming the flag."""
    if not args.base_samples:
        raise UserError("--base_samples is required (a file, a directory or a glob)")
    if not (math.isfinite(args.gaussian_fwhm_mm) and args.gaussian_fwhm_mm >= 0):
        raise UserError(f"--gaussian_fwhm_mm must be a FWHM in mm (> 0; 0: off), got {args.gaussian_fwhm_mm}")
    for flag in ("batch_size", "num_ensemble", "patch_axial", "max_patch_inplane"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.patch_overlap < 0:
        raise UserError(f"--patch_overlap must be >= 0, got {args.patch_overlap}")
    if args.blend not in ("linear", "gaussian"):
        raise UserError(f"--blend must be 'linear' or 'gaussian', got {args.blend!r}")
    if args.sampler:
        get_sampler(args.sampler)
    if args.steps < 0 or args.steps == 1:
        raise UserError(f"--steps must be at least 2 (0: from --timestep_respacing), got {args.steps}")
    check_precision(args.precision)
    check_output_flags(args)
    unit_options(args)
    read_start_timestep(args.start_timestep)
    if not (math.isfinite(args.warm_start_scale) and args.warm_start_scale >= 0):
        raise UserError(f"--warm_start_scale must be a positive number (0: from the model card), "
                        f"got {args.warm_start_scale}")
    if not (math.isfinite(args.uncertainty_factor) and args.uncertainty_factor >= 0):
        raise UserError(f"--uncertainty_factor must be a positive number (0: from the model card), "
                        f"got {args.uncertainty_factor}")
    if args.unfitted_model not in UNFITTED_CHOICES:
        raise UserError(f"--unfitted_model must be one of {', '.join(UNFITTED_CHOICES)}, got {args.unfitted_model!r}")


@dataclass(frozen=True)
class ModelRecords:
    """What the ``--model_path`` file says about the model: its training flags (a checkpoint's or a Gaussian
    fit's; None for a plain state_dict) and its card (None without one). Read on rank 0."""

    stored: dict | None
    card: dict | None


def read_model_records(model_path: str) -> ModelRecords:
    """The records of ``model_path`` (none for an empty path)."""
    if not model_path:
        return ModelRecords(None, None)
    if is_fit_file(model_path):
        return ModelRecords(read_fit(model_path), None)
    return ModelRecords(stored_flags(model_path), read_own_card(model_path))


class _Resolver:
    """Takes each setting from the first source that has it: the command line, the checkpoint, the card, the preset."""

    def __init__(self, args: argparse.Namespace, argv: Sequence[str], records: ModelRecords):
        self.args, self.argv, self.records = args, argv, records
        self.sources: dict[str, str] = {}

    def take(self, name: str, *candidates: tuple[str, Any]) -> Any:
        """``--name`` if on the command line, else the first candidate (source, value) whose value is not None,
        else the flag's preset or default value."""
        if given_on_command_line(name, self.argv):
            return self._found(name, f"--{name}", getattr(self.args, name))
        for source, value in candidates:
            if value is not None:
                return self._found(name, source, value)
        return self._found(name, "--config preset or default", getattr(self.args, name))

    def _found(self, name: str, source: str, value: Any) -> Any:
        self.sources[name] = source
        return value


def _card(records: ModelRecords, *keys: str) -> Any:
    """The card's value at ``keys`` (nested), or None."""
    value: Any = records.card
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _predating_values(records: ModelRecords, kind: ModelKind) -> dict:
    """The kind's values of flags its models' records may predate (:attr:`ModelKind.predating_flags`), when the
    model file has records of its training flags (a checkpoint's, or its card's configuration); else none."""
    has_records = records.stored is not None or _card(records, "configuration") is not None
    return kind.predating_flags if has_records else {}


def _uncertainty_factor(resolve: _Resolver, records: ModelRecords, model_path: str) -> float:
    """--uncertainty_factor when given and not 0, else the card's ``uncertainty_calibration`` factor, else 1."""
    calibrated = _card(records, "uncertainty_calibration", "factor")
    if calibrated is not None and not (isinstance(calibrated, (int, float)) and math.isfinite(calibrated)
                                       and calibrated > 0):
        raise UserError(f"the model card of {model_path} holds the uncertainty factor {calibrated!r}, not a positive "
                        "number; fit it again with benchmarks/calibrate_uncertainty.py or give --uncertainty_factor")
    without = ("no calibration in the model card", 1.0)
    factor = resolve.take("uncertainty_factor", ("model card", calibrated), without)
    if factor == 0:  # --uncertainty_factor 0 given: as if not given
        source, factor = ("model card", calibrated) if calibrated is not None else without
        resolve.sources["uncertainty_factor"] = source
    return float(factor)


def choose_sampler(args: argparse.Namespace, argv: Sequence[str]) -> tuple[str, str]:
    """The sampler and timestep respacing from --sampler and --steps, or from the paper's --use_ddim /
    --timestep_respacing.

    ``--steps N`` becomes ``--timestep_respacing N`` (N steps evenly spaced over the
    process, both ends kept). When both of --steps / --timestep_respacing, or of
    --sampler / --use_ddim, are on the command line, the later one wins, as for a
    repeated flag (so arguments after the launcher's defaults override them).
    """
    paper_flag_last = last_given(("sampler", "use_ddim"), argv) == "use_ddim"
    sampler = args.sampler if args.sampler and not paper_flag_last else ("ddim" if args.use_ddim else "ddpm")
    respacing = args.timestep_respacing
    if args.steps and (not respacing or last_given(("steps", "timestep_respacing"), argv) == "steps"):
        respacing = str(args.steps)
    return sampler, respacing


def resolve_settings(args: argparse.Namespace, argv: Sequence[str], records: ModelRecords,
                     model_flag_names: Sequence[str]) -> RunSettings:
    """The run's :class:`RunSettings` from the parsed flags (``argv`` says which were given) and the model's records.

    The Gaussian filter denoises when --gaussian_fwhm_mm is given (it beats a fit
    file's FWHM) or --model_path is a fit file. For a network, --model_kind,
    --dims and --one_pass_output come from the command line, then the checkpoint's
    training flags, then its card, then the preset (--one_pass_output: "direct" when
    the checkpoint's or card's flags predate it); --model_voxel_size likewise; --suv_max and
    --warm_start_scale from the command line, then the card, then the preset; --uncertainty_factor from the
    command line, then the card's calibration, then 1 (0 asks for the card's); --data_scale from the
    command line, then the checkpoint's training flags, then the card, then the resolved --suv_max.
    A deterministic kind refuses --num_ensemble > 1; ``--start_timestep auto``
    needs a fitted scale (or ``--unfitted_model paper``: the paper's process).
    """
    stored = records.stored or {}
    resolve = _Resolver(args, argv, records)
    notes = []
    claimed = next((kind for kind in MODEL_KINDS.values() if kind.selected_by(args, stored)), None)
    if claimed is not None:
        if args.model_path and not is_fit_file(args.model_path):
            raise UserError(f"--gaussian_fwhm_mm {args.gaussian_fwhm_mm:g} and the network --model_path "
                            f"{args.model_path}: give one")
        kind, model_flags = claimed.name, {}
        fwhm = resolve.take("gaussian_fwhm_mm", ("the Gaussian fit file", stored.get("gaussian_fwhm_mm")))
    else:
        def recorded(flag: str, predating: Any = None) -> Any:
            return resolve.take(flag, ("the model file's training flags", stored.get(flag)),
                                ("model card", _card(records, "configuration", flag)),
                                ("the model file's training flags, which predate it", predating))

        kind = get_model_kind(recorded("model_kind")).name
        predating = _predating_values(records, get_model_kind(kind))
        kind_flags = {"model_kind": kind} | {flag: recorded(flag, predating.get(flag)) for flag in KIND_FLAGS[1:]}
        fwhm = 0.0
        model_flags = {name: getattr(args, name) for name in model_flag_names} | kind_flags
    model_kind = get_model_kind(kind)
    if model_kind.needs_model_file and not (args.model_path or claimed):
        raise UserError("--model_path is required (a state_dict, a training checkpoint or a Gaussian fit .json; "
                        "or give --gaussian_fwhm_mm)")
    if model_kind.deterministic and args.num_ensemble > 1:
        raise UserError(f"--num_ensemble {args.num_ensemble}: a {kind} model is deterministic, so every "
                        "member would be the same; use --num_ensemble 1")
    voxel_size = float(resolve.take("model_voxel_size",
                                    ("the model file's training flags", stored.get("model_voxel_size")),
                                    ("model card", _card(records, "model_voxel_size_mm"))))
    suv_max = float(resolve.take("suv_max", ("model card", _card(records, "intensity", "suv_max"))))
    check_suv_max(suv_max)
    # A model that records no data scale (the paper's, those trained before --data_scale) divides by its clip.
    data_scale = check_data_scale(resolve.take(
        "data_scale", ("the model file's training flags", stored.get("data_scale")),
        ("model card", _card(records, "intensity", "data_scale")), ("--suv_max", suv_max)) or suv_max)
    uncertainty_factor = _uncertainty_factor(resolve, records, args.model_path)
    sampler, respacing = choose_sampler(args, argv)
    start = read_start_timestep(args.start_timestep)
    scale = resolve.take("warm_start_scale", ("model card", _card(records, "warm_start_scale", "value"))) or None
    if start == AUTO and model_kind.warm_starts and scale is None:
        if args.unfitted_model != "paper":
            raise UserError(f"--start_timestep auto needs the model's --warm_start_scale: {args.model_path} has no "
                            "model card with a fitted one; fit it with benchmarks/warm_start.py --pairs DIR, or give "
                            "--warm_start_scale, or --start_timestep 0")
        sampler, respacing, start = PAPER_PROCESS["sampler"], PAPER_PROCESS["timestep_respacing"], 0
        notes.append(f"{args.model_path} has no fitted --warm_start_scale (no model card with one): running the "
                     "paper's process (DDIM, 50 steps from pure noise); fit a scale with benchmarks/warm_start.py "
                     "--pairs DIR for the faster warm start")
    if model_flags:
        model_flags["timestep_respacing"] = respacing
    # Estimates are clipped where the data are: at --suv_max, in model units.
    sampling = SamplingOptions(sampler=sampler, eta=args.ddim_eta, clip_denoised=args.clip_denoised,
                               clip_max=max(1.0, suv_max / data_scale),
                               batch_size=args.batch_size, seed=args.seed, num_ensemble=args.num_ensemble,
                               warm_start=start == AUTO or start > 0)
    return RunSettings(
        flags=MappingProxyType(dict(vars(args))), model_path=args.model_path, kind=kind, model_flags=model_flags,
        sampling=sampling, start_timestep=start, warm_start_scale=scale, gaussian_fwhm_mm=float(fwhm),
        model_voxel_size=voxel_size, suv_max=suv_max, data_scale=data_scale,
        uncertainty_factor=uncertainty_factor, sources=resolve.sources,
        notes=tuple(notes))
