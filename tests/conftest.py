"""Shared test helpers: the reference fixture and its deterministic weight/input rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "reference_unet3d.json"
REPO = Path(__file__).resolve().parent.parent

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def sine_pattern(shape, freq: float, phase: float, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """offset + scale * sin(freq * j + phase) over the flat index j, computed in float64, as float32."""
    j = np.arange(int(np.prod(shape)), dtype=np.float64)
    return torch.from_numpy((offset + scale * np.sin(freq * j + phase)).astype(np.float32).reshape(shape))


def apply_weight_rule(model: torch.nn.Module) -> None:
    """Set entry i (sorted key order) of the state_dict to 0.05 * sin(0.37 j + 1.3 i)."""
    state = model.state_dict()
    model.load_state_dict(
        {key: sine_pattern(state[key].shape, 0.37, 1.3 * i, scale=0.05) for i, key in enumerate(sorted(state))}
    )
