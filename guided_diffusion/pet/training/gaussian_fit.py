"""The Gaussian-filter baseline, fitted on validation pairs: the FWHM with the best mean PSNR.

The width is chosen on validation data, never on the volume to be denoised,
so the baseline is fair to compare with the trained models (the oracle choice
of :func:`guided_diffusion.pet.eval.baselines.best_gaussian_filter` looks at the
full dose of the very volume it filters). Pairs are the ones training reads
(:mod:`.pairs`: found, checked and brought onto the model grid), filtered in SUV
on that grid with :func:`~guided_diffusion.pet.filters.gaussian_smooth`, and
scored against their full dose with :func:`~guided_diffusion.pet.eval.metrics.psnr`
(whole volume, peak = the full dose's range), as the evaluation scores.

The fit is a small JSON file (:func:`write_fit`), which ``scripts/test.py
--model_path gaussian.json`` applies on the same grid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_text
from ...errors import UserError
from ..eval.baselines import DEFAULT_FWHM_GRID_MM
from ..eval.metrics import psnr
from ..filters import gaussian_smooth
from .pairs import CachedPair

#: ``model_kind`` of a Gaussian fit file.
GAUSSIAN_KIND = "gaussian"
#: FWHM candidates (mm): no filter, then the evaluation's grid.
FIT_FWHM_GRID_MM = (0.0, *DEFAULT_FWHM_GRID_MM)


@dataclass
class GaussianFit:
    """The chosen FWHM and how every candidate scored.

    Attributes:
        fwhm_mm: the FWHM (mm) with the highest mean PSNR (the smallest one on a tie).
        model_voxel_size: the grid (isotropic voxel size in mm) the pairs were filtered on.
        mean_psnr: candidate FWHM (as text, e.g. "4") -> mean PSNR (dB) over the pairs.
        pair_psnr: pair name -> candidate FWHM -> PSNR (dB).
        model_kind: always "gaussian"; ``scripts/test.py`` reads it to take this file as the model.
    """

    fwhm_mm: float
    model_voxel_size: float
    mean_psnr: dict[str, float]
    pair_psnr: dict[str, dict[str, float]] = field(default_factory=dict)
    model_kind: str = GAUSSIAN_KIND


def _key(fwhm: float) -> str:
    return f"{fwhm:g}"


def fit_gaussian_fwhm(
    pairs: Sequence[CachedPair], model_voxel_size: float, fwhm_grid_mm: Sequence[float] = FIT_FWHM_GRID_MM,
) -> GaussianFit:
    """Choose the FWHM that maximises the mean PSNR of the filtered low dose against the full dose.

    Args:
        pairs: validation pairs on the model grid (:func:`~.pairs.prepare_pairs`), read one at a time.
        model_voxel_size: their voxel size in mm (isotropic).
        fwhm_grid_mm: candidates in mm (0: no filter), each >= 0.

    Returns:
        The fit; a candidate whose mean PSNR is infinite (a pair with low = full) counts as the best.
    """
    grid = sorted({float(f) for f in fwhm_grid_mm})
    if not grid or grid[0] < 0 or not all(math.isfinite(f) for f in grid):
        raise UserError(f"--fwhm_grid_mm {','.join(map(_key, fwhm_grid_mm))}: give FWHM values in mm, each >= 0")
    if not pairs:
        raise UserError("no validation pairs to fit the Gaussian filter on")
    scores = np.zeros((len(pairs), len(grid)))
    for i, pair in enumerate(pairs):
        low, full = pair.open()
        full = np.asarray(full, dtype=np.float32)
        for j, fwhm in enumerate(grid):
            scores[i, j] = psnr(gaussian_smooth(low, fwhm, model_voxel_size), full)
    means = scores.mean(axis=0)
    best = int(np.argmax(means))  # the first, i.e. smallest, FWHM on a tie
    return GaussianFit(
        fwhm_mm=grid[best], model_voxel_size=float(model_voxel_size),
        mean_psnr={_key(f): float(m) for f, m in zip(grid, means)},
        pair_psnr={pair.name: {_key(f): float(s) for f, s in zip(grid, row)} for pair, row in zip(pairs, scores)},
    )


def write_fit(path: str | Path, fit: GaussianFit, extra: dict | None = None, overwrite: bool = False) -> None:
    """Write ``fit`` (and ``extra`` provenance) as JSON, atomically; refuse to replace a file unless ``overwrite``."""
    record = {**asdict(fit), **(extra or {})}
    # json writes inf as Infinity, which Python reads back.
    atomic_write_text(Path(path), json.dumps(record, indent=2) + "\n", overwrite=overwrite)


def is_fit_file(path: str | Path) -> bool:
    """Whether ``path`` names a fit file (by its ``.json`` suffix), not network weights."""
    return str(path).lower().endswith(".json")


def read_fit(path: str | Path, flag: str = "--model_path") -> dict:
    """The flags a fit file holds for denoising: ``model_kind`` "gaussian", ``gaussian_fwhm_mm``, ``model_voxel_size``.

    Raises:
        UserError: naming ``flag`` and the file when it is missing, not JSON, or not a Gaussian fit.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{flag} {path}: the file does not exist")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{flag} {path}: not a readable JSON file ({err})")
    if not isinstance(record, dict) or record.get("model_kind") != GAUSSIAN_KIND:
        raise UserError(f"{flag} {path}: not a Gaussian filter fit (written by scripts/fit_gaussian.py)")
    try:
        fwhm, voxel = float(record["fwhm_mm"]), float(record["model_voxel_size"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{flag} {path}: a Gaussian fit needs numbers fwhm_mm and model_voxel_size")
    if not (math.isfinite(fwhm) and fwhm >= 0 and math.isfinite(voxel) and voxel >= 0):
        raise UserError(f"{flag} {path}: fwhm_mm {fwhm} and model_voxel_size {voxel} must be >= 0")
    return {"model_kind": GAUSSIAN_KIND, "gaussian_fwhm_mm": fwhm, "model_voxel_size": voxel}
