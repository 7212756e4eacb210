"""A volume before it is read: where it is (:class:`VolumeSource`), how to read it (:class:`ReadOptions`),
and what its header says (:class:`VolumeInfo`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .units import UnitOptions
from .volume import DEFAULT_VOXEL_SIZE, voxel_spacing


@dataclass(frozen=True)
class VolumeSource:
    """One volume to read: what :func:`~.discovery.list_volumes` finds and ``read_volume`` takes.

    Attributes:
        path: the file (formats found by suffix), or the folder holding the volume's
            files (formats found by content, e.g. DICOM: their deepest common folder).
        name: unique, readable stem for the outputs (``[A-Za-z0-9._-]`` for DICOM).
        kind: the name of its format in :data:`.registry.FORMATS` ("npz", "nifti", "dicom", ...).
        files: the files making up the volume, sorted (formats found by content; empty otherwise).
        series_uid: an identifier that does not depend on the path, where the format has
            one (DICOM: the SeriesInstanceUID); it makes clashing names unique.
    """

    path: Path
    name: str
    kind: str
    files: tuple[Path, ...] = ()
    series_uid: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How to read a volume: the reading flags every format's reader receives (each uses those it needs).

    Attributes:
        npz_key: array name inside an ``.npz`` (None: ``arr_0``).
        default_voxel_size: isotropic voxel size (mm) for files that carry no geometry.
        units: how to read units (NIfTI: SUV or Bq/ml; DICOM: only ``allow_uncorrected``).
    """

    npz_key: str | None = None
    default_voxel_size: float = DEFAULT_VOXEL_SIZE
    units: UnitOptions = field(default_factory=UnitOptions)


@dataclass(frozen=True, eq=False)
class VolumeInfo:
    """What a volume's header says: the ``shape`` and ``affine`` that reading it would give.

    Attributes:
        source: the volume (its ``name``, ``kind`` and ``path`` are also properties here).
        shape: (X, Y, Z) in voxels, length-1 axes beyond three dropped as the readers do.
        affine: 4x4 float64 voxel -> world (mm, RAS+).
    """

    source: VolumeSource
    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def name(self) -> str:
        """The output stem (``VolumeSource.name``)."""
        return self.source.name

    @property
    def fmt(self) -> str:
        """The format's name (``VolumeSource.kind``, ``Volume.fmt`` once read)."""
        return self.source.kind

    @property
    def path(self) -> Path:
        """The file or folder (``VolumeSource.path``)."""
        return self.source.path

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths (mm) along X, Y, Z, from the affine's column norms."""
        return tuple(voxel_spacing(self.affine).tolist())  # type: ignore[return-value]
