"""SUV of DICOM PET series per QIBA: timing, decay correction modes, units, and what is refused.

Every expected value is computed by hand here: weight [g] / (dose [Bq] *
2^(-delay / half-life)) with the delay written out in seconds.
"""

import json

import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    DOSE_BQ,
    expected_suv,
    injection_info,
    pixels,
    suv_factor,
    write_pet_series,
)
from pydicom.dataset import Dataset

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import UnitOptions, read_volume
from guided_diffusion.pet.io.dicom_suv import PHILIPS_PET_CREATOR

SLOPES = [0.5, 2.0, 1.0, 0.25]
ZR89_HALF_LIFE_S = 78.41 * 3600


def _series(tmp_path, **kwargs):
    stored = pixels()
    slopes = kwargs.pop("slopes", SLOPES)
    write_pet_series(tmp_path / "pet", stored, slopes=slopes, **kwargs)
    return stored, slopes


def _assert_suv(vol, stored, slopes, factors):
    np.testing.assert_allclose(vol.data, expected_suv(stored, slopes, factors), rtol=1e-4)


def test_start_one_hour_after_injection_and_the_record(tmp_path):
    stored, slopes = _series(tmp_path)
    vol = read_volume(tmp_path / "pet")
    factor = 70_000.0 / (370e6 * 2 ** (-3600 / 6586.2))  # 1 h after 370 MBq of F-18, 70 kg
    _assert_suv(vol, stored, slopes, factor)
    assert vol.source_units == "BQML" and vol.to_suv == pytest.approx(factor, rel=1e-12)
    record = vol.suv_record
    json.dumps(record)  # JSON-able for the sidecar
    assert record["units"] == "BQML" and record["decay_correction"] == "START"
    assert record["weight_kg"] == 70.0 and record["injected_bq"] == 370e6 and record["half_life_s"] == 6586.2
    assert record["injection_datetime"] == "2024-03-05T10:00:00"
    assert record["reference_datetime"] == "2024-03-05T11:00:00"
    assert record["delay_s"] == pytest.approx(3600.0) and record["factor"] == pytest.approx(factor)
    assert "PatientWeight (0010,1030)" in record["sources"]["weight_kg"]
    assert "RadiopharmaceuticalStartTime (0018,1072)" in record["sources"]["injection_datetime"]
    assert "SeriesTime" in record["sources"]["reference_datetime"]


def test_scan_after_midnight_with_start_datetime(tmp_path):
    # Injected 23:50 on 5 March, series starts 00:30 on 6 March: 40 min, not -23 h 20 min.
    info = injection_info(start_time="235000", start_datetime="20240305235000")
    stored, slopes = _series(tmp_path, info=info, SeriesDate="20240306", SeriesTime="003000",
                             AcquisitionDate="20240306", AcquisitionTime="003000")
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 70_000.0 / (370e6 * 2 ** (-2400 / 6586.2)))
    assert vol.suv_record["delay_s"] == pytest.approx(2400.0)


def test_scan_after_midnight_with_start_time_only(tmp_path):
    # Only the time of the injection: it is taken to be the evening before the series date.
    info = injection_info(start_time="235000")
    stored, slopes = _series(tmp_path, info=info, SeriesDate="20240306", SeriesTime="003000",
                             AcquisitionDate="20240306", AcquisitionTime="003000")
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 70_000.0 / (370e6 * 2 ** (-2400 / 6586.2)))
    assert vol.suv_record["injection_datetime"] == "2024-03-05T23:50:00"
    assert "day before" in vol.suv_record["sources"]["injection_datetime"]


def test_multi_bed_scan_across_midnight_uses_the_series_start(tmp_path):
    # Beds acquired 23:55 (5 March) to 00:10 (6 March); the earliest is the series start, not 00:10.
    info = injection_info(start_time="225500")
    per_slice = [{"AcquisitionDate": d, "AcquisitionTime": t} for d, t in
                 [("20240305", "235500"), ("20240305", "235900"), ("20240306", "000500"), ("20240306", "001000")]]
    stored, slopes = _series(tmp_path, info=info, SeriesTime="235500", per_slice=per_slice)
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 70_000.0 / (370e6 * 2 ** (-3600 / 6586.2)))


