"""The paper's network and diffusion process from its flags: the UNet and the Gaussian diffusion.

The factories every model kind builds on (:mod:`guided_diffusion.model_kinds`);
:mod:`guided_diffusion.script_util` re-exports them under the paper's import path.
"""

from __future__ import annotations

from . import gaussian_diffusion as gd
from .errors import UserError
from .respace import SpacedDiffusion, space_timesteps
from .unet import SuperResModel, UNetModel

# channel_mult per --large_size, as in the paper's factory (96 is its 3D setting).
CHANNEL_MULT_BY_SIZE = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    96: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


def diffusion_defaults() -> dict:
    """Defaults of the diffusion flags."""
    return {
        "learn_sigma": False,
        "diffusion_steps": 1000,
        "noise_schedule": "linear",
        "timestep_respacing": "",
        "use_kl": False,
        "predict_xstart": False,
        "rescale_timesteps": False,
        "rescale_learned_sigmas": False,
    }


def parse_channel_mult(channel_mult: str, large_size: int) -> tuple[float, ...]:
    """``"1,1,2,3,4"`` -> (1, 1, 2, 3, 4); empty -> the paper's choice for ``large_size``."""
    if channel_mult:
        try:
            values = tuple(float(v) if "." in v else int(v) for v in channel_mult.split(","))
        except ValueError:
            raise UserError(f"--channel_mult {channel_mult!r} must be comma-separated numbers, e.g. 1,1,2,3,4")
        if not values or any(v <= 0 for v in values):
            raise UserError(f"--channel_mult {channel_mult!r} must list positive numbers")
        return values
    if large_size not in CHANNEL_MULT_BY_SIZE:
        raise UserError(
            f"no default channel_mult for --large_size {large_size} "
            f"(known: {sorted(CHANNEL_MULT_BY_SIZE)}); pass --channel_mult, e.g. 1,1,2,3,4"
        )
    return CHANNEL_MULT_BY_SIZE[large_size]


def parse_attention_resolutions(attention_resolutions: str, large_size: int) -> tuple[int, ...]:
    """Feature-map sizes with attention (``"32,16,8"``) -> down-sampling rates (``large_size // size``)."""
    try:
        sizes = [int(v) for v in str(attention_resolutions).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--attention_resolutions {attention_resolutions!r} must be comma-separated integers")
    return tuple(large_size // s for s in sizes if s > 0 and large_size // s > 0)


def create_unet(
    large_size: int,
    num_channels: int,
    num_res_blocks: int,
    *,
    conditional: bool,
    out_channels: int,
    class_cond: bool,
    use_checkpoint: bool,
    attention_resolutions: str,
    num_heads: int,
    num_head_channels: int,
    num_heads_upsample: int,
    use_scale_shift_norm: bool,
    dropout: float,
    resblock_updown: bool,
    use_fp16: bool,
    channel_mult: str = "",
    dims: int = 3,
) -> UNetModel:
    """The paper's UNet from its flags, one image channel in.

    ``conditional``: the diffusion model's :class:`~guided_diffusion.unet.SuperResModel`, which
    concatenates the low dose to ``x_t`` (``model(x_t, t, low_res=low)``); otherwise a plain
    :class:`~guided_diffusion.unet.UNetModel` whose one input is the low dose (``model(low, t)``).
    """
    if dims not in (2, 3):
        raise UserError(f"--dims must be 2 or 3, got {dims}")
    return (SuperResModel if conditional else UNetModel)(
        in_channels=1,
        model_channels=num_channels,
        out_channels=out_channels,
        num_res_blocks=num_res_blocks,
        attention_resolutions=parse_attention_resolutions(attention_resolutions, large_size),
        dropout=dropout,
        channel_mult=parse_channel_mult(channel_mult, large_size),
        dims=dims,
        num_classes=None if not class_cond else 1000,
        use_checkpoint=use_checkpoint,
        use_fp16=use_fp16,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown,
    )


#: The flags of :func:`create_unet` that come from the paper's model flags as they are.
UNET_FLAGS = ("large_size", "num_channels", "num_res_blocks", "class_cond", "use_checkpoint", "attention_resolutions",
              "num_heads", "num_head_channels", "num_heads_upsample", "use_scale_shift_norm", "dropout",
              "resblock_updown", "use_fp16", "channel_mult", "dims")


def diffusion_from_flags(flags: dict, **overrides) -> SpacedDiffusion:
    """The diffusion process named by the diffusion flags in ``flags`` (extra keys ignored).

    ``overrides`` replace flags or add sampling options, e.g.
    ``timestep_respacing="ddim10", start_timestep=100``.
    """
    options = {key: flags[key] for key in diffusion_defaults()} | overrides
    return create_gaussian_diffusion(steps=options.pop("diffusion_steps"), **options)


def create_gaussian_diffusion(
    *,
    steps: int = 1000,
    learn_sigma: bool = False,
    sigma_small: bool = False,
    noise_schedule: str = "linear",
    use_kl: bool = False,
    predict_xstart: bool = False,
    rescale_timesteps: bool = False,
    rescale_learned_sigmas: bool = False,
    timestep_respacing: str = "",
    start_timestep: int = 0,
) -> SpacedDiffusion:
    """The diffusion process for the flags; ``timestep_respacing`` empty keeps every step.

    ``start_timestep`` > 0 keeps only steps 0..start_timestep (respaced within
    that range), for samplers that start from a diffused initial estimate
    instead of pure noise (see ``patch_jobs.SamplingOptions.warm_start``). Such a
    span keeps all its T0 + 1 steps when ``timestep_respacing`` asks for more
    (``space_timesteps(..., fit=True)``), so any step count works at any depth.
    """
    if not 0 <= start_timestep < steps:
        raise UserError(f"--start_timestep must be in [0, {steps}), got {start_timestep}")
    span = start_timestep + 1 if start_timestep else steps
    if use_kl:
        loss_type = gd.LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = gd.LossType.RESCALED_MSE
    else:
        loss_type = gd.LossType.MSE
    if learn_sigma:
        var_type = gd.ModelVarType.LEARNED_RANGE
    else:
        var_type = gd.ModelVarType.FIXED_SMALL if sigma_small else gd.ModelVarType.FIXED_LARGE
    try:
        return SpacedDiffusion(
            space_timesteps(span, timestep_respacing or [span], fit=start_timestep > 0),
            betas=gd.get_named_beta_schedule(noise_schedule, steps),
            model_mean_type=gd.ModelMeanType.START_X if predict_xstart else gd.ModelMeanType.EPSILON,
            model_var_type=var_type,
            loss_type=loss_type,
            rescale_timesteps=rescale_timesteps,
        )
    except ValueError as err:
        raise UserError(f"--diffusion_steps/--noise_schedule/--timestep_respacing: {err}")
