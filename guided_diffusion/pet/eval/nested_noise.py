"""Nested noise: what scoring against the full dose costs a perfect denoiser of a thinned low dose.

A low dose at fraction ``d`` keeps each full-dose count with probability ``d``
(the simulator's binomial thinning, as list-mode decimation of real scans), so
the full-dose counts are the low dose's plus independent others:
``full = d low + (1 - d) rest``. With ``n`` the noise about the noiseless
reconstruction ``clean`` and ``var(n_full) = s2``, in the linear approximation:

* ``cov(n_low, n_full) / var(n_full) = 1``: the low dose's noise is part of the reference's;
* the best prediction of the full dose from the low dose, ``clean + d (low - clean)``,
  errs by ``(1 - d) n_rest``, of variance ``(1 - d) s2``;
* the noiseless image errs by ``n_full``, of variance ``s2``.

Against the full dose the noiseless image thus loses ``-10 log10(1 - d)`` dB
to the best achievable score: 3.01 at 1/2, 1.25 at 1/4, 0.46 at 1/10. A
denoiser that removes all noise is ranked below one that keeps part of its
input's. :func:`nested_noise` measures both figures on one subject
(``benchmarks/nested_noise.py``; README, "Nested noise").
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import PAPER_SUV_CLIP, psnr_paper


def expected_penalty_db(dose: float) -> float:
    """``-10 log10(1 - dose)``: what the full dose costs the noiseless image, in dB, for a dose fraction in (0, 1)."""
    return -10.0 * math.log10(1.0 - dose)


def nested_noise(low: np.ndarray, full: np.ndarray, clean: np.ndarray, dose: float,
                 mask: np.ndarray | None = None, suv_clip: float = PAPER_SUV_CLIP) -> dict[str, float]:
    """Measure the nesting of one low dose's noise in the full dose's.

    Args:
        low, full, clean: (X, Y, Z) SUV: the low dose at ``dose``, the full dose it was thinned from and the
            noiseless reconstruction of the same phantom.
        dose: the low dose's fraction of the full-dose counts, in (0, 1).
        mask: optional boolean (X, Y, Z): the voxels of the statistics and of the PSNR's MSE (e.g. the body).
        suv_clip: the paper's PSNR clip.

    Returns:
        ``dose``; ``covariance_ratio``: cov(low - clean, full - clean) / var(full - clean) (1 when nested,
        0 when independent); ``psnr_clean`` and ``psnr_best``: the paper's PSNR against the full dose of
        the noiseless image and of the best prediction ``clean + dose (low - clean)``; ``penalty_db``: their
        difference, what the full dose costs the noiseless image; ``expected_penalty_db``: its value in theory.
    """
    low, full, clean = (np.asarray(v, dtype=np.float64) for v in (low, full, clean))
    selected = np.ones(full.shape, bool) if mask is None else np.asarray(mask, bool)
    low_noise, full_noise = (low - clean)[selected], (full - clean)[selected]
    covariance = float(np.mean((low_noise - low_noise.mean()) * (full_noise - full_noise.mean())))
    best = clean + dose * (low - clean)
    psnr_clean = psnr_paper(clean, full, mask=mask, suv_clip=suv_clip)
    psnr_best = psnr_paper(best, full, mask=mask, suv_clip=suv_clip)
    return {
        "dose": float(dose),
        "covariance_ratio": covariance / float(full_noise.var()),
        "psnr_clean": psnr_clean,
        "psnr_best": psnr_best,
        "penalty_db": psnr_best - psnr_clean,
        "expected_penalty_db": expected_penalty_db(dose),
    }
