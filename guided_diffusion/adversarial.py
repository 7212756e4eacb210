"""The 3D GAN baseline: the regression UNet as generator, judged by a conditional patch discriminator.

A conditional GAN in the pix2pix form (Isola et al., CVPR 2017), in 3D: the
generator is the regression baseline's UNet (``model(low, t)``, one forward
pass, its output read as the regression's ``output`` says, see
:mod:`guided_diffusion.regression`), trained on its L1 (or L2) loss
plus ``adv_weight`` times a least-squares adversarial loss (Mao et al., ICCV
2017); the discriminator sees the low dose and a full-dose image side by side
(2 channels) and scores every overlapping patch of its receptive field as real
or generated. At inference only the generator runs, exactly as the regression
baseline, so everything downstream of training treats a GAN checkpoint as one.

The process below computes the losses; the training loop owns the
discriminator's optimiser and distributed copy
(:mod:`guided_diffusion.train_adversary`) and hands the process its ``critic``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .gaussian_diffusion import mean_flat
from .regression import RegressionProcess

#: Default weight of the adversarial term against the L1 term (pix2pix: L1 x 100, adversarial x 1).
DEFAULT_ADV_WEIGHT = 0.01
#: Default width of the discriminator's first layer.
DEFAULT_DISC_CHANNELS = 32
#: The smallest crop edge (voxels) the discriminator takes: its grid is size // 8 per axis.
MIN_DISC_INPUT = 8


def _conv(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv3d if dims == 3 else nn.Conv2d)(*args, **kwargs)


class PatchDiscriminator(nn.Module):
    """A conditional PatchGAN: (low dose, image) -> a map of real/generated logits.

    Three stride-2 convolutions (kernel 4) of ``channels``, 2x and 4x that
    width, one stride-1 convolution (kernel 3) of 8x, then a 1-channel output
    (kernel 3); LeakyReLU (0.2) after each but the output, GroupNorm (8 groups)
    after all but the first. pix2pix's layout, with kernel-3 "same" convolutions
    in its stride-1 layers so that crops as small as 8 voxels per axis fit (3D
    crops are small); each output logit sees a cube of 54 voxels.

    Args:
        dims: 3 (volumes, inputs (N, 1, Z, X, Y)) or 2 (slices, (N, 1, X, Y)).
        channels: width of the first layer.

    ``forward(low, image)`` -> logits (N, 1, ...) over a grid of ``size // 8`` per axis.
    """

    def __init__(self, dims: int = 3, channels: int = DEFAULT_DISC_CHANNELS):
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"discriminator channels must be a positive multiple of 8, got {channels}")
        widths = [channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = [_conv(dims, 2, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for inner, outer, stride in zip(widths, widths[1:], (2, 2, 1)):
            kernel = 4 if stride == 2 else 3
            layers += [_conv(dims, inner, outer, kernel, stride=stride, padding=1), nn.GroupNorm(8, outer),
                       nn.LeakyReLU(0.2)]
        layers.append(_conv(dims, widths[-1], 1, 3, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, low: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([low, image], dim=1))


class AdversarialProcess(RegressionProcess):
    """The generator's losses: the regression loss plus ``adv_weight`` x the least-squares adversarial loss.

    Args:
        loss: the regression loss, "l1" or "l2".
        adv_weight: weight of the adversarial term (>= 0).
        discriminator: the discriminator the training loop trains alongside.
        output: what the generator's output means (:data:`~guided_diffusion.regression.ONE_PASS_OUTPUTS`).

    ``critic`` (set by the training loop) calls the discriminator as it should be
    called during the generator's step (device, precision). Each call of
    :meth:`training_losses` keeps its (detached) predictions for the
    discriminator's step that follows; :meth:`take_predictions` hands them over.
    """

    def __init__(self, loss: str = "l1", adv_weight: float = DEFAULT_ADV_WEIGHT,
                 discriminator: PatchDiscriminator | None = None, output: str = "direct"):
        super().__init__(loss, output)
        if not adv_weight >= 0:
            raise ValueError(f"adv_weight must be >= 0, got {adv_weight}")
        self.adv_weight = adv_weight
        self.discriminator = discriminator or PatchDiscriminator()
        self.critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = self.discriminator
        self._predictions: list[torch.Tensor] = []

    def training_losses(self, model: Callable, x_start: torch.Tensor, t: torch.Tensor,
                        model_kwargs: dict | None = None, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample (N,) losses of the generator: 'loss' (regression + weighted adversarial),
        'mse', 'regression' and 'adv' (mean of (D(low, G(low)) - 1)^2)."""
        del noise
        low = (model_kwargs or {})["low_res"]
        prediction = self.estimate(model, low, t)
        self._predictions.append(prediction.detach())
        losses = self.regression_losses(prediction, x_start)
        adversarial = mean_flat((self.critic(low, prediction).float() - 1) ** 2)
        return {"loss": losses["loss"] + self.adv_weight * adversarial, "mse": losses["mse"],
                "regression": losses["loss"], "adv": adversarial}

    def take_predictions(self) -> torch.Tensor:
        """The predictions kept since the last call, concatenated along the batch (then forgotten)."""
        predictions, self._predictions = self._predictions, []
        if not predictions:
            raise RuntimeError("no generator predictions since the last discriminator step")
        return torch.cat(predictions)

    @staticmethod
    def discriminator_losses(critic: Callable, low: torch.Tensor, full: torch.Tensor,
                             generated: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample (N,) least-squares losses of the discriminator: 'real' (D(low, full) - 1)^2,
        'fake' D(low, generated)^2, and 'loss' = half their sum. One call of ``critic`` on both halves."""
        logits = critic(torch.cat([low, low]), torch.cat([full, generated])).float()
        real, fake = logits[: len(low)], logits[len(low):]
        real_loss, fake_loss = mean_flat((real - 1) ** 2), mean_flat(fake**2)
        return {"loss": 0.5 * (real_loss + fake_loss), "real": real_loss, "fake": fake_loss}
