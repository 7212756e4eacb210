"""Small building blocks shared by the UNet: normalisation, convolutions, embeddings."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (stable under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    """The network's normalisation layer: GroupNorm with 32 groups, in float32."""
    return GroupNorm32(32, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d`` / ``Conv2d`` / ``Conv3d`` chosen by ``dims``."""
    layers = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in layers:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return layers[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.AvgPool1d`` / ``AvgPool2d`` / ``AvgPool3d`` chosen by ``dims``."""
    layers = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in layers:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return layers[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (so a residual branch starts as identity) and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Args:
        timesteps: shape (N,), one timestep per batch element.
        dim: embedding width; the cosine half comes first, then the sine half
            (zero-padded by one column when ``dim`` is odd).
        max_period: the longest wavelength of the frequencies.

    Returns:
        float32 tensor of shape (N, dim).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def maybe_checkpoint(function, inputs: tuple, enabled: bool) -> torch.Tensor:
    """Run ``function(*inputs)``, recomputing activations in the backward pass when ``enabled``.

    Gradient checkpointing trades compute for memory: large 3D patches fit on
    smaller GPUs. It only matters while gradients are being computed.
    """
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(function, *inputs, use_reentrant=False)
    return function(*inputs)
