"""The regression baseline: the paper's UNet mapping the low dose to the full dose in one forward pass.

It stands where a diffusion process stands (``TrainLoop``, validation, patch
sampling), with the parts of that interface they use: ``num_timesteps`` (1:
the timestep input is always 0, so the network keeps the paper's layout and
``state_dict`` keys) and ``training_losses``; :meth:`RegressionProcess.predict`
replaces the reverse process. The network is a plain ``UNetModel`` with one
input channel (the low dose, on the model's intensity scale, exactly as the
diffusion model's condition) and one output channel, called ``model(low, t)``.

What the network's output means is the process's ``output`` (``--one_pass_output``):

* ``residual``: a correction to the input, estimate = low + model(low, t). The
  UNet's last layer starts at zero, so an untrained network is the identity;
* ``gaussian``: a correction to a fixed blur of the input, estimate =
  Gaussian(low) + model(low, t), the blur of :data:`BASE_BLUR_FWHM_VOXELS`;
* ``direct``: the estimate itself, estimate = model(low, t) (an untrained
  network gives 0). Checkpoints that predate the flag were trained so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .gaussian_diffusion import mean_flat

#: Training losses of the regression baseline.
REGRESSION_LOSSES = ("l1", "l2")
#: What a one-pass network's output means (``--one_pass_output``, see the module docstring).
ONE_PASS_OUTPUTS = ("residual", "direct", "gaussian")
#: The one-pass output of new models.
DEFAULT_ONE_PASS_OUTPUT = "residual"
#: The one-pass output of models trained before ``--one_pass_output`` existed (their flags lack it).
ONE_PASS_OUTPUT_BEFORE_THE_FLAG = "direct"
#: FWHM (voxels of the model grid) of the fixed blur the ``gaussian`` output corrects.
BASE_BLUR_FWHM_VOXELS = 1.5


class RegressionProcess:
    """Regression of the full dose from the low dose in one forward pass (no noise, no steps).

    Args:
        loss: "l1" (mean absolute error) or "l2" (mean squared error), per sample.
        output: what the network's output means, one of :data:`ONE_PASS_OUTPUTS`; "direct" (the output is
            the estimate) unless told, the flag's default is :data:`DEFAULT_ONE_PASS_OUTPUT`.
    """

    num_timesteps = 1

    def __init__(self, loss: str = "l1", output: str = "direct"):
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}, got {loss!r}")
        if output not in ONE_PASS_OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(ONE_PASS_OUTPUTS)}, got {output!r}")
        self.loss, self.output = loss, output

    def estimate(self, model: Callable, low: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The estimate of the full dose (N, 1, ...) from the network's output for ``low`` (same shape) at ``t``
        (N,): the output itself (direct), added to ``low`` (residual) or to its fixed blur (gaussian)."""
        correction = model(low, t)
        if self.output == "direct":
            return correction
        return (low if self.output == "residual" else gaussian_blur(low, BASE_BLUR_FWHM_VOXELS)) + correction

    def training_losses(
        self,
        model: Callable,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses of predicting ``x_start`` (N, 1, ...) from ``model_kwargs["low_res"]`` (same shape).

        ``t`` (N,) is passed to the network as it is (all zeros from a schedule
        sampler over one step); ``noise`` is ignored. Returns (N,) tensors:
        'loss' (the chosen loss) and 'mse'.
        """
        del noise
        low = (model_kwargs or {})["low_res"]
        return self.regression_losses(self.estimate(model, low, t), x_start)

    def regression_losses(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample (N,) 'loss' (the chosen loss) and 'mse' of ``prediction`` against ``target`` (N, 1, ...)."""
        error = prediction - target
        mse = mean_flat(error**2)
        loss = mse if self.loss == "l2" else mean_flat(error.abs())
        return {"loss": loss, "mse": mse}

    def predict(self, model: Callable, low: torch.Tensor, clip: bool = True, clip_max: float = 1.0) -> torch.Tensor:
        """The estimate of the full dose for ``low`` (N, 1, ...) (:meth:`estimate`), clipped to [-1, ``clip_max``]
        if ``clip``."""
        t = torch.zeros(low.shape[0], dtype=torch.long, device=low.device)
        prediction = self.estimate(model, low, t)
        return prediction.clamp(-1, clip_max) if clip else prediction


def gaussian_blur(images: torch.Tensor, fwhm_voxels: float) -> torch.Tensor:
    """``images`` (N, C, *spatial), 2 or 3 spatial axes, blurred by a Gaussian of ``fwhm_voxels`` along each
    spatial axis (separable, truncated at 3 sigma, edges extended by their nearest values); same shape and dtype."""
    sigma = fwhm_voxels / math.sqrt(8 * math.log(2))
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    spatial, channels = images.dim() - 2, images.shape[1]
    convolve = F.conv3d if spatial == 3 else F.conv2d
    for axis in range(spatial):
        shape = [channels, 1] + [1] * spatial
        shape[2 + axis] = len(kernel)
        # F.pad lists (before, after) pairs from the last axis backwards.
        padding = [0] * (2 * spatial)
        padding[2 * (spatial - 1 - axis): 2 * (spatial - axis)] = [radius, radius]
        images = convolve(F.pad(images, padding, mode="replicate"), kernel.reshape(shape), groups=channels)
    return images
