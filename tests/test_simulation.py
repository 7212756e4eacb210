"""Projector, OSEM and the dose pipeline on tiny phantoms; the make_phantoms CLI."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.sim.projector import get_projector
from guided_diffusion.pet.sim.reconstruction import osem
from guided_diffusion.pet.sim.simulation import simulate_doses, simulate_subject

REPO = Path(__file__).resolve().parents[1]
N, NZ, VOXEL = 32, 8, 4.0


def _disk(radius_mm: float, n: int = N, voxel: float = VOXEL) -> np.ndarray:
    c = (np.arange(n) - (n - 1) / 2) * voxel
    return c[:, None] ** 2 + c[None, :] ** 2 <= radius_mm**2


@pytest.fixture(scope="module")
def cylinder():
    """A uniform liver-like cylinder (SUV 2.2, soft-tissue attenuation) and a central ROI."""
    body = np.repeat(_disk(50.0)[:, :, None], NZ, axis=2)
    roi = np.repeat(_disk(30.0)[:, :, None], NZ, axis=2)
    return (2.2 * body).astype(np.float32), (0.0096 * body).astype(np.float32), roi


def _stats(cylinder, seeds=(0, 1, 2), **settings):
    """Mean over seeds of the ROI mean and standard deviation, per dose."""
    activity, mu, roi = cylinder
    means, stds = {}, {}
    for seed in seeds:
        rec, _ = simulate_doses(activity, mu, VOXEL, np.random.default_rng(seed), **settings)
        for d, volume in rec.items():
            means.setdefault(d, []).append(volume[roi].mean())
            stds.setdefault(d, []).append(volume[roi].std())
    return {d: np.mean(v) for d, v in means.items()}, {d: np.mean(v) for d, v in stds.items()}


def test_projector_is_adjoint():
    projector = get_projector(N, N + 3, VOXEL)
    rng = np.random.default_rng(0)
    x = rng.random((N, N + 3, 5)).astype(np.float32)
    y = rng.random((projector.n_angles, projector.n_bins, 5)).astype(np.float32)
    forward, back = projector.forward(x), projector.back(y)
    assert forward.shape == y.shape and back.shape == x.shape
    np.testing.assert_allclose(np.vdot(forward, y), np.vdot(x, back), rtol=1e-4)
    s = 2
    np.testing.assert_allclose(
        np.vdot(projector.subset_forward(x, s, 4), y[s::4]), np.vdot(x, projector.subset_back(y[s::4], s, 4)), rtol=1e-4
    )
    np.testing.assert_allclose(projector.subset_forward(x, s, 4), forward[s::4], rtol=1e-5)


def test_uniform_disk_projects_to_chord_lengths():
    n, voxel, radius = 64, 2.0, 40.0
    projector = get_projector(n, n, voxel)
    sinogram = projector.forward(_disk(radius, n, voxel).astype(np.float32))
    s = (np.arange(projector.n_bins) - (projector.n_bins - 1) / 2) * projector.bin_width
    chord = 2 * np.sqrt(np.clip(radius**2 - s**2, 0, None))
    # Every angle sees the same chord profile; the pixelated edge costs about a pixel.
    centre = np.abs(s) < radius / 2
    np.testing.assert_allclose(sinogram[:, centre], np.broadcast_to(chord[centre], sinogram[:, centre].shape),
                               rtol=0.03)
    np.testing.assert_allclose(sinogram.sum(axis=1) * projector.bin_width, np.pi * radius**2, rtol=0.02)


def test_osem_recovers_noiseless_attenuated_data(cylinder):
    activity, mu, roi = cylinder
    projector = get_projector(N, N, VOXEL)
    attenuation = np.exp(-projector.forward(mu))
    data = attenuation * projector.forward(activity) + 0.1
    image = osem(projector, data, attenuation, np.full_like(data, 0.1), iterations=10, subsets=4)
    assert image.shape == activity.shape and image.min() >= 0
    np.testing.assert_allclose(image[roi].mean(), 2.2, rtol=0.02)


def test_mean_is_preserved_and_noise_grows_like_inverse_sqrt_dose(cylinder):
    means, stds = _stats(cylinder, dose_fractions=(1 / 4, 1 / 100), counts=3e6, iterations=3, subsets=4)
    for d, mean in means.items():
        assert abs(mean / 2.2 - 1) < 0.05, (d, mean)
    ratio = stds[1 / 100] / stds[1 / 4]
    assert abs(ratio / np.sqrt(25) - 1) < 0.2, ratio


def test_more_iterations_or_less_filtering_raise_noise(cylinder):
    settings = {"dose_fractions": (1 / 10,), "counts": 3e6, "subsets": 4}
    _, few = _stats(cylinder, iterations=1, fwhm_mm=5.0, **settings)
    _, many = _stats(cylinder, iterations=5, fwhm_mm=5.0, **settings)
    _, sharp = _stats(cylinder, iterations=1, fwhm_mm=0.0, **settings)
    assert many[0.1] > 1.2 * few[0.1]
    assert sharp[0.1] > 1.2 * few[0.1]


def test_simulate_subject_is_reproducible_and_complete():
    first = simulate_subject(4, voxel_size=16.0, axial_extent_mm=64, dose_fractions=(1 / 20,))
    again = simulate_subject(4, voxel_size=16.0, axial_extent_mm=64, dose_fractions=(1 / 20,))
    assert sorted(first.reconstructions) == [0.05, 1.0]
    assert first.full_dose.shape == first.truth.shape == first.mu.shape == first.labels.shape
    np.testing.assert_array_equal(first.reconstructions[0.05], again.reconstructions[0.05])
    assert first.parameters["seed"] == 4 and first.parameters["count_scale"] > 0


def test_bad_settings_raise_user_error(cylinder):
    activity, mu, _ = cylinder
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="dose fractions"):
        simulate_doses(activity, mu, VOXEL, rng, dose_fractions=(2.0,))
    with pytest.raises(UserError, match="subsets"):
        simulate_doses(activity, mu, VOXEL, rng, subsets=10_000)


def _cli(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "make_phantoms.py"), *args],
                          capture_output=True, text=True, cwd=REPO, check=False)


def test_make_phantoms_writes_pairs(tmp_path):
    out = tmp_path / "phantoms"
    args = ["--out_dir", str(out), "--num_subjects", "2", "--voxel_size", "16", "--axial_extent_mm", "64",
            "--dose_levels", "1/4,0.05", "--format", "both"]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    pair = np.load(out / "subject001_dose1-20.npz")
    assert pair["arr_0"].shape[0] == 2 and pair["arr_0"].ndim == 4 and pair["arr_0"].dtype == np.float32
    assert pair["affine"].shape == (4, 4)
    with open(out / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["low_dose", "full_dose", "dose_fraction", "subject", "clean", "lesions"]
    assert len(rows) == 4 and {float(r["dose_fraction"]) for r in rows} == {0.25, 0.05}
    for row in rows:
        assert (out / row["low_dose"]).exists() and (out / row["full_dose"]).exists()
    for role in ("truth", "labels", "lesions", "full"):
        assert (out / f"subject000_{role}.nii.gz").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["subjects"]) == 2 and manifest["label_names"]["9"] == "liver"

    again = _cli(*args)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_make_phantoms_bad_flag(tmp_path):
    result = _cli("--out_dir", str(tmp_path), "--dose_levels", "1/0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: --dose_levels: cannot read '1/0'; write fractions like 1/20 or 0.05"]
