"""Inference precision and layout: bf16/fp16 within a stated tolerance of fp32, float32 out, same layout results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guided_diffusion.denoise import PatchingOptions, VolumeDenoiser
from guided_diffusion.inference_network import InferenceNetwork
from guided_diffusion.model_kinds import MODEL_KINDS
from guided_diffusion.patch_jobs import SamplingOptions
from guided_diffusion.precision import choose_precision, precision_note
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

#: Largest difference from fp32 of a denoised volume (DDIM, 3 steps), as a fraction of --suv_max.
TOLERANCE = {"bf16": 0.02, "fp16": 0.005}


@pytest.fixture(scope="module")
def network():
    flags = {**sr_model_and_diffusion_defaults(), "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
             "learn_sigma": True, "resblock_updown": True, "attention_resolutions": "1000", "diffusion_steps": 100,
             "timestep_respacing": "ddim3", "use_fp16": True}
    torch.manual_seed(0)
    model, diffusion = sr_create_model_and_diffusion(**flags)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval(), diffusion


def denoise(network, precision: str, channels_last: bool = False) -> np.ndarray:
    model, diffusion = network
    suv = np.random.default_rng(0).gamma(2.0, 1.0, (12, 12, 20)).astype(np.float32)
    sampling = SamplingOptions(batch_size=2, seed=1)
    denoiser = VolumeDenoiser(InferenceNetwork(model, precision, channels_last),
                              MODEL_KINDS["diffusion"].predictor(diffusion, sampling), sampling,
                              PatchingOptions(patch_axial=12, max_patch_inplane=8, overlap=4), suv_max=16.0)
    return denoiser.denoise(suv, "v").mean


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(network, precision):
    reference = denoise(network, "fp32")
    result = denoise(network, precision)
    difference = np.abs(result - reference).max() / 16.0
    assert 0 < difference < TOLERANCE[precision], difference


def test_channels_last_gives_the_same_result(network):
    np.testing.assert_allclose(denoise(network, "fp32", channels_last=True), denoise(network, "fp32"),
                               rtol=0, atol=1e-4)


def test_output_is_float32_and_the_networks_own_fp16_switch_is_off(network):
    model, _ = network
    wrapped = InferenceNetwork(model, "bf16")
    assert model.use_fp16 is False and wrapped.spatial_divisor == model.spatial_divisor
    x = torch.zeros(1, 1, 4, 8, 8)
    assert wrapped(x, torch.tensor([3]), low_res=x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        InferenceNetwork(model, "fp8")


def test_the_papers_use_fp16_means_fp16_on_cuda_only():
    assert choose_precision("", True, torch.device("cuda", 0)) == "fp16"
    assert choose_precision("", True, torch.device("cpu")) == "fp32"
    assert choose_precision("", False, torch.device("cuda", 0)) == "fp32"
    assert choose_precision("bf16", True, torch.device("cuda", 0)) == "bf16"


def test_fp16_on_the_cpu_gets_a_note():
    assert "bf16" in precision_note("fp16", torch.device("cpu"))
    assert precision_note("bf16", torch.device("cpu")) is None
    assert precision_note("fp16", torch.device("cuda", 0)) is None


def test_compiled_outputs_are_copies_of_the_graphs_buffer(network, monkeypatch):
    # A CUDA graph writes every replay into one output buffer; stand in for it.
    buffer = torch.zeros(1, 2, 4, 8, 8)

    def compile_into_buffer(model, mode=None):
        def replay(x, t, **kwargs):
            buffer.copy_(model(x, t, **kwargs))
            return buffer
        return replay

    monkeypatch.setattr(torch, "compile", compile_into_buffer)
    wrapped = InferenceNetwork(network[0], "fp32", compile=True)
    x = torch.randn(1, 1, 4, 8, 8)
    first = wrapped(x, torch.tensor([3]), low_res=x)
    kept = first.clone()
    wrapped(torch.randn(1, 1, 4, 8, 8), torch.tensor([50]), low_res=x)
    torch.testing.assert_close(first, kept)
