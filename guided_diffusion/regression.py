"""The regression baseline: the paper's UNet mapping the low dose to the full dose in one forward pass.

It stands where a diffusion process stands (``TrainLoop``, validation, patch
sampling), with the parts of that interface they use: ``num_timesteps`` (1:
the timestep input is always 0, so the network keeps the paper's layout and
``state_dict`` keys) and ``training_losses``; :meth:`RegressionProcess.predict`
replaces the reverse process. The network is a plain ``UNetModel`` with one
input channel (the low dose, on the model's intensity scale, exactly as the
diffusion model's condition) and one output channel, called ``model(low, t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .gaussian_diffusion import mean_flat

#: Training losses of the regression baseline.
REGRESSION_LOSSES = ("l1", "l2")


class RegressionProcess:
    """Direct regression of the full dose from the low dose (no noise, no steps).

    Args:
        loss: "l1" (mean absolute error) or "l2" (mean squared error), per sample.
    """

    num_timesteps = 1

    def __init__(self, loss: str = "l1"):
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}, got {loss!r}")
        self.loss = loss

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
        return self.regression_losses(model(low, t), x_start)

    def regression_losses(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample (N,) 'loss' (the chosen loss) and 'mse' of ``prediction`` against ``target`` (N, 1, ...)."""
        error = prediction - target
        mse = mean_flat(error**2)
        loss = mse if self.loss == "l2" else mean_flat(error.abs())
        return {"loss": loss, "mse": mse}

    def predict(self, model: Callable, low: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """The network's estimate of the full dose for ``low`` (N, 1, ...), clipped to [-1, 1] if ``clip``."""
        t = torch.zeros(low.shape[0], dtype=torch.long, device=low.device)
        prediction = model(low, t)
        return prediction.clamp(-1, 1) if clip else prediction
