"""The model grid: a volume reoriented to RAS and resampled to the model's voxel size, and the way back.

A model sees volumes on one grid: the canonical (RAS) orientation of
:mod:`.reorient` (third axis = head-foot) with isotropic ``model_voxel_size`` mm
voxels (0: the input's own voxels, reoriented only). :func:`plan_grid` plans
it for one input grid; :meth:`GridMapping.to_model` takes an array there and
:meth:`GridMapping.to_input` brings a result (or an uncertainty map) back onto
the input's exact grid: its shape, axis order and voxel centres.

The model grid covers the input's physical extent: along each axis it has
``ceil(extent / model_voxel_size)`` voxels of exactly ``model_voxel_size`` mm,
centred on the input's centre (it overhangs the input by less than one model
voxel in all). It keeps the input's direction cosines, so an oblique volume is
not rotated (see :mod:`.reorient`). An axis whose voxel size is within
``SAME_SIZE_MM`` of the model's is not resampled, so a volume already on the
model grid passes through unchanged.

Interpolation is a cubic B-spline (``scipy.ndimage.affine_transform``,
``order=3``; coefficients in float32), edges extended by their nearest
values. Linear interpolation (``order=1``) never overshoots but blurs: there
and back it lost two to three times more of a smooth phantom's detail (README,
"Model grid"). Splines overshoot beside steep edges, so every result is
clipped to the range of the array it came from: SUV never turns negative and
a hot spot gains nothing. Before shrinking (output voxels coarser than input
voxels along an axis), the array is smoothed along that axis by a Gaussian of
variance ``(coarse**2 - fine**2) / 12`` mm^2, the variance a box of the coarse
voxel adds to one of the fine voxel, so each output voxel is close to the mean
activity over its volume and noise does not alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter, spline_filter

from ...errors import UserError
from .reorient import CANONICAL, Reorientation, Shape3, reorientation
from .volume import voxel_spacing

#: Voxel sizes (mm) closer than this to the model's count as equal: that axis is not resampled.
SAME_SIZE_MM = 1e-3
INTERPOLATION_ORDER = 3


@dataclass(frozen=True, eq=False)
class GridMapping:
    """Between one input grid and the model grid (plan it with :func:`plan_grid`).

    Attributes:
        reorientation: permutation and flips from the input to the canonical (RAS) grid.
        model_voxel_size: the requested isotropic voxel size in mm; 0 keeps the input's voxels.
        model_shape: shape (X, Y, Z) of the model grid in voxels (X: left-right, Y: posterior-anterior,
            Z: feet-head).
        scale: model voxel size / canonical input voxel size, per axis (1.0: that axis is not resampled).
    """

    reorientation: Reorientation
    model_voxel_size: float
    model_shape: Shape3
    scale: tuple[float, float, float]

    @property
    def input_shape(self) -> Shape3:
        """Shape (X, Y, Z) of the input array in voxels."""
        return self.reorientation.shape

    @property
    def input_affine(self) -> np.ndarray:
        """4x4 voxel -> world map of the input (mm, RAS+)."""
        return self.reorientation.affine

    @property
    def model_affine(self) -> np.ndarray:
        """4x4 voxel -> world map of the model grid (mm, RAS+): the same centre and directions as the input."""
        return self.reorientation.canonical_affine @ _index_map(self.scale, self._canonical_shape, self.model_shape)

    @property
    def resamples(self) -> bool:
        """Whether some axis is resampled (False: the model grid is the reoriented input grid)."""
        return any(r != 1.0 for r in self.scale)

    @property
    def key(self) -> str:
        """A short text naming the model grid's rule (orientation, voxel size, interpolation), e.g. for cache names."""
        size = f"{self.model_voxel_size:g}mm" if self.model_voxel_size > 0 else "input"
        return f"{''.join(CANONICAL)}-{size}-order{INTERPOLATION_ORDER}"

    @property
    def _canonical_shape(self) -> Shape3:
        return self.reorientation.canonical_shape

    def to_model(self, array: np.ndarray) -> np.ndarray:
        """An input-grid ``array`` (``input_shape``) on the model grid: float32 (``model_shape``).

        Without resampling the result is a view of ``array`` (permuted and flipped), not a copy.
        """
        canonical = self.reorientation.to_canonical(np.asarray(array))
        return _resample(canonical, self.scale, self.model_shape)

    def labels_to_model(self, labels: np.ndarray) -> np.ndarray:
        """An input-grid label map (``input_shape``, integers) on the model grid by nearest neighbour: each model
        voxel takes the label of the input voxel its centre falls in; same dtype (``model_shape``)."""
        canonical = self.reorientation.to_canonical(np.asarray(labels))
        if not self.resamples:
            return canonical
        index_map = _index_map(self.scale, canonical.shape, self.model_shape)
        return affine_transform(canonical, np.diag(index_map)[:3], offset=index_map[:3, 3],
                                output_shape=self.model_shape, order=0, mode="nearest")

    def to_input(self, array: np.ndarray) -> np.ndarray:
        """A model-grid ``array`` (``model_shape``) back on the input's exact grid: float32 (``input_shape``)."""
        array = np.asarray(array)
        if tuple(array.shape) != self.model_shape:
            raise ValueError(f"array of shape {array.shape} is not on the model grid {self.model_shape}")
        canonical = _resample(array, tuple(1.0 / r for r in self.scale), self._canonical_shape)
        return np.ascontiguousarray(self.reorientation.to_input(canonical))

    def describe(self) -> dict[str, Any]:
        """Both grids for a sidecar (JSON-able): shape, voxel size (mm), affine and axis codes of each, and the rule."""
        def grid(shape: Shape3, affine: np.ndarray, codes: str) -> dict[str, Any]:
            return {"shape": list(shape), "voxel_size_mm": [round(v, 6) for v in voxel_spacing(affine).tolist()],
                    "affine": [[float(v) for v in row] for row in affine], "orientation": codes}

        return {
            "input": grid(self.input_shape, self.input_affine, self.reorientation.codes),
            "model": grid(self.model_shape, self.model_affine, "".join(CANONICAL)),
            "model_voxel_size_mm": self.model_voxel_size,
            "resampled": self.resamples,
            "interpolation": "cubic B-spline (scipy.ndimage.affine_transform, order 3, edges extended), clipped to the range",
            "antialias": "Gaussian before shrinking, variance (coarse^2 - fine^2) / 12 mm^2 per axis",
            "obliquity_deg": round(self.reorientation.obliquity_deg, 3),
        }


