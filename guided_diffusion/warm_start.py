"""Choosing the warm-start step from the noise of the input.

A warm start (Come-Closer-Diffuse-Faster) diffuses the low-dose image to step
``T0`` and runs the reverse process from there. At step ``t`` the diffused
image, divided by ``sqrt(alpha_bar_t)``, is the clean image plus Gaussian noise
of standard deviation ``sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (the noise
level of step ``t``, in the model's intensity units). The input's own noise
rides on top; once the step's noise level is several times the input's, the
network sees what it was trained on. Too late a start wastes the input's
information, too early leaves noise the model never learnt to remove, so
``T0`` follows the measured noise: the first step whose noise level is at least
``scale`` times the input's.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

#: ``--start_timestep``'s value for a warm start chosen from each input's measured noise.
AUTO = "auto"

#: ``scale`` of the demo model, fitted on validation subjects by benchmarks/warm_start.py
#: (docs/warm_start_validation.csv, models/demo_all_doses, seeds 4000-4001, six doses): the geometric
#: mean of the ratio at each case's best start. It is on that model's card, which is where
#: ``--start_timestep auto`` reads a scale; other models need their own (see README, "Model cards").
DEMO_WARM_START_SCALE = 6.3


def noise_levels(alphas_cumprod: np.ndarray) -> np.ndarray:
    """``sqrt((1 - alpha_bar_t) / alpha_bar_t)`` per step ``t`` (shape (T,), increasing)."""
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)


def start_timestep_for_noise(alphas_cumprod: np.ndarray, noise_sd: float, scale: float) -> int:
    """The first step whose noise level reaches ``scale * noise_sd``, at least 1.

    Args:
        alphas_cumprod: the full process's ``alpha_bar`` per step, shape (T,).
        noise_sd: the input's noise SD in model units (SUV / suv_max).
        scale: the calibrated ratio of step noise to input noise (see README).

    Returns:
        A step in ``[1, T - 1]``; ``T - 1`` when even the last step is below the target.
    """
    if not (np.isfinite(noise_sd) and noise_sd >= 0 and scale > 0):
        raise ValueError(f"need noise_sd >= 0 and scale > 0, got {noise_sd} and {scale}")
    levels = noise_levels(alphas_cumprod)
    step = int(np.searchsorted(levels, scale * noise_sd))
    return min(max(step, 1), len(levels) - 1)


def read_start_timestep(text: str) -> int | str:
    """``--start_timestep`` as a step (0: from pure noise) or :data:`AUTO` (from each input's measured noise).

    Raises:
        UserError: anything else.
    """
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--start_timestep must be a step (0: from pure noise) or {AUTO!r}, got {text!r}") from None
