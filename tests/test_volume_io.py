import gzip

import nibabel as nib
import numpy as np
import pytest
from dicom_helpers import pixels, write_pet_series

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import list_volumes, output_path, read_volume, write_volume


def _volume(shape=(6, 5, 4), seed=0):
    return (np.random.default_rng(seed).random(shape) * 10 + 0.1).astype(np.float32)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- npz


def test_npz_paper_layout_gets_default_geometry_and_round_trips(tmp_path):
    data = _volume()
    np.savez(tmp_path / "case1.npz", data[None])  # (1, X, Y, Z) under arr_0
    vol = read_volume(tmp_path / "case1.npz")
    assert vol.fmt == "npz" and vol.name == "case1" and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.affine, np.diag([1.65, 1.65, 1.65, 1.0]))
    assert vol.voxel_size == pytest.approx((1.65, 1.65, 1.65))
    assert read_volume(tmp_path / "case1.npz", default_voxel_size=2.0).voxel_size == (2.0, 2.0, 2.0)

    out = output_path(tmp_path / "out", vol, "denoised")
    assert out == tmp_path / "out" / "case1_denoised.npz"
    write_volume(out, vol.data * 2, vol)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, data * 2)
    np.testing.assert_array_equal(back.affine, vol.affine)
    assert _files(tmp_path / "out") == ["case1_denoised.npz"]


def test_npz_with_key_and_affine(tmp_path):
    affine = np.array([[0, 2.0, 0, 5], [1.5, 0, 0, -3], [0, 0, 3, 1], [0, 0, 0, 1]])
    np.savez(tmp_path / "a.npz", pet=_volume(), affine=affine)
    vol = read_volume(tmp_path / "a.npz", npz_key="pet")
    np.testing.assert_array_equal(vol.affine, affine)
    assert vol.voxel_size == pytest.approx((1.5, 2.0, 3.0))


def test_npz_missing_key_lists_keys(tmp_path):
    np.savez(tmp_path / "a.npz", pet=_volume(), ct=_volume())
    with pytest.raises(UserError, match=r"'arr_0'.*pet, ct.*--npz_key"):
        read_volume(tmp_path / "a.npz")


# ----------------------------------------------------------------------------- NIfTI


