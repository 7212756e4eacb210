"""Simulated evaluation cases: one unseen subject at one dose, cropped to the body."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scanners import ScannerPreset
from .simulation import simulate_subject
from .tracers import TracerPreset

#: Voxels kept around the body when cropping in-plane.
BODY_MARGIN = 4


@dataclass
class EvaluationCase:
    """Low-dose and full-dose reconstructions with their truth, as (X, Y, Z) arrays.

    Attributes:
        low, full, truth: SUV volumes (float32).
        labels: organ labels (0 = air); lesions: lesion index per voxel (0 = none).
        affine: voxel-to-world (mm) of the cropped grid; voxel_size: (x, y, z) in mm.
        clean: the noiseless reconstruction (SUV, float32), or None when not simulated.
    """

    seed: int
    dose: float
    low: np.ndarray
    full: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    lesions: np.ndarray
    affine: np.ndarray
    voxel_size: tuple[float, float, float]
    clean: np.ndarray | None = None


def body_box(truth: np.ndarray, margin: int = BODY_MARGIN) -> tuple[slice, slice]:
    """In-plane (X, Y) slices around the body plus ``margin`` voxels, so no time is spent on air."""
    body = truth.max(axis=2) > 0
    xs, ys = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
    return (slice(max(int(xs[0]) - margin, 0), int(xs[-1]) + margin + 1),
            slice(max(int(ys[0]) - margin, 0), int(ys[-1]) + margin + 1))


def cropped_affine(affine: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """The 4x4 voxel-to-world affine of ``volume[box]`` (an in-plane crop of a volume with ``affine``)."""
    cropped = np.array(affine, dtype=np.float64)
    cropped[:3, 3] += cropped[:3, :2] @ np.array([box[0].start, box[1].start], dtype=np.float64)
    return cropped


def simulated_case(seed: int, dose: float, voxel_size: float | None = 4.0, axial_extent_mm: float | None = None,
                   scanner: str | ScannerPreset | None = None, tracer: str | TracerPreset = "fdg",
                   clean: bool = False, **simulation) -> EvaluationCase:
    """Simulate subject ``seed`` at full dose and ``dose``, cropped in-plane to the body.

    ``scanner`` and ``tracer`` name presets (see ``scanners.py`` and ``tracers.py``);
    ``voxel_size=None`` takes the scanner's; ``clean`` adds the noiseless reconstruction.
    Extra keyword arguments go to :func:`~guided_diffusion.pet.sim.simulation.simulate_subject`.
    """
    subject = simulate_subject(seed, voxel_size=voxel_size, dose_fractions=(1.0, dose),
                               axial_extent_mm=axial_extent_mm, scanner=scanner, tracer=tracer, clean=clean,
                               **simulation)
    voxel_size = subject.phantom.voxel_size
    box = body_box(subject.truth)
    affine = cropped_affine(subject.phantom.affine, box)
    return EvaluationCase(
        seed=seed, dose=dose, low=subject.reconstructions[dose][box], full=subject.full_dose[box],
        truth=subject.truth[box], labels=subject.labels[box], lesions=subject.lesion_mask[box], affine=affine,
        voxel_size=(float(voxel_size),) * 3, clean=None if subject.clean is None else subject.clean[box],
    )

