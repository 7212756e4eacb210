"""Loading network weights safely, with messages that say what does not fit and why.

Accepted files:

* a plain ``state_dict`` (the authors' released ``model.pt``, or the EMA
  files written by training, ``ema_<rate>_<step>.pt``);
* the project's training checkpoint (a dict with ``"format": CHECKPOINT_FORMAT``),
  from which the EMA weights are taken by default.

Files are always read with ``torch.load(..., weights_only=True)``: a file that
would need to run pickled code is refused. A path may be a local file or a
cloud URL (``gs://...``, ``az://...``; see :mod:`guided_diffusion.storage`).
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
from pathlib import Path

import torch

from . import storage
from .errors import UserError
from .train_state import EMA_PATTERN, checkpoint_path

CHECKPOINT_FORMAT = "pet-ddpm3d-checkpoint-v1"


#: What ``torch.load(weights_only=True)`` raises for a file that is not a torch file or is cut short: the unpickler
#: reads arbitrary bytes as instructions (a text file renamed ``.pt`` gives a KeyError, an empty one EOFError).
UNREADABLE_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError,
                     TypeError, AttributeError, struct.error)

#: What torch says of a global (a class or function) weights-only loading does not run: "Unsupported global: GLOBAL
#: x.y" or "unsupported GLOBAL x.y whose module x is blocked".
UNSUPPORTED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL (\S+)", re.IGNORECASE)

#: What torch says of a pickle instruction its weights-only unpickler does not run: in a pickle torch.save did not
#: write (it starts with :data:`PICKLE_PROTOCOL_MARK`), or in bytes that are no pickle at all.
UNSUPPORTED_OPERAND = re.compile(r"Unsupported operand \d+")

#: The first byte of a pickle of protocol 2 or later (the PROTO instruction).
PICKLE_PROTOCOL_MARK = b"\x80"

RESAVE = "re-save the weights from a trusted copy with torch.save(model.state_dict(), path)"


def _refusal(path: str | Path, flag: str, err: Exception, head: bytes) -> UserError:
    """One line saying why ``torch.load(weights_only=True)`` could not read ``path`` (whose first bytes are
    ``head``) and what to do."""
    found = UNSUPPORTED_GLOBAL.search(str(err))
    if found:
        return UserError(f"{flag} {path}: refused for safety: it needs unpickling of code or objects "
                         f"({found.group(1)}) that weights-only loading does not run; {RESAVE}")
    if UNSUPPORTED_OPERAND.search(str(err)) and head.startswith(PICKLE_PROTOCOL_MARK):
        return UserError(f"{flag} {path}: refused for safety: it is a pickle torch.save did not write, with "
                         f"instructions weights-only loading does not run (it may hold code); {RESAVE}")
    if isinstance(err, EOFError):
        reason = "it ends early: empty or cut short"
    elif isinstance(err, (RuntimeError, OSError, ValueError)):
        reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    else:
        reason = "not a torch file"
    return UserError(f"{flag} {path}: the checkpoint is unreadable or corrupt ({reason}); pass a .pt file written by "
                     "torch.save (scripts/train.py's checkpoints and EMA files, or the released model.pt)")


def read_checkpoint(path: str | Path, flag: str = "--model_path") -> dict:
    """Read ``path`` (a file or URL) with ``weights_only=True`` on the CPU.

    Raises:
        UserError: in one line naming ``flag`` and the file, when it is missing, unreadable or
            corrupt, or holds code or objects weights-only loading refuses to run.
    """
    if not storage.is_file(path):
        raise UserError(f"{flag} {path}: the checkpoint file does not exist")
    head = b""
    try:
        with storage.open_binary_for_read(path) as f, warnings.catch_warnings():
            head = f.read(1)
            f.seek(0)
            # torch warns of any pickle protocol but 2 before refusing or reading it; the refusal says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except UNREADABLE_ERRORS as err:
        raise _refusal(path, flag, err, head) from err
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict")
    return obj


def stored_flags(path: str | Path, flag: str = "--model_path") -> dict | None:
    """The flags a model was trained with (model, diffusion and ``model_voxel_size``), or None.

    A training checkpoint holds them. An EMA file of a training run
    (``ema_<rate>_<step>.pt``, a plain ``state_dict``) takes them from the
    checkpoint of the same step beside it, while that is still there. Other plain
    ``state_dict`` files (the released ``model.pt``) store none: None. Whole files
    are read, as :func:`read_checkpoint` does.
    """
    checkpoint = read_checkpoint(path, flag)
    if checkpoint.get("format") == CHECKPOINT_FORMAT:
        return dict(checkpoint["flags"])
    folder, _, name = str(path).rpartition("/")
    ema = EMA_PATTERN.fullmatch(name)
    sibling = checkpoint_path(folder or ".", int(ema.group(2))) if ema else None
    return stored_flags(sibling, flag) if sibling is not None and storage.is_file(sibling) else None


def model_state_from(checkpoint: dict, path: str | Path, weights: str = "ema") -> dict[str, torch.Tensor]:
    """The network ``state_dict`` inside a loaded file.

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        weights: for a training checkpoint, ``"ema"`` (first EMA rate), ``"ema:<rate>"``
            or ``"model"``; ignored for a plain state_dict.
    """
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        state = checkpoint
    elif weights == "model":
        state = checkpoint["model"]
    else:
        emas = checkpoint.get("ema") or {}
        if not emas:
            raise UserError(f"checkpoint {path} has no EMA weights; use weights 'model'")
        rate = weights.partition(":")[2] or next(iter(emas))
        if rate not in emas:
            raise UserError(f"checkpoint {path} has no EMA rate {rate}; it has {', '.join(emas)}")
        state = emas[rate]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"checkpoint {path} is not a state_dict: entry {bad[0]!r} is not a tensor")
    # Weights saved from a DistributedDataParallel wrapper carry a "module." prefix.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_model_weights(model: torch.nn.Module, path: str | Path, weights: str = "ema",
                       flag: str = "--model_path") -> None:
    """Load the weights in ``path`` into ``model`` strictly.

    Raises:
        UserError: the file is unusable, or its keys/shapes do not fit the model;
            the message lists missing and unexpected keys, shape differences, and
            the flags that the file's weights suggest.
    """
    state = model_state_from(read_checkpoint(path, flag), path, weights)
    problems = describe_mismatch(model.state_dict(), state)
    if problems:
        hint = suggest_flags(state)
        raise UserError(
            f"checkpoint {path} does not fit the model built from the flags: {problems}"
            + (f"; the file looks like it was trained with {hint}" if hint else "")
        )
    model.load_state_dict(state, strict=True)


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 3) -> str:
    """One line naming missing / unexpected keys and differing shapes (empty if they fit)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in found and found[k].shape != expected[k].shape
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape differences (file vs model)", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def suggest_flags(state: dict[str, torch.Tensor]) -> str:
    """Flags a ``state_dict`` of this UNet family was most likely built with ("" if unclear)."""
    try:
        first = state["input_blocks.0.0.weight"]
        out = state["out.2.weight"]
    except KeyError:
        return ""
    num_channels = first.shape[0]
    if first.shape[1] == 1:  # the low dose alone goes in: the regression baseline
        flags = [f"--num_channels {num_channels}", "--model_kind regression"]
    else:
        flags = [f"--num_channels {num_channels}", f"--learn_sigma {out.shape[0] == 2 * (first.shape[1] // 2)}"]
    flags.append(f"--dims {first.ndim - 2}")
    emb = state.get("input_blocks.1.0.emb_layers.1.weight")
    if emb is not None:
        flags.append(f"--use_scale_shift_norm {emb.shape[0] == 2 * state['input_blocks.1.0.out_layers.3.weight'].shape[0]}")
    if any(".qkv." in k for k in state):
        return " ".join(flags)
    level_ends = sorted({int(m.group(1)) for k in state if (m := re.match(r"output_blocks\.(\d+)\.1\.", k))})
    num_outputs = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"output_blocks\.(\d+)\.", k)))
    if level_ends:
        per_level = level_ends[0] + 1
        levels = num_outputs // per_level
        mult = [
            state[f"input_blocks.{1 + level * per_level}.0.out_layers.3.weight"].shape[0] / num_channels
            for level in range(levels)
        ]
        flags.append(f"--num_res_blocks {per_level - 1}")
        flags.append("--channel_mult " + ",".join(f"{m:g}" for m in mult))
        flags.append(f"--resblock_updown {f'output_blocks.{level_ends[0]}.1.in_layers.0.weight' in state}")
    return " ".join(flags)
