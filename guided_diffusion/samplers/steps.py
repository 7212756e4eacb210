"""What sampler loops share: the reverse steps in order, the process's tables at a step, and fresh noise."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .interface import Generator


def reverse_steps(num_steps: int, x: torch.Tensor, progress: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """The steps ``num_steps - 1`` down to 0, each as (index, ``t``: that index (N,) long on ``x``'s device).

    ``x`` (N, C, ...) gives the batch size and device; ``progress`` shows a tqdm bar.
    """
    steps = range(num_steps - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps)
    for i in steps:
        yield i, torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)


def extract(table: np.ndarray, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``table[t]`` as float32 on ``t``'s device, shaped (N, 1, ...) to broadcast against a tensor of ``shape``.

    ``table`` is one of a process's float64 tables (T,); ``t`` (N,) are step indices.
    """
    values = torch.from_numpy(table).to(device=t.device)[t].float()
    return values.reshape(values.shape + (1,) * (len(shape) - values.ndim))


def not_last(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, 1, ...) float32: 0 where ``t`` is step 0 (the step to the data, which adds no noise), else 1."""
    return (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))


def randn(shape: Sequence[int], generator: Generator, device: torch.device | str) -> torch.Tensor:
    """Standard normal noise of ``shape`` (N, ...).

    ``generator`` may be one ``torch.Generator`` for the whole batch or one per
    batch element; per-element generators make a sample independent of which
    other samples share its batch (and of how work is split across ranks).
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(*shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(*shape[1:], generator=g, device=device) for g in generator])