def test_zr89_three_days_after_injection(tmp_path):
    # 37 MBq of Zr-89 on 2 March 09:00, scanned 5 March 09:00: 72 h = 259200 s.
    info = injection_info(dose_bq=37e6, half_life_s=ZR89_HALF_LIFE_S, start_datetime="20240302090000",
                          start_time="090000")
    stored, slopes = _series(tmp_path, info=info, SeriesTime="090000", AcquisitionTime="090000")
    vol = read_volume(tmp_path / "pet")
    factor = 70_000.0 / (37e6 * 2 ** (-259200 / (78.41 * 3600)))
    _assert_suv(vol, stored, slopes, factor)
    assert vol.suv_record["delay_s"] == pytest.approx(259200.0)


def test_start_datetime_wins_over_start_time(tmp_path):
    # The two disagree by 30 min; QIBA prefers the DateTime (09:30, so 1 h 30 min before the scan).
    info = injection_info(start_time="100000", start_datetime="20240305093000")
    stored, slopes = _series(tmp_path, info=info)
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 70_000.0 / (370e6 * 2 ** (-5400 / 6586.2)))
    assert "RadiopharmaceuticalStartDateTime" in vol.suv_record["sources"]["injection_datetime"]


def test_start_datetime_alone(tmp_path):
    info = injection_info(start_time=None, start_datetime="20240305101500.000000")
    stored, slopes = _series(tmp_path, info=info)
    _assert_suv(read_volume(tmp_path / "pet"), stored, slopes, 70_000.0 / (370e6 * 2 ** (-2700 / 6586.2)))


def test_earliest_acquisition_before_a_rewritten_series_time(tmp_path):
    # Re-reconstructed at 14:00 (SeriesTime) from data acquired at 11:00: the acquisition is the reference.
    stored, slopes = _series(tmp_path, SeriesTime="140000", AcquisitionTime="110000")
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, suv_factor(3600.0))
    assert "earliest" in vol.suv_record["sources"]["reference_datetime"]


def test_admin_uses_the_undecayed_dose(tmp_path):
    stored, slopes = _series(tmp_path, DecayCorrection="ADMIN")
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 70_000.0 / 370e6)
    assert vol.suv_record["delay_s"] == 0.0 and vol.suv_record["half_life_s"] is None


def test_none_decays_the_dose_to_each_slice(tmp_path):
    # Not decay corrected: each slice is divided by the dose left at its own acquisition (11:00, 11:02, ...).
    per_slice = [{"AcquisitionTime": f"11{2 * k:02d}00"} for k in range(4)]
    stored, slopes = _series(tmp_path, DecayCorrection="NONE", CorrectedImage=["ATTN"], per_slice=per_slice)
    vol = read_volume(tmp_path / "pet")
    factors = [70_000.0 / (370e6 * 2 ** (-(3600 + 120 * k) / 6586.2)) for k in range(4)]
    _assert_suv(vol, stored, slopes, factors)
    assert vol.to_suv.shape == (4,)
    np.testing.assert_allclose(vol.to_suv, factors, rtol=1e-12)
    assert vol.suv_record["factor"]["count"] == 4
    assert vol.suv_record["delay_s"] == {"min": 3600.0, "max": 3960.0, "count": 4}


def test_gml_is_suv_already(tmp_path):
    stored, slopes = _series(tmp_path, Units="GML", slopes=[1e-3] * 4)
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, slopes, 1.0)
    assert vol.source_units == "SUV" and vol.to_suv == 1.0 and vol.suv_record is None


def test_philips_cnts_through_the_suv_scale_factor(tmp_path):
    stored = pixels()
    factors = [0.0004, 0.0004, 0.0005, 0.0004]  # per slice, as Philips writes them
    files = write_pet_series(tmp_path / "pet", stored, slopes=SLOPES, Units="CNTS")
    for file, factor in zip(files, factors):
        ds = pydicom.dcmread(file)
        ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True).add_new(0x00, "DS", f"{factor:.6f}")
        ds.save_as(file)
    vol = read_volume(tmp_path / "pet")
    _assert_suv(vol, stored, SLOPES, factors)
    assert vol.source_units == "CNTS"
    np.testing.assert_allclose(vol.to_suv, factors)
    assert "(7053,1000)" in vol.suv_record["sources"]["factor"]


def test_cnts_without_the_scale_factor_is_refused(tmp_path):
    _series(tmp_path, Units="CNTS")
    with pytest.raises(UserError, match=r"CNTS.*\(7053,1000\).*missing"):
        read_volume(tmp_path / "pet")


