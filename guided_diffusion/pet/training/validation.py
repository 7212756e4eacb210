"""Validation during training: a fixed set of crops, denoised as the model kind says, scored against full dose.

The crops and the starting noise are fixed (``VAL_SEED``), so the scores of
successive evaluations, and of different runs, are comparable. Scores are
computed on the model's intensity scale with peak ``suv_max / data_scale`` (= ``suv_max`` SUV; 1 for the
paper's mapping):
PSNR in dB and SSIM. The scores of the low-dose input itself are reported
alongside, as the baseline to beat. The model kind's patch predictor denoises
the crops (a diffusion model: a short run of ``--val_sampler``; a one-pass
baseline: its forward pass); a 2D network's crops are axial slices (scored as images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from ..eval.metrics import psnr, ssim
from ..intensity import DEFAULT_SUV_MAX
from .crops import draw_crop, to_dims
from .pairs import CachedPair, Shape3

VAL_SEED = 20250101
METRICS = ("val_psnr", "val_ssim", "val_psnr_low", "val_ssim_low")


def _scores(pred: np.ndarray, full: np.ndarray, peak: float) -> tuple[float, float]:
    return psnr(pred, full, data_range=peak), ssim(pred, full, data_range=peak)


class CropEvaluator:
    """Scores a network on ``num_crops`` fixed crops of the validation pairs.

    Args:
        pairs: validation pairs (crop ``i`` is drawn from pair ``i % len(pairs)``).
        predictor: the model kind's patch predictor,
            ``predictor(model, low, noise, generators) -> denoised`` on (1, 1, ...) tensors
            (see ``guided_diffusion.patch_jobs.PatchPredictor``), e.g. a 10-step DDIM run.
        patch_size: crop size (X, Y, Z); Z = 1 for a 2D network.
        device: where the network runs.
        dims: the network's (3: crops (1, 1, Z, X, Y); 2: axial slices (1, 1, X, Y)).
        suv_max, data_scale: the intensity mapping (see :func:`~guided_diffusion.pet.intensity.suv_to_model`).
    """

    metric_names = METRICS

    def __init__(
        self, pairs: Sequence[CachedPair], predictor: Callable, patch_size: Shape3, num_crops: int,
        device: torch.device, suv_max: float = DEFAULT_SUV_MAX, dims: int = 3, data_scale: float | None = None,
    ):
        rng = np.random.default_rng(VAL_SEED)
        arrays = [pair.open() for pair in pairs]
        # Each crop as the network sees it without the batch axis: (1, Z, X, Y), or (1, X, Y) in 2D.
        self.crops = [tuple(to_dims(crop, dims) for crop in draw_crop(*arrays[i % len(arrays)], patch_size, rng,
                                                                       suv_max=suv_max, data_scale=data_scale))
                      for i in range(num_crops)]
        self.predictor = predictor
        self.device = device
        self.peak = 1.0 if data_scale is None else suv_max / data_scale
        self.low_scores = [_scores(low[0], full[0], self.peak) for full, low in self.crops]

    def __len__(self) -> int:
        return len(self.crops)

    def evaluate(self, model: Callable, indices: Iterable[int]) -> list[dict[str, float]]:
        """Scores of the crops ``indices``: one dict per crop with the keys of ``metric_names``.

        ``model`` is called as ``model(x_t, t, low_res=low)`` on (1, 1, Z, X, Y) tensors
        ((1, 1, X, Y) in 2D), or as ``model(low, t)`` for the one-pass baselines. Crop ``i``
        starts from noise of seed ``VAL_SEED + i`` (and draws any later noise from it).
        """
        results = []
        for i in indices:
            full, low = self.crops[i]
            condition = torch.from_numpy(low[None]).to(self.device)
            noise, generators = None, None
            if self.predictor.uses_noise:
                noise = torch.randn((1, *full.shape), generator=torch.Generator().manual_seed(VAL_SEED + i))
                noise = noise.to(self.device)
                generators = [torch.Generator(self.device).manual_seed(VAL_SEED + i)]
            sample = self.predictor(model, condition, noise, generators)
            denoised = sample[0, 0].float().cpu().numpy()
            results.append(dict(zip(METRICS, (*_scores(denoised, full[0], self.peak), *self.low_scores[i]))))
        return results
