"""Voxel-wise mean and standard deviation of ensemble members, one member at a time.

Repeated sampling gives K denoised volumes of one scan; their mean is the
result and their standard deviation the uncertainty map. Members arrive one
by one and are folded into running moments (Welford's update, float64), so
memory holds two volumes whatever K is.
"""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Running mean and sum of squared deviations of equally shaped volumes.

    Args:
        shape: the volumes' shape, e.g. (X, Y, Z).
    """

    def __init__(self, shape: tuple[int, ...]):
        self.count = 0
        self._mean = np.zeros(shape, np.float64)
        self._squared_deviations = np.zeros(shape, np.float64)

    def add(self, volume: np.ndarray) -> None:
        """Fold in one member (same shape, any float dtype)."""
        if volume.shape != self._mean.shape:
            raise ValueError(f"member shape {volume.shape} differs from {self._mean.shape}")
        self.count += 1
        delta = volume - self._mean
        self._mean += delta / self.count
        self._squared_deviations += delta * (volume - self._mean)

    def mean(self) -> np.ndarray:
        """Voxel-wise mean of the members so far, float32."""
        if self.count == 0:
            raise ValueError("no member was added")
        return self._mean.astype(np.float32)

    def std(self) -> np.ndarray | None:
        """Voxel-wise sample standard deviation (ddof = 1), float32; None for fewer than two members."""
        if self.count < 2:
            return None
        return np.sqrt(self._squared_deviations / (self.count - 1)).astype(np.float32)
