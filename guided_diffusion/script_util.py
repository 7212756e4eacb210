"""Flag defaults and factories with the paper's names.

The paper's launcher lines (``MODEL_FLAGS``, ``DIFFUSION_FLAGS``) work unchanged:
``sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))``.
Flag parsing and ``--config`` presets live in :mod:`guided_diffusion.flags`; the
paper's names for them (``args_to_dict``, ``add_dict_to_argparser``, ...) are
re-exported here so that code written for the paper's scripts keeps working.
"""

from __future__ import annotations

from . import gaussian_diffusion as gd
from .adversarial import DEFAULT_ADV_WEIGHT, DEFAULT_DISC_CHANNELS, AdversarialProcess, PatchDiscriminator
from .errors import UserError
from .flags import add_dict_to_argparser, args_to_dict, load_config, parse_args_with_config, str2bool
from .regression import REGRESSION_LOSSES, RegressionProcess
from .respace import SpacedDiffusion, space_timesteps
from .unet import SuperResModel, UNetModel

__all__ = [
    "CHANNEL_MULT_BY_SIZE", "MODEL_KINDS", "add_dict_to_argparser", "args_to_dict", "check_model_kind",
    "create_gaussian_diffusion", "diffusion_defaults", "diffusion_from_flags", "load_config", "parse_args_with_config",
    "parse_attention_resolutions", "parse_channel_mult", "sr_create_model", "sr_create_model_and_diffusion",
    "sr_model_and_diffusion_defaults", "str2bool",
]

# channel_mult per --large_size, as in the paper's factory (96 is its 3D setting).
CHANNEL_MULT_BY_SIZE = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    96: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

#: What the network is trained to do: "diffusion" (the paper's conditional DDPM), "regression"
#: (the same UNet mapping the low dose to the full dose in one pass, a baseline) or "gan" (that UNet
#: trained against a patch discriminator, the 3D GAN baseline; it denoises as "regression" does).
MODEL_KINDS = ("diffusion", "regression", "gan")


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


def sr_model_and_diffusion_defaults() -> dict:
    """Defaults of every model and diffusion flag of the paper's scripts (plus ``channel_mult``, ``dims``,
    ``model_kind``, ``regression_loss`` and the GAN baseline's ``adv_weight`` and ``disc_channels``)."""
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
        adv_weight=DEFAULT_ADV_WEIGHT,
        disc_channels=DEFAULT_DISC_CHANNELS,
        **diffusion_defaults(),
    )


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
) -> tuple[UNetModel, SpacedDiffusion | RegressionProcess]:
    """Build the conditional UNet and its diffusion process from the paper's flags.

    ``start_timestep`` is a sampling option (see :func:`create_gaussian_diffusion`).
    With ``model_kind="regression"`` the network is the same UNet with one input
    channel (the low dose) and one output channel (``learn_sigma`` does not apply),
    and the process a :class:`~guided_diffusion.regression.RegressionProcess`
    (``regression_loss`` "l1" or "l2"; the diffusion flags are not used). With
    ``model_kind="gan"`` the network is that UNet too, and the process an
    :class:`~guided_diffusion.adversarial.AdversarialProcess` holding a patch
    discriminator of ``disc_channels`` and weighting its term by ``adv_weight``.
    """
    del small_size  # the conditioning volume has the same size as the output in denoising
    check_model_kind(model_kind, regression_loss)
    model = sr_create_model(
        large_size, num_channels, num_res_blocks, learn_sigma=learn_sigma, class_cond=class_cond,
        use_checkpoint=use_checkpoint, attention_resolutions=attention_resolutions, num_heads=num_heads,
        num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm, dropout=dropout, resblock_updown=resblock_updown,
        use_fp16=use_fp16, channel_mult=channel_mult, dims=dims, model_kind=model_kind,
    )
    if model_kind == "regression":
        return model, RegressionProcess(regression_loss)
    if model_kind == "gan":
        return model, AdversarialProcess(regression_loss, adv_weight, PatchDiscriminator(dims, disc_channels))
    diffusion = create_gaussian_diffusion(
        steps=diffusion_steps, learn_sigma=learn_sigma, noise_schedule=noise_schedule, use_kl=use_kl,
        predict_xstart=predict_xstart, rescale_timesteps=rescale_timesteps,
        rescale_learned_sigmas=rescale_learned_sigmas, timestep_respacing=timestep_respacing,
        start_timestep=start_timestep,
    )
    return model, diffusion


def sr_create_model(
    large_size: int,
    num_channels: int,
    num_res_blocks: int,
    *,
    learn_sigma: bool,
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
    model_kind: str = "diffusion",
) -> UNetModel:
    """The network alone: for diffusion the conditional UNet (one image channel, plus the conditioning
    channel; ``model(x_t, t, low_res=low)``), for regression and the GAN the same UNet with the low dose
    as its one input channel and one output channel (``model(low, t)``)."""
    if dims not in (2, 3):
        raise UserError(f"--dims must be 2 or 3, got {dims}")
    check_model_kind(model_kind)
    regression = model_kind != "diffusion"
    return (UNetModel if regression else SuperResModel)(
        in_channels=1,
        model_channels=num_channels,
        out_channels=2 if learn_sigma and not regression else 1,
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


def check_model_kind(model_kind: str, regression_loss: str = "l1") -> None:
    """UserError naming --model_kind / --regression_loss unless they are known values."""
    if model_kind not in MODEL_KINDS:
        raise UserError(f"--model_kind must be one of {', '.join(MODEL_KINDS)}, got {model_kind!r}")
    if regression_loss not in REGRESSION_LOSSES:
        raise UserError(f"--regression_loss must be one of {', '.join(REGRESSION_LOSSES)}, got {regression_loss!r}")


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
    instead of pure noise (see ``denoise.SamplingOptions.warm_start``).
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
            space_timesteps(span, timestep_respacing or [span]),
            betas=gd.get_named_beta_schedule(noise_schedule, steps),
            model_mean_type=gd.ModelMeanType.START_X if predict_xstart else gd.ModelMeanType.EPSILON,
            model_var_type=var_type,
            loss_type=loss_type,
            rescale_timesteps=rescale_timesteps,
        )
    except ValueError as err:
        raise UserError(f"--diffusion_steps/--noise_schedule/--timestep_respacing: {err}")
