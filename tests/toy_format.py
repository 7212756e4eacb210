"""A toy volume format for tests, registered like any user's format, and a way to run a script with it.

A ``.toy`` file is one ASCII header line ``TOY X Y Z DX DY DZ`` (shape in
voxels, voxel size in mm) and then the voxels as little-endian float32 in C
order (X, Y, Z), in SUV. The grid is axis-aligned with its first voxel at the
origin, so a result keeps the shape and voxel size of its input.

In a test: ``monkeypatch.setitem(FORMATS, "toy", TOY_FORMAT)``. For a script in
a subprocess (``mpiexec`` too): ``python tests/toy_format.py scripts/test.py
ARGS...`` registers the format, then runs the script with ``ARGS``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import ReadOptions, Volume, VolumeFormat, VolumeInfo, VolumeSource, register_format
from guided_diffusion.pet.io.volume import checked_affine, checked_shape, validated

#: This file, to put in front of a script's command line: ``[sys.executable, str(TOY_LAUNCHER), script, ...]``.
TOY_LAUNCHER = Path(__file__).resolve()


def write_toy(path: Path, data: np.ndarray, voxel_size: tuple[float, float, float] = (2.0, 2.0, 2.0)) -> Path:
    """Write ``data`` (X, Y, Z) with ``voxel_size`` (mm) as a ``.toy`` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "TOY " + " ".join(str(v) for v in (*data.shape, *voxel_size)) + "\n"
    path.write_bytes(header.encode("ascii") + np.ascontiguousarray(data, dtype="<f4").tobytes())
    return path


def _header(path: Path) -> tuple[tuple[int, ...], np.ndarray, int]:
    """(shape, 4x4 affine, byte offset of the voxels) from the header line of ``path``."""
    with open(path, "rb") as f:
        line = f.readline(200)
    fields = line.decode("ascii", "replace").split()
    if len(fields) != 7 or fields[0] != "TOY":
        raise UserError(f"{path}: not a toy volume; the first line must be 'TOY X Y Z DX DY DZ'")
    shape = tuple(int(n) for n in fields[1:4])
    affine = checked_affine(np.diag([*(float(v) for v in fields[4:]), 1.0]), str(path))
    return shape, affine, len(line)


def read_toy(source: VolumeSource, options: ReadOptions) -> Volume:
    """The toy volume (X, Y, Z) in SUV with its grid; the checks every reader applies."""
    shape, affine, offset = _header(source.path)
    voxels = np.fromfile(source.path, dtype="<f4", offset=offset)
    if voxels.size != int(np.prod(shape)):
        raise UserError(f"{source.path}: holds {voxels.size} voxels but its header says {shape}; the file is cut off")
    return Volume(validated(voxels.reshape(shape), source.path), affine, "toy", source.path, source.name)


def survey_toy(source: VolumeSource, options: ReadOptions) -> VolumeInfo:
    """Shape and affine from the header line alone."""
    shape, affine, _ = _header(source.path)
    return VolumeInfo(source, checked_shape(shape, source.path), affine)


def write_toy_result(path: Path, data: np.ndarray, like: Volume) -> None:
    """A result of ``like`` as a toy file with ``like``'s voxel size."""
    write_toy(path, data, like.voxel_size)


TOY_FORMAT = VolumeFormat("toy", read_toy, suffixes=(".toy",), write=write_toy_result, survey=survey_toy)


if __name__ == "__main__":
    register_format(TOY_FORMAT)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = str(Path(script).resolve().parent)  # as when the script itself is run
    runpy.run_path(script, run_name="__main__")
