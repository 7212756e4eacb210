"""DICOM PET series found by content and read: any file names, nested trees, other series passed over, names,
enhanced multi-frame objects, and the source headers a DICOM writer needs."""

import hashlib

import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    PIXEL_SPACING,
    SLICE_GAP,
    expected_suv,
    pixels,
    suv_factor,
    write_ct_series,
    write_enhanced_pet,
    write_pet_series,
)
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import VolumeSource, list_volumes, read_volume
from guided_diffusion.pet.io.volume import DicomSource

SLOPES = [0.5, 2.0, 1.0, 0.25]


def test_file_names_of_any_kind_in_any_order(tmp_path):
    # Siemens .IMA names, GE names without extension, UID names: found by content, ordered by position.
    stored = pixels()
    positions = [12.0, 0.0, 8.0, 4.0]
    names = ["PET.0003.IMA", "I0000017", f"{generate_uid()}", "Z01"]
    write_pet_series(tmp_path / "exam", stored, slopes=SLOPES, positions=positions, names=lambda k: names[k])
    (tmp_path / "exam" / "README").write_text("not DICOM")
    (tmp_path / "exam" / "notes.DCM").write_bytes(b"\0" * 200)  # a .DCM suffix is not enough

    found = list_volumes(tmp_path)
    assert len(found) == 1 and found.notes == []
    source = found[0]
    assert (source.kind, source.name, source.path) == ("dicom", "P1_PET_WB_20240305", tmp_path / "exam")
    assert sorted(p.name for p in source.files) == sorted(names)

    vol = read_volume(source)
    order = np.argsort(positions)
    np.testing.assert_allclose(vol.data, expected_suv(stored[order], [SLOPES[k] for k in order], suv_factor(3600.0)),
                               rtol=1e-6)
    assert vol.name == "P1_PET_WB_20240305" and vol.shape == (8, 8, 4)
    np.testing.assert_allclose(np.diag(vol.affine)[:3], [-PIXEL_SPACING[1], -PIXEL_SPACING[0], SLICE_GAP])

    # The headers for a DICOM writer: one per array slice, in array Z order, without pixels.
    header = vol.header
    assert isinstance(header, DicomSource) and header.series_uid == source.series_uid
    assert [float(ds.ImagePositionPatient[2]) for ds in header.datasets] == [0.0, 4.0, 8.0, 12.0]
    assert not any("PixelData" in ds for ds in header.datasets)
    assert header.files == sorted(source.files)


def test_nested_trees_two_patients_with_the_same_series_folder_names(tmp_path):
    for patient in ("A", "B"):
        write_pet_series(tmp_path / patient / "study1" / "PET_WB", pixels(), PatientID=f"PAT-{patient}/1")
    write_ct_series(tmp_path / "A" / "study1" / "CT_WB")
    found = list_volumes(tmp_path)
    assert [s.name for s in found] == ["PAT-A_1_PET_WB_20240305", "PAT-B_1_PET_WB_20240305"]
    assert [s.path for s in found] == [tmp_path / "A" / "study1" / "PET_WB", tmp_path / "B" / "study1" / "PET_WB"]
    assert len(found.notes) == 1
    assert "CT_WB" in found.notes[0] and "Modality CT" in found.notes[0] and "CT Image Storage" in found.notes[0]


