"""Training pairs on disk (finding, checking, caching) and the crop stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from training_helpers import body_pair, write_bad, write_nifti, write_npz_pair

from guided_diffusion.errors import UserError
from guided_diffusion.pet.training.crops import (
    BODY_SUV,
    MIN_BODY_FRACTION,
    PairCropDataset,
    check_patch_fits_network,
    crop_loader,
    draw_crop,
    parse_patch_size,
)
from guided_diffusion.pet.training.pairs import find_pairs, prepare_pairs, shard

PATCH = (8, 8, 4)


def test_finds_npz_pairs_and_manifests_recursively(tmp_path):
    write_npz_pair(tmp_path / "a" / "s1_dose1-10.npz")
    write_npz_pair(tmp_path / "a" / "b" / "s2_dose1-10.npz", seed=1)
    write_npz_pair(tmp_path / ".hidden" / "skip.npz")
    nifti = tmp_path / "n"
    nifti.mkdir()
    low, full = body_pair()
    write_nifti(nifti / "full.nii.gz", full)
    write_nifti(nifti / "low10.nii.gz", low)
    np.savez(nifti / "low20.npz", arr_0=low * 0.9)  # a single volume named by the manifest, not a pair file
    (nifti / "pairs.csv").write_text("low_dose,full_dose,dose_fraction,subject\n"
                                     "low10.nii.gz,full.nii.gz,0.1,s3\nlow20.npz,full.nii.gz,0.05,s3\n")
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "pairs.json").write_text(json.dumps([{"low_dose": "../n/low10.nii.gz", "full_dose": "../n/full.nii.gz"}]))

    entries = find_pairs(tmp_path)
    names = sorted(e.name for e in entries)
    assert len(entries) == 5
    assert sum("pairs.csv entry" in n for n in names) == 2 and sum("pairs.json entry" in n for n in names) == 1
    assert not any("skip.npz" in n or n.endswith("low20.npz") for n in names)

    pairs = prepare_pairs(entries, tmp_path / "cache", PATCH)
    assert all(p.shape == (16, 16, 8) for p in pairs)
    low_map, _ = pairs[0].open()
    assert isinstance(low_map, np.memmap) and low_map.dtype == np.float32
    # The two rows sharing full.nii.gz share one cache file.
    assert len({p.full for p in pairs if "pairs.csv" in p.name}) == 1


@pytest.mark.parametrize("kind,message", [
    ("wrong shape", "needs (2, X, Y, Z)"),
    ("mismatched pair", "must share one grid"),
    ("NaN", "NaN or infinite (first at index (3, 4, 5))"),
    ("bad manifest", "lacks low_dose or full_dose"),
    ("missing file", "does not exist"),
])
def test_bad_data_is_refused_naming_the_file(tmp_path, kind, message):
    write_bad(tmp_path, kind)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)
    assert str(tmp_path) in str(info.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(UserError, match="no training pairs found"):
        find_pairs(tmp_path)
    with pytest.raises(UserError, match="is not a folder"):
        find_pairs(tmp_path / "nope")


def test_small_volume_is_padded_with_one_warning(tmp_path):
    write_npz_pair(tmp_path / "a.npz", shape=(8, 8, 3))
    write_npz_pair(tmp_path / "b.npz", shape=(8, 8, 2))
    with pytest.warns(UserWarning, match="2 training pair.*padded with zeros") as record:
        pairs = prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)
    assert len(record) == 1
    low, full = pairs[0].open()
    crop_full, _ = draw_crop(low, full, PATCH, np.random.default_rng(0))
    assert crop_full.shape == (1, 4, 8, 8) and not crop_full[0, 3].any()


def test_crops_shape_range_alignment_and_body(tmp_path):
    low, full = body_pair((32, 32, 12))
    low = full * 0.5  # the same place in both volumes is visible as an exact ratio
    rng = np.random.default_rng(0)
    crops = [draw_crop(low, full, (8, 8, 4), rng, flip=True) for _ in range(200)]
    for crop_full, crop_low in crops:
        assert crop_full.shape == crop_low.shape == (1, 4, 8, 8) and crop_full.dtype == np.float32
        assert 0 <= crop_full.min() and crop_full.max() <= 1
        np.testing.assert_allclose(crop_low, crop_full * 0.5, atol=1e-7)
    in_body = np.mean([np.mean(f * 16 > BODY_SUV) >= MIN_BODY_FRACTION for f, _ in crops])
    body_share = np.mean(full > BODY_SUV)  # what uniform crops would see, roughly
    assert in_body >= 0.85 > body_share


def test_patch_size_parsing():
    assert parse_patch_size("8") == (8, 8, 8)
    assert parse_patch_size("16,8,4") == (16, 8, 4)
    for bad in ("", "8,8", "a", "0"):
        with pytest.raises(UserError, match="--patch_size"):
            parse_patch_size(bad)
    check_patch_fits_network((8, 8, 3), 4)
    with pytest.raises(UserError, match="multiples of 4"):
        check_patch_fits_network((8, 6, 4), 4)


def test_shard_round_robin_and_fewer_files_than_ranks():
    assert shard([0, 1, 2, 3, 4], 1, 2) == [1, 3]
    assert shard([0, 1], 0, 3) == shard([0, 1], 2, 3) == [0, 1]


def test_stream_is_the_same_for_any_worker_count_and_resumes_at_a_batch(tmp_path):
    write_npz_pair(tmp_path / "a.npz")
    write_npz_pair(tmp_path / "b.npz", seed=1)
    pairs = prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)

    def first(num_workers, start_batch=0, count=4):
        dataset = PairCropDataset(pairs, PATCH, 2, seed=3, rank=0, start_batch=start_batch, flip=True)
        batches = iter(crop_loader(dataset, num_workers))
        return [next(batches) for _ in range(count)]

    serial, parallel, resumed = first(0), first(2), first(0, start_batch=2, count=2)
    assert serial[0][0].shape == (2, 1, 4, 8, 8)
    for a, b in zip(serial, parallel):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    for a, b in zip(serial[2:], resumed):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(serial[0][0], serial[1][0])
    other_rank = next(iter(crop_loader(PairCropDataset(pairs, PATCH, 2, seed=3, rank=1), 0)))
    assert not torch.equal(serial[0][0], other_rank[0])
