"""The phantom's body outline: a random habitus and the cross-sections of trunk, neck, thighs and head.

Positions in the model are depths below the vertex (mm); :class:`Body` maps
them to world heights ``z`` (mm above the bottom of the head-to-thigh model,
RAS+ as in ``phantom.py``) and scales them with the subject's height.
"""

from __future__ import annotations

import numpy as np

#: Length of the model from mid-thigh to the vertex before height scaling, and air above the head (mm).
MODEL_LENGTH_MM = 1060.0
TOP_MARGIN_MM = 10.0

# Lean (muscle) cross-section of the neck and trunk along the depth below the vertex:
# depth (mm), semi-axis left-right, semi-axis anterior-posterior, relative fat thickness.
_TRUNK_PROFILE = np.array(
    [
        (190, 48, 50, 0.3),
        (300, 55, 55, 0.4),
        (330, 120, 80, 0.6),
        (360, 175, 100, 0.8),
        (400, 165, 105, 1.0),
        (560, 155, 110, 1.0),
        (650, 145, 105, 1.3),
        (780, 145, 100, 1.3),
        (860, 160, 100, 1.2),
        (955, 165, 95, 1.0),
    ]
)
# Thighs: depth range, centre offset from the midline and lean semi-axes at top and bottom.
_THIGH_DEPTH = (930.0, MODEL_LENGTH_MM)
_THIGH_OFFSET = 85.0
_THIGH_AXES = ((72.0, 75.0), (62.0, 64.0))


class Body:
    """Random body habitus and the mapping from model depth to world coordinates.

    Draws, in this order, from ``rng``: height, width and depth scales, and the
    fat thickness (mm).
    """

    def __init__(self, rng: np.random.Generator):
        self.height = rng.uniform(0.95, 1.04)
        self.width = rng.uniform(0.9, 1.12)
        self.depth = rng.uniform(0.9, 1.15)
        self.fat_mm = rng.uniform(6.0, 28.0)
        self.z_vertex = MODEL_LENGTH_MM * self.height

    @property
    def full_length(self) -> float:
        """Length (mm) of the head-to-thigh model, air above the head included."""
        return self.z_vertex + TOP_MARGIN_MM

    def z_of(self, depth: float | np.ndarray) -> float | np.ndarray:
        """World height ``z`` (mm) of a model depth below the vertex (mm); any shape."""
        return self.z_vertex - np.asarray(depth) * self.height

    def depth_of(self, z: np.ndarray) -> np.ndarray:
        """Model depth below the vertex (mm) of world heights ``z`` (mm); any shape."""
        return (self.z_vertex - z) / self.height

    def trunk(self, z: np.ndarray, with_fat: bool) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (a, b) in mm of the neck/trunk cross-section per slice, shape of ``z``; 0 where absent."""
        d = self.depth_of(z)
        p = _TRUNK_PROFILE
        a = np.interp(d, p[:, 0], p[:, 1]) * self.width
        b = np.interp(d, p[:, 0], p[:, 2]) * self.depth
        if with_fat:
            fat = np.interp(d, p[:, 0], p[:, 3]) * self.fat_mm
            a, b = a + fat, b + fat
        present = (d >= p[0, 0]) & (d <= p[-1, 0])
        return a * present, b * present

    def thigh(self, z: np.ndarray, with_fat: bool) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (a, b) in mm of one thigh's cross-section per slice, shape of ``z``; 0 where absent."""
        d = self.depth_of(z)
        frac = np.clip((d - _THIGH_DEPTH[0]) / (_THIGH_DEPTH[1] - _THIGH_DEPTH[0]), 0, 1)
        (a0, b0), (a1, b1) = _THIGH_AXES
        fat = 0.8 * self.fat_mm if with_fat else 0.0
        a = (a0 + (a1 - a0) * frac) * self.width + fat
        b = (b0 + (b1 - b0) * frac) * self.depth + fat
        present = d >= _THIGH_DEPTH[0]
        return a * present, b * present

    def thigh_offset(self) -> float:
        """Distance (mm) of each thigh's centre from the midline."""
        return _THIGH_OFFSET * self.width

    def head(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Centre and semi-axes of the head ellipsoid (world mm)."""
        return (0.0, 0.0, float(self.z_of(110.0))), (78.0, 96.0, 110.0 * self.height)

    def max_radius(self, z: np.ndarray) -> float:
        """Largest in-plane distance (mm) of the body outline from the slice centre over heights ``z`` (mm)."""
        a, b = self.trunk(z, with_fat=True)
        ta, _ = self.thigh(z, with_fat=True)
        radius = max(np.max(np.maximum(a, b)), np.max(np.where(ta > 0, self.thigh_offset() + ta, 0)))
        (_, _, hz), (ha, hb, hc) = self.head()
        if np.any(np.abs(z - hz) < hc):
            radius = max(radius, ha, hb)
        return float(radius)
