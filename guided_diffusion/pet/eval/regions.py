"""Region quantitation: SUVmean, SUVmax and TLA per organ and lesion, liver CV, lesion contrast recovery,
which lesions are visible and their size bins.

Volumes are (X, Y, Z) arrays in SUV; ``labels`` is an organ label map (0 =
outside the body), ``lesions`` a lesion map (0 = no lesion, lesion ``i`` where
``lesions == i``), both of the volume's shape. Errors are in percent,
``100 (result - reference) / reference``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from .metrics import percent_error

#: Liver CV: the liver is eroded by this margin (mm), and voxels this close to a lesion are left out.
LIVER_MARGIN_MM = 10.0

#: Lesion background: a shell of voxels more than ``inner`` and at most ``outer`` voxels (chessboard
#: distance) from the lesion; the gap keeps the lesion's partial-volume spill out of the background.
BACKGROUND_SHELL = (2, 4)

#: Body mask without labels: reference voxels above this SUV (air in PET reads ~0, fat ~0.3).
BODY_THRESHOLD_SUV = 0.1

_CUBE = np.ones((3, 3, 3), dtype=bool)


def body_mask(reference: np.ndarray, labels: np.ndarray | None,
              threshold: float = BODY_THRESHOLD_SUV) -> tuple[np.ndarray, str]:
    """The body: ``labels > 0`` when labels are given, else ``reference > threshold`` SUV.

    Returns:
        (boolean (X, Y, Z) mask, a short description of the rule used, e.g. ``"labels > 0"``).
    """
    if labels is not None:
        return np.asarray(labels) > 0, "labels > 0"
    return np.asarray(reference) > threshold, f"reference > {threshold:g} SUV"


def split_lesions(lesions: np.ndarray) -> np.ndarray:
    """Lesion ids per voxel: an integer map as given, a binary (0/1) mask split into connected lesions.

    A map whose only non-zero value is 1 is read as a binary mask and split into
    26-connected components, numbered 1, 2, ... in scan order; any other map keeps its values as ids.
    """
    lesions = np.asarray(lesions)
    if lesions.max(initial=0) == 1:
        components, _ = ndimage.label(lesions > 0, structure=_CUBE)
        return components
    return lesions.astype(np.int64, copy=False)


def liver_cv(volume: np.ndarray, liver: np.ndarray, lesions: np.ndarray | None, voxel_size: Sequence[float],
             margin_mm: float = LIVER_MARGIN_MM) -> float:
    """Coefficient of variation (std / mean, ddof 0) of ``volume`` in the liver's interior.

    The idea of :func:`~guided_diffusion.pet.sim.simulation.organ_cv`, with
    distances in mm on any voxel grid: voxels further than ``margin_mm`` from the
    liver's edge (Euclidean distance to the nearest voxel outside the liver) and
    further than ``margin_mm`` from every lesion voxel, so the figure measures noise
    and texture, not edges or lesions.

    Args:
        volume: (X, Y, Z) SUV.
        liver: boolean (X, Y, Z) liver mask.
        lesions: optional (X, Y, Z) lesion map (non-zero = lesion).
        voxel_size: (x, y, z) in mm.
        margin_mm: erosion margin.

    Returns:
        the CV, or NaN when the liver is absent or nothing of it is left (too small for the margin).
    """
    liver = np.asarray(liver, dtype=bool)
    box = _box(liver, [math.ceil(margin_mm / v) + 1 for v in voxel_size])
    if box is None:
        return float("nan")
    keep = ndimage.distance_transform_edt(np.pad(liver[box], 1), sampling=voxel_size)[1:-1, 1:-1, 1:-1] > margin_mm
    if lesions is not None:
        lesion = np.asarray(lesions)[box] != 0
        if lesion.any():
            keep &= ndimage.distance_transform_edt(~lesion, sampling=voxel_size) > margin_mm
    values = np.asarray(volume, dtype=np.float64)[box][keep]
    if values.size == 0 or values.mean() == 0:
        return float("nan")
    return float(values.std() / values.mean())


def lesion_background(lesions: np.ndarray, lesion_id: int, body: np.ndarray | None = None,
                      shell: tuple[int, int] = BACKGROUND_SHELL,
                      bounds: tuple[slice, ...] | None = None) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """A lesion's mask and its background shell, in a box around the lesion.

    The shell holds voxels more than ``shell[0]`` and at most ``shell[1]`` voxels
    from the lesion (chessboard distance: dilations by a 3x3x3 cube), minus every
    lesion dilated by ``shell[0]`` and, when ``body`` is given, minus voxels outside it.

    Args:
        lesions: (X, Y, Z) integer lesion map.
        lesion_id: the lesion's value.
        body: optional boolean (X, Y, Z) body mask.
        shell: (inner, outer) in voxels.
        bounds: the lesion's bounding box if known (``scipy.ndimage.find_objects``), to skip a search.

    Returns:
        (the box as slices, the lesion mask in the box, the shell mask in the box).
    """
    inner, outer = shell
    lesions = np.asarray(lesions)
    if bounds is None:
        found = ndimage.find_objects((lesions == lesion_id).astype(np.int8))
        if not found or found[0] is None:
            raise ValueError(f"lesion {lesion_id} is empty")
        bounds = found[0]
    box = tuple(slice(max(s.start - outer - 1, 0), min(s.stop + outer + 1, n)) for s, n in zip(bounds, lesions.shape))
    lesion = lesions[box] == lesion_id
    others = (lesions[box] != 0) & ~lesion
    near = ndimage.binary_dilation(lesion, _CUBE, iterations=inner) if inner else lesion
    background = ndimage.binary_dilation(lesion, _CUBE, iterations=outer) & ~near
    background &= ~(ndimage.binary_dilation(others, _CUBE, iterations=inner) if inner else others)
    if body is not None:
        background &= np.asarray(body, dtype=bool)[box]
    return box, lesion, background


def contrast_recovery(result: np.ndarray, reference: np.ndarray, lesion: np.ndarray, background: np.ndarray) -> float:
    """Contrast recovery: ``(L / B - 1) / (L_ref / B_ref - 1)``.

    ``L`` and ``B`` are the result's means in the lesion and its background
    shell, ``L_ref`` and ``B_ref`` the reference's: 1 when the result keeps the
    reference's lesion contrast, below 1 when it smooths it away. NaN when the
    shell is empty, a background mean is 0 or the reference shows no contrast.
    """
    result = np.asarray(result, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if not background.any() or not lesion.any():
        return float("nan")
    bg, bg_ref = result[background].mean(), reference[background].mean()
    if bg == 0 or bg_ref == 0:
        return float("nan")
    contrast_ref = reference[lesion].mean() / bg_ref - 1
    if abs(contrast_ref) < 1e-12:
        return float("nan")
    return float((result[lesion].mean() / bg - 1) / contrast_ref)


def lesion_shells(lesions: np.ndarray, body: np.ndarray | None = None,
                  shell: tuple[int, int] = BACKGROUND_SHELL) -> dict[int, tuple[tuple[slice, ...], np.ndarray, np.ndarray]]:
    """:func:`lesion_background` of every lesion: ``{id: (box, lesion mask, shell mask)}``."""
    lesions = np.asarray(lesions)
    bounds = ndimage.find_objects(lesions)
    return {i + 1: lesion_background(lesions, i + 1, body, shell, bounds=b) for i, b in enumerate(bounds)
            if b is not None}


#: A lesion is visible when its SUVmax in the reference is at least this multiple of its background's mean
#: (:func:`lesion_visible`); lesion summaries average visible lesions only.
VISIBILITY_RATIO = 1.5

#: Lesion size bins by volume: "small" below this many ml, "large" from it on (:func:`lesion_size_bin`).
SMALL_LESION_ML = 1.0
#: The size bins, name -> how tables and figures title it.
LESION_SIZE_BINS = {"small": f"< {SMALL_LESION_ML:g} ml", "large": f">= {SMALL_LESION_ML:g} ml"}

#: The columns that name a region in the per-case tables, in order (see :func:`region_index` and
#: :func:`with_visibility`; ``size_bin`` and ``visible`` are empty for organs).
REGION_KEYS = ("region", "kind", "label", "voxels", "volume_ml", "size_bin", "visible")

#: The columns of :func:`suv_statistics`, in order (``tla_*`` for lesions only).
SUV_COLUMNS = tuple(f"{quantity}_{of}" for quantity in ("suvmean", "suvmax", "tla")
                    for of in ("result", "reference", "error_pct"))
#: The columns of :data:`SUV_COLUMNS` that describe the result alone (the same whatever the reference).
SUV_RESULT_COLUMNS = tuple(column for column in SUV_COLUMNS if column.endswith("_result"))


def organ_map(labels: np.ndarray, lesions: np.ndarray | None = None) -> np.ndarray:
    """The organ label map with lesion voxels set to 0: organ statistics leave the lesions out."""
    labels = np.asarray(labels)
    return labels if lesions is None else np.where(np.asarray(lesions) != 0, 0, labels)


def region_index(organs: np.ndarray | None, lesions: np.ndarray | None, lesion_ids: Sequence[int],
                 label_names: Mapping[int, str] | None, voxel_ml: float) -> list[dict]:
    """The regions of a case: one row per organ label present in ``organs`` (0 excluded), then per lesion.

    Args:
        organs: optional (X, Y, Z) :func:`organ_map`.
        lesions: optional (X, Y, Z) lesion map (ids as in :func:`split_lesions` output).
        lesion_ids: the lesions to list, in order (e.g. the keys of :func:`lesion_shells`).
        label_names: organ names by label value (default ``label_<value>``).
        voxel_ml: volume of one voxel in ml.

    Returns:
        rows of :data:`REGION_KEYS`: ``region`` (name), ``kind`` ("organ" or "lesion"), ``label`` (its value in
        its map), ``voxels``, ``volume_ml``, ``size_bin`` (lesions: :func:`lesion_size_bin`; organs: None) and
        ``visible`` (None: set by :func:`with_visibility`).
    """
    rows: list[dict] = []
    if organs is not None:
        count = np.bincount(np.asarray(organs).ravel())
        for i in np.flatnonzero(count[1:]) + 1:
            name = (label_names or {}).get(int(i), f"label_{i}")
            volume = int(count[i]) * voxel_ml
            rows.append(dict(zip(REGION_KEYS, (name, "organ", int(i), int(count[i]), volume, None, None))))
    if lesions is not None and len(lesion_ids):
        count = np.bincount(np.asarray(lesions).ravel())
        for i in lesion_ids:
            volume = int(count[i]) * voxel_ml
            rows.append(dict(zip(REGION_KEYS, (f"lesion_{i}", "lesion", i, int(count[i]), volume,
                                               lesion_size_bin(volume), None))))
    return rows


def lesion_size_bin(volume_ml: float) -> str:
    """A lesion's size bin (a key of :data:`LESION_SIZE_BINS`): "small" below :data:`SMALL_LESION_ML`, else
    "large"."""
    return "small" if volume_ml < SMALL_LESION_ML else "large"


def lesion_visible(reference: np.ndarray, lesion: np.ndarray, background: np.ndarray,
                   ratio: float = VISIBILITY_RATIO) -> bool:
    """Whether a lesion stands out of its local background in ``reference``.

    Args:
        reference: SUV values of a box around the lesion (any shape).
        lesion, background: boolean masks of the lesion and its background shell in that box
            (:func:`lesion_background`).
        ratio: the visibility threshold.

    Returns:
        True when the lesion's SUVmax is at least ``ratio`` x the background's mean SUV; False when the lesion or
        its shell is empty (no local background to stand out from).
    """
    if not lesion.any() or not background.any():
        return False
    reference = np.asarray(reference, dtype=np.float64)
    return bool(reference[lesion].max() >= ratio * reference[background].mean())


def with_visibility(regions: Sequence[Mapping], reference: np.ndarray, shells: Mapping[int, tuple],
                    ratio: float = VISIBILITY_RATIO) -> list[dict]:
    """The rows of :func:`region_index` with ``visible`` set: for each lesion :func:`lesion_visible` in
    ``reference`` ((X, Y, Z) SUV) against its shell in ``shells`` (:func:`lesion_shells`); None for organs."""
    out = []
    for row in regions:
        visible = None
        if row["kind"] == "lesion":
            box, lesion, background = shells[row["label"]]
            visible = lesion_visible(np.asarray(reference)[box], lesion, background, ratio)
        out.append({**row, "visible": visible})
    return out


def suv_statistics(result: np.ndarray, reference: np.ndarray, organs: np.ndarray | None,
                   lesions: np.ndarray | None, regions: Sequence[Mapping]) -> list[dict]:
    """SUVmean and SUVmax of both volumes in each region, with errors in percent; TLA for lesions.

    Args:
        result, reference: (X, Y, Z) SUV volumes.
        organs, lesions: the maps ``regions`` were listed from.
        regions: the rows of :func:`region_index` (organs first, then lesions).

    Returns:
        one dict per region of :data:`SUV_COLUMNS` (``suvmean_*``, ``suvmax_*``; ``tla_*`` for lesions,
        TLA = SUVmean x volume in ml).
    """
    out = []
    for kind, regions_map in (("organ", organs), ("lesion", lesions)):
        rows = [r for r in regions if r["kind"] == kind]
        for row, stats in zip(rows, _stats(result, reference, regions_map, [r["label"] for r in rows])):
            out.append(_row(stats, row["volume_ml"], tla=kind == "lesion"))
    return out


def contrast_recoveries(result: np.ndarray, reference: np.ndarray, regions: Sequence[Mapping],
                        shells: Mapping[int, tuple]) -> list[dict]:
    """``{"contrast_recovery": ...}`` of each lesion row of ``regions`` (:func:`contrast_recovery` against
    its background shell in ``shells``, :func:`lesion_shells`); an empty dict for each organ row."""
    out: list[dict] = []
    for row in regions:
        if row["kind"] != "lesion":
            out.append({})
            continue
        box, lesion, background = shells[row["label"]]
        out.append({"contrast_recovery": contrast_recovery(result[box], reference[box], lesion, background)})
    return out


def _stats(result: np.ndarray, reference: np.ndarray, regions: np.ndarray | None, ids: list[int]) -> list[dict]:
    """Mean and max of both volumes in each region ``regions == id`` (one pass per statistic)."""
    if not ids:
        return []
    regions = np.asarray(regions)
    out: list[dict] = [{} for _ in ids]
    for key, volume in (("result", result), ("reference", reference)):
        volume = np.asarray(volume, dtype=np.float64)
        for stats, mean, peak in zip(out, ndimage.mean(volume, regions, ids), ndimage.maximum(volume, regions, ids)):
            stats[f"mean_{key}"], stats[f"max_{key}"] = float(mean), float(peak)
    return out


def _row(stats: dict, volume_ml: float, tla: bool) -> dict:
    row = {}
    for name, key in (("suvmean", "mean"), ("suvmax", "max")):
        row[f"{name}_result"], row[f"{name}_reference"] = stats[f"{key}_result"], stats[f"{key}_reference"]
        row[f"{name}_error_pct"] = percent_error(stats[f"{key}_result"], stats[f"{key}_reference"])
    if tla:
        row["tla_result"] = stats["mean_result"] * volume_ml
        row["tla_reference"] = stats["mean_reference"] * volume_ml
        row["tla_error_pct"] = percent_error(row["tla_result"], row["tla_reference"])
    return row


def _box(mask: np.ndarray, pad: Sequence[int]) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``, grown by ``pad`` voxels per axis (clipped to the array); None if empty."""
    found = ndimage.find_objects(mask.astype(np.int8))
    if not found or found[0] is None:
        return None
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(found[0], pad, mask.shape))
