"""NIfTI units: SUV kept, Bq/ml converted from a BIDS-PET sidecar and options, implausible values refused."""

import json

import nibabel as nib
import numpy as np
import pytest

from guided_diffusion.errors import UserError
from guided_diffusion.pet.io import UnitOptions, read_volume
from guided_diffusion.pet.io.bids import half_life_of

F18 = 6586.2
FLAGS = ("--input_units bqml", "--weight_kg", "--injected_mbq", "--injection_time", "--scan_time", "--half_life_s")


def _bqml(shape=(6, 5, 4)):
    """Bq/ml values of a body about 3000-12000 Bq/ml (FDG, full dose), with some air at 0."""
    data = np.random.default_rng(1).uniform(3000, 12000, shape).astype(np.float32)
    data[0] = 0
    return data


def _nifti(tmp_path, data, sidecar=None, name="pet"):
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / f"{name}.nii.gz")
    if sidecar is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    return tmp_path / f"{name}.nii.gz"


BIDS = {
    "Units": "Bq/mL",
    "BodyWeight": 80,
    "InjectedRadioactivity": 300,
    "InjectedRadioactivityUnits": "MBq",
    "TracerRadionuclide": "F18",
    "TimeZero": "10:00:00",
    "InjectionStart": 0,
    "ScanStart": 3600,
    "ImageDecayCorrected": True,
    "ImageDecayCorrectionTime": 3600,
    "AttenuationCorrection": "CT-based",
}


def test_suv_nifti_is_kept(tmp_path):
    data = np.random.default_rng(0).uniform(0.2, 5, (6, 5, 4)).astype(np.float32)
    vol = read_volume(_nifti(tmp_path, data))
    np.testing.assert_array_equal(vol.data, data)
    assert vol.source_units == "SUV" and vol.to_suv == 1.0 and vol.suv_record is None


