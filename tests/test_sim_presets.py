"""Scanner and tracer presets: their numbers, and what they do to phantoms and images."""

import importlib.util
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from guided_diffusion.errors import UserError
from guided_diffusion.pet.sim.cases import simulated_case
from guided_diffusion.pet.sim.phantom import LABEL_NAMES, LABELS, make_phantom
from guided_diffusion.pet.sim.scanners import REFERENCE_SCANNER, SCANNERS, get_scanner
from guided_diffusion.pet.sim.simulation import DEFAULT_TRUES_PER_MM, organ_cv, simulate_doses, simulate_subject
from guided_diffusion.pet.sim.tracers import TRACERS, get_tracer

REPO = Path(__file__).resolve().parents[1]
TISSUES = {name for value, name in LABEL_NAMES.items() if value > 0}


def test_scanner_numbers_are_plausible():
    assert SCANNERS[REFERENCE_SCANNER].sensitivity == 1.0
    for name, p in SCANNERS.items():
        assert p.name == name and p.description
        # Clinical whole-body PET/CT: 3-5 mm NEMA resolution, 1.5-5 mm voxels, OSEM with a few
        # iterations, post-filters up to ~8 mm.
        assert 3.0 <= p.resolution_fwhm_mm <= 5.0, name
        assert 1.5 <= p.voxel_size_mm <= 5.0, name
        assert 1 <= p.iterations <= 10 and 1 <= p.subsets <= 40 and 0 <= p.fwhm_mm <= 8, name
        if name != REFERENCE_SCANNER:
            # A ~1 m axial field of view gains roughly 4-10x over a 15-26 cm one for a whole body.
            assert 4 <= 1 / p.sensitivity <= 10, name
            assert p.resolution_fwhm_mm > SCANNERS[REFERENCE_SCANNER].resolution_fwhm_mm, name


def test_tracer_numbers_are_plausible():
    fdg = TRACERS["fdg"]
    # The FDG ranges of the phantom's first version, unchanged (the demo model was trained on them).
    assert {k: fdg.suv_ranges[k] for k in ("liver", "blood_pool", "brain", "kidneys", "bladder")} == {
        "liver": (2.0, 2.5), "blood_pool": (1.5, 2.0), "brain": (7.0, 10.0), "kidneys": (4.0, 10.0),
        "bladder": (15.0, 40.0)}
    assert fdg.lesion_suv == (3.0, 20.0) and fdg.counts_factor == 1.0 and fdg.positron_range_fwhm_mm == 0.0
    for name, t in TRACERS.items():
        assert t.name == name and set(t.suv_ranges) == TISSUES, name
        assert all(0 < low < high <= 80 for low, high in (*t.suv_ranges.values(), t.lesion_suv)), name
        assert 0 < t.counts_factor <= 1, name
        # 18F has no extra blur worth modelling; 68Ga's positrons travel millimetres.
        assert t.positron_range_fwhm_mm == 0 if t.isotope == "F-18" else 1 <= t.positron_range_fwhm_mm <= 3, name
        # Lesions reach well above the liver for every tracer, and urine is hot.
        assert t.lesion_suv[1] > 2 * t.suv_ranges["liver"][1] and t.suv_ranges["bladder"][0] >= 5, name

    def highest(tracer, exclude=("bladder",)):
        mid = {k: sum(v) / 2 for k, v in TRACERS[tracer].suv_ranges.items() if k not in exclude}
        return max(mid, key=mid.get)

    assert highest("fdg") == "brain"
    assert highest("psma") == "kidneys" and highest("psma", ("bladder", "kidneys")) == "salivary_glands"
    assert highest("dotatate") == "spleen"
    # FAPI: low background, the liver no hotter than blood.
    assert TRACERS["fapi"].suv_ranges["liver"][1] <= TRACERS["fapi"].suv_ranges["blood_pool"][1]


