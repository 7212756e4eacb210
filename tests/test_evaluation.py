"""Baselines, quality tables and the demo figure."""

from __future__ import annotations

import numpy as np

from guided_diffusion.pet.eval.baselines import best_gaussian_filter
from guided_diffusion.pet.eval.figures import demo_figure
from guided_diffusion.pet.eval.scoring import score_against_full_dose
from guided_diffusion.pet.eval.tables import quality_table
from guided_diffusion.pet.sim.cases import EvaluationCase


def smooth_truth_and_noisy(seed: int = 0):
    x, y, z = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 16), np.linspace(-1, 1, 24), indexing="ij")
    truth = (2.0 + np.cos(2 * x) * np.cos(2 * y) * np.cos(z)).astype(np.float32)
    noisy = truth + np.random.default_rng(seed).normal(0, 0.6, truth.shape).astype(np.float32)
    return truth, noisy


def test_best_gaussian_filter_smooths_noise_and_beats_the_input():
    truth, noisy = smooth_truth_and_noisy()
    fwhm, filtered = best_gaussian_filter(noisy, truth, (4.0, 4.0, 4.0))
    table = quality_table({"low": noisy, "gauss": filtered}, truth, mask=truth > 1.5)
    assert fwhm >= 4.0
    assert table["gauss"]["psnr"] > table["low"]["psnr"] + 3
    assert table["gauss"]["nrmse"] < table["low"]["nrmse"] and table["gauss"]["ssim"] > table["low"]["ssim"]
    assert set(table["low"]) == {"psnr", "ssim", "nrmse", "psnr_body"}


def test_demo_figure_writes_a_png(tmp_path):
    truth, noisy = smooth_truth_and_noisy()
    demo_figure(tmp_path / "demo.png", noisy, truth, truth, np.abs(noisy - truth), (4.0, 4.0, 4.0))
    data = (tmp_path / "demo.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_demo_figure_leaves_the_callers_backend_alone(tmp_path):
    # A caller's backend (here the non-GUI "svg") must survive drawing; matplotlib.use("Agg") inside
    # the library would switch it, and pyplot would keep an open figure.
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        import matplotlib.pyplot as plt

        truth, noisy = smooth_truth_and_noisy()
        demo_figure(tmp_path / "demo.png", noisy, truth, truth, None, (4.0, 4.0, 4.0))
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []
    finally:
        matplotlib.use(before)
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_against_full_dose_lists_every_method():
    truth, noisy = smooth_truth_and_noisy()
    lesions = np.zeros(truth.shape, np.uint16)
    lesions[8:11, 6:9, 10:13] = 1
    case = EvaluationCase(seed=0, dose=0.05, low=noisy, full=truth, truth=truth, labels=(truth > 0).astype(np.uint8),
                          lesions=lesions, affine=np.eye(4), voxel_size=(4.0, 4.0, 4.0))
    scores = score_against_full_dose(case, truth)
    assert set(scores["metrics"]) == {"low_dose", "gaussian", "denoised"}
    assert scores["metrics"]["denoised"]["psnr"] == float("inf") and scores["gaussian_fwhm_mm"] > 0
    assert scores["lesions"]["num_lesions"] == 1 and "truth" in scores["lesions"]
