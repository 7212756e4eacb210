"""EMA of parameters: warm-up so short runs do not keep the random initial weights."""

from __future__ import annotations

import pytest
import torch

from guided_diffusion.ema import EMA, warmup_rate


def test_warmup_rate_rises_to_the_rate():
    assert warmup_rate(0.9999, 1) == pytest.approx(2 / 11)
    assert warmup_rate(0.999, 100) == pytest.approx(101 / 110)
    assert warmup_rate(0.999, 10**6) == 0.999


def test_initial_weights_are_forgotten_in_a_short_run():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(-5.0)
    ema = EMA(model, ["0.999"])
    with torch.no_grad():
        model.weight.fill_(1.0)  # the 'trained' value from the first step on
    for step in range(1, 1501):
        ema.update(model, step)
    averaged = ema.state_dict(model, "0.999")["weight"]
    # Without warm-up 0.999 ** 1500 = 22 % of the initial -5 would remain (average -0.34).
    assert torch.allclose(averaged, torch.ones_like(averaged), atol=1e-3)
