"""Loading weights: safe unpickling, strict fit, messages that name the problem."""

from __future__ import annotations

import pytest
import torch

from guided_diffusion.checkpoint import CHECKPOINT_FORMAT, load_model_weights, suggest_flags
from guided_diffusion.errors import UserError
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

TINY = {**sr_model_and_diffusion_defaults(), "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
        "attention_resolutions": "", "learn_sigma": True, "resblock_updown": True}


def tiny_model(**overrides):
    return sr_create_model_and_diffusion(**{**TINY, **overrides})[0]


def test_plain_state_dict_round_trip(tmp_path):
    source = tiny_model()
    torch.save(source.state_dict(), tmp_path / "model.pt")
    target = tiny_model()
    load_model_weights(target, tmp_path / "model.pt")
    for a, b in zip(source.state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)


def test_training_checkpoint_uses_ema_and_strips_ddp_prefix(tmp_path):
    source = tiny_model()
    ema = {k: v + 1 for k, v in source.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "step": 3,
                "model": {f"module.{k}": v for k, v in source.state_dict().items()},
                "ema": {"0.9999": ema}}, tmp_path / "ckpt.pt")
    target = tiny_model()
    load_model_weights(target, tmp_path / "ckpt.pt")
    assert torch.equal(target.state_dict()["out.2.bias"], ema["out.2.bias"])
    load_model_weights(target, tmp_path / "ckpt.pt", weights="model")
    assert torch.equal(target.state_dict()["out.2.bias"], source.state_dict()["out.2.bias"])
    with pytest.raises(UserError, match="no EMA rate 0.5"):
        load_model_weights(target, tmp_path / "ckpt.pt", weights="ema:0.5")


class Payload:
    """Stands for arbitrary code a pickle could run on load."""


def test_pickled_code_is_refused(tmp_path):
    torch.save({"weights": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="unpickling of code"):
        load_model_weights(tiny_model(), tmp_path / "evil.pt")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model_weights(tiny_model(), tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable or corrupt"):
        load_model_weights(tiny_model(), tmp_path / "bad.pt")


def test_mismatch_names_keys_shapes_and_suggests_flags(tmp_path):
    torch.save(tiny_model(num_channels=64, learn_sigma=False).state_dict(), tmp_path / "other.pt")
    with pytest.raises(UserError) as info:
        load_model_weights(tiny_model(), tmp_path / "other.pt")
    message = str(info.value)
    assert "shape differences" in message and "time_embed.0.weight (256, 64) vs (128, 32)" in message
    assert "--num_channels 64" in message and "--learn_sigma False" in message
    assert "\n" not in message


def test_suggest_flags_recovers_the_architecture():
    model = tiny_model(num_res_blocks=2, channel_mult="1,2,4", use_scale_shift_norm=False)
    hint = suggest_flags(model.state_dict())
    for flag in ("--num_channels 32", "--num_res_blocks 2", "--channel_mult 1,2,4", "--use_scale_shift_norm False",
                 "--resblock_updown True", "--dims 3"):
        assert flag in hint


def test_odd_in_plane_size_is_refused_with_the_rule():
    model = tiny_model(channel_mult="1,2,2")
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 1, 3, 6, 8), torch.tensor([1]), low_res=torch.zeros(1, 1, 3, 6, 8))
    out = model(torch.zeros(1, 1, 3, 8, 12), torch.tensor([1]), low_res=torch.zeros(1, 1, 3, 8, 12))
    assert out.shape == (1, 2, 3, 8, 12)  # the axial size (3) is never resampled
