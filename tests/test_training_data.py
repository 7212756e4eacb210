"""Training pairs on disk (finding, checking, caching) and the crop stream."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from training_helpers import body_pair, write_bad, write_nifti, write_npz_pair

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io.grid import plan_grid
from guided_diffusion.pet.training.crops import (
    BODY_SUV,
    MIN_BODY_FRACTION,
    PairCropDataset,
    check_patch_fits_network,
    crop_loader,
    draw_crop,
    parse_patch_size,
)
from guided_diffusion.pet.training.pairs import data_voxel_size, find_pairs, prepare_pairs, shard

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
    # A single volume named by the manifest, not a pair file (on full.nii.gz's 1 mm grid).
    np.savez(nifti / "low20.npz", arr_0=low * 0.9, affine=np.eye(4))
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


# Coronal DICOM order (left, inferior, posterior) with 2 mm voxels: the voxels of an axial
# (16, 16, 8) volume with affine diag(2, 2, 2), stored the other way round.
CORONAL_2MM = np.array([[-2.0, 0, 0, 30], [0, 0, -2, 30], [0, -2, 0, 14], [0, 0, 0, 1]])


def write_coronal_manifest(folder):
    """``body_pair`` on the coronal 2 mm grid as a manifest pair; returns (low, full) as written (X, Y, Z) = (L, I, P)."""
    folder.mkdir(parents=True, exist_ok=True)
    low, full = (np.ascontiguousarray(np.transpose(v[::-1, ::-1, ::-1], (0, 2, 1))) for v in body_pair((16, 16, 8)))
    for name, volume in (("low.nii.gz", low), ("full.nii.gz", full)):
        nib.save(nib.Nifti1Image(volume, CORONAL_2MM), folder / name)
    (folder / "pairs.csv").write_text("low_dose,full_dose\nlow.nii.gz,full.nii.gz\n")
    return low, full


@pytest.mark.parametrize("model_mm", [0.0, 4.0])
def test_cache_holds_pairs_on_the_model_grid(tmp_path, model_mm):
    low, full = write_coronal_manifest(tmp_path / "coronal")
    np.savez(tmp_path / "axial.npz", arr_0=np.stack(body_pair((16, 16, 8))), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    pairs = {p.name.split("/")[-1]: p for p in prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH, model_mm)}
    grid = plan_grid(full.shape, CORONAL_2MM, model_mm)
    coronal = pairs["pairs.csv entry 1"]
    assert coronal.shape == grid.model_shape == ((16, 16, 8) if model_mm == 0 else (8, 8, 4))  # head-foot last
    cached_low, cached_full = coronal.open()
    assert np.array_equal(cached_full, grid.to_model(full)) and np.array_equal(cached_low, grid.to_model(low))
    # The same voxels stored axially end up the same on the model grid.
    assert np.array_equal(pairs["axial.npz"].open()[1], cached_full)


def test_cache_is_rebuilt_for_another_grid_and_reused_for_the_same(tmp_path):
    write_npz_pair(tmp_path / "a.npz")
    cache = tmp_path / "cache"
    first = prepare_pairs(find_pairs(tmp_path), cache, PATCH, 2.0)
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = prepare_pairs(find_pairs(tmp_path), cache, PATCH, 2.0)
    assert again == first and {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    with pytest.warns(UserWarning, match="smaller than --patch_size"):  # (4, 4, 2) voxels of 4 mm
        other = prepare_pairs(find_pairs(tmp_path), cache, PATCH, 4.0)
    assert other[0].full != first[0].full and other[0].shape == (4, 4, 2) and first[0].shape == (8, 8, 4)


def test_data_voxel_size_is_shared_by_every_volume_or_asked_for(tmp_path):
    write_coronal_manifest(tmp_path / "coronal")  # 2 mm, coronal
    np.savez(tmp_path / "axial.npz", arr_0=np.stack(body_pair()), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    assert data_voxel_size(find_pairs(tmp_path)) == 2.0
    np.savez(tmp_path / "thick.npz", arr_0=np.stack(body_pair()), affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    with pytest.raises(UserError, match=r"differ in voxel size: 2 x 2 x 2 mm in .*, 2 x 2 x 3 mm in .*thick.npz; "
                                        r"choose the model's grid with --model_voxel_size MM \(e.g. 2\)"):
        data_voxel_size(find_pairs(tmp_path))
    # Anisotropic but shared: the smallest edge. Pair files without an affine have 1.65 mm voxels.
    (tmp_path / "aniso").mkdir()
    np.savez(tmp_path / "aniso" / "x.npz", arr_0=np.stack(body_pair()), affine=np.diag([4.0, 4.0, 2.0, 1.0]))
    assert data_voxel_size(find_pairs(tmp_path / "aniso")) == 2.0
    (tmp_path / "plain").mkdir()
    np.savez(tmp_path / "plain" / "x.npz", arr_0=np.stack(body_pair()))
    assert data_voxel_size(find_pairs(tmp_path / "plain")) == 1.65


def test_pair_on_two_grids_is_refused(tmp_path):
    low, full = body_pair()
    nib.save(nib.Nifti1Image(low, np.eye(4)), tmp_path / "low.nii.gz")
    shifted = np.eye(4)
    shifted[2, 3] = 5.0  # the same shape, 5 mm further up
    nib.save(nib.Nifti1Image(full, shifted), tmp_path / "full.nii.gz")
    (tmp_path / "pairs.csv").write_text("low_dose,full_dose\nlow.nii.gz,full.nii.gz\n")
    with pytest.raises(UserError, match="different affines.*must share one grid"):
        prepare_pairs(find_pairs(tmp_path), tmp_path / "cache", PATCH)


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
