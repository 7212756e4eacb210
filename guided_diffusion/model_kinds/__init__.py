"""The registry of model kinds: what denoises, by name.

Each kind (:class:`~.base.ModelKind`) says how its network is built and trained,
how it denoises patches (a :class:`~.base.PatchPredictor`) and whole volumes
(a :class:`~.base.VolumeMethod`), and what the sidecar records. Scripts,
validation and benchmarks look kinds up here by name; nothing else tests a
kind's name or type. Adding a kind is one module plus one line below (see
``README.md`` beside this file).
"""

from __future__ import annotations

from ..errors import UserError
from .base import ModelKind, NetworkMethod, PatchPredictor, RunPlan, VolumeMethod
from .diffusion import DiffusionKind, ReverseProcess
from .gaussian import GaussianKind
from .one_pass import GanKind, OnePass, OnePassKind, adversarial_process, regression_process

MODEL_KINDS: dict[str, ModelKind] = {
    "diffusion": DiffusionKind("diffusion", "the paper's conditional DDPM", deterministic=False, warm_starts=True),
    "regression": OnePassKind("regression", "the UNet mapping the low dose to the full dose in one pass",
                              make_process=regression_process),
    "gan": GanKind("gan", "that UNet trained against a patch discriminator (3D GAN)", make_process=adversarial_process),
    "gaussian": GaussianKind("gaussian", "a Gaussian filter of a fitted FWHM, no network", trainable=False),
}


def get_model_kind(name: str, flag: str = "--model_kind", trainable: bool = False) -> ModelKind:
    """The kind called ``name``; UserError naming ``flag`` and the choices otherwise (only trainable ones if asked)."""
    choices = [key for key, kind in MODEL_KINDS.items() if kind.trainable or not trainable]
    if name not in choices:
        raise UserError(f"{flag} must be one of {', '.join(choices)}, got {name!r}")
    return MODEL_KINDS[name]


__all__ = [
    "MODEL_KINDS", "ModelKind", "NetworkMethod", "OnePass", "PatchPredictor", "ReverseProcess", "RunPlan",
    "VolumeMethod", "get_model_kind",
]
