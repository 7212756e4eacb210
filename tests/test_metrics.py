"""Image metrics (generic, the paper's, the UDPET challenge's) and region quantitation, against hand-computed values."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from guided_diffusion.pet.eval.case_reference import prepare_reference
from guided_diffusion.pet.eval.case_scores import score_result
from guided_diffusion.pet.eval.metrics import (
    CHALLENGE_SSIM_RANGE,
    nrmse,
    nrmse_challenge,
    percent_error,
    psnr,
    psnr_challenge,
    psnr_paper,
    roi_stats,
    ssim,
    ssim_challenge,
    ssim_paper,
)
from guided_diffusion.pet.eval.regions import (
    body_mask,
    contrast_recovery,
    lesion_background,
    liver_cv,
    split_lesions,
)


def test_psnr_hand_computed():
    ref = np.array([0.0, 1.0, 2.0, 4.0])
    pred = ref + np.array([1.0, -1.0, 0.0, 0.0])  # MSE = 0.5, range = 4
    assert psnr(pred, ref) == pytest.approx(10 * math.log10(16 / 0.5))
    assert psnr(pred, ref, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.5))
    assert psnr(ref, ref) == math.inf


def test_psnr_mask_uses_only_masked_voxels():
    ref = np.array([0.0, 1.0, 2.0, 4.0])
    pred = np.array([0.0, 2.0, 2.0, 9.0])
    mask = np.array([True, True, True, False])  # MSE = 1/3, range 2
    assert psnr(pred, ref, mask=mask) == pytest.approx(10 * math.log10(4 / (1 / 3)))
    with pytest.raises(ValueError, match="empty"):
        psnr(pred, ref, mask=np.zeros(4, bool))


def test_nrmse_hand_computed():
    ref = np.array([3.0, 4.0])  # RMS = sqrt(12.5)
    pred = np.array([3.0, 6.0])  # RMSE = sqrt(2)
    assert nrmse(pred, ref) == pytest.approx(math.sqrt(2) / math.sqrt(12.5))
    assert nrmse(np.zeros(2), ref) == pytest.approx(1.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    ref = rng.random((12, 10, 9))
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(ref + rng.normal(0, 0.3, ref.shape), ref) < 0.9
    assert ssim(ref[:5, :4, :3], ref[:5, :4, :3]) == pytest.approx(1.0)  # window shrinks to 3


def test_roi_stats():
    volume = np.arange(8, dtype=float).reshape(2, 2, 2)
    mask = np.zeros((2, 2, 2), bool)
    mask[0, 0, :] = True  # values 0 and 1
    assert roi_stats(volume, mask) == {"mean": 0.5, "max": 1.0, "std": 0.5, "voxels": 2.0}
    with pytest.raises(ValueError, match="empty"):
        roi_stats(volume, np.zeros_like(mask))


@pytest.mark.parametrize("metric", [psnr, ssim, nrmse, roi_stats])
def test_shape_mismatch(metric):
    with pytest.raises(ValueError, match="shapes differ"):
        metric(np.ones((4, 4, 4)), np.ones((4, 4, 5)))


# --- The paper's and the UDPET challenge's definitions -------------------------------------------------------------


def smooth_volume(shape=(12, 10, 9), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0 + 4.0 * rng.random(shape)


def test_psnr_paper_clips_to_16_but_takes_the_unclipped_peak():
    ref = np.array([0.0, 1.0, 2.0, 20.0])  # peak 20 (unclipped); clipped to [0, 16] for the MSE
    pred = np.array([1.0, 0.0, 2.0, 30.0])  # clipped: [1, 0, 2, 16] -> MSE = (1 + 1) / 4 = 0.5
    assert psnr_paper(pred, ref) == pytest.approx(10 * math.log10(20**2 / 0.5))
    assert psnr_paper(ref, ref) == math.inf
    assert psnr_paper(np.array([-3.0, 1.0, 2.0, 17.0]), ref) == math.inf  # equal once clipped to [0, 16]
    # Body mask: the MSE over the masked voxels only; the peak stays the whole reference's maximum.
    mask = np.array([True, True, False, False])
    assert psnr_paper(pred, ref, mask=mask) == pytest.approx(10 * math.log10(20**2 / 1.0))


def test_psnr_paper_and_challenge_of_a_constant_offset():
    ref = smooth_volume()
    offset = 0.25  # no voxel crosses the clip: MSE = offset**2
    expected = 20 * math.log10(ref.max() / offset)
    assert psnr_paper(ref + offset, ref) == pytest.approx(expected)
    assert psnr_challenge(ref + offset, ref) == pytest.approx(expected)


def test_psnr_challenge_is_unclipped():
    ref = np.array([0.0, 1.0, 2.0, 20.0])
    pred = ref + np.array([1.0, -1.0, 0.0, 5.0])  # MSE = 27 / 4
    assert psnr_challenge(pred, ref) == pytest.approx(10 * math.log10(400 / 6.75))
    assert psnr_challenge(ref, ref) == math.inf


def test_nrmse_challenge_is_normalised_by_the_reference_range():
    ref, pred = np.array([3.0, 4.0]), np.array([3.0, 6.0])  # RMSE sqrt(2), range 1
    assert nrmse_challenge(pred, ref) == pytest.approx(math.sqrt(2))
    assert nrmse_challenge(ref, ref) == 0.0
    ref = smooth_volume()
    assert nrmse_challenge(ref + 0.5, ref) == pytest.approx(0.5 / (ref.max() - ref.min()))
    assert nrmse(ref + 0.5, ref) == pytest.approx(0.5 / math.sqrt(np.mean(ref**2)))
    assert nrmse(ref, ref) == 0.0


def test_ssim_paper_is_skimage_on_volumes_clipped_to_16():
    ref = smooth_volume()
    pred = ref + np.random.default_rng(1).normal(0, 0.5, ref.shape)
    expected = structural_similarity(np.clip(pred, 0, 16), np.clip(ref, 0, 16), data_range=16.0, win_size=7)
    assert ssim_paper(pred, ref) == pytest.approx(expected)
    assert ssim_paper(ref, ref) == pytest.approx(1.0)
    hot = ref.copy()
    hot[5, 5, 5] = 30.0
    assert ssim_paper(hot + (hot > 16) * 10, hot) == pytest.approx(1.0)  # differences above 16 SUV are clipped away
    assert ssim_paper(ref + 1.0, ref) < 1.0


def test_ssim_challenge_normalises_each_volume_by_its_own_maximum():
    ref = smooth_volume()
    pred = ref + np.random.default_rng(2).normal(0, 0.5, ref.shape)
    expected = structural_similarity(pred / pred.max(), ref / ref.max(), data_range=CHALLENGE_SSIM_RANGE, win_size=7)
    assert ssim_challenge(pred, ref) == pytest.approx(expected)
    assert ssim_challenge(ref, ref) == pytest.approx(1.0)
    assert ssim_challenge(3.0 * ref, ref) == pytest.approx(1.0)  # a global scale is invisible to it
    assert ssim_paper(3.0 * ref, ref) < 0.9  # ... but not to the paper's
    with pytest.raises(ValueError, match="no positive voxel"):
        ssim_challenge(-ref, ref)


def test_percent_error():
    assert percent_error(1.1, 1.0) == pytest.approx(10.0)
    assert percent_error(0.5, 2.0) == pytest.approx(-75.0)
    assert percent_error(2.0, 2.0) == 0.0
    assert math.isnan(percent_error(1.0, 0.0))


@pytest.mark.parametrize("metric", [psnr_paper, psnr_challenge, ssim_paper, ssim_challenge, nrmse_challenge])
def test_new_metrics_refuse_a_shape_mismatch(metric):
    with pytest.raises(ValueError, match="shapes differ"):
        metric(np.ones((8, 8, 8)), np.ones((8, 8, 9)))


# --- Regions: SUVmean / SUVmax / TLA, liver CV, lesion background and contrast recovery -----------------------------

def two_lesion_phantom(shape=(16, 16, 16)):
    """Body (label 2, SUV 1) with a liver (label 9, SUV 2) and two 2x2x2 lesions of SUV 8 (ids 1 and 2)."""
    labels = np.zeros(shape, np.int64)
    labels[1:-1, 1:-1, 1:-1] = 2
    labels[3:13, 3:13, 3:13] = 9
    lesions = np.zeros(shape, np.int64)
    lesions[5:7, 5:7, 5:7] = 1
    lesions[10:12, 4:6, 9:11] = 2
    reference = np.where(labels == 9, 2.0, np.where(labels > 0, 1.0, 0.0))
    reference[lesions > 0] = 8.0
    return reference, labels, lesions


def region_rows(result, reference, labels, lesions, label_names=None):
    """The per-case table rows of ``result`` on 2 mm voxels (0.008 ml)."""
    return score_result(prepare_reference(reference, (2.0, 2.0, 2.0), labels, lesions, label_names), result)[1]


def test_scaling_gives_the_factor_as_error_in_every_region():
    reference, labels, lesions = two_lesion_phantom()
    rows = region_rows(1.25 * reference, reference, labels, lesions, {9: "liver"})
    assert [(r["region"], r["kind"], r["label"]) for r in rows] == [
        ("label_2", "organ", 2), ("liver", "organ", 9), ("lesion_1", "lesion", 1), ("lesion_2", "lesion", 2)]
    for row in rows:
        assert row["suvmean_error_pct"] == pytest.approx(25.0)
        assert row["suvmax_error_pct"] == pytest.approx(25.0)
    for row in rows[2:]:
        assert row["voxels"] == 8 and row["volume_ml"] == pytest.approx(0.064)
        assert row["tla_reference"] == pytest.approx(8.0 * 0.064)  # SUVmean x volume in ml
        assert row["tla_error_pct"] == pytest.approx(25.0)
        assert row["contrast_recovery"] == pytest.approx(1.0)  # a global scale keeps the contrast
    assert rows[1]["voxels"] == 10**3 - 16  # lesion voxels are not counted in the liver


def test_identical_regions_have_zero_error_and_full_contrast_recovery():
    reference, labels, lesions = two_lesion_phantom()
    for row in region_rows(reference, reference, labels, lesions):
        assert row["suvmean_error_pct"] == 0.0 and row["suvmax_error_pct"] == 0.0
        if row["kind"] == "lesion":
            assert row["tla_error_pct"] == 0.0 and row["contrast_recovery"] == 1.0


def test_contrast_recovery_hand_computed():
    lesion = np.zeros((5, 5, 5), bool)
    lesion[2, 2, 2] = True
    background = ~lesion
    reference = np.where(lesion, 8.0, 1.0)  # contrast 8 / 1 - 1 = 7
    # Offset by 1: (9 / 2 - 1) / 7 = 0.5; the same image: 1.
    assert contrast_recovery(reference + 1.0, reference, lesion, background) == pytest.approx(0.5)
    assert contrast_recovery(reference, reference, lesion, background) == pytest.approx(1.0)
    assert math.isnan(contrast_recovery(reference, reference, lesion, np.zeros_like(lesion)))
    assert math.isnan(contrast_recovery(reference, np.ones_like(reference), lesion, background))  # no contrast


def test_background_shell_is_2_to_4_voxels_from_the_lesion():
    lesions = np.zeros((13, 13, 13), np.int64)
    lesions[6, 6, 6] = 1
    box, lesion, shell = lesion_background(lesions, 1)
    assert box == (slice(1, 12),) * 3 and lesion.sum() == 1  # the lesion's voxel grown by 4 + 1
    assert shell.sum() == 9**3 - 5**3  # chessboard distance 3 or 4
    # Another lesion and the body bound the shell.
    lesions[6, 6, 10] = 2
    _, _, shell = lesion_background(lesions, 1)
    # Lesion 2 dilated by 2 voxels (x, y 4..8, z 8..12) takes the shell's 5 x 5 voxels at z 9 and 10.
    assert shell.sum() == 9**3 - 5**3 - 5 * 5 * 2
    body = np.zeros(lesions.shape, bool)
    body[:, :, :7] = True
    _, _, shell = lesion_background(lesions, 1, body=body)
    assert shell.sum() == 9 * 9 * 5 - 5 * 5 * 3  # z 2..6 only


def test_liver_cv_leaves_out_the_edge_and_lesions():
    shape = (14, 14, 14)
    liver = np.zeros(shape, bool)
    liver[2:12, 2:12, 2:12] = True
    checker = (np.indices(shape).sum(axis=0) % 2).astype(float)
    volume = np.where(liver, 1.0 + 2.0 * checker, 5.0)  # 1 and 3 inside: mean 2, SD 1
    volume[2, 2:12, 2:12] = 100.0  # the edge layer, within the 3 mm margin on 2 mm voxels
    assert liver_cv(volume, liver, None, (2.0, 2.0, 2.0), margin_mm=3.0) == pytest.approx(0.5)
    lesions = np.zeros(shape, np.int64)
    lesions[7, 7, 7] = 1
    volume[6:9, 6:9, 6:9] = 50.0  # within 3 mm of the lesion (the 3x3x3 block's corners are 3.5 mm away)
    corners = [(x, y, z) for x in (6, 8) for y in (6, 8) for z in (6, 8)]
    for corner in corners:
        volume[corner] = 1.0 + 2.0 * checker[corner]
    expected_mask = np.zeros(shape, bool)
    expected_mask[3:11, 3:11, 3:11] = True
    expected_mask[6:9, 6:9, 6:9] = False
    for corner in corners:
        expected_mask[corner] = True
    values = volume[expected_mask]
    assert liver_cv(volume, liver, lesions, (2.0, 2.0, 2.0), margin_mm=3.0) == pytest.approx(values.std() / values.mean())
    assert math.isnan(liver_cv(volume, liver, None, (2.0, 2.0, 2.0), margin_mm=30.0))  # nothing left
    assert math.isnan(liver_cv(volume, np.zeros(shape, bool), None, (2.0, 2.0, 2.0)))


def test_binary_lesion_masks_are_split_into_connected_lesions():
    mask = np.zeros((8, 8, 8), np.int64)
    mask[1:3, 1:3, 1:3] = 1
    mask[5:7, 5:7, 5:7] = 1
    mask[3, 3, 3] = 1  # touches the first lesion's corner: 26-connected
    ids = split_lesions(mask)
    assert sorted(np.unique(ids)) == [0, 1, 2] and (ids[3, 3, 3] == ids[1, 1, 1])
    mask[5:7, 5:7, 5:7] = 4  # an id map keeps its ids
    assert sorted(np.unique(split_lesions(mask))) == [0, 1, 4]


def test_body_mask_rule():
    reference = np.array([[[0.05, 0.2, 3.0]]])
    mask, rule = body_mask(reference, None)
    assert mask.tolist() == [[[False, True, True]]] and rule == "reference > 0.1 SUV"
    mask, rule = body_mask(reference, np.array([[[0, 0, 4]]]))
    assert mask.tolist() == [[[False, False, True]]] and rule == "labels > 0"
