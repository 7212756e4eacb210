"""The one intensity mapping between SUV and the model's input range.

Training and denoising both call these functions, so the normalisation can
never differ between the two. Two numbers define it: the clip ``suv_max``
(``--suv_max``: SUV above it saturates) and the data scale ``data_scale``
(``--data_scale``: the SUV mapped to model value 1), so the model value is
``clip(SUV, 0, suv_max) / data_scale``. The paper clips at SUV 16 and divides
by 16 (the data scale defaults to the clip: model values in [0, 1]); a smaller
data scale spreads the body's low SUV over more of the model's range.
All arrays are numpy; shapes are unchanged; outputs are float32.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError

DEFAULT_SUV_MAX = 16.0

#: SUV no tissue reaches (the hottest organs and lesions stay below a few hundred; a whole injection in one
#: millilitre of a 70 kg patient is 7e4): a voxel beyond it, either sign, is a corrupt value (a flipped bit, a
#: bad scale factor), so volumes holding one are refused where they are read, by denoising, evaluation and training.
MAX_PLAUSIBLE_SUV = 1e4


def check_suv_max(suv_max: float) -> float:
    """``suv_max`` as a float; UserError naming --suv_max unless it is positive and finite."""
    suv_max = float(suv_max)
    if not (math.isfinite(suv_max) and suv_max > 0):
        raise UserError(f"--suv_max must be a positive number, got {suv_max}; the paper uses 16")
    return suv_max


def check_data_scale(data_scale: float) -> float:
    """``data_scale`` as a float; UserError naming --data_scale unless it is positive and finite."""
    data_scale = float(data_scale)
    if not (math.isfinite(data_scale) and data_scale > 0):
        raise UserError(f"--data_scale must be a positive number of SUV (the SUV mapped to model value 1; "
                        f"0 on the command line: --suv_max), got {data_scale}")
    return data_scale


def check_plausible_suv(suv: np.ndarray, source: str | Path) -> np.ndarray:
    """``suv`` unchanged when every voxel lies within ``±MAX_PLAUSIBLE_SUV``.

    Args:
        suv: array of any shape, in SUV (finite: the readers refuse NaN/inf first).
        source: the file (or name) the volume came from, for the message.

    Raises:
        UserError: naming ``source``, the number of such voxels, the largest and where it is, and the fix.
    """
    values = np.asarray(suv)
    if not values.size or -MAX_PLAUSIBLE_SUV <= values.min() <= values.max() <= MAX_PLAUSIBLE_SUV:
        return suv
    impossible = ~(np.abs(values) <= MAX_PLAUSIBLE_SUV)
    worst = np.unravel_index(int(np.argmax(np.where(impossible, np.abs(values), -1.0))), values.shape)
    raise UserError(
        f"{source}: {int(impossible.sum())} voxel(s) beyond the physically possible ±{MAX_PLAUSIBLE_SUV:g} SUV "
        f"(largest {float(values[worst]):.3g} at index {tuple(int(i) for i in worst)}); the file is corrupt or not "
        "in SUV: set those voxels to 0 (or their true value) in the input file, or check its units"
    )


def suv_to_model(suv: np.ndarray, suv_max: float = DEFAULT_SUV_MAX, data_scale: float | None = None) -> np.ndarray:
    """Map SUV to the model's values: ``clip(suv, 0, suv_max) / data_scale``.

    Args:
        suv: array of any shape, in SUV.
        suv_max: the clip; larger values saturate (see :func:`restore_saturated`).
        data_scale: SUV mapped to 1; None: ``suv_max`` (the paper's mapping onto [0, 1]).

    Returns:
        float32 array of the same shape, in [0, suv_max / data_scale].
    """
    suv_max = check_suv_max(suv_max)
    scale = suv_max if data_scale is None else check_data_scale(data_scale)
    return (np.clip(np.asarray(suv, dtype=np.float32), 0.0, suv_max) / np.float32(scale)).astype(np.float32)


def model_to_suv(x: np.ndarray, data_scale: float = DEFAULT_SUV_MAX) -> np.ndarray:
    """Map model output back to SUV: ``max(x, 0) * data_scale`` (the inverse of :func:`suv_to_model` below the clip).

    Negative outputs are set to 0 because activity cannot be negative; values
    above the clip are kept (the sampler may overshoot slightly and that is still SUV).

    Returns:
        float32 array of the same shape as ``x``, in SUV.
    """
    data_scale = check_data_scale(data_scale)
    return (np.maximum(np.asarray(x, dtype=np.float32), 0.0) * np.float32(data_scale)).astype(np.float32)


def restore_saturated(denoised_suv: np.ndarray, input_suv: np.ndarray, suv_max: float = DEFAULT_SUV_MAX) -> np.ndarray:
    """Put back input voxels above ``suv_max`` that the model could not represent.

    The model only sees ``min(suv, suv_max)``, so bladder, brain or a hot lesion
    above ``suv_max`` would come out capped near ``suv_max`` and its SUVmax
    would be silently lost. Those voxels keep the (noisy) input value instead.

    Args:
        denoised_suv: model result in SUV, shape S.
        input_suv: the low-dose input in SUV, shape S.
        suv_max: the value used in :func:`suv_to_model`.

    Returns:
        float32 array of shape S.
    """
    suv_max = check_suv_max(suv_max)
    denoised_suv = np.asarray(denoised_suv, dtype=np.float32)
    input_suv = np.asarray(input_suv, dtype=np.float32)
    if denoised_suv.shape != input_suv.shape:
        raise ValueError(f"shapes differ: denoised {denoised_suv.shape} vs input {input_suv.shape}")
    return np.where(input_suv > suv_max, input_suv, denoised_suv).astype(np.float32)
