"""Arithmetic precision of the network, for training and inference alike.

``--precision`` names it: "fp32" (plain float32), "bf16" or "fp16" (the
network's arithmetic under ``torch.autocast``, which keeps normalisation,
softmax and the output cast in float32). Left empty, the paper's ``--use_fp16``
decides, with one rule for every script: fp16 on CUDA, fp32 on a CPU (which has
no fast fp16 kernels; bf16 is the CPU's fast choice).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

#: Autocast dtype of each --precision choice (None: plain float32).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    """UserError naming --precision unless it is empty (from --use_fp16) or one of :data:`PRECISIONS`."""
    if precision not in ("", *PRECISIONS):
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)} (or empty: from --use_fp16), "
                        f"got {precision!r}")


def choose_precision(precision: str, use_fp16: bool, device: torch.device) -> str:
    """``precision`` when given, else the paper's ``--use_fp16``: fp16 on CUDA, fp32 elsewhere."""
    if precision:
        return precision
    return "fp16" if use_fp16 and device.type == "cuda" else "fp32"


def precision_note(precision: str, device: torch.device) -> str | None:
    """A note for a precision that is slow on ``device`` (fp16 on a CPU: no fast kernels), else None."""
    if precision == "fp16" and device.type == "cpu":
        return "--precision fp16 on the CPU is slower than fp32 (no fast fp16 kernels); bf16 is the CPU's fast choice"
    return None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a null context for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
