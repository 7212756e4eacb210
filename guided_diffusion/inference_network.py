"""The network as samplers call it: precision, memory layout, compilation.

The network's arithmetic runs in the :mod:`~guided_diffusion.precision` asked
for, and it returns float32, so the sampler's arithmetic on x_t, x_0 and the
schedule stays float32 whatever the precision.
"""

from __future__ import annotations

import torch

from .precision import PRECISIONS, autocast


class InferenceNetwork(torch.nn.Module):
    """Wraps the conditional UNet for sampling: autocast, channels-last-3d inputs, optional ``torch.compile``.

    Called like the network, ``net(x_t, t, low_res=low)`` with (N, C, Z, X, Y)
    float32 tensors ((N, C, X, Y) for a 2D network; ``net(low, t)`` for the
    regression baseline), and returns float32. ``parameters()``, ``spatial_divisor``
    and ``dims`` are the wrapped network's.

    Args:
        model: the network, already on its device; its own fp16 switch is turned
            off so that ``precision`` alone decides.
        precision: "fp32", "bf16" or "fp16".
        channels_last: store weights and activations channels-last (3D: NDHWC, 2D: NHWC),
            which some convolution kernels run faster (the CPU's; on an H100 eager
            3D convolutions ran slower). Converts ``model``'s weights in place.
        compile: ``torch.compile`` the network; on CUDA with CUDA graphs
            ("reduce-overhead") to cut launch overhead. A graph's output buffer is
            reused by its next replay, so compiled outputs are copied.
    """

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", channels_last: bool = False,
                 compile: bool = False):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if hasattr(model, "use_fp16"):
            model.use_fp16 = False
        self.dims = getattr(model, "dims", 3)
        last = torch.channels_last_3d if self.dims == 3 else torch.channels_last
        self.memory_format = last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format) if channels_last else model
        self.precision = precision
        self.spatial_divisor = model.spatial_divisor
        device = next(model.parameters()).device
        mode = "reduce-overhead" if device.type == "cuda" else None
        self.compiled = compile
        self.forward_network = torch.compile(self.model, mode=mode) if compile else self.model

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
            kwargs = {k: v.contiguous(memory_format=self.memory_format) if torch.is_tensor(v) and v.dim() == x.dim() else v
                      for k, v in kwargs.items()}
        with autocast(self.precision, x.device):
            out = self.forward_network(x, timesteps, **kwargs).float()
        return out.clone() if self.compiled else out
