"""Lesion masks travel with training pairs (pairs.csv column, npz key) and --lesion_crop_fraction centres crops on them."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from training_helpers import REPO, body_pair, write_npz_pair

from guided_diffusion.errors import UserError
from guided_diffusion.pet.training.crops import PairCropDataset, draw_crop
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs
from guided_diffusion.train_util import TrainOptions

PATCH = (8, 8, 8)
#: The SUV of the one lesion voxel of :func:`lesion_pair`; nothing else in the pair comes near it.
LESION_SUV = 12.0


def write_nifti(path: Path, data: np.ndarray, voxel_mm: float = 1.0) -> None:
    nib.save(nib.Nifti1Image(np.asarray(data), np.diag([voxel_mm] * 3 + [1.0])), path)


def lesion_pair(shape=(32, 32, 24), lesion=(2, 3, 2)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, full, mask): the test body with one lesion voxel of :data:`LESION_SUV` in the air of a corner."""
    low, full = body_pair(shape)
    mask = np.zeros(shape, np.uint16)
    mask[lesion] = 1
    full[lesion] = low[lesion] = LESION_SUV
    return low, full, mask


def hit_rate(dataset: PairCropDataset, arrays: list, draws: int) -> float:
    """The share of the first ``draws`` samples whose full-dose crop holds the lesion voxel."""
    top = LESION_SUV / dataset.suv_max
    return float(np.mean([dataset.sample(arrays, i)[0].max().item() >= top - 1e-6 for i in range(draws)]))


# -- lesion masks travel with the pairs -------------------------------------------------------------------------


def test_the_lesions_column_is_read_and_brought_onto_the_model_grid_by_nearest_neighbour(tmp_path):
    low, full, mask = lesion_pair((12, 10, 8), lesion=(3, 4, 2))
    mask[7, 5, 6] = 2  # a second lesion, labelled 2
    for name, data in (("low", low), ("full", full), ("lesions", mask)):
        write_nifti(tmp_path / f"{name}.nii.gz", data, voxel_mm=2.0)
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose,lesions\nlow.nii.gz,full.nii.gz,lesions.nii.gz\n")
    (entry,) = find_pairs(tmp_path)
    assert entry.lesions == tmp_path / "lesions.nii.gz"

    (same_grid,) = prepare_pairs([entry], tmp_path / "cache", PATCH)
    np.testing.assert_array_equal(same_grid.open_lesion_voxels(), [[3, 4, 2], [7, 5, 6]])
    # 1 mm model voxels: each 2 mm lesion voxel becomes the 2 x 2 x 2 model voxels whose centres fall in it.
    (fine,) = prepare_pairs([entry], tmp_path / "cache", PATCH, model_voxel_size=1.0)
    assert fine.shape == (24, 20, 16)
    expected = {(2 * x + i, 2 * y + j, 2 * z + k) for x, y, z in ((3, 4, 2), (7, 5, 6))
                for i in (0, 1) for j in (0, 1) for k in (0, 1)}
    voxels = fine.open_lesion_voxels()
    assert voxels.dtype == np.int32 and {tuple(v) for v in voxels.tolist()} == expected
    # Cached: the cache files are read again, not rebuilt.
    (again,) = prepare_pairs([entry], tmp_path / "cache", PATCH, model_voxel_size=1.0)
    assert again.lesion_voxels == fine.lesion_voxels


def test_pairs_without_lesions_and_bad_lesion_masks(tmp_path):
    low, full, mask = lesion_pair((12, 10, 8), lesion=(3, 4, 2))
    for name, data in (("low", low), ("full", full), ("lesions", mask[:, :, :6])):
        write_nifti(tmp_path / f"{name}.nii.gz", data)
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose,lesions\nlow.nii.gz,full.nii.gz,\n")
    (pair,) = prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)
    assert pair.lesion_voxels is None and pair.open_lesion_voxels() is None
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose,lesions\nlow.nii.gz,full.nii.gz,lesions.nii.gz\n")
    with pytest.raises(UserError, match="lesion mask .*lesions.nii.gz .*does not lie on the grid of the full dose"):
        prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose,lesions\nlow.nii.gz,full.nii.gz,gone.nii.gz\n")
    with pytest.raises(UserError, match="entry 1 names .*gone.nii.gz, which does not exist"):
        find_pairs(tmp_path)


def test_an_npz_pair_carries_its_lesions(tmp_path):
    low, full, mask = lesion_pair((12, 10, 8), lesion=(3, 4, 2))
    for name, lesions in (("with", {"lesions": mask}), ("without", {}), ("mismatched", {"lesions": mask[:, :, :4]})):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "pair.npz", arr_0=np.stack([low, full]), affine=np.eye(4), **lesions)

    def prepare(name: str):
        return prepare_pairs(find_pairs(tmp_path / name), tmp_path / "cache", PATCH)[0]

    np.testing.assert_array_equal(prepare("with").open_lesion_voxels(), [[3, 4, 2]])
    assert prepare("without").lesion_voxels is None
    with pytest.raises(UserError, match=r"lesions array has shape \(12, 10, 4\) but its pair \(12, 10, 8\)"):
        prepare("mismatched")


# -- crops centred on lesions ---------------------------------------------------------------------------------


