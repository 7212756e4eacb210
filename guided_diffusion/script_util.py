"""Flag defaults and factories with the paper's names.

The paper's launcher lines (``MODEL_FLAGS``, ``DIFFUSION_FLAGS``) work unchanged:
``sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))``.
The factories themselves live in :mod:`guided_diffusion.networks` and the model
kinds' registry (:mod:`guided_diffusion.model_kinds`); flag parsing and
``--config`` presets in :mod:`guided_diffusion.flags`. The paper's names for all
of them are kept here so that code written for the paper's scripts keeps working.
"""

from __future__ import annotations

from typing import Any

from .adversarial import DEFAULT_ADV_WEIGHT, DEFAULT_DISC_CHANNELS
from .errors import UserError
from .flags import add_dict_to_argparser, args_to_dict, load_config, parse_args_with_config, str2bool
from .model_kinds import MODEL_KINDS, get_model_kind
from .networks import (
    CHANNEL_MULT_BY_SIZE,
    create_gaussian_diffusion,
    diffusion_defaults,
    diffusion_from_flags,
    parse_attention_resolutions,
    parse_channel_mult,
)
from .regression import DEFAULT_ONE_PASS_OUTPUT, REGRESSION_LOSSES
from .unet import UNetModel

__all__ = [
    "CHANNEL_MULT_BY_SIZE", "MODEL_KINDS", "add_dict_to_argparser", "args_to_dict", "check_model_kind",
    "create_gaussian_diffusion", "diffusion_defaults", "diffusion_from_flags", "load_config", "parse_args_with_config",
    "parse_attention_resolutions", "parse_channel_mult", "sr_create_model", "sr_create_model_and_diffusion",
    "sr_model_and_diffusion_defaults", "str2bool",
]


def sr_model_and_diffusion_defaults() -> dict:
    """Defaults of every model and diffusion flag of the paper's scripts (plus ``channel_mult``, ``dims``,
    ``model_kind``, ``regression_loss``, ``one_pass_output`` and the GAN baseline's ``adv_weight`` and
    ``disc_channels``)."""
    return dict(
        large_size=256,
        small_size=64,
        num_channels=128,
        num_res_blocks=2,
        num_heads=4,
        num_head_channels=-1,
        num_heads_upsample=-1,
        attention_resolutions="32,16,8",
        channel_mult="",
        dims=3,
        dropout=0.0,
        class_cond=False,
        use_checkpoint=False,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_fp16=False,
        model_kind="diffusion",
        regression_loss="l1",
        one_pass_output=DEFAULT_ONE_PASS_OUTPUT,
        adv_weight=DEFAULT_ADV_WEIGHT,
        disc_channels=DEFAULT_DISC_CHANNELS,
        **diffusion_defaults(),
    )


def sr_create_model_and_diffusion(
    large_size: int,
    small_size: int,
    class_cond: bool,
    learn_sigma: bool,
    num_channels: int,
    num_res_blocks: int,
    num_heads: int,
    num_head_channels: int,
    num_heads_upsample: int,
    attention_resolutions: str,
    dropout: float,
    diffusion_steps: int,
    noise_schedule: str,
    timestep_respacing: str,
    use_kl: bool,
    predict_xstart: bool,
    rescale_timesteps: bool,
    rescale_learned_sigmas: bool,
    use_checkpoint: bool,
    use_scale_shift_norm: bool,
    resblock_updown: bool,
    use_fp16: bool,
    channel_mult: str = "",
    dims: int = 3,
    start_timestep: int = 0,
    model_kind: str = "diffusion",
    regression_loss: str = "l1",
    adv_weight: float = DEFAULT_ADV_WEIGHT,
    disc_channels: int = DEFAULT_DISC_CHANNELS,
    one_pass_output: str = DEFAULT_ONE_PASS_OUTPUT,
) -> tuple[UNetModel, Any]:
    """Build the conditional UNet and its diffusion process from the paper's flags.

    ``start_timestep`` is a sampling option (see :func:`create_gaussian_diffusion`).
    ``model_kind`` picks the kind from :data:`~guided_diffusion.model_kinds.MODEL_KINDS`:
    "diffusion" (the paper's), or the one-pass baselines "regression" (the same
    UNet with the low dose as its one input channel and one output channel,
    ``learn_sigma`` does not apply; its process a
    :class:`~guided_diffusion.regression.RegressionProcess` of ``regression_loss``, reading the network's
    output as ``one_pass_output`` says: "residual" (a correction to the input), "gaussian" or "direct")
    and "gan" (that UNet, and an :class:`~guided_diffusion.adversarial.AdversarialProcess`
    holding a patch discriminator of ``disc_channels``, its term weighted by ``adv_weight``).
    """
    del small_size  # the conditioning volume has the same size as the output in denoising
    flags = dict(locals())
    check_model_kind(model_kind, regression_loss)
    return get_model_kind(model_kind, trainable=True).build(flags, start_timestep)


def sr_create_model(large_size: int, num_channels: int, num_res_blocks: int, *, model_kind: str = "diffusion",
                    **flags) -> UNetModel:
    """The network alone: for diffusion the conditional UNet (one image channel, plus the conditioning
    channel; ``model(x_t, t, low_res=low)``), for regression and the GAN the same UNet with the low dose
    as its one input channel and one output channel (``model(low, t)``). ``flags``: the other model flags."""
    flags = {**sr_model_and_diffusion_defaults(), **flags, "large_size": large_size, "num_channels": num_channels,
             "num_res_blocks": num_res_blocks}
    return get_model_kind(model_kind, trainable=True).network(flags)


def check_model_kind(model_kind: str, regression_loss: str = "l1") -> None:
    """UserError naming --model_kind / --regression_loss unless they are a trainable kind and a known loss."""
    get_model_kind(model_kind, trainable=True)
    if regression_loss not in REGRESSION_LOSSES:
        raise UserError(f"--regression_loss must be one of {', '.join(REGRESSION_LOSSES)}, got {regression_loss!r}")