def test_one_folder_two_series_and_a_series_over_two_folders(tmp_path):
    mixed = tmp_path / "export"
    write_pet_series(mixed, pixels(), names=lambda k: f"ac{k}", SeriesDescription="WB AC")
    write_pet_series(mixed, pixels(seed=4), names=lambda k: f"nac{k}", SeriesDescription="WB NAC")
    uid = generate_uid()
    stored = pixels(seed=5)
    write_pet_series(tmp_path / "split" / "part1", stored[:2], positions=[0.0, 4.0], series_uid=uid,
                     SeriesDescription="WB split")
    write_pet_series(tmp_path / "split" / "part2", stored[2:], positions=[8.0, 12.0], series_uid=uid,
                     names=lambda k: f"more{k}", SeriesDescription="WB split")
    found = list_volumes(tmp_path)
    by_name = {s.name: s for s in found}
    assert set(by_name) == {"P1_WB_AC_20240305", "P1_WB_NAC_20240305", "P1_WB_split_20240305"}
    assert len(by_name["P1_WB_AC_20240305"].files) == 4 and by_name["P1_WB_AC_20240305"].path == mixed
    split = by_name["P1_WB_split_20240305"]
    assert split.path == tmp_path / "split" and len(split.files) == 4
    np.testing.assert_allclose(read_volume(split).data, expected_suv(stored, [1.0] * 4, suv_factor(3600.0)),
                               rtol=1e-6)

    # A plain folder path must name exactly one PET series.
    with pytest.raises(UserError, match=r"holds 2 DICOM PET series .*P1_WB_AC_20240305.*--base_samples"):
        read_volume(mixed)


def test_colliding_names_get_a_uid_hash(tmp_path):
    uids = [generate_uid(), generate_uid()]
    for k, uid in enumerate(uids):
        write_pet_series(tmp_path / f"recon{k}", pixels(), series_uid=uid)
    found = list_volumes(tmp_path)
    expected = sorted(f"P1_PET_WB_20240305_{hashlib.sha1(uid.encode()).hexdigest()[:8]}" for uid in uids)
    assert sorted(s.name for s in found) == expected


def test_names_fall_back_to_the_folder_and_are_sanitised(tmp_path):
    write_pet_series(tmp_path / "My Scan (1)", pixels(), drop=("PatientID", "SeriesDescription", "SeriesDate"),
                     AcquisitionDate="20240305")
    write_pet_series(tmp_path / "other", pixels(), PatientID="Müller, Anna", SeriesDescription="WB  3D/OSEM*")
    names = sorted(s.name for s in list_volumes(tmp_path))
    assert names == ["M_ller_Anna_WB_3D_OSEM_20240305", "My_Scan_1"]


def test_duplicate_instances_and_non_pet_objects(tmp_path):
    files = write_pet_series(tmp_path / "pet", pixels())
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "again.dcm").write_bytes(files[0].read_bytes())
    write_ct_series(tmp_path / "pet", name_prefix="ct")  # a CT series in the PET folder
    # A secondary capture of a PET (Modality PT): not a PET image series either.
    write_ct_series(tmp_path / "sc", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    found = list_volumes(tmp_path)
    assert len(found) == 1 and len(found[0].files) == 4
    assert any("copy of" in n and "again.dcm" in n for n in found.notes)
    assert sum("ignored series" in n for n in found.notes) == 2
    assert any("Secondary Capture" in n for n in found.notes)


def test_nifti_beside_dicom_glob_single_file_and_exclude(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "deeper").mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / "deeper" / "b.nii.gz")
    files = write_pet_series(tmp_path / "deeper" / "pet", pixels(), names=lambda k: f"{k}.IMA")
    write_pet_series(tmp_path / "results", pixels(), SeriesDescription="denoised")

    # NIfTI files directly in the folder only; DICOM in it and below.
    found = list_volumes(tmp_path)
    assert [(s.kind, s.name) for s in found] == [
        ("nifti", "a"), ("dicom", "P1_PET_WB_20240305"), ("dicom", "P1_denoised_20240305")]
    assert [s.name for s in list_volumes(tmp_path, exclude=[tmp_path / "results"])] == ["a", "P1_PET_WB_20240305"]
    assert [s.name for s in list_volumes(str(tmp_path / "**" / "*.nii.gz"))] == ["a", "b"]
    assert [s.name for s in list_volumes(str(tmp_path / "deeper" / "pet" / "*.IMA"))] == ["P1_PET_WB_20240305"]

    # One file of a series names the whole series; so does read_volume of that file.
    single = list_volumes(files[2])
    assert len(single) == 1 and single[0].files == tuple(files)
    assert read_volume(files[2]).shape == (8, 8, 4)


