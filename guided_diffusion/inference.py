"""How the network runs at inference: precision, memory layout, compilation.

The network's arithmetic may run in bfloat16 or float16 under ``torch.autocast``;
autocast keeps normalisation layers (GroupNorm), softmax and the output cast in
float32, and the network returns float32, so the sampler's arithmetic on x_t,
x_0 and the schedule stays float32 whatever the precision.
"""

from __future__ import annotations

import contextlib

import torch

#: Autocast dtypes of the --precision choices (None: plain float32).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_precision(use_fp16: bool, device: torch.device) -> str:
    """The paper's ``--use_fp16 True`` means fp16 on CUDA; the CPU has no fast fp16, so fp32 there."""
    return "fp16" if use_fp16 and device.type == "cuda" else "fp32"


def precision_note(precision: str, device: torch.device) -> str | None:
    """A note for a precision that is slow on ``device`` (fp16 on a CPU: no fast kernels), else None."""
    if precision == "fp16" and device.type == "cpu":
        return "--precision fp16 on the CPU is slower than fp32 (no fast fp16 kernels); bf16 is the CPU's fast choice"
    return None


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

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
            kwargs = {k: v.contiguous(memory_format=self.memory_format) if torch.is_tensor(v) and v.dim() == x.dim() else v
                      for k, v in kwargs.items()}
        with self._autocast(x.device):
            out = self.forward_network(x, timesteps, **kwargs).float()
        return out.clone() if self.compiled else out
