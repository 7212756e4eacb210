"""The registry of volume formats: what each input format is found by, read with and written with.

:data:`FORMATS` maps a format's name (``Volume.fmt``, ``VolumeSource.kind``) to
its :class:`VolumeFormat`. Discovery, reading, surveying and writing look
formats up here and never test a format's name, so adding one is a module that
defines a ``VolumeFormat`` and one line, ``register_format(MY_FORMAT)``. The
built-in formats (npz, nifti, dicom) are registered by the package's
``__init__``; ``FORMATS.md`` beside this file shows how to add one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UserError

if TYPE_CHECKING:  # annotations only: the readers' modules import this one
    import numpy as np

    from .source import ReadOptions, VolumeInfo, VolumeSource
    from .volume import Volume

#: ``read(source, options) -> Volume``: the volume in SUV, checked, named ``source.name``.
Reader = Callable[["VolumeSource", "ReadOptions"], "Volume"]
#: ``survey(source, options) -> VolumeInfo``: shape and affine from the headers only.
Surveyor = Callable[["VolumeSource", "ReadOptions"], "VolumeInfo"]
#: ``write(path, data, like)``: write float32 ``data`` (X, Y, Z) to ``path`` in ``like``'s geometry.
Writer = Callable[[Path, "np.ndarray", "Volume"], None]
#: ``group(files) -> (sources, notes)``: the volumes made of files that passed ``detect``, and one note per file
#: or set of files passed over.
Grouper = Callable[[Sequence[Path]], tuple[list["VolumeSource"], list[str]]]


@dataclass(frozen=True)
class VolumeFormat:
    """One input format: how it is found, read, surveyed and how results of its inputs are written.

    A format is found by suffix (``suffixes``: files directly in a folder, a glob's
    matches, a file path) or by content (``detect`` and ``group``: every file
    without a registered suffix in a folder and below, e.g. DICOM series).

    Attributes:
        name: the key in :data:`FORMATS`; ``Volume.fmt`` and ``VolumeSource.kind`` of its volumes.
        read: the reader. It applies the checks every reader applies
            (:func:`.volume.validated`: 3 axes, finite, not empty or all zero;
            :func:`.volume.checked_affine`) and converts to SUV, and names the
            volume ``source.name``; errors a user can cause raise ``UserError``.
        suffixes: lower-case file suffixes that name this format (matched in any case);
            a result gets the input's own suffix, or the first one.
        write: writes one result file (called with a temporary path that keeps the
            suffix; ``write_volume`` makes it atomic). None when ``results_as`` is set.
        results_as: the name of the format whose file results of this format's inputs
            are written in, when not this one (DICOM: "nifti").
        survey: shape and affine from the headers, without reading the voxels;
            None reads the volume instead.
        detect: whether a file without a registered suffix is of this format, from
            its content (cheap: the search calls it on every such file).
        group: turns the files ``detect`` accepted into volumes (a DICOM series from its slices).
        label: what one volume found by content is called in messages (e.g. "DICOM PET series").
        write_series: writes a result as a new series of this format into a folder
            (``--output_format dicom`` / ``both``); None when results are files only.
    """

    name: str
    read: Reader
    suffixes: tuple[str, ...] = ()
    write: Writer | None = None
    results_as: str = ""
    survey: Surveyor | None = None
    detect: Callable[[Path], bool] | None = None
    group: Grouper | None = None
    label: str = ""
    write_series: Callable[..., Path] | None = None

    @property
    def by_content(self) -> bool:
        """Whether the format is found by content (``detect`` and ``group``)."""
        return self.detect is not None and self.group is not None


#: Every format read, by name, in registration order (the order of messages).
FORMATS: dict[str, VolumeFormat] = {}


def register_format(fmt: VolumeFormat) -> VolumeFormat:
    """Add ``fmt`` to :data:`FORMATS` (replacing a format of the same name) and return it.

    Raises:
        ValueError: ``fmt`` cannot be found (neither suffixes nor detect + group),
            cannot have results written (neither ``write`` nor ``results_as``), or
            a suffix is not lower case starting with ``.``.
    """
    if not fmt.name:
        raise ValueError("a volume format needs a name")
    if not fmt.suffixes and not fmt.by_content:
        raise ValueError(f"volume format {fmt.name!r}: give suffixes, or detect and group to find it by content")
    if (fmt.write is None) == (not fmt.results_as):
        raise ValueError(f"volume format {fmt.name!r}: give either write or results_as (the format results are in)")
    bad = [s for s in fmt.suffixes if not s.startswith(".") or s != s.lower()]
    if bad:
        raise ValueError(f"volume format {fmt.name!r}: suffixes must be lower case and start with '.', got {bad}")
    FORMATS[fmt.name] = fmt
    return fmt


def volume_format(name: str) -> VolumeFormat:
    """The registered format called ``name``.

    Raises:
        UserError: no such format is registered.
    """
    if name not in FORMATS:
        raise UserError(f"unknown volume format {name!r}; registered formats: {', '.join(FORMATS)}")
    return FORMATS[name]


def result_format(name: str) -> VolumeFormat:
    """The format result files of ``name``'s inputs are written in (itself, or its ``results_as``)."""
    fmt = volume_format(name)
    return volume_format(fmt.results_as) if fmt.results_as else fmt


def content_formats() -> list[VolumeFormat]:
    """The registered formats found by content, in registration order."""
    return [fmt for fmt in FORMATS.values() if fmt.by_content]


def volume_suffix(path: Path) -> str:
    """The registered suffix ``path``'s name ends in (any case, the longest that fits, lower case) or ''."""
    lower = path.name.lower()
    return max((s for fmt in FORMATS.values() for s in fmt.suffixes if lower.endswith(s)), key=len, default="")


def volume_stem(path: Path) -> str:
    """The file name without its volume suffix (``a.nii.gz`` -> ``a``)."""
    suffix = volume_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def suffix_format(path: Path) -> VolumeFormat | None:
    """The format whose suffix ``path`` ends in, or None."""
    suffix = volume_suffix(path)
    return next((fmt for fmt in FORMATS.values() if suffix and suffix in fmt.suffixes), None)


def suffixes_named() -> list[str]:
    """Every registered suffix for messages: by format in registration order, shortest first (``.nii, .nii.gz``)."""
    return [s for fmt in FORMATS.values() for s in sorted(fmt.suffixes, key=len)]


def content_labels() -> str:
    """The ``label`` of the formats found by content, joined by " or " (e.g. "DICOM PET series")."""
    return " or ".join(fmt.label for fmt in content_formats()) or "volumes found by content"