@pytest.fixture()
def lesion_data(tmp_path) -> tuple[list, list]:
    """Cached pairs with and without the lesion mask of :func:`lesion_pair` (one npz each), opened for sampling."""
    low, full, mask = lesion_pair()
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    np.savez(tmp_path / "with" / "pair.npz", arr_0=np.stack([low, full]), lesions=mask, affine=np.eye(4))
    np.savez(tmp_path / "without" / "pair.npz", arr_0=np.stack([low, full]), affine=np.eye(4))
    pairs = [prepare_pairs(find_pairs(tmp_path / d), tmp_path / "cache", PATCH)[0] for d in ("with", "without")]
    return pairs, [(*p.open(), p.open_lesion_voxels()) for p in pairs]


def test_crops_hit_lesions_at_the_stated_rate(lesion_data):
    pairs, arrays = lesion_data
    draws = 600
    with_lesions = [arrays[0]]

    def dataset(fraction: float) -> PairCropDataset:
        return PairCropDataset(pairs[:1], PATCH, 2, seed=0, rank=0, lesion_fraction=fraction)

    # Random crops rarely find the lesion voxel (in air, in a corner); a share F of crops is centred on it.
    chance = hit_rate(dataset(0.0), with_lesions, draws)
    assert chance < 0.05
    assert hit_rate(dataset(1.0), with_lesions, draws) == 1.0
    for fraction in (0.25, 0.6):
        expected = fraction + (1 - fraction) * chance
        tolerance = 4 * np.sqrt(expected * (1 - expected) / draws) + 0.01
        assert abs(hit_rate(dataset(fraction), with_lesions, draws) - expected) < tolerance, fraction


def test_a_lesion_crop_is_centred_on_the_lesion_and_shifted_inside_at_edges():
    low, full, mask = lesion_pair()
    voxels = np.argwhere(mask > 0).astype(np.int32)  # (2, 3, 2): near the corner
    inside = np.array([[16, 15, 12]], np.int32)
    full[tuple(inside[0])] = LESION_SUV
    for lesions, position in ((inside, (4, 4, 4)), (voxels, (2, 3, 2))):
        crop, _ = draw_crop(low, full, PATCH, np.random.default_rng(1), lesion_voxels=lesions, lesion_fraction=1.0)
        # (1, Z, X, Y): the lesion at the crop's centre, or where the shifted crop holds it.
        assert crop[0, position[2], position[0], position[1]] == pytest.approx(LESION_SUV / 16.0)


def test_no_lesion_crops_leave_the_crops_unchanged(lesion_data, tmp_path):
    pairs, arrays = lesion_data
    plain = PairCropDataset(pairs[1:], PATCH, 2, seed=3, rank=1, flip=True)
    masked = PairCropDataset(pairs[:1], PATCH, 2, seed=3, rank=1, flip=True, lesion_fraction=0.0)
    for index in range(24):
        for a, b in zip(plain.sample(arrays[1:], index), masked.sample(arrays[:1], index)):
            assert np.array_equal(a.numpy(), b.numpy())


def test_no_lesion_crops_are_bit_identical_to_the_crops_before_lesion_masks(tmp_path):
    # The hash of this stream as scripts/train.py drew it before --lesion_crop_fraction existed.
    write_npz_pair(tmp_path / "data" / "pair.npz", shape=(24, 24, 16))
    pairs = prepare_pairs(find_pairs(tmp_path / "data"), tmp_path / "cache", PATCH)
    dataset = PairCropDataset(pairs, PATCH, 2, seed=3, rank=1, flip=True)
    arrays = [(*p.open(), p.open_lesion_voxels()) for p in pairs]
    digest = hashlib.sha256()
    for index in range(16):
        for crop in dataset.sample(arrays, index):
            digest.update(crop.numpy().tobytes())
    assert digest.hexdigest() == "d384a6b60f15330cd41c5a1a9f11148d9ae48a88f9d6a58622011261ef020e5a"


def test_pairs_without_lesions_fall_back_to_random_crops():
    low, full, _ = lesion_pair()
    rng = np.random.default_rng(5)
    rng.random()  # the lesion draw
    expected = draw_crop(low, full, PATCH, rng)
    for empty in (None, np.zeros((0, 3), np.int32)):
        got = draw_crop(low, full, PATCH, np.random.default_rng(5), lesion_voxels=empty, lesion_fraction=1.0)
        for a, b in zip(got, expected):
            assert np.array_equal(a, b)


# -- the flag and the simulator --------------------------------------------------------------------------------


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"lesion_test_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fraction", ["-0.1", "1.5", "nan"])
def test_train_refuses_a_lesion_crop_fraction_outside_0_to_1(fraction):
    script = load_script("train")
    args = script.create_argparser().parse_args(["--data_dir", "d", "--lesion_crop_fraction", fraction])
    with pytest.raises(UserError, match="--lesion_crop_fraction must be a share from 0 to 1"):
        script.check_flags(args, TrainOptions())


def test_make_phantoms_lists_the_lesion_masks_with_the_pairs(tmp_path):
    load_script("make_phantoms").main(["--out_dir", str(tmp_path), "--voxel_size", "16", "--axial_extent_mm", "48",
                                       "--dose_levels", "1/4", "--format", "both"])
    with open(tmp_path / "pairs.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["lesions"] == "subject000_lesions.nii.gz"
    mask = np.asarray(nib.load(tmp_path / row["lesions"]).dataobj)
    np.testing.assert_array_equal(np.load(tmp_path / "subject000_dose1-4.npz")["lesions"], mask)
    for pair in prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", (1, 1, 1)):
        np.testing.assert_array_equal(pair.open_lesion_voxels(), np.argwhere(mask > 0))