def plan_grid(shape: Shape3, affine: np.ndarray, model_voxel_size: float) -> GridMapping:
    """The model grid for an input grid.

    Args:
        shape: input array shape (X, Y, Z) in voxels.
        affine: input 4x4 voxel -> world map (mm, RAS+), finite and invertible.
        model_voxel_size: isotropic model voxel size in mm; 0 keeps the input's voxels (reorientation only).

    Raises:
        UserError: ``model_voxel_size`` is negative or not finite (named as ``--model_voxel_size``).
    """
    if not (math.isfinite(model_voxel_size) and model_voxel_size >= 0):
        raise UserError(f"--model_voxel_size {model_voxel_size}: give a voxel size in mm (> 0), "
                        "or 0 to keep the input's grid")
    orient = reorientation(shape, affine)
    canonical_shape = orient.canonical_shape
    scale, model_shape = [], []
    for n, size in zip(canonical_shape, voxel_spacing(orient.canonical_affine).tolist()):
        if model_voxel_size == 0 or abs(size - model_voxel_size) <= SAME_SIZE_MM:
            scale.append(1.0)
            model_shape.append(n)
        else:
            scale.append(model_voxel_size / size)
            model_shape.append(max(1, math.ceil(n * size / model_voxel_size - SAME_SIZE_MM)))
    return GridMapping(orient, float(model_voxel_size), tuple(model_shape), tuple(scale))  # type: ignore[arg-type]


def _index_map(scale: tuple[float, ...], source_shape: Shape3, target_shape: Shape3) -> np.ndarray:
    """4x4 map from target voxel indices to source voxel indices, the two grids sharing their centre."""
    scale_arr = np.asarray(scale, dtype=np.float64)
    centre_source = (np.asarray(source_shape, dtype=np.float64) - 1) / 2
    centre_target = (np.asarray(target_shape, dtype=np.float64) - 1) / 2
    index_map = np.diag([*scale_arr, 1.0])
    index_map[:3, 3] = centre_source - scale_arr * centre_target
    return index_map


def _resample(array: np.ndarray, scale: tuple[float, ...], target_shape: Shape3) -> np.ndarray:
    """``array`` on a grid of ``target_shape`` with ``scale`` x its voxel size per axis, sharing its centre.

    Returns a float32 array of ``target_shape``; the array itself (as float32) when no axis is resampled.
    """
    array = np.asarray(array, dtype=np.float32)
    if all(r == 1.0 for r in scale):
        return array
    # Along each shrunk axis (scale > 1): variance (target^2 - source^2) / 12 mm^2 = (scale^2 - 1) / 12 source voxels^2.
    sigma = [math.sqrt(max(r * r - 1.0, 0.0) / 12.0) for r in scale]
    if any(sigma):
        array = gaussian_filter(array, sigma, mode="nearest")
    index_map = _index_map(scale, array.shape, target_shape)
    # The spline coefficients in float32 (scipy's default is float64: twice the memory of a whole-body volume).
    coefficients = spline_filter(array, INTERPOLATION_ORDER, output=np.float32, mode="nearest")
    resampled = affine_transform(coefficients, np.diag(index_map)[:3], offset=index_map[:3, 3],
                                 output_shape=target_shape, order=INTERPOLATION_ORDER, mode="nearest",
                                 prefilter=False, output=np.float32)
    # Cubic splines overshoot next to steep edges; no value may leave the input's range (SUV stays >= 0).
    return np.clip(resampled, array.min(), array.max(), out=resampled)
