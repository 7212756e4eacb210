"""A warm start of any depth works with any step count: a short span keeps all its T0 + 1 steps when fewer than
asked (README, "The launcher's sampler"), and spans that hold enough steps keep the steps they always kept."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from denoise_helpers import FAST, run, write_random_model

from guided_diffusion.networks import create_gaussian_diffusion
from guided_diffusion.respace import space_timesteps

STARTS = range(1, 21)
FORMS = ("5", "10", "ddim5", "ddim10", "10,10,10")


def expected_count(form: str, span: int) -> int:
    """Steps a span of ``span`` keeps for ``form``: what was asked, at most what each section holds."""
    counts = [int(form[len("ddim"):])] if form.startswith("ddim") else [int(c) for c in form.split(",")]
    sizes = [len(section) for section in np.array_split(np.arange(span), len(counts))]
    return sum(min(count, size) for count, size in zip(counts, sizes))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("start", STARTS)
def test_every_start_builds_a_process_within_its_span(start, form):
    process = create_gaussian_diffusion(steps=1000, timestep_respacing=form, start_timestep=start)
    kept = list(process.timestep_map)
    assert kept == sorted(set(kept)) and kept[0] == 0 and kept[-1] <= start
    assert process.num_timesteps == len(kept) == expected_count(form, start + 1)
    if not form.startswith("ddim"):
        assert kept[-1] == start  # evenly spaced forms start exactly at T0


@pytest.mark.parametrize("start", [3, 8])
def test_a_shallow_start_keeps_all_its_steps(start):
    for form in ("10", "ddim10", "10,10,10"):
        process = create_gaussian_diffusion(steps=1000, timestep_respacing=form, start_timestep=start)
        assert list(process.timestep_map) == list(range(start + 1))


def test_spans_that_hold_enough_steps_keep_the_same_steps():
    compared = 0
    for span in range(2, 260):
        for form in ("5", "10", "50", "ddim5", "ddim10", "ddim50", "10,10,10", "3,7"):
            try:
                strict = space_timesteps(span, form)
            except ValueError:
                continue
            assert space_timesteps(span, form, fit=True) == strict, (span, form)
            compared += 1
    assert compared > 1000
    assert sorted(space_timesteps(1000, "ddim10", fit=True)) == list(range(0, 1000, 100))
    assert sorted(space_timesteps(9, "5", fit=True)) == [0, 2, 4, 6, 8]


def test_a_ddim_count_no_stride_meets_is_spaced_evenly_in_a_warm_start():
    assert sorted(space_timesteps(12, "ddim10", fit=True)) == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11]
    with pytest.raises(ValueError, match="integer stride"):
        space_timesteps(12, "ddim10")


def test_the_full_process_still_refuses_more_steps_than_it_has():
    with pytest.raises(Exception, match="cannot divide a section of 100 steps into 200"):
        create_gaussian_diffusion(steps=100, timestep_respacing="200")


@pytest.mark.slow
def test_a_start_below_the_step_count_denoises_end_to_end(tmp_path: Path):
    model = write_random_model(tmp_path / "model.pt")
    suv = np.random.default_rng(3).gamma(2.0, 1.0, (10, 9, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(suv, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "scan.nii.gz")
    save = tmp_path / "out"
    result = run(["--model_path", str(model), "--base_samples", str(tmp_path / "scan.nii.gz"), "--save_dir",
                  str(save), *FAST[2:], "--steps", "10", "--start_timestep", "3"], ranks=0)
    assert result.returncode == 0, result.stderr
    sampler = json.loads((save / "scan_denoised.json").read_text())["sampler"]
    assert sampler["steps"] == 4 and sampler["start_timestep"] == 3
    assert np.isfinite(np.asarray(nib.load(save / "scan_denoised.nii.gz").dataobj)).all()
