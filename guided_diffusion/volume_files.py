"""Volume files for the scripts: the input and output flags, and writing results.

``scripts/test.py`` and ``scripts/convert_to_suv.py`` share these, so a scan
is read, converted to SUV and written back the same way by both.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import UserError
from .pet.io import UnitOptions, Volume, output_path, write_volume
from .pet.io.registry import volume_format

#: Flags that say how inputs are read (units of NIfTI files, SUV timing, npz arrays).
INPUT_FLAGS = {
    "npz_key": "",
    "input_units": "auto",
    "weight_kg": 0.0,
    "injected_mbq": 0.0,
    "injection_time": "",
    "scan_time": "",
    "half_life_s": 0.0,
    "allow_uncorrected": False,
}

#: Flags that say how results are written.
OUTPUT_FLAGS = {
    "output_units": "suv",
    "output_format": "nifti",
    "overwrite": False,
}

OUTPUT_UNITS = ("suv", "input")
OUTPUT_FORMATS = ("nifti", "dicom", "both")


def unit_options(args: argparse.Namespace) -> UnitOptions:
    """The reader's unit options from the :data:`INPUT_FLAGS` of ``args``."""
    return UnitOptions(input_units=args.input_units, weight_kg=args.weight_kg, injected_mbq=args.injected_mbq,
                       injection_time=args.injection_time, scan_time=args.scan_time, half_life_s=args.half_life_s,
                       allow_uncorrected=args.allow_uncorrected)


def check_output_flags(args: argparse.Namespace) -> None:
    """Refuse unknown ``--output_units`` / ``--output_format`` values."""
    if args.output_units not in OUTPUT_UNITS:
        raise UserError(f"--output_units must be one of {', '.join(OUTPUT_UNITS)}, got {args.output_units!r}")
    if args.output_format not in OUTPUT_FORMATS:
        raise UserError(f"--output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {args.output_format!r}")


def last_given(flags: Sequence[str], argv: Sequence[str]) -> str | None:
    """Which of ``flags`` (names without ``--``; ``--flag`` or ``--flag=value``) ``argv`` gives last, or None:
    as with a repeated flag, the last wins."""
    positions = {flag: i for i, arg in enumerate(argv) for flag in flags
                 if arg == f"--{flag}" or arg.startswith(f"--{flag}=")}
    return max(positions, key=positions.get) if positions else None


def given_on_command_line(flag: str, argv: Sequence[str]) -> bool:
    """Whether ``--flag`` (or ``--flag=value``) is among ``argv``: a value set there beats any stored one."""
    return last_given((flag,), argv) is not None


def result_paths(save_dir: str | Path, volume: Volume, suffix: str, output_format: str) -> dict[str, Path]:
    """Where one result of ``volume`` goes: ``{"file": ...}`` and/or ``{"dicom": <folder>}``.

    ``file`` is ``<name>_<suffix>`` in the input's file format (NIfTI for DICOM
    input); ``dicom`` is the series folder ``<name>_<suffix>_dcm`` (inputs whose
    format writes series, i.e. DICOM, only).
    """
    paths = {}
    writes_series = volume_format(volume.fmt).write_series is not None
    if output_format in ("nifti", "both") or not writes_series:
        paths["file"] = output_path(save_dir, volume, suffix)
    if output_format in ("dicom", "both") and writes_series:
        paths["dicom"] = Path(save_dir) / f"{volume.name}_{suffix}_dcm"
    return paths


def check_output_format(volume: Volume, output_format: str) -> None:
    """DICOM results need a DICOM source: refuse ``--output_format dicom`` for other inputs."""
    if output_format == "dicom" and volume_format(volume.fmt).write_series is None:
        raise UserError(f"{volume.path}: --output_format dicom needs DICOM input; this is {volume.fmt} "
                        "(use --output_format nifti or both)")


def in_output_units(suv: np.ndarray, volume: Volume, output_units: str) -> np.ndarray:
    """(X, Y, Z) SUV -> the units asked for: SUV, or the input's stored units (``suv / to_suv``, per Z slice)."""
    if output_units == "suv":
        return suv
    return (suv / np.asarray(volume.to_suv, dtype=np.float64)).astype(np.float32)


def write_result(paths: dict[str, Path], suv: np.ndarray, volume: Volume, output_units: str, description: str,
                 series_offset: int, overwrite: bool) -> None:
    """Write one (X, Y, Z) SUV result of ``volume`` to ``paths`` (from :func:`result_paths`), atomically each."""
    if "file" in paths:
        write_volume(paths["file"], in_output_units(suv, volume, output_units), like=volume, overwrite=overwrite)
    if "dicom" in paths:
        volume_format(volume.fmt).write_series(paths["dicom"], suv, volume, series_description=description,
                                               units=output_units, series_number_offset=series_offset,
                                               overwrite=overwrite)


def units_written(volume: Volume, output_units: str) -> str:
    """The units of a result file, for the sidecar: "SUV" or the input's stored units."""
    return "SUV" if output_units == "suv" else volume.source_units
