"""Flag parsing: booleans, YAML presets, and bad flags raised as one-line UserErrors."""

from __future__ import annotations

import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.flags import FlagParser, add_dict_to_argparser, load_config, parse_args_with_config, str2bool
from guided_diffusion.script_util import sr_model_and_diffusion_defaults


def parser() -> FlagParser:
    p = FlagParser(prog="train.py")
    add_dict_to_argparser(p, {**sr_model_and_diffusion_defaults(), "model_voxel_size": 0.0})
    return p


@pytest.mark.parametrize("text,value", [("True", True), ("false", False), ("1", True), ("0", False),
                                        ("yes", True), ("NO", False)])
def test_booleans(text, value):
    assert str2bool(text) is value
    assert parser().parse_args(["--learn_sigma", text]).learn_sigma is value


@pytest.mark.parametrize("argv,named", [
    (["--learn_sigma", "maybe"], "--learn_sigma"),
    (["--num_channels", "wide"], "--num_channels"),
    (["--not_a_flag", "1"], "--not_a_flag"),
])
def test_bad_flags_raise_one_line_naming_the_flag(argv, named):
    with pytest.raises(UserError) as info:
        parser().parse_args(argv)
    message = str(info.value)
    assert named in message and "train.py --help" in message and "\n" not in message


def test_help_still_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["--help"])
    assert info.value.code == 0
    assert "--num_channels" in capsys.readouterr().out


def test_config_preset_and_explicit_override():
    args = parse_args_with_config(parser(), ["--config", "paper", "--num_channels", "64"])
    assert args.large_size == 96 and args.learn_sigma is True and args.resblock_updown is True
    assert args.num_channels == 64


def test_presets_hold_their_documented_values():
    # The released network (README, "The network"): 128 channels, learned sigma, 1000 linear steps.
    paper = load_config("paper")
    assert (paper["num_channels"], paper["learn_sigma"], paper["diffusion_steps"]) == (128, True, 1000)
    assert load_config("tiny")["num_channels"] == 32
    # The model grid: 1.65 mm for the paper's network, 4 mm for the demo model, the input's grid for tiny.
    assert paper["model_voxel_size"] == 1.65 and load_config("demo")["model_voxel_size"] == 4.0
    assert "model_voxel_size" not in load_config("tiny")
    assert {k: v for k, v in load_config("demo").items() if k != "model_voxel_size"} == load_config("tiny")


def test_config_path_is_read(tmp_path):
    (tmp_path / "mine.yaml").write_text("num_channels: 8\n")
    assert parse_args_with_config(parser(), ["--config", str(tmp_path / "mine.yaml")]).num_channels == 8


@pytest.mark.parametrize("text,named", [("num_channels: 8\nnot_a_flag: 1\n", "unknown flags not_a_flag"),
                                        ("num_channels: wide\n", "flag num_channels"),
                                        ("[1, 2]\n", "expected a mapping")])
def test_bad_config_is_a_user_error(tmp_path, text, named):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UserError, match=named):
        parse_args_with_config(parser(), ["--config", str(tmp_path / "bad.yaml")])


def test_missing_config_lists_the_presets():
    with pytest.raises(UserError, match=r"no_such_preset.*paper, tiny"):
        parse_args_with_config(parser(), ["--config", "no_such_preset"])