def test_unknown_preset_names_raise_user_error_listing_the_choices():
    with pytest.raises(UserError, match="unknown scanner 'biograph'.*quadra.*mct"):
        get_scanner("biograph")
    with pytest.raises(UserError, match="unknown tracer 'fgd'.*fdg.*psma.*dotatate"):
        get_tracer("fgd")
    with pytest.raises(UserError, match="unknown tracer"):
        make_phantom(1, voxel_size=16.0, axial_extent_mm=32, tracer="choline")
    with pytest.raises(UserError, match="unknown scanner"):
        simulate_subject(1, voxel_size=16.0, axial_extent_mm=32, scanner="uexplorer")


def test_fdg_phantom_of_an_old_seed_keeps_the_first_versions_stream():
    # Figures of make_phantom(7, voxel_size=8.0) before the small structures were added:
    # only the voxels now labelled as those structures may differ.
    phantom = make_phantom(7, voxel_size=8.0)
    old = phantom.labels < LABELS["salivary_glands"]
    assert float(phantom.activity[old].sum(dtype=np.float64)) == pytest.approx(120848.3203509301, rel=1e-12)
    assert float(phantom.mu.sum(dtype=np.float64)) == pytest.approx(962.0989264366217, rel=1e-12)
    assert len(phantom.lesions) == 5
    assert phantom.lesions[0].suv == pytest.approx(8.003698464232555, rel=1e-12)
    assert phantom.lesions[0].centre_voxel == (46, 23, 13)
    assert (~old).sum() < 1e-3 * old.size


def test_tracers_share_anatomy_and_set_their_own_uptake():
    phantoms = {name: make_phantom(5, voxel_size=8.0, tracer=name) for name in TRACERS}
    fdg = phantoms["fdg"]
    for name, phantom in phantoms.items():
        assert phantom.tracer == name
        np.testing.assert_array_equal(phantom.labels, fdg.labels, err_msg=name)
        np.testing.assert_array_equal(phantom.lesion_mask, fdg.lesion_mask, err_msg=name)
        np.testing.assert_array_equal(phantom.mu, fdg.mu, err_msg=name)
        assert [lesion.centre_mm for lesion in phantom.lesions] == [lesion.centre_mm for lesion in fdg.lesions]
        low, high = TRACERS[name].lesion_suv
        assert all(low <= lesion.suv <= high for lesion in phantom.lesions), name

    def median(name, organ):
        phantom = phantoms[name]
        return float(np.median(phantom.activity[(phantom.labels == LABELS[organ]) & (phantom.lesion_mask == 0)]))

    # The new small structures exist and take each tracer's uptake.
    for organ in ("salivary_glands", "lacrimal_glands", "pituitary", "adrenals", "lymph_nodes"):
        assert (fdg.labels == LABELS[organ]).any(), organ
    assert median("psma", "salivary_glands") > median("psma", "liver") > median("fdg", "liver")
    assert median("psma", "lymph_nodes") > 2 * median("fdg", "lymph_nodes")
    assert median("dotatate", "pituitary") > median("dotatate", "brain")
    assert median("dotatate", "adrenals") > median("fdg", "adrenals")
    assert median("fdg", "brain") > 10 * median("psma", "brain")


def _organ_mean(volume, labels, organ):
    mask = binary_erosion(labels == LABELS[organ])
    return float(volume[mask].mean())


@pytest.fixture(scope="module")
def abdomen():
    """Full-dose 8 mm reconstructions of one abdomen (liver, spleen, kidneys) per tracer."""
    return {tracer: simulate_subject(3, voxel_size=8.0, axial_extent_mm=240, dose_fractions=(), tracer=tracer)
            for tracer in ("fdg", "psma", "dotatate")}


def test_psma_kidney_to_liver_ratio_exceeds_fdgs_in_the_image(abdomen):
    ratio = {tracer: _organ_mean(s.full_dose, s.labels, "kidneys") / _organ_mean(s.full_dose, s.labels, "liver")
             for tracer, s in abdomen.items()}
    # About 6 against about 3 (at least 1.3x in the phantoms of 40 seeds; 1.46x for this one).
    assert ratio["psma"] > 1.2 * ratio["fdg"], ratio


