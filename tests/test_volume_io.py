import gzip
import math

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import list_volumes, output_path, read_volume, write_volume

PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


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

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 70.0, 370e6, 6586.2


def _write_series(folder, positions, pixels, slopes, drop=(), **overrides):
    """One PET slice per z in ``positions``; pixels[k] is (rows, columns)."""
    folder.mkdir()
    series = generate_uid()
    for k, (z, px, slope) in enumerate(zip(positions, pixels, slopes)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = PET_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = PET_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID = "PT", series
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = px.astype("<i2").tobytes()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, z]
        ds.PixelSpacing = [2.0, 3.0]  # row spacing (along Y), column spacing (along X)
        ds.SliceThickness = 4.0
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.PatientWeight = WEIGHT_KG
        ds.SeriesTime, ds.AcquisitionTime = "110000", "110000"
        info = Dataset()
        info.RadionuclideTotalDose = DOSE_BQ
        info.RadionuclideHalfLife = HALF_LIFE_S
        info.RadiopharmaceuticalStartTime = "100000.00"
        ds.RadiopharmaceuticalInformationSequence = [info]
        for key, value in overrides.items():
            setattr(ds, key, value)
        for key in drop:
            delattr(ds, key)
        ds.save_as(folder / f"slice{k:02d}.dcm", enforce_file_format=True)


def _series_data(n=4, rows=8, cols=6):
    rng = np.random.default_rng(3)
    pixels = [rng.integers(1, 1000, (rows, cols)) for _ in range(n)]
    slopes = [0.5, 2.0, 1.0, 0.25][:n]
    return pixels, slopes


def test_dicom_series_suv_and_affine(tmp_path):
    pixels, slopes = _series_data()
    positions = [12.0, 0.0, 8.0, 4.0]  # files out of order on purpose
    _write_series(tmp_path / "pet", positions, pixels, slopes)
    (tmp_path / "pet" / "README").write_text("not DICOM; skipped")
    vol = read_volume(tmp_path / "pet")
    assert vol.fmt == "dicom" and vol.name == "pet" and vol.shape == (6, 8, 4)

    decayed = DOSE_BQ * 2 ** (-3600 / HALF_LIFE_S)
    suv_factor = WEIGHT_KG * 1000 / decayed
    order = np.argsort(positions)
    for k, src in enumerate(order):
        expected = pixels[src].T * slopes[src] * suv_factor  # (rows, cols) -> (X, Y)
        np.testing.assert_allclose(vol.data[:, :, k], expected, rtol=1e-6)

    # LPS (-100, -120, 0) -> RAS (100, 120, 0); X along +L (RAS -x) at 3 mm, Y along +P at 2 mm.
    expected_affine = np.array([[-3.0, 0, 0, 100], [0, -2.0, 0, 120], [0, 0, 4.0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected_affine)
    assert vol.voxel_size == pytest.approx((3.0, 2.0, 4.0))

    out = output_path(tmp_path / "res", vol, "denoised")
    assert out.name == "pet_denoised.nii.gz"
    write_volume(out, vol.data, vol)
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, expected_affine)
    np.testing.assert_array_equal(back.data, vol.data)
    assert nib.load(out).header["sform_code"] == 1


def test_dicom_admin_decay_correction_uses_undecayed_dose(tmp_path):
    pixels, slopes = _series_data(n=2)
    _write_series(tmp_path / "pet", [0.0, 3.0], pixels, slopes, DecayCorrection="ADMIN")
    vol = read_volume(tmp_path / "pet")
    np.testing.assert_allclose(vol.data[:, :, 0], pixels[0].T * slopes[0] * WEIGHT_KG * 1000 / DOSE_BQ, rtol=1e-6)


@pytest.mark.parametrize(
    "drop,tag",
    [(("PatientWeight",), "PatientWeight"), (("Units",), "Units"), (("RadiopharmaceuticalInformationSequence",), "Radiopharm")],
)
def test_dicom_missing_suv_tag_is_named(tmp_path, drop, tag):
    pixels, slopes = _series_data(n=2)
    _write_series(tmp_path / "pet", [0.0, 3.0], pixels, slopes, drop=drop)
    with pytest.raises(UserError, match=tag):
        read_volume(tmp_path / "pet")


def test_dicom_truncated_slice_is_named(tmp_path):
    pixels, slopes = _series_data(n=2)
    _write_series(tmp_path / "pet", [0.0, 3.0], pixels, slopes)
    blob = (tmp_path / "pet" / "slice01.dcm").read_bytes()
    (tmp_path / "pet" / "slice01.dcm").write_bytes(blob[:-40])
    with pytest.raises(UserError, match="slice01.dcm: cannot decode pixels"):
        read_volume(tmp_path / "pet")


def test_dicom_missing_slice_is_detected(tmp_path):
    pixels, slopes = _series_data()
    _write_series(tmp_path / "pet", [0.0, 4.0, 8.0, 16.0], pixels, slopes)
    with pytest.raises(UserError, match="spacing varies"):
        read_volume(tmp_path / "pet")


def test_dicom_half_life_decay_over_midnight(tmp_path):
    pixels, slopes = _series_data(n=2)
    _write_series(tmp_path / "pet", [0.0, 3.0], pixels, slopes, SeriesTime="000500", AcquisitionTime="000500")
    info = read_volume(tmp_path / "pet")
    # Injection 10:00:00, scan 00:05:00 next day: 14 h 5 min later.
    decayed = DOSE_BQ * math.pow(2, -(14 * 3600 + 300) / HALF_LIFE_S)
    np.testing.assert_allclose(info.data[:, :, 0], pixels[0].T * slopes[0] * WEIGHT_KG * 1000 / decayed, rtol=1e-6)


# ----------------------------------------------------------------------------- listing


def test_list_volumes(tmp_path):
    np.savez(tmp_path / "b.npz", _volume())
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    pixels, slopes = _series_data(n=2)
    _write_series(tmp_path / "c_dicom", [0.0, 3.0], pixels, slopes)

    assert list_volumes(str(tmp_path)) == [tmp_path / "a.nii.gz", tmp_path / "b.npz", tmp_path / "c_dicom"]
    assert list_volumes(str(tmp_path / "*.npz")) == [tmp_path / "b.npz"]
    assert list_volumes(str(tmp_path / "a.nii.gz")) == [tmp_path / "a.nii.gz"]
    assert list_volumes(str(tmp_path / "c_dicom")) == [tmp_path / "c_dicom"]
    for spec in (tmp_path / "empty", tmp_path / "*.nii", tmp_path / "nothing_here"):
        with pytest.raises(UserError, match="no volumes found"):
            list_volumes(str(spec))
