"""The reverse-process samplers, by name: one module per sampler, one line per sampler in :data:`SAMPLERS`.

Every sampler is a :class:`~.interface.SamplerFn` over a
:class:`~.interface.Denoiser`; ``README.md`` beside this file says how to add one.
"""

from __future__ import annotations

from ..errors import UserError
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .dpmpp2m import sample_dpmpp_2m
from .interface import Denoiser, Generator, Prediction, SamplerFn, Step

#: The samplers by the name ``--sampler`` (and ``--val_sampler``, ``--quality_samplers``) takes.
SAMPLERS: dict[str, SamplerFn] = {
    "ddpm": sample_ddpm,  # ancestral, the paper's default
    "ddim": sample_ddim,  # deterministic with eta = 0
    "dpmpp2m": sample_dpmpp_2m,  # DPM-Solver++(2M), deterministic
}


def get_sampler(name: str, flag: str = "--sampler") -> SamplerFn:
    """The sampler called ``name``; a :class:`UserError` naming ``flag`` and the choices if there is none."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise UserError(f"{flag} must be one of {', '.join(SAMPLERS)}, got {name!r}") from None


__all__ = ["SAMPLERS", "Denoiser", "Generator", "Prediction", "SamplerFn", "Step", "get_sampler"]
