"""Validation during training: a fixed set of crops, denoised with a short DDIM run, scored against full dose.

The crops and the starting noise are fixed (``VAL_SEED``), so the scores of
successive evaluations, and of different runs, are comparable. Scores are
computed on the model's intensity scale with peak 1 (= ``suv_max`` SUV):
PSNR in dB and SSIM. The scores of the low-dose input itself are reported
alongside, as the baseline to beat. The regression baseline's crops are its one
forward pass; a 2D network's crops are axial slices (scored as images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from ...gaussian_diffusion import GaussianDiffusion
from ...regression import RegressionProcess
from ..eval.metrics import psnr, ssim
from ..intensity import DEFAULT_SUV_MAX
from .crops import draw_crop, to_dims
from .pairs import CachedPair, Shape3

VAL_SEED = 20250101
METRICS = ("val_psnr", "val_ssim", "val_psnr_low", "val_ssim_low")


def _scores(pred: np.ndarray, full: np.ndarray) -> tuple[float, float]:
    return psnr(pred, full, data_range=1.0), ssim(pred, full, data_range=1.0)


class CropEvaluator:
    """Scores a network on ``num_crops`` fixed crops of the validation pairs.

    Args:
        pairs: validation pairs (crop ``i`` is drawn from pair ``i % len(pairs)``).
        diffusion: the (respaced) process to sample with, e.g. ``ddim10``, or the
            regression baseline's process (one forward pass).
        patch_size: crop size (X, Y, Z); Z = 1 for a 2D network.
        device: where the network runs.
        warm_start: start from the low-dose crop diffused to the process's last step
            (with a process truncated by ``start_timestep``), as ``scripts/test.py --start_timestep``.
        dims: the network's (3: crops (1, 1, Z, X, Y); 2: axial slices (1, 1, X, Y)).
    """

    metric_names = METRICS

    def __init__(
        self, pairs: Sequence[CachedPair], diffusion: GaussianDiffusion | RegressionProcess, patch_size: Shape3,
        num_crops: int, device: torch.device, suv_max: float = DEFAULT_SUV_MAX, warm_start: bool = False,
        dims: int = 3,
    ):
        rng = np.random.default_rng(VAL_SEED)
        arrays = [pair.open() for pair in pairs]
        # Each crop as the network sees it without the batch axis: (1, Z, X, Y), or (1, X, Y) in 2D.
        self.crops = [tuple(to_dims(crop, dims) for crop in draw_crop(*arrays[i % len(arrays)], patch_size, rng,
                                                                       suv_max=suv_max))
                      for i in range(num_crops)]
        self.diffusion = diffusion
        self.device = device
        self.warm_start = warm_start
        self.low_scores = [_scores(low[0], full[0]) for full, low in self.crops]

    def __len__(self) -> int:
        return len(self.crops)

    def evaluate(self, model: Callable, indices: Iterable[int]) -> list[dict[str, float]]:
        """Scores of the crops ``indices``: one dict per crop with the keys of ``metric_names``.

        ``model`` is called as ``model(x_t, t, low_res=low)`` on (1, 1, Z, X, Y) tensors
        ((1, 1, X, Y) in 2D), or as ``model(low, t)`` for the regression baseline.
        """
        results = []
        for i in indices:
            full, low = self.crops[i]
            condition = torch.from_numpy(low[None]).to(self.device)
            if isinstance(self.diffusion, RegressionProcess):
                sample = self.diffusion.predict(model, condition, clip=True)
            else:
                shape = (1, *full.shape)
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(VAL_SEED + i)).to(self.device)
                if self.warm_start:
                    noise = self.diffusion.warm_start(condition, noise)
                sample = self.diffusion.ddim_sample_loop(
                    model, shape, noise=noise, clip_denoised=True, device=self.device,
                    model_kwargs={"low_res": condition},
                )
            denoised = sample[0, 0].float().cpu().numpy()
            results.append(dict(zip(METRICS, (*_scores(denoised, full[0]), *self.low_scores[i]))))
        return results