@pytest.mark.parametrize("units", ["PROPCNTS", "CM2ML"])
def test_other_units_are_refused(tmp_path, units):
    _series(tmp_path, Units=units)
    with pytest.raises(UserError, match=rf"Units \(0054,1001\) is {units}"):
        read_volume(tmp_path / "pet")


def test_injection_after_the_scan_is_refused(tmp_path):
    # 11:30 injection for an 11:00 scan: not a scan 23.5 h later (which would be SUV x 8892).
    _series(tmp_path, info=injection_info(start_time="113000"))
    with pytest.raises(UserError, match="is after the scan") as info:
        read_volume(tmp_path / "pet")
    assert "RadiopharmaceuticalStartTime (0018,1072)" in str(info.value)


def test_injection_datetime_after_the_scan_is_refused(tmp_path):
    _series(tmp_path, info=injection_info(start_datetime="20240306100000"))
    with pytest.raises(UserError, match=r"RadiopharmaceuticalStartDateTime \(0018,1078\).*after the scan"):
        read_volume(tmp_path / "pet")


def test_delay_beyond_ten_half_lives_is_refused(tmp_path):
    # F-18 49 h later (10:00 on 3 March to 11:00 on 5 March): 2^-27 of the dose left; a wrong date.
    _series(tmp_path, info=injection_info(start_datetime="20240303100000"))
    with pytest.raises(UserError, match=r"49\.0 h after the injection.*10 half-lives.*RadionuclideHalfLife"):
        read_volume(tmp_path / "pet")


def test_dose_in_mbq_is_refused(tmp_path):
    # 370 written where 370e6 Bq belongs: SUV x 1e6.
    _series(tmp_path, info=injection_info(dose_bq=370.0))
    with pytest.raises(UserError, match=r"body median is .*RadionuclideTotalDose \(0018,1074\).*MBq"):
        read_volume(tmp_path / "pet")


def test_weight_in_grams_is_refused(tmp_path):
    _series(tmp_path, PatientWeight=70000)
    with pytest.raises(UserError, match=r"body median.*PatientWeight \(0010,1030\)"):
        read_volume(tmp_path / "pet")


@pytest.mark.parametrize("corrected,missing", [(["DECY"], "ATTN"), (["ATTN"], "DECY"), (None, "ATTN and DECY")])
def test_uncorrected_images_are_refused_unless_allowed(tmp_path, corrected, missing):
    drop = ("CorrectedImage",) if corrected is None else ()
    extra = {} if corrected is None else {"CorrectedImage": corrected}
    stored, slopes = _series(tmp_path, drop=drop, **extra)
    with pytest.raises(UserError, match=rf"CorrectedImage \(0028,0051\).*without {missing}.*--allow_uncorrected True"):
        read_volume(tmp_path / "pet")
    vol = read_volume(tmp_path / "pet", units=UnitOptions(allow_uncorrected=True))
    _assert_suv(vol, stored, slopes, suv_factor(3600.0))


@pytest.mark.parametrize(
    "drop,tag",
    [
        (("PatientWeight",), r"PatientWeight \(0010,1030\)"),
        (("Units",), r"Units \(0054,1001\)"),
        (("DecayCorrection",), r"DecayCorrection \(0054,1102\)"),
        (("RadiopharmaceuticalInformationSequence",), r"RadiopharmaceuticalInformationSequence \(0054,0016\)"),
        (("SeriesDate", "AcquisitionDate"), r"SeriesDate \(0008,0021\)"),
    ],
)
def test_missing_tag_is_named(tmp_path, drop, tag):
    _series(tmp_path, drop=drop)
    with pytest.raises(UserError, match=tag):
        read_volume(tmp_path / "pet")


def test_missing_half_life_is_named(tmp_path):
    info = Dataset()
    info.RadionuclideTotalDose, info.RadiopharmaceuticalStartTime = DOSE_BQ, "100000"
    _series(tmp_path, info=info)
    with pytest.raises(UserError, match=r"RadionuclideHalfLife \(0018,1075\) is missing"):
        read_volume(tmp_path / "pet")


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")
def test_malformed_time_is_named(tmp_path):
    _series(tmp_path, SeriesTime="25:99")
    with pytest.raises(UserError, match=r"SeriesTime \(0008,0031\) is '25:99', not a DICOM time"):
        read_volume(tmp_path / "pet")
