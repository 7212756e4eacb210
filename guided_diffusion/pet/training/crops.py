"""Random training crops of (low dose, full dose) pairs, as a reproducible torch data stream.

Each sample is a crop of ``patch_size`` (X, Y, Z) voxels at the same place in
both volumes of a pair, mapped with :func:`~guided_diffusion.pet.intensity.suv_to_model`
and transposed to the network's layout (1, Z, X, Y). A 2D network trains on
axial slices: crops of depth 1 drawn the same way, with Z squeezed, (1, X, Y).

Where crops land: most crops must show body, not air. A crop is accepted when
at least ``MIN_BODY_FRACTION`` of its full-dose voxels exceed ``BODY_SUV``;
up to ``MAX_TRIES`` positions are drawn (the last is kept, so a volume without
body still yields crops). A share ``ANYWHERE_FRACTION`` of crops skips the test,
so the network also learns the background. With ``lesion_fraction`` F > 0
(``--lesion_crop_fraction``), a share F of crops is instead centred on a lesion
voxel drawn at random (each voxel of every lesion alike; at a volume's edge the
crop is shifted inside, the voxel still in it) of pairs that carry a lesion mask
(:mod:`.pairs`); crops of pairs without lesions land as above. F = 0 draws no
extra random numbers, so its crops are those of a run without lesion masks.

Reproducibility: sample ``i`` of rank ``r`` depends only on ``(seed, r, i)``, not
on the number of loader workers, so a resumed run that starts at batch ``b``
sees exactly the crops an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ...errors import UserError
from ..intensity import DEFAULT_SUV_MAX, suv_to_model
from .pairs import CachedPair, Shape3

BODY_SUV = 0.1
MIN_BODY_FRACTION = 0.2
ANYWHERE_FRACTION = 0.1
MAX_TRIES = 16
# Distinguishes the data stream's seeds from other streams derived from the same --seed.
DATA_STREAM = 0x5EED_DA7A


def parse_patch_size(text: str | int, dims: int = 3) -> Shape3:
    """``"96"`` -> (96, 96, 96); ``"96,96,64"`` -> (X, Y, Z) = (96, 96, 64).

    For a 2D network (``dims`` 2) crops are axial slices: ``"96"`` -> (96, 96, 1),
    and three sizes must end in Z = 1.
    """
    try:
        sizes = [int(v) for v in str(text).split(",")]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = [sizes[0], sizes[0], sizes[0] if dims == 3 else 1]
    if len(sizes) != 3 or min(sizes) < 1:
        raise UserError(f"--patch_size {text!r} must be one positive integer or three (X,Y,Z), e.g. 96 or 96,96,64")
    if dims == 2 and sizes[2] != 1:
        raise UserError(f"--patch_size {text!r}: with --dims 2 the network trains on axial slices; "
                        f"give one in-plane size (e.g. {sizes[0]}) or X,Y,1")
    return tuple(sizes)  # type: ignore[return-value]


def to_dims(crop: np.ndarray, dims: int) -> np.ndarray:
    """A crop (1, Z, X, Y) in the layout of a ``dims``-D network: as it is in 3D, (1, X, Y) in 2D (Z = 1)."""
    if dims == 3:
        return crop
    if crop.shape[1] != 1:
        raise ValueError(f"a 2D network takes crops one slice deep, got {crop.shape}")
    return crop[:, 0]


def check_patch_fits_network(patch_size: Shape3, divisor: int) -> None:
    """The network halves X and Y ``log2(divisor)`` times, so both must be multiples of ``divisor``."""
    if patch_size[0] % divisor or patch_size[1] % divisor:
        raise UserError(
            f"--patch_size {','.join(map(str, patch_size))}: X and Y must be multiples of {divisor} for this "
            "network (2 ** number of down-samplings); Z is free"
        )


def _read_crop(volume: np.ndarray, origin: Sequence[int], size: Shape3) -> np.ndarray:
    """``volume[origin : origin + size]`` as float32, zero-padded where the volume is smaller."""
    window = tuple(slice(o, o + s) for o, s in zip(origin, size))
    crop = np.asarray(volume[window], dtype=np.float32)
    if crop.shape != size:
        crop = np.pad(crop, [(0, s - c) for s, c in zip(size, crop.shape)])
    return crop


def draw_crop(
    low: np.ndarray, full: np.ndarray, patch_size: Shape3, rng: np.random.Generator,
    flip: bool = False, suv_max: float = DEFAULT_SUV_MAX, data_scale: float | None = None, *,
    lesion_voxels: np.ndarray | None = None, lesion_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One crop of a pair, mostly on the body, a share centred on lesions (see the module docstring).

    Args:
        low, full: arrays (X, Y, Z) in SUV of one shape (memory maps are fine: only crops are read).
        patch_size: crop size (X, Y, Z) in voxels.
        flip: mirror the crop along X and/or Y, each with probability 1/2.
        suv_max, data_scale: the intensity clip and the SUV mapped to 1 (None: ``suv_max``), see
            :func:`~guided_diffusion.pet.intensity.suv_to_model`.
        lesion_voxels: (N, 3) indices of the pair's lesion voxels (None, or N = 0: no lesions).
        lesion_fraction: the probability (0 to 1) that the crop is centred on one of ``lesion_voxels``.

    Returns:
        (full, low), each float32 (1, Z, X, Y) of model values (in [0, 1] for the paper's mapping).
    """
    highest = [max(v - p, 0) for v, p in zip(full.shape, patch_size)]
    # Drawn only when asked: with no lesion crops the stream of random numbers is that of a run without them.
    on_lesion = lesion_fraction > 0 and rng.random() < lesion_fraction
    if on_lesion and lesion_voxels is not None and len(lesion_voxels):
        centre = lesion_voxels[int(rng.integers(len(lesion_voxels)))]
        origin = [min(max(int(c) - p // 2, 0), h) for c, p, h in zip(centre, patch_size, highest)]
        full_crop = _read_crop(full, origin, patch_size)
    else:
        anywhere = rng.random() < ANYWHERE_FRACTION
        for _ in range(MAX_TRIES):
            origin = [int(rng.integers(0, h + 1)) for h in highest]
            full_crop = _read_crop(full, origin, patch_size)
            if anywhere or np.mean(full_crop > BODY_SUV) >= MIN_BODY_FRACTION:
                break
    low_crop = _read_crop(low, origin, patch_size)
    axes = [axis for axis in (0, 1) if flip and rng.random() < 0.5]
    pair = []
    for crop in (full_crop, low_crop):
        crop = np.flip(crop, axis=axes) if axes else crop
        pair.append(np.ascontiguousarray(np.transpose(suv_to_model(crop, suv_max, data_scale), (2, 0, 1))[None]))
    return pair[0], pair[1]


def sample_rng(seed: int, rank: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``rank``'s stream."""
    return np.random.default_rng([DATA_STREAM, seed, rank, index])


class PairCropDataset(IterableDataset):
    """An endless stream of crops of this rank's pairs, in batch order from ``start_batch``.

    Loader worker ``w`` of ``W`` produces batches ``start_batch + w``,
    ``start_batch + w + W``, ..., which a ``DataLoader`` (which takes batches from
    its workers in turn) returns in order. Yields (full (1, Z, X, Y), low (1, Z, X, Y))
    float32 tensors; for a 2D network (``dims`` 2, ``patch_size`` Z = 1) (1, X, Y).
    ``lesion_fraction``: the share of crops centred on a lesion (``--lesion_crop_fraction``, see :func:`draw_crop`).
    """

    def __init__(
        self, pairs: Sequence[CachedPair], patch_size: Shape3, batch_size: int, *, seed: int, rank: int,
        start_batch: int = 0, flip: bool = False, suv_max: float = DEFAULT_SUV_MAX, dims: int = 3,
        data_scale: float | None = None, lesion_fraction: float = 0.0,
    ):
        if not pairs:
            raise ValueError("no pairs to draw crops from")
        if not 0 <= lesion_fraction <= 1:
            raise ValueError(f"lesion_fraction must be in [0, 1], got {lesion_fraction}")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.seed, self.rank = seed, rank
        self.start_batch = start_batch
        self.flip, self.suv_max, self.data_scale = flip, suv_max, data_scale
        self.dims = dims
        self.lesion_fraction = lesion_fraction

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        # Opened in the worker: memory maps are not shared across processes.
        arrays = [(*pair.open(), pair.open_lesion_voxels()) for pair in self.pairs]
        batch = self.start_batch + worker
        while True:
            for index in range(batch * self.batch_size, (batch + 1) * self.batch_size):
                yield self.sample(arrays, index)
            batch += workers

    def sample(self, arrays: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
               index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` of the stream: a pair chosen at random, then a crop of it. ``arrays``: each pair's
        (low, full, lesion voxels or None), as :class:`~.pairs.CachedPair` opens them."""
        rng = sample_rng(self.seed, self.rank, index)
        low, full, lesion_voxels = arrays[int(rng.integers(len(arrays)))]
        full_crop, low_crop = draw_crop(low, full, self.patch_size, rng, self.flip, self.suv_max, self.data_scale,
                                        lesion_voxels=lesion_voxels, lesion_fraction=self.lesion_fraction)
        return torch.from_numpy(to_dims(full_crop, self.dims)), torch.from_numpy(to_dims(low_crop, self.dims))


def crop_loader(dataset: PairCropDataset, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches (full, low), each (B, 1, Z, X, Y) (or (B, 1, X, Y) in 2D), of ``dataset``, in order, with
    ``num_workers`` processes."""
    return DataLoader(dataset, batch_size=dataset.batch_size, num_workers=num_workers, pin_memory=pin_memory)
