"""The network and diffusion reproduce the published implementation's numbers (the fixture)."""

from __future__ import annotations

import argparse
import shlex

import numpy as np
import pytest
import torch
from conftest import apply_weight_rule, sine_pattern

from guided_diffusion.script_util import (
    add_dict_to_argparser,
    args_to_dict,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)

SHAPE = (1, 1, 4, 16, 16)


def build(flags: dict, **overrides):
    """Through the public API, as the paper's scripts do."""
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, sr_model_and_diffusion_defaults())
    argv = [f"--{k}={v}" for k, v in {**flags, **overrides}.items()]
    args = parser.parse_args(argv)
    return sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_paper_preset_state_dict_matches_released_layout(reference):
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, sr_model_and_diffusion_defaults())
    args = parser.parse_args(shlex.split(reference["paper_model_flags"]))
    with torch.device("meta"):  # 207 M parameters, nothing allocated
        model, _ = sr_create_model_and_diffusion(**args_to_dict(args, sr_model_and_diffusion_defaults().keys()))
    state = model.state_dict()
    expected = reference["paper_state_dict_shapes"]
    assert list(state) == list(expected)
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(v.numel() for v in state.values()) == reference["paper_param_count"] == 206_964_610


@pytest.mark.parametrize("case", ["A", "B"])
def test_small_network_layout(reference, case):
    model, _ = build(reference["cases"][case]["flags"])
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == reference["cases"][case]["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == reference["cases"][case]["param_count"]


@pytest.mark.parametrize("case", ["A", "B"])
def test_forward_and_ddim_match_reference(reference, case):
    expected = reference["cases"][case]
    model, diffusion = build(expected["flags"], timestep_respacing="ddim10")
    apply_weight_rule(model)
    model.eval()
    x = sine_pattern(SHAPE, 0.11, 0.5)
    low_res = sine_pattern(SHAPE, 0.07, 2.0, scale=0.5, offset=0.5)
    noise = sine_pattern(SHAPE, 0.13, 1.0)
    with torch.no_grad():
        out = model(x, torch.tensor([expected["t"]]), low_res=low_res)
    assert relative_error(out, torch.tensor(expected["forward_out"])) < 1e-5

    for clip, key, tol in ((True, "ddim10_eta0_clip_true", 1e-5), (False, "ddim10_eta0_clip_false", 1e-4)):
        sample = diffusion.ddim_sample_loop(
            model, SHAPE, noise=noise, clip_denoised=clip, model_kwargs={"low_res": low_res}, eta=0.0
        )
        assert relative_error(sample, torch.tensor(expected[key])) < tol, key


@pytest.mark.parametrize("name,key", [("linear", "linear1000_betas"), ("cosine", "cosine1000_betas")])
def test_schedules_match_reference(reference, name, key):
    _, diffusion = build(reference["cases"]["A"]["flags"], noise_schedule=name)
    np.testing.assert_allclose(diffusion.betas, reference["schedules"][key], rtol=1e-12, atol=1e-15)


def test_respacing_sets_match_reference(reference):
    for respacing, steps in reference["respacing_1000"].items():
        _, diffusion = build(reference["cases"]["B"]["flags"], timestep_respacing=respacing)
        assert list(diffusion.timestep_map) == sorted(steps), respacing
