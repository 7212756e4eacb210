"""The Gaussian-filter baseline as a model kind: no network, the whole volume filtered on the model grid.

Its "model" is a FWHM, given with ``--gaussian_fwhm_mm`` or read from a fit file
of scripts/fit_gaussian.py (``--model_path gaussian.json``). Its result gets the
post-processing the networks' get (``--keep_saturated``), so the comparison is fair.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .. import dist_util
from ..denoise import VolumeResult
from ..pet.filters import gaussian_smooth
from ..pet.intensity import restore_saturated
from .base import ModelKind, VolumeMethod


class GaussianFilterMethod(VolumeMethod):
    """Filters each (X, Y, Z) SUV volume at once on rank 0 with a Gaussian of ``fwhm_mm``; with
    ``keep_saturated``, input voxels above ``suv_max`` keep their value, as a network's result does."""

    def __init__(self, fwhm_mm: float, suv_max: float, keep_saturated: bool):
        fwhm = f"FWHM {fwhm_mm:g} mm"
        super().__init__({"process": f"Gaussian filter, {fwhm}"}, "Gaussian filtered", [fwhm])
        self.fwhm_mm = fwhm_mm
        self.suv_max = suv_max
        self.keep_saturated = keep_saturated

    def denoise(self, suv: np.ndarray, spacing: np.ndarray, name: str, job_offset: int) -> tuple[VolumeResult | None,
                                                                                                     dict]:
        if dist_util.rank() != 0:
            return None, {}
        started = time.perf_counter()
        filtered = gaussian_smooth(suv, self.fwhm_mm, spacing)
        if self.keep_saturated:
            filtered = restore_saturated(filtered, suv, self.suv_max)
        return VolumeResult(mean=filtered, std=None, timings={"filter_s": time.perf_counter() - started}), {}


class GaussianKind(ModelKind):
    """A Gaussian filter of a given FWHM (mm), the baseline every network must beat."""

    def selected_by(self, flags: argparse.Namespace, stored: dict) -> bool:
        """``--gaussian_fwhm_mm`` given, or ``--model_path`` a Gaussian fit file."""
        return bool(flags.gaussian_fwhm_mm) or stored.get("model_kind") == self.name

    def prepare(self, settings: Any) -> GaussianFilterMethod:
        return GaussianFilterMethod(settings.gaussian_fwhm_mm, settings.suv_max, settings.flags["keep_saturated"])