def test_dotatate_spleen_is_hotter_than_liver_in_the_image(abdomen):
    s = abdomen["dotatate"]
    assert _organ_mean(s.full_dose, s.labels, "spleen") > 1.5 * _organ_mean(s.full_dose, s.labels, "liver")
    fdg = abdomen["fdg"]
    assert _organ_mean(fdg.full_dose, fdg.labels, "spleen") < _organ_mean(fdg.full_dose, fdg.labels, "liver")


def _line_source_fwhm(image: np.ndarray, centres: np.ndarray) -> float:
    """In-plane FWHM (mm) of a central hot line in a warm disk, from the second moment of its profile."""
    radius = np.hypot(centres[:, None], centres[None, :])
    profile = image.mean(axis=2)
    background = np.median(profile[(radius > 14) & (radius < 24)])
    weight = np.clip(profile - background, 0, None) * (radius < 12)
    x0 = (weight * centres[:, None]).sum() / weight.sum()
    y0 = (weight * centres[None, :]).sum() / weight.sum()
    r2 = (centres[:, None] - x0) ** 2 + (centres[None, :] - y0) ** 2
    return 2 * math.sqrt(2 * math.log(2)) * math.sqrt((weight * r2).sum() / weight.sum() / 2)


def test_coarser_scanner_spreads_a_line_source_wider():
    n, nz, voxel = 40, 4, 2.0
    centres = (np.arange(n) - (n - 1) / 2) * voxel
    disk = np.hypot(centres[:, None], centres[None, :]) <= 30
    activity = np.repeat(disk[:, :, None], nz, axis=2).astype(np.float32)
    activity[n // 2, n // 2, :] = 100.0  # a NEMA-like line source along Z in a warm cylinder
    mu = (0.0096 * (activity > 0)).astype(np.float32)
    fwhm = {}
    for name, p in SCANNERS.items():
        images, _ = simulate_doses(activity, mu, voxel, np.random.default_rng(0), dose_fractions=(), counts=1e8,
                                   resolution_fwhm_mm=p.resolution_fwhm_mm, iterations=p.iterations,
                                   subsets=p.subsets, fwhm_mm=p.fwhm_mm)
        fwhm[name] = _line_source_fwhm(images[1.0], centres)
        # No reconstruction is sharper than the scanner's blur and the post-filter together.
        assert fwhm[name] > 0.95 * math.hypot(p.resolution_fwhm_mm, p.fwhm_mm), (name, fwhm)
    assert fwhm["quadra"] < fwhm["vision600"] < min(fwhm["discovery_mi"], fwhm["mct"]), fwhm
    assert fwhm["mct"] > 1.3 * fwhm["quadra"], fwhm


def test_lower_sensitivity_gives_a_noisier_liver_at_the_same_dose():
    # The same reconstruction for both, so only the counts (sensitivity) differ.
    same = {"voxel_size": 8.0, "axial_extent_mm": 160, "dose_fractions": (1 / 4,), "iterations": 3, "subsets": 11,
            "fwhm_mm": 5.0, "resolution_fwhm_mm": 4.0}
    cv = {}
    for name in ("quadra", "mct"):
        subject = simulate_subject(2, scanner=name, **same)
        cv[name] = organ_cv(subject.reconstructions[0.25], subject.phantom)
    assert cv["mct"] > 1.8 * cv["quadra"], cv


def test_presets_fill_unset_settings_and_are_recorded():
    subject = simulate_subject(4, voxel_size=16.0, axial_extent_mm=64, dose_fractions=(), scanner="mct",
                               tracer="psma", iterations=1)
    p, mct, psma = subject.parameters, SCANNERS["mct"], TRACERS["psma"]
    assert p["scanner"] == "mct" and p["tracer"] == "psma" and subject.phantom.tracer == "psma"
    # Given settings win; the others come from the presets.
    assert p["voxel_size_mm"] == 16.0 and p["iterations"] == 1
    assert p["subsets"] == min(mct.subsets, p["n_angles"]) and p["fwhm_mm"] == mct.fwhm_mm
    assert p["resolution_fwhm_mm"] == pytest.approx(math.hypot(mct.resolution_fwhm_mm, psma.positron_range_fwhm_mm))
    expected = DEFAULT_TRUES_PER_MM * p["axial_extent_mm"] * mct.sensitivity * psma.counts_factor
    assert p["counts"] == pytest.approx(expected)
    # Without presets: the simulator's own settings, as before.
    plain = simulate_subject(4, voxel_size=16.0, axial_extent_mm=64, dose_fractions=()).parameters
    assert plain["scanner"] is None and plain["tracer"] == "fdg"
    assert (plain["iterations"], plain["subsets"], plain["fwhm_mm"], plain["resolution_fwhm_mm"]) == (3, 11, 5.0, 4.0)
    assert plain["counts"] == pytest.approx(DEFAULT_TRUES_PER_MM * plain["axial_extent_mm"])


def test_simulated_case_takes_the_scanners_voxel():
    case = simulated_case(4, 0.25, voxel_size=None, axial_extent_mm=40, scanner="mct", tracer="dotatate")
    assert case.voxel_size == (SCANNERS["mct"].voxel_size_mm,) * 3
    assert case.low.shape == case.full.shape == case.truth.shape


def _make_phantoms_script():
    spec = importlib.util.spec_from_file_location("make_phantoms", REPO / "scripts" / "make_phantoms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_phantoms_scanner_and_tracer_flags(tmp_path):
    script = _make_phantoms_script()
    out = tmp_path / "out"
    script.main(["--out_dir", str(out), "--voxel_size", "16", "--axial_extent_mm", "48", "--dose_levels", "1/4",
                 "--scanner", "discovery_mi", "--tracer", "fapi"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scanner"]["name"] == "discovery_mi" and manifest["tracer"]["name"] == "fapi"
    simulation = manifest["subjects"][0]["simulation"]
    assert simulation["scanner"] == "discovery_mi" and simulation["tracer"] == "fapi"
    assert simulation["voxel_size_mm"] == 16.0 and simulation["fwhm_mm"] == SCANNERS["discovery_mi"].fwhm_mm
    assert manifest["label_names"][str(LABELS["lymph_nodes"])] == "lymph_nodes"

    help_text = script.create_argparser().format_help()
    assert all(name in help_text for name in (*SCANNERS, *TRACERS))
    with pytest.raises(UserError, match="choline.*psma"):
        script.create_argparser().parse_args(["--out_dir", str(tmp_path), "--tracer", "choline"])


def test_make_phantoms_crop_to_body_keeps_world_coordinates(tmp_path):
    script = _make_phantoms_script()
    common = ["--voxel_size", "16", "--axial_extent_mm", "48", "--dose_levels", "1/4", "--format", "both"]
    script.main(["--out_dir", str(tmp_path / "whole"), *common])
    script.main(["--out_dir", str(tmp_path / "crop"), *common, "--crop_to_body"])
    whole, crop = (nib.load(tmp_path / d / "subject000_truth.nii.gz") for d in ("whole", "crop"))
    assert crop.shape[2] == whole.shape[2] and crop.shape[:2] < whole.shape[:2]
    offset = json.loads((tmp_path / "crop" / "manifest.json").read_text())["subjects"][0]["crop_offset_voxels"]
    # Voxel (0, 0, 0) of the crop is voxel `offset` of the whole volume, at the same point in the world.
    np.testing.assert_allclose(crop.affine @ [0, 0, 0, 1], whole.affine @ [*offset, 1])
    x, y = offset[0], offset[1]
    np.testing.assert_array_equal(crop.get_fdata(), whole.get_fdata()[x:x + crop.shape[0], y:y + crop.shape[1]])
    assert whole.get_fdata().sum() == pytest.approx(crop.get_fdata().sum())  # only air was cut
    pair = np.load(tmp_path / "crop" / "subject000_dose1-4.npz")
    assert pair["arr_0"].shape[1:] == crop.shape
