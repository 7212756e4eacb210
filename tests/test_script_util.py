"""The paper's factories: channel multipliers, respacing, warm-start truncation (flag parsing: test_flags.py)."""

from __future__ import annotations

import pytest

from guided_diffusion import flags, script_util
from guided_diffusion.errors import UserError
from guided_diffusion.script_util import (
    create_gaussian_diffusion,
    diffusion_from_flags,
    parse_channel_mult,
    sr_model_and_diffusion_defaults,
)


def test_channel_mult_rules():
    assert parse_channel_mult("", 96) == (1, 1, 2, 3, 4)
    assert parse_channel_mult("", 64) == (1, 2, 3, 4)
    assert parse_channel_mult("", 256) == (1, 1, 2, 2, 4, 4)
    assert parse_channel_mult("1,2,2", 96) == (1, 2, 2)
    with pytest.raises(UserError, match="--channel_mult"):
        parse_channel_mult("", 100)
    with pytest.raises(UserError, match="--channel_mult"):
        parse_channel_mult("1,x", 96)


def test_bad_respacing_is_a_user_error():
    with pytest.raises(UserError, match="timestep_respacing"):
        create_gaussian_diffusion(steps=1000, timestep_respacing="ddim999")


def test_start_timestep_truncates_the_process():
    process = create_gaussian_diffusion(steps=1000, timestep_respacing="ddim10", start_timestep=100)
    assert list(process.timestep_map) == list(range(0, 100, 11))
    with pytest.raises(UserError, match="--start_timestep"):
        create_gaussian_diffusion(steps=1000, start_timestep=1000)


def test_diffusion_from_flags_applies_overrides():
    flags = {**sr_model_and_diffusion_defaults(), "learn_sigma": True, "num_channels": 8}
    process = diffusion_from_flags(flags, timestep_respacing="ddim10", start_timestep=100)
    assert len(process.timestep_map) == 10 and max(process.timestep_map) <= 100
    assert process.model_var_type.name == "LEARNED_RANGE"


def test_paper_names_for_flag_parsing_are_re_exported():
    for name in ("args_to_dict", "add_dict_to_argparser", "parse_args_with_config", "str2bool", "load_config"):
        assert getattr(script_util, name) is getattr(flags, name)