def test_bqml_without_sidecar_is_refused_in_one_line_naming_the_flags(tmp_path):
    path = _nifti(tmp_path, _bqml())
    with pytest.raises(UserError) as info:
        read_volume(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "pet.json" in message
    assert all(flag in message for flag in FLAGS)


def test_bqml_with_a_bids_sidecar(tmp_path):
    data = _bqml()
    vol = read_volume(_nifti(tmp_path, data, BIDS))
    factor = 80_000.0 / (300e6 * 2 ** (-3600 / F18))  # 80 kg, 300 MBq F-18, 1 h
    np.testing.assert_allclose(vol.data, data * factor, rtol=1e-6)
    assert vol.source_units == "BQML" and vol.to_suv == pytest.approx(factor, rel=1e-12)
    record = vol.suv_record
    json.dumps(record)
    assert record["sidecar"] == str(tmp_path / "pet.json") and record["units"] == "BQML"
    assert record["weight_kg"] == 80 and record["injected_bq"] == 300e6 and record["half_life_s"] == F18
    assert record["injection_datetime"] == "10:00:00" and record["reference_datetime"] == "11:00:00"
    assert "BodyWeight" in record["sources"]["weight_kg"] and "TracerRadionuclide F18" in record["sources"]["half_life_s"]
    assert "ImageDecayCorrectionTime" in record["sources"]["reference_datetime"]


def test_options_override_the_sidecar(tmp_path):
    data = _bqml()
    options = UnitOptions(weight_kg=60, injected_mbq=250, injection_time="10:30", half_life_s=6600)
    vol = read_volume(_nifti(tmp_path, data, BIDS), units=options)
    factor = 60_000.0 / (250e6 * 2 ** (-1800 / 6600))  # scan still at 11:00 from the sidecar
    np.testing.assert_allclose(vol.data, data * factor, rtol=1e-6)
    assert vol.suv_record["sources"]["weight_kg"] == "--weight_kg 60"


def test_bqml_from_options_alone(tmp_path):
    data = _bqml()
    options = UnitOptions(input_units="bqml", weight_kg=75, injected_mbq=350, injection_time="10:00",
                          scan_time="11:15:30", half_life_s=F18)
    vol = read_volume(_nifti(tmp_path, data), units=options)
    np.testing.assert_allclose(vol.data, data * 75_000.0 / (350e6 * 2 ** (-4530 / F18)), rtol=1e-6)
    assert vol.suv_record["sidecar"] is None


@pytest.mark.parametrize(
    "injection,scan",
    [("2024-03-05T23:50:00", "2024-03-06T00:30:00"), ("23:50", "00:30"), ("23:50", "2024-03-06 00:30")],
)
def test_option_times_across_midnight(tmp_path, injection, scan):
    data = _bqml()
    options = UnitOptions(input_units="bqml", weight_kg=70, injected_mbq=370, injection_time=injection,
                          scan_time=scan, half_life_s=F18)
    vol = read_volume(_nifti(tmp_path, data), units=options)
    np.testing.assert_allclose(vol.data, data * 70_000.0 / (370e6 * 2 ** (-2400 / F18)), rtol=1e-6)


def test_injection_after_the_scan_from_options_is_refused(tmp_path):
    options = UnitOptions(input_units="bqml", weight_kg=70, injected_mbq=370, injection_time="2024-03-05T11:30",
                          scan_time="2024-03-05T11:00", half_life_s=F18)
    with pytest.raises(UserError, match=r"--injection_time .* is after the scan .*--scan_time"):
        read_volume(_nifti(tmp_path, _bqml()), units=options)


def test_sidecar_times_before_time_zero_and_without_decay_correction(tmp_path):
    # TimeZero is the scan start; injected 50 min before it; not decay corrected: ScanStart is the reference.
    sidecar = {**BIDS, "TimeZero": "11:00:00", "InjectionStart": -3000, "ScanStart": 0,
               "ImageDecayCorrected": False, "ScanDate": "2024-03-05"}
    data = _bqml()
    vol = read_volume(_nifti(tmp_path, data, sidecar))
    np.testing.assert_allclose(vol.data, data * 80_000.0 / (300e6 * 2 ** (-3000 / F18)), rtol=1e-6)
    assert vol.suv_record["injection_datetime"] == "2024-03-05T10:10:00"


def test_activity_units_and_radionuclide_names(tmp_path):
    data = _bqml()
    sidecar = {**BIDS, "InjectedRadioactivity": 10, "InjectedRadioactivityUnits": "mCi",
               "TracerRadionuclide": "^68^Gallium"}
    vol = read_volume(_nifti(tmp_path, data, sidecar))
    np.testing.assert_allclose(vol.data, data * 80_000.0 / (370e6 * 2 ** (-3600 / 4062.6)), rtol=1e-6)
    assert half_life_of("[18F]") == half_life_of("F-18") == half_life_of("18F") == F18
    assert half_life_of("Zr89") == pytest.approx(78.41 * 3600)
    assert half_life_of("Tc99m") is None


@pytest.mark.parametrize(
    "change,match",
    [
        ({"BodyWeight": None}, r"BodyWeight \(kg\) to .*pet\.json or pass --weight_kg"),
        ({"InjectedRadioactivityUnits": None}, "InjectedRadioactivityUnits is missing"),
        ({"TracerRadionuclide": "Tc99m"}, "Tc99m.*--half_life_s"),
        ({"TimeZero": None}, "TimeZero is missing.*--injection_time"),
        ({"InjectedRadioactivityUnits": "Bq"}, r"body median is .*InjectedRadioactivity \(Bq\).*MBq read as Bq"),
        ({"AttenuationCorrection": "none"}, "AttenuationCorrection is 'none'.*--allow_uncorrected True"),
        ({"InjectionStart": 7200}, "is after the scan"),
    ],
)
def test_sidecar_problems_are_named(tmp_path, change, match):
    sidecar = {k: v for k, v in {**BIDS, **change}.items() if v is not None}
    with pytest.raises(UserError, match=match):
        read_volume(_nifti(tmp_path, _bqml(), sidecar))


def test_uncorrected_sidecar_accepted_when_allowed(tmp_path):
    data = _bqml()
    vol = read_volume(_nifti(tmp_path, data, {**BIDS, "AttenuationCorrection": "none"}),
                      units=UnitOptions(allow_uncorrected=True))
    np.testing.assert_allclose(vol.data, data * 80_000.0 / (300e6 * 2 ** (-3600 / F18)), rtol=1e-6)


def test_explicit_suv_is_trusted_and_a_sidecar_saying_suv_is_followed(tmp_path):
    data = _bqml()
    np.testing.assert_array_equal(read_volume(_nifti(tmp_path, data), units=UnitOptions(input_units="suv")).data, data)
    small = np.random.default_rng(2).uniform(0.5, 3, (6, 5, 4)).astype(np.float32)
    vol = read_volume(_nifti(tmp_path, small, {"Units": "g/ml"}, name="suv"))
    assert vol.source_units == "SUV"


def test_npz_is_suv_whatever_the_options(tmp_path):
    np.savez(tmp_path / "a.npz", _bqml())
    assert read_volume(tmp_path / "a.npz", units=UnitOptions(input_units="bqml")).source_units == "SUV"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"input_units": "kbq"}, "--input_units must be one of auto, suv, bqml"),
        ({"weight_kg": -70}, "--weight_kg must be positive"),
        ({"injection_time": "10h00"}, "--injection_time must be an ISO date-time"),
    ],
)
def test_bad_options_name_the_flag(kwargs, match):
    with pytest.raises(UserError, match=match):
        UnitOptions(**kwargs)


def test_flag_defaults_mean_not_given():
    options = UnitOptions(weight_kg=0.0, injected_mbq=0, injection_time="", scan_time="", half_life_s=0.0)
    assert options == UnitOptions()
