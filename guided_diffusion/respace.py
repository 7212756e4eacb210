"""Timestep respacing: sample with a subset of the training schedule's steps."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .gaussian_diffusion import GaussianDiffusion


def space_timesteps(num_timesteps: int, section_counts: str | Iterable[int], *, fit: bool = False) -> set[int]:
    """The original timesteps to keep, with the paper code's syntax.

    ``section_counts`` is ``"ddimN"`` (a fixed stride giving exactly N steps,
    as in the DDIM paper), ``"N"`` or ``"a,b,c"`` / a list of ints: the schedule
    is cut into equal sections and each section keeps that many evenly spaced
    steps (first and last step of the section included).

    ``fit=True`` is the rule of a warm start's short schedule (steps 0..T0, so
    any step count works at any depth): a section asked for more steps than it
    holds keeps all of them, and ``"ddimN"`` that no integer stride meets is read
    as ``"N"`` (so N >= ``num_timesteps`` keeps every step). A request the
    schedule can meet keeps the same steps either way.

    Raises:
        ValueError: the request cannot be met (too many steps, no exact stride) and ``fit`` is False.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            if not fit:
                raise ValueError(f"cannot take exactly {desired} steps of {num_timesteps} with an integer stride")
            section_counts = [desired]
        else:
            section_counts = [int(x) for x in section_counts.split(",")]
    section_counts = list(section_counts)
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start = 0
    kept: list[int] = []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            if not fit:
                raise ValueError(f"cannot divide a section of {size} steps into {count}")
            count = size
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        kept += [start + round(k * stride) for k in range(count)]
        start += size
    return set(kept)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion process that keeps only ``use_timesteps`` of a base schedule.

    The betas are recomputed so that the kept steps have the base process's
    cumulative alphas, and the network still sees the original timesteps.

    Args:
        use_timesteps: original timesteps to keep.
        betas: the base (full-length) schedule; other arguments as GaussianDiffusion.
    """

    def __init__(self, use_timesteps: Iterable[int], *, betas: np.ndarray, **kwargs):
        base = GaussianDiffusion(betas=betas, **kwargs)
        self.use_timesteps = set(use_timesteps)
        kept = sorted(self.use_timesteps)
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise ValueError(f"timesteps to keep must lie in [0, {base.num_timesteps})")
        cumprod = base.alphas_cumprod[kept]
        new_betas = 1 - cumprod / np.append(1.0, cumprod[:-1])
        super().__init__(betas=new_betas, timestep_map=kept, original_num_steps=base.num_timesteps, **kwargs)