def test_nothing_found(tmp_path):
    write_ct_series(tmp_path / "ct")
    with pytest.raises(UserError, match="no volumes found.*passed over.*Modality CT"):
        list_volumes(tmp_path)
    with pytest.raises(UserError, match="no DICOM PET series found"):
        read_volume(tmp_path / "ct")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UserError, match="unknown volume format"):
        read_volume(tmp_path / "x.txt")


# ----------------------------------------------------------------------------- enhanced multi-frame


def test_enhanced_pet_reads_like_the_classic_series(tmp_path):
    stored = pixels()
    positions = [8.0, 0.0, 12.0, 4.0]
    write_enhanced_pet(tmp_path / "enh" / "object", stored, slopes=SLOPES, positions=positions)
    write_pet_series(tmp_path / "classic", stored, slopes=SLOPES, positions=positions)
    enhanced, classic = read_volume(tmp_path / "enh"), read_volume(tmp_path / "classic")
    np.testing.assert_array_equal(enhanced.data, classic.data)
    np.testing.assert_array_equal(enhanced.affine, classic.affine)
    assert enhanced.suv_record["delay_s"] == pytest.approx(3600.0)
    headers = enhanced.header.datasets
    assert [ds.InstanceNumber for ds in headers] == [2, 4, 1, 3]  # frame numbers, in ascending z
    assert [float(ds.RescaleSlope) for ds in headers] == [2.0, 0.25, 0.5, 1.0]
    assert all("PerFrameFunctionalGroupsSequence" not in ds and "PixelData" not in ds for ds in headers)
    assert enhanced.header.files == [tmp_path / "enh" / "object"]


def test_enhanced_pet_with_enhanced_units_and_corrections(tmp_path):
    # No classic Units / DecayCorrection / CorrectedImage: a Bq/ml real-world value mapping, the YES/NO
    # correction flags and DecayCorrectionDateTime (11:30, so 1 h 30 min after the injection) stand in.
    code, mapping = Dataset(), Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    mapping.MeasurementUnitsCodeSequence = [code]
    mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = 2.0, 0.0
    stored = pixels()
    write_enhanced_pet(tmp_path / "enh" / "object", stored, slopes=[2.0] * 4,
                       shared={"RealWorldValueMappingSequence": [mapping]},
                       drop=("Units", "DecayCorrection", "CorrectedImage"), AttenuationCorrected="YES",
                       DecayCorrected="YES", DecayCorrectionDateTime="20240305113000")
    vol = read_volume(tmp_path / "enh")
    np.testing.assert_allclose(vol.data, expected_suv(stored, [2.0] * 4, suv_factor(5400.0)), rtol=1e-6)
    assert "DecayCorrectionDateTime" in vol.suv_record["sources"]["reference_datetime"]

    write_enhanced_pet(tmp_path / "nac" / "object", stored, drop=("Units", "DecayCorrection", "CorrectedImage"),
                       shared={"RealWorldValueMappingSequence": [mapping]}, AttenuationCorrected="NO",
                       DecayCorrected="YES")
    with pytest.raises(UserError, match=r"CorrectedImage \(0028,0051\) is DECY, without ATTN"):
        read_volume(tmp_path / "nac")


def test_incomplete_enhanced_pet_says_so(tmp_path):
    path = write_enhanced_pet(tmp_path / "enh" / "object", pixels())
    ds = pydicom.dcmread(path)
    del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    ds.save_as(path)
    with pytest.raises(UserError, match=r"frame 1 has no PlaneOrientationSequence \(0020,9116\).*enhanced PET"):
        read_volume(tmp_path / "enh")


def test_volume_source_is_what_read_volume_takes(tmp_path):
    files = write_pet_series(tmp_path / "pet", pixels())
    source = VolumeSource(tmp_path / "pet", "chosen", "dicom", tuple(files), "1.2.3")
    vol = read_volume(source)
    assert vol.name == "chosen" and vol.header.series_uid == "1.2.3"
