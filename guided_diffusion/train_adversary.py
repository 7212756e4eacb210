"""The discriminator's side of GAN training: its optimiser, distributed copy, step and checkpoint state.

:class:`~guided_diffusion.train_util.TrainLoop` makes one when its process is an
:class:`~guided_diffusion.adversarial.AdversarialProcess`. After each generator
step, :meth:`DiscriminatorTrainer.step` trains the discriminator once on the
same batch: the real full dose against the generator's (detached) predictions.
With more than one rank the discriminator is wrapped in
``DistributedDataParallel`` for its own step, so its weights stay identical on
every rank; the generator's adversarial term calls the plain module, whose
gradients are discarded before the discriminator's step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from .adversarial import AdversarialProcess
from .train_log import ProgressLog

#: progress.csv columns of GAN training: the generator's loss terms, then the discriminator's losses.
LOG_COLUMNS = ("regression", "adv", "d_loss", "d_real", "d_fake")


class DiscriminatorTrainer:
    """Trains ``process.discriminator`` alongside the generator.

    Args:
        process: the generator's process; its ``critic`` is set to call the
            discriminator on ``device`` under ``autocast``.
        device: this rank's device.
        lr, weight_decay: AdamW settings (the generator's).
        autocast: a factory of the training precision's autocast context.
        fp16: scale the discriminator's loss (fp16 training).
    """

    def __init__(self, process: AdversarialProcess, device: torch.device, lr: float, weight_decay: float,
                 autocast: Callable[[], contextlib.AbstractContextManager], fp16: bool):
        self.process, self.autocast = process, autocast
        self.module = process.discriminator.to(device)
        self.ddp_module: torch.nn.Module = self.module
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.5, 0.999))
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        process.critic = self._critic(self.module)

    def _critic(self, module: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def critic(low: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            with self.autocast():
                return module(low, image).float()
        return critic

    def distribute(self) -> None:
        """Wrap the discriminator in DistributedDataParallel (the process group must exist)."""
        device = next(self.module.parameters()).device
        self.ddp_module = DistributedDataParallel(self.module,
                                                  device_ids=[device] if device.type == "cuda" else None)

    def train_step(self, log: ProgressLog, generator_losses: dict[str, torch.Tensor], low: torch.Tensor,
                   full: torch.Tensor, lr: float) -> None:
        """After a generator step on (``low``, ``full``) (N, 1, ...): log its loss terms (N,), then train the
        discriminator once on that batch and the generator's kept predictions, and log its losses."""
        for name in ("regression", "adv"):
            log.add(name, generator_losses[name].sum().item(), len(low))
        for name, value in self.step(low, full, self.process.take_predictions(), lr).items():
            log.add(name, value)

    def step(self, low: torch.Tensor, full: torch.Tensor, generated: torch.Tensor, lr: float) -> dict[str, float]:
        """One optimiser step of the discriminator on a batch (N, 1, ...); its mean losses (``d_*``)."""
        self.opt.zero_grad(set_to_none=True)
        losses = self.process.discriminator_losses(self._critic(self.ddp_module), low, full, generated)
        self.scaler.scale(losses["loss"].mean()).backward()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.scaler.step(self.opt)
        self.scaler.update()
        return {f"d_{name}": value.detach().mean().item() for name, value in losses.items()}

    def state_dict(self) -> dict:
        """Weights, optimiser and loss-scaler state (CPU tensors), for the training checkpoint."""
        return {"model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
