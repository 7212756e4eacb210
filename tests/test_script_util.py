"""Flag parsing with the paper's names, booleans, and YAML presets."""

from __future__ import annotations

import argparse

import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.script_util import (
    add_dict_to_argparser,
    create_gaussian_diffusion,
    diffusion_from_flags,
    parse_args_with_config,
    parse_channel_mult,
    sr_model_and_diffusion_defaults,
    str2bool,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_dict_to_argparser(p, sr_model_and_diffusion_defaults())
    return p


@pytest.mark.parametrize("text,value", [("True", True), ("false", False), ("1", True), ("0", False),
                                        ("yes", True), ("NO", False)])
def test_booleans(text, value):
    assert str2bool(text) is value
    assert parser().parse_args(["--learn_sigma", text]).learn_sigma is value


def test_bad_boolean_names_the_flag(capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["--learn_sigma", "maybe"])
    assert info.value.code == 2
    assert "--learn_sigma" in capsys.readouterr().err


def test_config_preset_and_explicit_override():
    args = parse_args_with_config(parser(), ["--config", "paper", "--num_channels", "64"])
    assert args.large_size == 96 and args.learn_sigma is True and args.resblock_updown is True
    assert args.num_channels == 64


def test_config_with_unknown_flag_is_refused(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("num_channels: 8\nnot_a_flag: 1\n")
    with pytest.raises(SystemExit):
        parse_args_with_config(parser(), ["--config", str(tmp_path / "bad.yaml")])
    assert "not_a_flag" in capsys.readouterr().err


def test_missing_config_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args_with_config(parser(), ["--config", "no_such_preset"])
    assert "no_such_preset" in capsys.readouterr().err


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
