"""The demo figure: coronal slice and maximum-intensity projection of each image."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ...atomic import atomic_write


def _coronal(volume: np.ndarray, y_index: int) -> np.ndarray:
    """(X, Y, Z) -> coronal image (Z, X), head up."""
    return volume[:, y_index, :].T[::-1]


def _coronal_mip(volume: np.ndarray) -> np.ndarray:
    """Maximum-intensity projection along Y (anterior-posterior) -> (Z, X), head up."""
    return volume.max(axis=1).T[::-1]


def demo_figure(
    path: str | os.PathLike,
    low: np.ndarray,
    denoised: np.ndarray,
    full: np.ndarray,
    std: np.ndarray | None,
    voxel_size: Sequence[float],
    suv_window: float | None = None,
    titles: Sequence[str] = ("Low dose", "Denoised", "Full dose"),
) -> None:
    """Write a PNG: rows = coronal slice / coronal MIP; columns = low dose, denoised,
    full dose, |denoised - full dose| and the ensemble standard deviation, each
    with a colour bar in SUV.

    Args:
        path: output PNG (written atomically).
        low, denoised, full, std: (X, Y, Z) volumes in SUV (std may be None).
        voxel_size: (x, y, z) in mm, for the aspect ratio.
        suv_window: upper end of the display window for the images (default:
            the 99.9th percentile of full dose).
    """
    y_index = int(np.argmax((full > 0.5 * full.mean()).sum(axis=(0, 2))))
    vmax = suv_window or float(np.percentile(full, 99.9))
    error = np.abs(denoised - full)
    error_max = float(np.percentile(error, 99.9)) or 1.0
    columns = [(titles[0], low, "gray_r", vmax), (titles[1], denoised, "gray_r", vmax),
               (titles[2], full, "gray_r", vmax), ("|Denoised - full|", error, "magma", error_max)]
    if std is not None:
        columns.append(("Uncertainty (SD)", std, "viridis", float(np.percentile(std, 99.9)) or 1.0))
    aspect = voxel_size[2] / voxel_size[0]
    # Panel height follows the coronal image's shape (Z by X, in mm), so no space is wasted.
    height_per_width = (full.shape[2] * voxel_size[2]) / (full.shape[0] * voxel_size[0])
    # A bare Figure (not pyplot) renders with its own canvas and leaves the caller's backend alone.
    fig = Figure(figsize=(3.2 * len(columns), 2 * (2.6 * height_per_width + 0.7)))
    axes = fig.subplots(2, len(columns), squeeze=False)
    for col, (title, volume, cmap, top) in enumerate(columns):
        for row, (label, image) in enumerate((("coronal", _coronal(volume, y_index)), ("MIP", _coronal_mip(volume)))):
            ax = axes[row, col]
            shown = ax.imshow(image, cmap=cmap, vmin=0, vmax=top, aspect=aspect, interpolation="nearest")
            ax.set_title(f"{title} ({label})", fontsize=9)
            ax.axis("off")
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).set_label("SUV", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
