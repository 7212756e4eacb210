"""Exponential moving averages (EMA) of a network's parameters, at one or more rates."""

from __future__ import annotations

import torch

from .errors import UserError


def parse_ema_rates(text: str) -> list[str]:
    """``"0.9999,0.999"`` -> ["0.9999", "0.999"]; each rate as written (it names files and checkpoint keys)."""
    rates = [r.strip() for r in str(text).split(",") if r.strip()]
    try:
        valid = bool(rates) and all(0.0 < float(r) < 1.0 for r in rates)
    except ValueError:
        valid = False
    if not valid or len(set(rates)) != len(rates):
        raise UserError(f"--ema_rate {text!r} must list distinct numbers in (0, 1), e.g. 0.9999 or 0.9999,0.999")
    return rates


def warmup_rate(rate: float, step: int) -> float:
    """The averaging rate used at optimiser step ``step`` (1-based): ``min(rate, (1 + step) / (10 + step))``.

    Without a warm-up the average keeps ``rate ** step`` of the initial random
    weights (22 % after 1500 steps at 0.999), which ruins the EMA network of
    short runs and fine-tunes; with it the early average follows the model.
    """
    return min(rate, (1.0 + step) / (10.0 + step))


class EMA:
    """Averages ``p_ema <- r * p_ema + (1 - r) * p`` of every parameter, one copy per rate,
    with ``r = warmup_rate(rate, step)``.

    The copies start from the model's current parameters and live on its device.
    """

    def __init__(self, model: torch.nn.Module, rates: list[str]):
        self.rates = list(rates)
        self.names = [name for name, _ in model.named_parameters()]
        self.params = {rate: [p.detach().clone() for p in model.parameters()] for rate in self.rates}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Average in the model's parameters after optimiser step ``step`` (1-based)."""
        current = [p.detach() for p in model.parameters()]
        for rate in self.rates:
            weight = 1.0 - warmup_rate(float(rate), step)
            for average, p in zip(self.params[rate], current):
                average.lerp_(p, weight)

    def state_dict(self, model: torch.nn.Module, rate: str) -> dict[str, torch.Tensor]:
        """A full ``state_dict`` of ``model`` with the averaged parameters of ``rate`` (CPU tensors)."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state.update({name: p.cpu().clone() for name, p in zip(self.names, self.params[rate])})
        return state

    @torch.no_grad()
    def load(self, rate: str, state: dict[str, torch.Tensor]) -> None:
        """Set the averages of ``rate`` from a ``state_dict`` (as written by :meth:`state_dict`)."""
        for name, average in zip(self.names, self.params[rate]):
            average.copy_(state[name])
