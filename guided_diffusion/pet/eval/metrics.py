"""Image-quality metrics for denoised PET volumes against a full-dose reference.

Inputs are arrays of equal shape (usually (X, Y, Z) in SUV); values are
computed in float64. A shape mismatch raises ValueError.

Three families:

* generic: :func:`psnr`, :func:`ssim`, :func:`nrmse` (peak / range = the
  reference's max - min, NRMSE normalised by the reference's RMS);
* the paper's (``evaluation/get_ssim_psnr.py`` of the released code):
  :func:`psnr_paper`, :func:`ssim_paper`, on volumes clipped to [0, 16] SUV;
* the Ultra-Low-Dose PET Imaging Challenge's (UDPET, MICCAI 2022-2024):
  :func:`psnr_challenge`, :func:`ssim_challenge`, :func:`nrmse_challenge`.
  Source: the challenge's evaluation script (``compute_psnr``, ``compute_ssim``,
  ``compute_nrmse``), linked from https://udpet-challenge.github.io/ (metrics
  listed on its "Evaluation" page); it scores the submitted Bq/ml volumes,
  and all three are scale-free, so SUV gives the same numbers.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

#: Default SSIM window (voxels per side); shrunk to fit small volumes.
SSIM_WINDOW = 7

#: The paper's SUV clip: its volumes were stored as min(SUV, 16) / 16, and its SSIM uses data_range 16.
PAPER_SUV_CLIP = 16.0

#: The data range of the challenge's SSIM: its script passes no data_range, and scikit-image (< 0.20)
#: then took the range of the float dtype, (-1, 1) (``skimage.util.dtype.dtype_range``).
CHALLENGE_SSIM_RANGE = 2.0


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: pred {pred.shape} vs ref {ref.shape}")
    return pred, ref


def _range(ref: np.ndarray, data_range: float | None) -> float:
    data_range = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range} (is the reference constant?)")
    return data_range


def _masked(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if mask is None:
        return pred, ref
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != ref.shape:
        raise ValueError(f"shapes differ: mask {mask.shape} vs ref {ref.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    return pred[mask], ref[mask]


def _positive_max(volume: np.ndarray, what: str) -> float:
    peak = float(volume.max())
    if not peak > 0:
        raise ValueError(f"the {what} has no positive voxel (max {peak}); the metric is undefined")
    return peak


def _psnr_db(ref: np.ndarray, pred: np.ndarray, peak: float) -> float:
    with np.errstate(divide="ignore"):  # identical images: MSE 0 -> inf dB
        return float(peak_signal_noise_ratio(ref, pred, data_range=peak))


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``.

    Args:
        pred, ref: arrays of the same shape.
        data_range: peak value; default ``max(ref) - min(ref)`` over the voxels evaluated.
        mask: optional boolean array of the same shape; only its voxels count.

    Returns:
        PSNR in dB; ``inf`` when pred equals ref.
    """
    pred, ref = _masked(*_pair(pred, ref), mask)
    return _psnr_db(ref, pred, _range(ref, data_range))


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity over the volume (3D windows, skimage's defaults).

    The window is ``SSIM_WINDOW`` voxels per side, or the largest odd size that
    fits the smallest axis (at least 3). ``data_range`` defaults to
    ``max(ref) - min(ref)``.
    """
    pred, ref = _pair(pred, ref)
    window = min(SSIM_WINDOW, min(ref.shape) - (1 - min(ref.shape) % 2))
    if window < 3:
        raise ValueError(f"SSIM needs every axis >= 3 voxels, got shape {ref.shape}")
    return float(structural_similarity(pred, ref, data_range=_range(ref, data_range), win_size=window))


def nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Normalised RMSE: ``sqrt(mean((pred - ref)**2)) / sqrt(mean(ref**2))``.

    Normalised by the RMS of the reference (not its range or mean), so 0 is
    perfect and 1 is as large an error as predicting all zeros.
    """
    pred, ref = _pair(pred, ref)
    if not ref.any():
        raise ValueError("reference is all zeros; NRMSE is undefined")
    return float(normalized_root_mse(ref, pred, normalization="euclidean"))


def roi_stats(volume: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Statistics of ``volume`` inside a region (e.g. a lesion), in the volume's units.

    Returns:
        ``{"mean", "max", "std", "voxels"}``; ``std`` is the population standard
        deviation (ddof=0), ``voxels`` the number of voxels in the mask.
    """
    volume = np.asarray(volume, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if volume.shape != mask.shape:
        raise ValueError(f"shapes differ: volume {volume.shape} vs mask {mask.shape}")
    values = volume[mask]
    if values.size == 0:
        raise ValueError("mask is empty")
    return {"mean": float(values.mean()), "max": float(values.max()), "std": float(values.std()), "voxels": float(values.size)}


def psnr_paper(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None,
               suv_clip: float = PAPER_SUV_CLIP) -> float:
    """The paper's PSNR (dB): ``10 log10(max(ref)**2 / MSE)``.

    As ``evaluation/get_ssim_psnr.py`` of the paper's code: the peak is the
    maximum SUV of the *unclipped* full-dose reference, the MSE is taken over
    the whole volume (or ``mask``) between both volumes clipped to
    ``[0, suv_clip]`` SUV (the paper stored its volumes clipped at 16 and set
    negative outputs to 0).

    Args:
        pred, ref: (X, Y, Z) SUV volumes of the same shape.
        mask: optional boolean (X, Y, Z); only its voxels enter the MSE (the peak stays the whole reference's max).
        suv_clip: upper clip in SUV (16, the paper's).

    Returns:
        PSNR in dB; ``inf`` when the clipped volumes are equal.
    """
    pred, ref = _pair(pred, ref)
    peak = _positive_max(ref, "reference")
    pred, ref = _masked(np.clip(pred, 0.0, suv_clip), np.clip(ref, 0.0, suv_clip), mask)
    return _psnr_db(ref, pred, peak)


def ssim_paper(pred: np.ndarray, ref: np.ndarray, suv_clip: float = PAPER_SUV_CLIP) -> float:
    """The paper's SSIM: both volumes clipped to ``[0, suv_clip]`` SUV, 3D SSIM with ``data_range=suv_clip``.

    scikit-image's ``structural_similarity`` with its defaults otherwise (7-voxel
    uniform window, shrunk for small volumes as :func:`ssim` does).
    """
    pred, ref = _pair(pred, ref)
    return ssim(np.clip(pred, 0.0, suv_clip), np.clip(ref, 0.0, suv_clip), data_range=suv_clip)


def psnr_challenge(pred: np.ndarray, ref: np.ndarray) -> float:
    """The UDPET challenge's PSNR (dB): ``20 log10(max(ref) / RMSE)``, unclipped, whole volume.

    Equal to :func:`psnr_paper` without the clip. Scale-free, so SUV and Bq/ml give the same value.
    """
    pred, ref = _pair(pred, ref)
    return _psnr_db(ref, pred, _positive_max(ref, "reference"))


def ssim_challenge(pred: np.ndarray, ref: np.ndarray) -> float:
    """The UDPET challenge's SSIM: each volume divided by its own maximum, 3D SSIM with data_range 2.

    The challenge's script calls ``compare_ssim(real / max(real), pred / max(pred))``
    without a data range, which scikit-image then took as the float range
    (-1, 1), i.e. :data:`CHALLENGE_SSIM_RANGE` = 2; the window is skimage's default 7
    (shrunk for small volumes as :func:`ssim` does).
    """
    pred, ref = _pair(pred, ref)
    return ssim(pred / _positive_max(pred, "result"), ref / _positive_max(ref, "reference"),
                data_range=CHALLENGE_SSIM_RANGE)


def nrmse_challenge(pred: np.ndarray, ref: np.ndarray) -> float:
    """The UDPET challenge's NRMSE: ``RMSE / (max(ref) - min(ref))`` (skimage's "min-max" normalisation)."""
    pred, ref = _pair(pred, ref)
    _range(ref, None)  # refuses a constant reference
    return float(normalized_root_mse(ref, pred, normalization="min-max"))


def percent_error(value: float, reference: float) -> float:
    """Signed error in percent: ``100 (value - reference) / reference``; NaN when the reference is 0."""
    return float("nan") if reference == 0 else 100.0 * (float(value) - float(reference)) / float(reference)
