"""Low-dose PET acquisition and reconstruction of a known activity (the dose pipeline).

For an activity ``x`` (SUV) and attenuation map ``mu`` (1/mm), per transaxial
slice (2D data after single-slice rebinning):

1. the scanner's resolution blurs ``x`` (Gaussian, ``resolution_fwhm_mm``);
2. attenuated trues: ``t = a * A x`` with ``a = exp(-A mu)`` (``A``: line integrals in mm);
3. background: scatter ``s``, the trues sinogram blurred radially and axially
   (``SCATTER_FWHM_MM``) and scaled to ``scatter_fraction * sum(t)``, plus
   randoms ``r``, uniform over the sinogram, ``randoms_fraction * sum(t)``;
   both are fractions of the trues and scale with the dose;
4. the count scale ``k`` makes the full dose hold ``counts`` trues in total;
   full-dose prompts are ``y_1 ~ Poisson(k (t + s + r))``;
5. a dose fraction ``d`` keeps each full-dose count with probability ``d``
   (binomial thinning, as list-mode decimation does on real scanners), so
   ``y_d ~ Poisson(d k (t + s + r))`` and the low-dose data are a subset of the
   full-dose data;
6. OSEM with the known attenuation and expected background ``d k (s + r)``,
   a Gaussian post-filter, and division by ``k d``, which returns SUV with the
   same mean at every dose.

The full-dose target is the reconstruction of ``y_1``, as in real studies; the
noiseless phantom is kept as the truth. The *clean* reconstruction
(:func:`reconstruct_noiseless`) puts the expected prompts ``k (t + s + r)``
through step 6 without noise: the image a perfect denoiser would return.
Because ``y_d`` is a thinning of ``y_1``, the low dose's noise is part of the
full dose's, and scored against the full dose even the clean image loses at
high dose (README, "Nested noise"); score simulated results against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

from ...errors import UserError
from ..filters import fwhm_to_sigma, gaussian_smooth
from .doses import DEFAULT_DOSE_FRACTIONS
from .phantom import LABELS, Phantom, make_phantom
from .projector import ParallelProjector, default_sampling, get_projector
from .reconstruction import osem
from .scanners import ScannerPreset, get_scanner
from .tracers import TracerPreset, get_tracer

#: Full-dose trues per mm of axial extent: with the defaults below the full-dose liver
#: CV is about 8% at 4 mm and 1.65 mm voxels (about 2.7e8 trues for a whole body).
DEFAULT_TRUES_PER_MM = 2.5e5
#: Settings without a scanner preset (those the demo model was trained on).
DEFAULT_VOXEL_SIZE_MM = 1.65
DEFAULT_ITERATIONS = 3
DEFAULT_SUBSETS = 11
DEFAULT_FWHM_MM = 5.0
DEFAULT_RESOLUTION_FWHM_MM = 4.0
DEFAULT_SCATTER_FRACTION = 0.4
DEFAULT_RANDOMS_FRACTION = 0.2
#: The scanner settings without a preset: the ``DEFAULT_*`` above and the reference sensitivity.
DEFAULT_SCANNER = ScannerPreset(
    name="default",
    description="no preset: the simulator's own settings, those the demo model was trained on",
    resolution_fwhm_mm=DEFAULT_RESOLUTION_FWHM_MM,
    voxel_size_mm=DEFAULT_VOXEL_SIZE_MM,
    sensitivity=1.0,
    iterations=DEFAULT_ITERATIONS,
    subsets=DEFAULT_SUBSETS,
    fwhm_mm=DEFAULT_FWHM_MM,
)
#: Width of the scatter kernel in the sinogram (radially and axially), mm.
SCATTER_FWHM_MM = 150.0
#: Columns (slices x doses) reconstructed together; bounds memory and keeps the
#: sparse products cache-friendly.
_COLUMNS_PER_CHUNK = 256


@dataclass
class SimulatedSubject:
    """A phantom and its reconstructions at several doses.

    Attributes:
        phantom: the truth (activity in SUV), ``mu``, labels and lesions.
        reconstructions: dose fraction -> float32 ``(X, Y, Z)`` SUV volume; holds 1.0.
        parameters: every setting and derived quantity (count scale, trues, sinogram size ...).
        clean: the noiseless reconstruction (:func:`reconstruct_noiseless`), float32 ``(X, Y, Z)`` SUV, or
            None when not asked for.
    """

    phantom: Phantom
    reconstructions: dict[float, np.ndarray]
    parameters: dict = field(default_factory=dict)
    clean: np.ndarray | None = None

    @property
    def truth(self) -> np.ndarray:
        return self.phantom.activity

    @property
    def labels(self) -> np.ndarray:
        return self.phantom.labels

    @property
    def lesion_mask(self) -> np.ndarray:
        return self.phantom.lesion_mask

    @property
    def mu(self) -> np.ndarray:
        return self.phantom.mu

    @property
    def full_dose(self) -> np.ndarray:
        return self.reconstructions[1.0]


def simulate_subject(
    seed: int,
    voxel_size: float | None = None,
    dose_fractions: Sequence[float] = DEFAULT_DOSE_FRACTIONS,
    counts: float | None = None,
    iterations: int | None = None,
    subsets: int | None = None,
    fwhm_mm: float | None = None,
    axial_extent_mm: float | None = None,
    resolution_fwhm_mm: float | None = None,
    scatter_fraction: float = DEFAULT_SCATTER_FRACTION,
    randoms_fraction: float = DEFAULT_RANDOMS_FRACTION,
    scanner: str | ScannerPreset | None = None,
    tracer: str | TracerPreset = "fdg",
    clean: bool = False,
) -> SimulatedSubject:
    """Draw a phantom from ``seed`` and simulate and reconstruct it at each dose.

    The phantom comes from ``make_phantom(seed, ..., tracer=tracer)``; the noise
    from an independent stream spawned from the same seed, so changing
    acquisition settings never changes the anatomy. Arguments are those of
    :func:`make_phantom` and :func:`simulate_doses`; settings left ``None`` come
    from the scanner preset, or without one from :data:`DEFAULT_SCANNER`.

    Args:
        scanner: a name in :data:`~guided_diffusion.pet.sim.scanners.SCANNERS`, a
            preset, or ``None``. It gives the voxel size, resolution, OSEM
            iterations and subsets (at most the projector's angles) and
            post-filter, and scales the default counts by its sensitivity.
        tracer: a name in :data:`~guided_diffusion.pet.sim.tracers.TRACERS` or a
            preset. It sets the uptake, scales the default counts by its
            ``counts_factor`` and adds its positron range in quadrature to the
            resolution (also to a ``resolution_fwhm_mm`` given here, which is
            the scanner's, as NEMA measures it with 18F).
        counts: full-dose trues; ``None`` gives ``DEFAULT_TRUES_PER_MM`` per mm of
            axial extent times the scanner's sensitivity and the tracer's
            counts factor. A number given here is used as it is.
        clean: also reconstruct the noiseless data (:func:`reconstruct_noiseless`, one more
            reconstruction); the noisy ones stay as they are.

    Raises:
        UserError: an unknown scanner or tracer (naming the choices), or a bad setting.
    """
    preset = None if scanner is None else get_scanner(scanner)
    settings = preset or DEFAULT_SCANNER
    tracer_preset = get_tracer(tracer)
    if voxel_size is None:
        voxel_size = settings.voxel_size_mm
    if iterations is None:
        iterations = settings.iterations
    if fwhm_mm is None:
        fwhm_mm = settings.fwhm_mm
    if resolution_fwhm_mm is None:
        resolution_fwhm_mm = settings.resolution_fwhm_mm
    if resolution_fwhm_mm < 0:
        raise UserError(f"resolution FWHM must be >= 0 mm, got {resolution_fwhm_mm}")

    phantom = make_phantom(seed, voxel_size=voxel_size, axial_extent_mm=axial_extent_mm, tracer=tracer_preset)
    nx, ny, nz = phantom.activity.shape
    if subsets is None:
        # A coarse grid has fewer projection angles than a clinical protocol has subsets.
        subsets = min(settings.subsets, default_sampling(nx, ny)[0])
    if counts is None:
        counts = DEFAULT_TRUES_PER_MM * nz * voxel_size * settings.sensitivity * tracer_preset.counts_factor
    noise_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    acquisition = {
        "counts": counts,
        "iterations": iterations,
        "subsets": subsets,
        "fwhm_mm": fwhm_mm,
        "resolution_fwhm_mm": math.hypot(resolution_fwhm_mm, tracer_preset.positron_range_fwhm_mm),
        "scatter_fraction": scatter_fraction,
        "randoms_fraction": randoms_fraction,
    }
    reconstructions, parameters = simulate_doses(phantom.activity, phantom.mu, voxel_size, noise_rng,
                                                 dose_fractions=dose_fractions, **acquisition)
    noiseless = reconstruct_noiseless(phantom.activity, phantom.mu, voxel_size, **acquisition) if clean else None
    parameters = {
        "seed": int(seed),
        "voxel_size_mm": float(voxel_size),
        "axial_extent_mm": nz * voxel_size,
        "scanner": preset.name if preset else None,
        "tracer": tracer_preset.name,
        "scanner_resolution_fwhm_mm": float(resolution_fwhm_mm),
        "positron_range_fwhm_mm": tracer_preset.positron_range_fwhm_mm,
        **parameters,
    }
    return SimulatedSubject(phantom, reconstructions, parameters, noiseless)


def simulate_doses(
    activity: np.ndarray,
    mu: np.ndarray,
    voxel_size: float,
    rng: np.random.Generator,
    dose_fractions: Sequence[float] = DEFAULT_DOSE_FRACTIONS,
    counts: float | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    subsets: int = DEFAULT_SUBSETS,
    fwhm_mm: float = DEFAULT_FWHM_MM,
    resolution_fwhm_mm: float = DEFAULT_RESOLUTION_FWHM_MM,
    scatter_fraction: float = DEFAULT_SCATTER_FRACTION,
    randoms_fraction: float = DEFAULT_RANDOMS_FRACTION,
) -> tuple[dict[float, np.ndarray], dict]:
    """Acquire and reconstruct ``activity`` at each dose fraction.

    Args:
        activity: ``(X, Y, Z)`` SUV, ``Z`` axial, isotropic voxels.
        mu: ``(X, Y, Z)`` attenuation at 511 keV in 1/mm.
        voxel_size: voxel edge in mm.
        rng: the noise stream.
        dose_fractions: fractions in (0, 1]; the full dose 1.0 is always added.
        counts: full-dose trues (attenuated, unscattered coincidences) in the
            whole volume; ``None`` gives ``DEFAULT_TRUES_PER_MM`` per mm of axial extent.
        iterations, subsets: OSEM settings (subsets are interleaved angle sets).
        fwhm_mm: Gaussian post-filter FWHM in mm (0: none).
        resolution_fwhm_mm: scanner resolution applied to the activity (not modelled in OSEM).
        scatter_fraction: scatter counts as a fraction of trues.
        randoms_fraction: randoms counts as a fraction of trues.

    Returns:
        ``(reconstructions, parameters)``: dose -> float32 ``(X, Y, Z)`` SUV, and the
        settings with derived values (``count_scale`` in counts per SUV mm, sinogram size).
    """
    doses = sorted({1.0, *(float(d) for d in dose_fractions)}, reverse=True)
    if not all(0 < d <= 1 for d in doses):
        raise UserError(f"dose fractions must lie in (0, 1], got {list(dose_fractions)}")
    data = _expected_data(activity, mu, voxel_size, counts, iterations, subsets, fwhm_mm, resolution_fwhm_mm,
                          scatter_fraction, randoms_fraction)
    # int32 holds any per-bin count and halves the memory of the prompts of all doses.
    full = rng.poisson(data.scale * (data.trues + data.background)).astype(np.int32)
    prompts = {d: full if d == 1.0 else rng.binomial(full, d).astype(np.int32) for d in doses}
    reconstructions = _reconstruct(data, prompts, iterations, subsets, fwhm_mm)
    parameters = {
        "dose_fractions": list(doses),
        "counts": data.counts,
        "count_scale": data.scale,
        "iterations": int(iterations),
        "subsets": int(subsets),
        "fwhm_mm": float(fwhm_mm),
        "resolution_fwhm_mm": float(resolution_fwhm_mm),
        "scatter_fraction": float(scatter_fraction),
        "randoms_fraction": float(randoms_fraction),
        "scatter_fwhm_mm": SCATTER_FWHM_MM,
        "n_angles": data.projector.n_angles,
        "n_bins": data.projector.n_bins,
        "matrix_size": list(data.activity_shape),
    }
    return reconstructions, parameters


def reconstruct_noiseless(
    activity: np.ndarray,
    mu: np.ndarray,
    voxel_size: float,
    counts: float | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    subsets: int = DEFAULT_SUBSETS,
    fwhm_mm: float = DEFAULT_FWHM_MM,
    resolution_fwhm_mm: float = DEFAULT_RESOLUTION_FWHM_MM,
    scatter_fraction: float = DEFAULT_SCATTER_FRACTION,
    randoms_fraction: float = DEFAULT_RANDOMS_FRACTION,
) -> np.ndarray:
    """The noiseless reconstruction of ``activity``: :func:`simulate_doses`'s pipeline without Poisson noise.

    The expected full-dose prompts (trues, scatter and randoms, not drawn)
    go through the same projector, OSEM and post-filter as every dose. OSEM
    is equivariant to a common scale of data and background, so this is the
    limit of infinite counts and ``counts`` hardly matters (float rounding).
    It is the reference a perfect denoiser would reach: the low doses' noise
    is nested in the full dose's (binomial thinning), so scored against the
    full dose even this image loses at high dose. It draws no random numbers.

    Args:
        the settings of :func:`simulate_doses`, the same values to match its reconstructions.

    Returns:
        float32 ``(X, Y, Z)`` SUV.
    """
    data = _expected_data(activity, mu, voxel_size, counts, iterations, subsets, fwhm_mm, resolution_fwhm_mm,
                          scatter_fraction, randoms_fraction)
    expected = {1.0: data.scale * (data.trues + data.background)}
    return _reconstruct(data, expected, iterations, subsets, fwhm_mm)[1.0]


@dataclass
class _ExpectedData:
    """The noise-free full-dose sinograms of an activity, ``(n_angles, n_bins, Z)``, and their geometry.

    ``trues`` and ``background`` are in the units of ``A x`` (``x`` in SUV); ``scale``
    (counts per unit) makes ``scale * trues`` sum to ``counts``.
    """

    projector: ParallelProjector
    voxel_size: float
    activity_shape: tuple[int, int, int]
    attenuation: np.ndarray
    trues: np.ndarray
    background: np.ndarray
    counts: float
    scale: float


def _expected_data(activity, mu, voxel_size, counts, iterations, subsets, fwhm_mm, resolution_fwhm_mm,
                   scatter_fraction, randoms_fraction) -> _ExpectedData:
    """Check the settings and project ``activity``: the expected data every dose is drawn from."""
    activity = np.asarray(activity, dtype=np.float32)
    mu = np.asarray(mu, dtype=np.float32)
    if activity.ndim != 3 or activity.shape != mu.shape:
        raise UserError(f"activity {activity.shape} and mu {mu.shape} must be equal (X, Y, Z) shapes")
    if counts is not None and not (math.isfinite(counts) and counts > 0):
        raise UserError(f"counts must be a positive number, got {counts}")
    if iterations < 1 or subsets < 1:
        raise UserError(f"iterations and subsets must be >= 1, got {iterations} and {subsets}")
    if fwhm_mm < 0 or resolution_fwhm_mm < 0:
        raise UserError(f"FWHM values must be >= 0 mm, got {fwhm_mm} and {resolution_fwhm_mm}")
    if scatter_fraction < 0 or randoms_fraction < 0:
        raise UserError(f"scatter and randoms fractions must be >= 0, got {scatter_fraction}, {randoms_fraction}")
    nx, ny, nz = activity.shape
    projector = get_projector(nx, ny, voxel_size)
    if subsets > projector.n_angles:
        raise UserError(f"subsets must be at most the {projector.n_angles} projection angles, got {subsets}")

    attenuation = np.exp(-projector.forward(mu))
    trues = attenuation * projector.forward(gaussian_smooth(activity, resolution_fwhm_mm, voxel_size))
    total_trues = float(trues.sum(dtype=np.float64))
    if not total_trues > 0:
        raise UserError("the activity is zero inside the field of view; nothing to simulate")
    if counts is None:
        counts = DEFAULT_TRUES_PER_MM * nz * voxel_size
    background = _background(trues, projector, voxel_size, scatter_fraction, randoms_fraction)
    return _ExpectedData(projector, voxel_size, (nx, ny, nz), attenuation, trues, background, float(counts),
                         counts / total_trues)


def _reconstruct(data: _ExpectedData, prompts: dict[float, np.ndarray], iterations: int, subsets: int,
                 fwhm_mm: float) -> dict[float, np.ndarray]:
    """OSEM and post-filter of each dose's prompts (dose -> ``(n_angles, n_bins, Z)`` counts): dose -> SUV.

    Columns (slices x doses) go through OSEM together, a chunk of slices at a time.
    """
    doses = list(prompts)
    nz = data.activity_shape[2]
    reconstructions = {d: np.empty(data.activity_shape, np.float32) for d in doses}
    dose_array = np.array(doses, np.float32)
    chunk = max(1, _COLUMNS_PER_CHUNK // len(doses))
    for z0 in range(0, nz, chunk):
        zs = slice(z0, min(z0 + chunk, nz))
        measured = np.stack([prompts[d][:, :, zs] for d in doses], axis=-1).astype(np.float32)
        expected_background = data.scale * data.background[:, :, zs, None] * dose_array
        images = osem(data.projector, measured, data.attenuation[:, :, zs, None], expected_background, iterations,
                      subsets)
        images /= data.scale * dose_array
        for i, d in enumerate(doses):
            reconstructions[d][:, :, zs] = images[..., i]
    return {d: gaussian_smooth(image, fwhm_mm, data.voxel_size) for d, image in reconstructions.items()}


def _background(
    trues: np.ndarray, projector: ParallelProjector, voxel_size: float, scatter_fraction: float, randoms_fraction: float
) -> np.ndarray:
    """Scatter plus randoms, shape ``(n_angles, n_bins, Z)``, in the units of ``trues``."""
    total = float(trues.sum(dtype=np.float64))
    # Along the angle axis nothing is blurred; radially in bins, axially in slices.
    sigma = (0.0, *fwhm_to_sigma(SCATTER_FWHM_MM, (projector.bin_width, voxel_size), 2))
    scatter = gaussian_filter(trues, sigma=sigma, mode="nearest")
    scatter *= scatter_fraction * total / max(float(scatter.sum(dtype=np.float64)), 1e-30)
    return scatter + randoms_fraction * total / trues.size


def organ_cv(volume: np.ndarray, phantom: Phantom, organ: str = "liver", margin_mm: float = 10.0) -> float:
    """Coefficient of variation (std / mean) of ``volume`` inside an organ.

    The organ mask is eroded by ``margin_mm`` and lesions, dilated by the same
    margin, are excluded, so the figure measures noise and texture, not edges.

    Raises:
        UserError: the organ is unknown or nothing of it is left after erosion.
    """
    if organ not in LABELS:
        raise UserError(f"unknown organ {organ!r}; choose one of {sorted(LABELS)}")
    steps = max(1, round(margin_mm / phantom.voxel_size))
    mask = binary_erosion(phantom.labels == LABELS[organ], iterations=steps)
    if phantom.lesions:
        mask &= ~binary_dilation(phantom.lesion_mask > 0, iterations=steps)
    if not mask.any():
        raise UserError(f"no {organ} voxels left {margin_mm} mm away from edges and lesions")
    values = np.asarray(volume, dtype=np.float64)[mask]
    return float(values.std() / values.mean())