def test_nifti_round_trip_keeps_values_affine_and_header(tmp_path):
    raw = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) % 9 + 1
    affine = np.array([[-2.0, 0, 0, 10], [0, 2.0, 0.1, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(0.5, 0.25)
    image.header["descrip"] = b"low dose"
    nib.save(image, tmp_path / "pat.nii.gz")

    vol = read_volume(tmp_path / "pat.nii.gz")
    assert vol.fmt == "nifti" and vol.name == "pat" and vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data, raw * 0.5 + 0.25)
    np.testing.assert_allclose(vol.affine, affine)

    out = write_volume(output_path(tmp_path, vol, "denoised"), vol.data + 0.125, vol)
    assert out.name == "pat_denoised.nii.gz"
    written = nib.load(out)
    assert written.get_data_dtype() == np.float32
    assert written.header["descrip"] == b"low dose"
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, vol.data + 0.125)
    np.testing.assert_allclose(back.affine, affine)


def test_uncompressed_nifti_keeps_suffix_and_trailing_axis_dropped(tmp_path):
    nib.save(nib.Nifti1Image(_volume()[..., None], np.eye(4)), tmp_path / "x.nii")
    vol = read_volume(tmp_path / "x.nii")
    assert vol.shape == (6, 5, 4)
    assert output_path(tmp_path, vol, "std").name == "x_std.nii"


# ----------------------------------------------------------------------------- bad input


def _write_npz(arr):
    return lambda p: np.savez(p, arr)


@pytest.mark.parametrize(
    "name,make,message",
    [
        ("missing.npz", None, "no such file"),
        ("bad.npz", lambda p: p.write_bytes(b"not a zip"), "cannot read as .npz"),
        ("bad.nii.gz", lambda p: p.write_bytes(gzip.compress(b"\0" * 100)), "cannot read as NIfTI"),
        ("vol.txt", lambda p: p.write_text("1 2 3"), "unknown volume format"),
        ("flat.npz", _write_npz(np.ones((4, 5))), r"shape \(4, 5\); expected 3 axes"),
        ("four.npz", _write_npz(np.ones((2, 4, 5, 6))), r"expected 3 axes"),
        ("empty.npz", _write_npz(np.ones((0, 4, 5))), "empty"),
        ("zero.npz", _write_npz(np.zeros((4, 4, 4))), "every voxel is zero"),
        ("text.npz", _write_npz(np.array([["a"]])), "not real numbers"),
    ],
)
def test_bad_input_raises_user_error(tmp_path, name, make, message):
    path = tmp_path / name
    if make:
        make(path)
    with pytest.raises(UserError, match=message) as info:
        read_volume(path)
    assert name in str(info.value)


def test_truncated_nifti(tmp_path):
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "t.nii.gz")
    blob = (tmp_path / "t.nii.gz").read_bytes()
    (tmp_path / "t.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="t.nii.gz: cannot read"):
        read_volume(tmp_path / "t.nii.gz")


def test_non_finite_voxels_are_counted_and_located(tmp_path):
    data = _volume()
    data[1, 2, 3] = np.nan
    data[4, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", data)
    with pytest.raises(UserError, match=r"2 voxels are NaN or infinite \(first at index \(1, 2, 3\)\)"):
        read_volume(tmp_path / "nan.npz")


def test_bad_npz_affine(tmp_path):
    np.savez(tmp_path / "a.npz", arr_0=_volume(), affine=np.eye(3))
    with pytest.raises(UserError, match="affine"):
        read_volume(tmp_path / "a.npz")


# ----------------------------------------------------------------------------- writing


def test_write_refuses_shape_mismatch_wrong_suffix_and_existing(tmp_path):
    np.savez(tmp_path / "in.npz", _volume())
    vol = read_volume(tmp_path / "in.npz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(UserError, match="shape"):
        write_volume(out_dir / "r.npz", np.ones((6, 5, 3)), vol)
    with pytest.raises(UserError, match=r"must end in \.npz"):
        write_volume(out_dir / "r.nii.gz", vol.data, vol)
    assert _files(out_dir) == []

    target = write_volume(out_dir / "r.npz", vol.data, vol)
    with pytest.raises(UserError, match="exists"):
        write_volume(target, vol.data * 3, vol)
    np.testing.assert_array_equal(read_volume(target).data, vol.data)
    write_volume(target, vol.data * 3, vol, overwrite=True)
    np.testing.assert_allclose(read_volume(target).data, vol.data * 3)
    assert _files(out_dir) == ["r.npz"]  # no temp files left behind


# ----------------------------------------------------------------------------- DICOM


def test_dicom_series_suv_affine_and_nifti_result(tmp_path):
    stored = pixels(rows=8, columns=6)
    slopes = [0.5, 2.0, 1.0, 0.25]
    positions = [12.0, 0.0, 8.0, 4.0]  # files out of order on purpose
    write_pet_series(tmp_path / "pet", stored, slopes=slopes, positions=positions)
    (tmp_path / "pet" / "README").write_text("not DICOM; skipped")
    vol = read_volume(tmp_path / "pet")
    assert vol.fmt == "dicom" and vol.name == "P1_PET_WB_20240305" and vol.shape == (6, 8, 4)

    factor = 70_000.0 / (370e6 * 2 ** (-3600 / 6586.2))  # 70 kg, 370 MBq F-18, 1 h
    order = np.argsort(positions)
    for k, src in enumerate(order):
        expected = stored[src].T * slopes[src] * factor  # (rows, cols) -> (X, Y)
        np.testing.assert_allclose(vol.data[:, :, k], expected, rtol=1e-6)

    # LPS (-100, -120, 0) -> RAS (100, 120, 0); X along +L (RAS -x) at 3 mm, Y along +P at 2 mm.
    expected_affine = np.array([[-3.0, 0, 0, 100], [0, -2.0, 0, 120], [0, 0, 4.0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected_affine)
    assert vol.voxel_size == pytest.approx((3.0, 2.0, 4.0))

    out = output_path(tmp_path / "res", vol, "denoised")
    assert out.name == "P1_PET_WB_20240305_denoised.nii.gz"
    write_volume(out, vol.data, vol)
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, expected_affine)
    np.testing.assert_array_equal(back.data, vol.data)
    assert nib.load(out).header["sform_code"] == 1


def test_dicom_truncated_slice_is_named(tmp_path):
    files = write_pet_series(tmp_path / "pet", pixels(slices=2))
    files[1].write_bytes(files[1].read_bytes()[:-40])
    with pytest.raises(UserError, match="slice01.dcm: cannot decode pixels"):
        read_volume(tmp_path / "pet")


def test_dicom_missing_slice_is_detected(tmp_path):
    write_pet_series(tmp_path / "pet", pixels(), positions=[0.0, 4.0, 8.0, 16.0])
    with pytest.raises(UserError, match="spacing varies"):
        read_volume(tmp_path / "pet")


# ----------------------------------------------------------------------------- listing


def test_list_volumes(tmp_path):
    np.savez(tmp_path / "b.npz", _volume())
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    write_pet_series(tmp_path / "c_dicom", pixels(slices=2), names=lambda k: f"{k}.IMA")

    def listed(spec):
        return [(s.kind, s.path, s.name) for s in list_volumes(str(spec))]

    assert listed(tmp_path) == [
        ("nifti", tmp_path / "a.nii.gz", "a"), ("npz", tmp_path / "b.npz", "b"),
        ("dicom", tmp_path / "c_dicom", "P1_PET_WB_20240305"),
    ]
    assert listed(tmp_path / "*.npz") == [("npz", tmp_path / "b.npz", "b")]
    assert listed(tmp_path / "a.nii.gz") == [("nifti", tmp_path / "a.nii.gz", "a")]
    assert listed(tmp_path / "c_dicom") == [("dicom", tmp_path / "c_dicom", "P1_PET_WB_20240305")]
    for spec in (tmp_path / "empty", tmp_path / "*.nii", tmp_path / "nothing_here"):
        with pytest.raises(UserError, match="no volumes found"):
            list_volumes(str(spec))


def test_same_stem_in_two_formats_gets_a_path_hash(tmp_path):
    np.savez(tmp_path / "scan.npz", _volume())
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "scan.nii.gz")
    names = [s.name for s in list_volumes(tmp_path)]
    assert len(set(names)) == 2 and all(n.startswith("scan_") and len(n) == len("scan_") + 8 for n in names)
    assert read_volume(list_volumes(tmp_path)[0]).name == names[0]
