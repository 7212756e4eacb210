"""DICOM output: a result written as a new PET series and read back by the project's reader."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import Volume, read_volume
from guided_diffusion.pet.io.dicom_write import PET_IMAGE_STORAGE, PHILIPS_PET_CREATOR, write_dicom_series
from guided_diffusion.pet.io.volume import DicomSource

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 80.0, 300e6, 6586.2
COLUMNS, ROWS, SLICES = 8, 6, 4
SLOPES = (0.5, 2.0, 1.0, 0.25)
IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyID",
            "AccessionNumber", "FrameOfReferenceUID", "Manufacturer", "SeriesTime", "PatientWeight")


def _source_series(folder, units="BQML", decay="START"):
    """A 4-slice axial PET series (8 columns x 6 rows), files named out of slice order.

    Returns the header-only datasets in slice order (ascending z, the reader's array Z order).
    """
    folder.mkdir()
    rng = np.random.default_rng(7)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    headers = []
    for k, slope in enumerate(SLOPES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = PET_IMAGE_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Müller^Anna", "P-17", "19600102", "F"
        ds.PatientWeight = WEIGHT_KG
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = study, "20240305", "104500", "1", "A9"
        ds.Modality, ds.Manufacturer, ds.SeriesInstanceUID, ds.SeriesNumber = "PT", "Acme", series, 4
        ds.SeriesDescription, ds.ImageType = "WB AC 1/20 dose", ["ORIGINAL", "PRIMARY"]
        ds.FrameOfReferenceUID = frame
        ds.SeriesDate, ds.SeriesTime = "20240305", "110000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20240305", f"11{k:02d}00"
        ds.InstanceNumber = SLICES - k  # the scanner counts from the head
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, 3.0 * k]
        ds.SliceLocation = 3.0 * k
        ds.PixelSpacing, ds.SliceThickness = [2.0, 4.0], 3.0
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = units, decay, ["ATTN", "DECY"]
        info = Dataset()
        info.RadionuclideTotalDose, info.RadionuclideHalfLife = DOSE_BQ, HALF_LIFE_S
        info.RadiopharmaceuticalStartTime = "100000"
        ds.RadiopharmaceuticalInformationSequence = [info]
        ds.add_new(0x00090010, "LO", "ACME private")
        ds.add_new(0x00091001, "LO", "source-only secret")
        if units == "CNTS":
            block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
            block.add_new(0x00, "DS", "0.000321")
            block.add_new(0x09, "DS", "12.5")
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.WindowCenter, ds.WindowWidth = 5000, 10000
        ds.PixelData = rng.integers(1, 3000, (ROWS, COLUMNS)).astype("<i2").tobytes()
        ds.save_as(folder / f"{generate_uid()}.dcm", enforce_file_format=True)
        del ds.PixelData
        headers.append(ds)
    return headers


def _suv_factors(decay):
    """Bq/ml -> SUV per slice by hand: weight / dose decayed to the series start (START) or each slice (NONE)."""
    delays = 3600.0 + (60.0 * np.arange(SLICES) if decay == "NONE" else 0.0)
    return WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-delays / HALF_LIFE_S)) * np.ones(SLICES)


def _source_volume(folder, headers, decay="START"):
    """The source as the project's reader gives it, with the DICOM header if the reader does not attach one yet."""
    vol = read_volume(folder)
    if not isinstance(vol.header, DicomSource):
        files = sorted(folder.iterdir())
        vol = dataclasses.replace(vol, header=DicomSource(headers, files, headers[0].SeriesInstanceUID),
                                  source_units="BQML", to_suv=_suv_factors(decay))
    return vol


def _result(vol):
    """A plausible result (X, Y, Z) in SUV; the last slice 1000 times fainter, to test per-slice precision."""
    result = vol.data * 1.25 + 0.1
    result[:, :, -1] *= 1e-3
    return result


def _read_files(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def _assert_quantised(back, written):
    """``back`` equals ``written`` to half an int16 step of each slice's largest value."""
    step = np.abs(written).max(axis=(0, 1)) / 32767
    assert (np.abs(back - written).max(axis=(0, 1)) <= step * (0.5 + 1e-4)).all()


def test_suv_series_is_aligned_with_the_source_and_keeps_its_identity(tmp_path):
    headers = _source_series(tmp_path / "pet")
    vol = _source_volume(tmp_path / "pet", headers)
    result = _result(vol)
    out = write_dicom_series(tmp_path / "res" / "pet_denoised_dcm", result, vol,
                             series_description="denoised (model demo, DDIM 10 steps)")

    back = read_volume(out)
    assert back.shape == vol.shape == (COLUMNS, ROWS, SLICES)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    _assert_quantised(back.data, result)

    files = _read_files(out)
    assert [p.name for p in sorted(out.iterdir())] == [f"IM_{z:05d}.dcm" for z in (1, 2, 3, 4)]
    for z, (ds, source) in enumerate(zip(files, headers)):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == PET_IMAGE_STORAGE
        assert ds.Units == "GML" and ds.PatientName == "Müller^Anna"
        for keyword in IDENTITY:
            assert ds[keyword].value == source[keyword].value, keyword
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                        "SliceLocation", "InstanceNumber"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert ds.SeriesNumber == 1004 and ds.SeriesDescription == "denoised (model demo, DDIM 10 steps)"
        assert list(ds.ImageType) == ["DERIVED", "PRIMARY"] and "DDIM" in ds.DerivationDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert ds.RescaleIntercept == 0 and "WindowCenter" not in ds
        assert not any(elem.tag.is_private for elem in ds)
        # pixel (row r, column c) of slice z is result[c, r, z]
        np.testing.assert_allclose(ds.pixel_array * float(ds.RescaleSlope), result[:, :, z].T,
                                   atol=np.abs(result[:, :, z]).max() / 32767)
    series = {ds.SeriesInstanceUID for ds in files}
    sops = {ds.SOPInstanceUID for ds in files}
    assert len(series) == 1 and series.isdisjoint({headers[0].SeriesInstanceUID})
    assert len(sops) == SLICES and sops.isdisjoint({h.SOPInstanceUID for h in headers})

    std = write_dicom_series(tmp_path / "res" / "pet_denoised_std_dcm", result * 0.1, vol,
                             series_description="uncertainty (ensemble SD)", series_number_offset=1001)
    std_files = _read_files(std)
    assert {ds.SeriesNumber for ds in std_files} == {1005}
    assert {ds.SeriesInstanceUID for ds in std_files}.isdisjoint(series)
    _assert_quantised(read_volume(std).data, result * 0.1)


@pytest.mark.parametrize("decay", ["START", "NONE"])
def test_input_units_go_back_to_bq_per_ml_through_the_suv_factor(tmp_path, decay):
    headers = _source_series(tmp_path / "pet", decay=decay)
    vol = _source_volume(tmp_path / "pet", headers, decay=decay)
    result = _result(vol)
    out = write_dicom_series(tmp_path / "pet_denoised_dcm", result, vol, units="input",
                             series_description="denoised")

    bqml = np.stack([ds.pixel_array.T * float(ds.RescaleSlope) for ds in _read_files(out)], axis=-1)
    assert {ds.Units for ds in _read_files(out)} == {"BQML"}
    _assert_quantised(bqml, result / np.broadcast_to(vol.to_suv, (SLICES,)))
    # The reader turns the Bq/ml back into the same SUV from the copied weight, dose and times.
    _assert_quantised(read_volume(out).data, result)


def test_philips_counts_keep_their_suv_factor(tmp_path):
    headers = _source_series(tmp_path / "pet", units="CNTS")
    factors = np.array([3.21e-4, 3.3e-4, 3.4e-4, 3.5e-4])  # per slice, to test the per-slice tag
    result = (np.random.default_rng(1).random((COLUMNS, ROWS, SLICES)) * 8).astype(np.float32)
    vol = Volume(result, np.eye(4), "dicom", tmp_path / "pet", "pet",
                 header=DicomSource(headers, [], headers[0].SeriesInstanceUID), source_units="CNTS", to_suv=factors)

    files = _read_files(write_dicom_series(tmp_path / "cnts", result, vol, units="input", series_description="d"))
    for z, ds in enumerate(files):
        assert ds.Units == "CNTS"
        factor = float(ds.get_private_item(0x7053, 0x00, PHILIPS_PET_CREATOR).value)
        assert factor == pytest.approx(factors[z], rel=1e-9)
        assert float(ds.get_private_item(0x7053, 0x09, PHILIPS_PET_CREATOR).value) == 12.5
        assert 0x00091001 not in ds
        np.testing.assert_allclose(ds.pixel_array.T * float(ds.RescaleSlope) * factor, result[:, :, z],
                                   atol=result[:, :, z].max() / 32767)

    suv = _read_files(write_dicom_series(tmp_path / "suv", result, vol, series_description="d"))
    assert suv[0].Units == "GML" and not any(elem.tag.is_private for elem in suv[0])


def test_existing_series_is_refused_then_replaced_when_asked(tmp_path):
    headers = _source_series(tmp_path / "pet")
    vol = _source_volume(tmp_path / "pet", headers)
    out = write_dicom_series(tmp_path / "res" / "pet_denoised_dcm", vol.data, vol, series_description="first")
    with pytest.raises(UserError, match="pet_denoised_dcm exists; pass --overwrite"):
        write_dicom_series(out, vol.data, vol, series_description="second")
    assert {ds.SeriesDescription for ds in _read_files(out)} == {"first"}

    write_dicom_series(out, vol.data * 2, vol, series_description="second", overwrite=True)
    assert {ds.SeriesDescription for ds in _read_files(out)} == {"second"}
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["pet_denoised_dcm"]


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    headers = _source_series(tmp_path / "pet")
    vol = _source_volume(tmp_path / "pet", headers)
    res = tmp_path / "res"
    out = write_dicom_series(res / "old_dcm", vol.data, vol, series_description="old")
    real_write = pydicom.dcmwrite
    calls = []

    def failing_write(path, ds, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # slice 2
            raise OSError("disk full")
        real_write(path, ds, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(res / "new_dcm", vol.data, vol, series_description="new")
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(out, vol.data, vol, series_description="new", overwrite=True)
    assert sorted(p.name for p in res.iterdir()) == ["old_dcm"]
    assert {ds.SeriesDescription for ds in _read_files(out)} == {"old"}

    monkeypatch.setattr(pydicom, "dcmwrite", real_write)
    real_rename = os.rename

    def failing_rename(source, target):
        if str(source).endswith(".tmp"):  # the finished series onto out_dir, after the old one moved aside
            raise OSError("rename failed")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        write_dicom_series(out, vol.data, vol, series_description="new", overwrite=True)
    assert sorted(p.name for p in res.iterdir()) == ["old_dcm"]
    assert {ds.SeriesDescription for ds in _read_files(out)} == {"old"}


def test_bad_requests_are_refused_with_the_fix(tmp_path):
    headers = _source_series(tmp_path / "pet")
    vol = _source_volume(tmp_path / "pet", headers)
    out = tmp_path / "out_dcm"
    with pytest.raises(UserError, match=r"result shape \(8, 6, 3\) differs"):
        write_dicom_series(out, vol.data[:, :, :3], vol, series_description="d")
    bad = vol.data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or infinite"):
        write_dicom_series(out, bad, vol, series_description="d")
    with pytest.raises(UserError, match="--output_units"):
        write_dicom_series(out, vol.data, vol, units="mbq", series_description="d")
    nifti = dataclasses.replace(vol, fmt="nifti", header=None)
    with pytest.raises(UserError, match="needs a DICOM series input"):
        write_dicom_series(out, vol.data, nifti, series_description="d")
    assert not out.exists()
