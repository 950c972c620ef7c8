"""Regression-network targets and losses: centre joint, tradeoff heatmaps, offsets, their losses."""

import math

import numpy as np
import pytest
import torch

from hrpose.codecs.regression import (
    CENTER_MIN_AREA,
    RegressionTargetParams,
    areas_in_input_pixels,
    center_joints,
    channel_sigmas,
    decode_ideal_targets,
    encode_offsets,
    encode_regression_targets,
    encode_tradeoff_heatmaps,
    per_branch_values,
    with_center_joint,
)
from hrpose.config import ConfigError, get_default_config
from hrpose.losses.regression import (
    RegressionLoss,
    branch_heatmap_loss,
    offsets_loss,
    smooth_l1,
    total_regression_loss,
    tradeoff_heatmap_loss,
)

# ------------------------------------------------------------------------------------------------
# Slow, obvious versions of the reference's generators (pixel loops), to compare against.

def loop_heatmaps(joints, size, sigmas, bg_weight):
    heatmaps = np.zeros((joints.shape[1], size, size), dtype=np.float32)
    weights = 2 * np.ones((1, size, size), dtype=np.float32)
    for person in joints:
        for index, (x, y, v) in enumerate(person[:, :3]):
            if v <= 0 or x < 0 or y < 0 or x >= size or y >= size:
                continue
            sigma = sigmas[index]
            left, top = int(math.floor(x - 3 * sigma - 1)), int(math.floor(y - 3 * sigma - 1))
            right, bottom = int(math.ceil(x + 3 * sigma + 2)), int(math.ceil(y + 3 * sigma + 2))
            for sy in range(max(0, top), min(bottom, size)):
                for sx in range(max(0, left), min(right, size)):
                    value = np.exp(-((sx - x) ** 2 + (sy - y) ** 2) / (2 * sigma ** 2))
                    heatmaps[index, sy, sx] = max(heatmaps[index, sy, sx], value)
                    weights[0, sy, sx] = 1.0
    weights[weights == 2] = bg_weight
    return heatmaps, weights


def loop_offsets(joints, areas, size, radius):
    count = joints.shape[1] - 1
    offsets = np.zeros((2 * count, size, size), dtype=np.float32)
    weights = np.zeros((2 * count, size, size), dtype=np.float32)
    area_map = np.zeros((size, size), dtype=np.float32)
    for person, p in enumerate(joints):
        cx, cy, cv = int(p[-1, 0]), int(p[-1, 1]), int(p[-1, 2])
        if cv < 1 or cx < 0 or cy < 0 or cx >= size or cy >= size:
            continue
        for index, (x, y, v) in enumerate(p[:-1, :3]):
            if v <= 0 or x < 0 or y < 0 or x >= size or y >= size:
                continue
            for px in range(max(cx - radius, 0), min(cx + radius, size)):
                for py in range(max(cy - radius, 0), min(cy + radius, size)):
                    if offsets[2 * index, py, px] != 0 or offsets[2 * index + 1, py, px] != 0:
                        if area_map[py, px] < areas[person]:
                            continue
                    offsets[2 * index, py, px] = px - x
                    offsets[2 * index + 1, py, px] = py - y
                    weights[2 * index:2 * index + 2, py, px] = 1.0 / np.sqrt(areas[person])
                    area_map[py, px] = areas[person]
    return offsets, weights


# ------------------------------------------------------------------------------------------------
# Centre joint

def test_center_joint_rules():
    keypoints = np.zeros((4, 3, 3))
    keypoints[0] = [[10, 20, 2], [30, 40, 1], [0, 0, 0]]  # mean of the two labelled joints
    keypoints[1] = [[10, 20, 2], [30, 40, 1], [0, 0, 0]]  # too small
    keypoints[3] = [[10, 20, 2], [30, 40, 2], [50, 60, 2]]
    boxes = np.array([[0, 0, 100, 50], [0, 0, 10, 10], [100, 200, 40, 60], [5, 5, 10, 10]])
    areas = np.array([2000.0, CENTER_MIN_AREA - 1, CENTER_MIN_AREA, 5000.0])
    centres = center_joints(keypoints, boxes, areas)
    np.testing.assert_allclose(centres, [[20, 30, 1], [0, 0, 0],
                                         [120, 230, 1],  # no labelled joint: the box centre
                                         [30, 40, 1]])
    # CrowdPose skips the area test; USE_BBOX_CENTER takes the box centre for everybody.
    assert center_joints(keypoints, boxes, None)[1, 2] == 1
    np.testing.assert_allclose(center_joints(keypoints, boxes, areas, use_bbox_center=True)[0],
                               [50, 25, 1])
    joints = with_center_joint(keypoints, boxes, areas)
    assert joints.shape == (4, 4, 3)
    np.testing.assert_array_equal(joints[:, -1], centres)


def test_areas_in_input_pixels():
    zoom, angle = 0.5, np.deg2rad(30)
    matrix = zoom * np.array([[np.cos(angle), np.sin(angle), 3.0],
                              [-np.sin(angle), np.cos(angle), 4.0]])
    matrix[:, 2] = [3.0, 4.0]
    areas = np.array([400.0, 100.0])
    np.testing.assert_allclose(areas_in_input_pixels(areas, matrix), areas * 0.25 * 0.75)
    np.testing.assert_allclose(areas_in_input_pixels(areas, matrix, reference=False),
                               areas * 0.25)


# ------------------------------------------------------------------------------------------------
# Tradeoff heatmaps

def test_heatmap_window_and_weights_by_hand():
    # One joint at (10.3, 20.6), sigma 2: columns [floor(3.3), ceil(18.3)) = [3, 19), rows
    # [floor(13.6), ceil(28.6)) = [13, 29); weights 1 there, BG_WEIGHT elsewhere.
    joints = np.array([[[10.3, 20.6, 1.0]]])
    heatmaps, weights = encode_tradeoff_heatmaps(joints, 40, 2.0, bg_weight=0.1)
    assert heatmaps.shape == (1, 40, 40) and weights.shape == (1, 40, 40)
    assert heatmaps.dtype == np.float32 and weights.dtype == np.float32
    rows, columns = np.nonzero(heatmaps[0])
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (13, 28, 3, 18)
    assert set(np.unique(weights).tolist()) == {np.float32(0.1), 1.0}
    inside = np.zeros((40, 40), dtype=bool)
    inside[13:29, 3:19] = True
    np.testing.assert_array_equal(weights[0] == 1.0, inside)
    expected = np.float32(math.exp(-((10 - 10.3) ** 2 + (21 - 20.6) ** 2) / 8))
    assert heatmaps[0, 21, 10] == expected
    # At the border the window is cut: x = 1.5 gives [floor(-5.5), ceil(9.5)) -> [0, 10).
    heatmaps, weights = encode_tradeoff_heatmaps(np.array([[[1.5, 38.0, 2.0]]]), 40, 2.0, 0.25)
    rows, columns = np.nonzero(weights[0] == 1)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (31, 39, 0, 9)
    # Invisible joints and joints outside the map draw nothing (all weights BG_WEIGHT).
    for joint in ([5.0, 5.0, 0.0], [40.0, 5.0, 1.0], [-0.1, 5.0, 1.0]):
        heatmaps, weights = encode_tradeoff_heatmaps(np.array([[joint]]), 40, 2.0, 0.1)
        assert not heatmaps.any() and np.all(weights == np.float32(0.1))


def test_centre_sigma_switch():
    # COCO: 17 keypoints + centre -> the centre (index 17) gets CENTER_SIGMA either way.
    np.testing.assert_array_equal(channel_sigmas(18, 2.0, 4.0), [2.0] * 17 + [4.0])
    np.testing.assert_array_equal(channel_sigmas(18, 2.0, 4.0, True), [2.0] * 17 + [4.0])
    # CrowdPose: 14 + centre; the reference's index test gives the centre SIGMA.
    np.testing.assert_array_equal(channel_sigmas(15, 2.0, 4.0), [2.0] * 15)
    np.testing.assert_array_equal(channel_sigmas(15, 2.0, 4.0, True), [2.0] * 14 + [4.0])
    # A centre at x = 30.5 with sigma 4 spans [floor(30.5 - 13), ceil(30.5 + 14)) = [17, 45).
    joints = np.zeros((1, 15, 3))
    joints[0, 14] = [30.5, 30.5, 1]
    heatmaps, _ = encode_tradeoff_heatmaps(joints, 64, channel_sigmas(15, 2.0, 4.0, True))
    columns = np.nonzero(heatmaps[14, 30])[0]
    assert (columns.min(), columns.max()) == (17, 44)


def test_heatmaps_equal_the_pixel_loops():
    rng = np.random.default_rng(1)
    size = 48
    joints = np.concatenate([rng.uniform(-4, size + 4, size=(6, 15, 2)),
                             rng.integers(0, 3, size=(6, 15, 1)).astype(np.float64)], axis=2)
    joints[0, :, :2] = rng.uniform(20, 24, size=(15, 2))  # overlapping Gaussians
    joints[1, 3] = [0.0, 47.99, 2]  # on the borders
    for fix in (False, True):
        sigmas = channel_sigmas(15, 2.0, 4.0, fix)
        got = encode_tradeoff_heatmaps(joints, size, sigmas, 0.1)
        expected = loop_heatmaps(joints, size, sigmas, 0.1)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


# ------------------------------------------------------------------------------------------------
# Offsets

def test_offsets_by_hand():
    # Centre (20.7, 30.2) -> (20, 30): window columns [16, 24), rows [26, 34) (8 x 8).
    joints = np.array([[[18.25, 25.5, 2.0], [5.0, 5.0, 0.0], [70.0, 3.0, 2.0],
                        [20.7, 30.2, 1.0]]])
    offsets, weights = encode_offsets(joints, np.array([400.0]), 64, radius=4)
    assert offsets.shape == weights.shape == (6, 64, 64)
    inside = np.zeros((64, 64), dtype=bool)
    inside[26:34, 16:24] = True
    np.testing.assert_array_equal(weights[0] > 0, inside)
    assert np.all(weights[0][inside] == np.float32(1 / 20)) and np.all(weights[1] == weights[0])
    py, px = np.mgrid[0:64, 0:64]
    np.testing.assert_array_equal(offsets[0][inside], (px - 18.25)[inside])
    np.testing.assert_array_equal(offsets[1][inside], (py - 25.5)[inside])
    assert not offsets[0][~inside].any()
    # joint 1 is unlabelled, joint 2 outside the 64 x 64 map: no targets.
    assert not offsets[2:].any() and not weights[2:].any()
    # Next to the border the window is clipped: centre (2.9, 40) -> columns [0, 6).
    joints[0, -1] = [2.9, 40.0, 1.0]
    _, weights = encode_offsets(joints, np.array([400.0]), 64)
    rows, columns = np.nonzero(weights[0])
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (36, 43, 0, 5)
    # No centre (v = 0), a centre outside, or a non-positive area: nothing.
    for centre, area in (([20.0, 30.0, 0.0], 400.0), ([64.0, 30.0, 1.0], 400.0),
                         ([20.0, 30.0, 1.0], 0.0)):
        joints[0, -1] = centre
        assert not encode_offsets(joints, np.array([area]), 64)[1].any()


def test_smaller_person_wins():
    # Two people share a window; the smaller one keeps the pixels whatever the order.
    small = [[10.0, 10.0, 2.0], [12.0, 14.0, 2.0]]
    large = [[30.0, 30.0, 2.0], [12.0, 14.0, 2.0]]
    for order in ((0, 1), (1, 0)):
        joints = np.array([small, large])[list(order)]
        areas = np.array([100.0, 900.0])[list(order)]
        offsets, weights = encode_offsets(joints, areas, 32)
        assert offsets[0, 14, 12] == 12 - 10 and weights[0, 14, 12] == np.float32(0.1)


def test_offsets_equal_the_pixel_loops():
    rng = np.random.default_rng(2)
    size = 40
    for trial in range(4):
        people = 8
        joints = np.concatenate([rng.uniform(-3, size + 3, size=(people, 6, 2)),
                                 rng.integers(0, 3, size=(people, 6, 1)).astype(np.float64)], 2)
        # Crowd the centres so that windows overlap, a few on the border or unlabelled.
        joints[:, -1, :2] = rng.uniform(-1.5, 12, size=(people, 2)) + 10
        joints[:, -1, 2] = rng.integers(0, 2, size=people) | (trial > 1)
        joints[0, -1, :2] = [-0.5, 39.5]
        joints[1, 1, :2] = joints[1, -1, :2].astype(int)  # an exactly zero offset at one pixel
        # Areas whose float32 rounding falls below and above them, and ties.
        areas = rng.choice([1000.1, 1000.1, 250.0, 4000.3, 77.7], size=people)
        got = encode_offsets(joints, areas, size, 4)
        expected = loop_offsets(joints, areas, size, 4)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_codec_round_trip():
    # Two people far apart, joints on quarter pixels (exact in float32).
    joints = np.zeros((2, 5, 3))
    joints[0, :4] = [[10.25, 12.5, 2], [14.0, 9.75, 2], [0, 0, 0], [8.5, 16.0, 1]]
    joints[1, :4] = [[40.0, 44.25, 2], [44.5, 40.0, 1], [38.75, 47.5, 2], [0, 0, 0]]
    joints[0, 4] = [11.2, 13.1, 1]
    joints[1, 4] = [41.8, 43.9, 1]
    areas = np.array([300.0, 500.0])
    heatmaps, _ = encode_tradeoff_heatmaps(joints, 56, channel_sigmas(5, 2.0, 4.0))
    offsets, weights = encode_offsets(joints, areas, 56)
    poses, centres = decode_ideal_targets(heatmaps, offsets, weights)
    order = np.argsort(centres[:, 0])
    np.testing.assert_array_equal(centres[order], [[11, 13], [42, 44]])
    expected = joints[:, :4].copy()
    expected[:, :, 2] = expected[:, :, 2] > 0
    np.testing.assert_array_equal(poses[order], expected)


def test_sample_targets_per_stage():
    params = RegressionTargetParams(output_sizes=(32, 64), sigmas=((2.0, 2.0, 2.0), (2.0,)),
                                    bg_weights=((0.1, 0.1, 0.1), (0.025,)),
                                    offset_stages=(True, False))
    joints = np.zeros((1, 18, 3))
    joints[0, :, :2] = 12.0 + np.arange(18)[:, None] * 0.5
    joints[0, :, 2] = 1
    masks = [np.ones((32, 32), dtype=np.float32), np.zeros((64, 64), dtype=np.float32)]
    masks[0][:, :4] = 0
    targets = encode_regression_targets([joints, joints * [2, 2, 1]], np.array([900.0]),
                                        params, masks)
    # Branches with equal settings share one target; each stage has its own size.
    assert [len(stage) for stage in targets.heatmaps] == [1, 1]
    assert targets.heatmaps[0][0].shape == (18, 32, 32)
    assert targets.heatmaps[1][0].shape == (18, 64, 64)
    assert targets.heatmap_masks[0][0].shape == (1, 32, 32)
    assert not targets.heatmap_masks[0][0][0, :, :4].any()
    assert set(np.unique(targets.heatmap_masks[0][0][0, :, 4:]).tolist()) == {np.float32(0.1),
                                                                               1.0}
    assert not targets.heatmap_masks[1][0].any()
    assert targets.offsets[0].shape == (34, 32, 32) and targets.offsets[1] is None
    # Different background weights per branch give one target per branch.
    params = RegressionTargetParams(output_sizes=(32,), sigmas=(2.0,), bg_weights=((0.1, 0.5),))
    targets = encode_regression_targets([joints], np.array([900.0]), params)
    assert len(targets.heatmaps[0]) == 2
    assert targets.heatmap_masks[0][1].min() == np.float32(0.5)


def test_target_params_from_config():
    cfg = get_default_config()
    cfg.LOSS.NUM_STAGES = 2
    cfg.DATASET.SIGMA = [[2.0, 2.0, 2.0], [2.0]]
    cfg.DATASET.BG_WEIGHT = [[0.1, 0.1, 0.1], [0.025]]
    params = RegressionTargetParams.from_config(cfg)
    assert params.bg_weights == ((0.1, 0.1, 0.1), (0.025,))
    assert params.branch_settings(0) == [(2.0, 0.1)] * 3
    assert params.offset_stages == (True, False) and params.offset_radius == 4
    cfg.DATASET.BG_WEIGHT = [0.1]
    with pytest.raises(ConfigError, match="BG_WEIGHT"):
        RegressionTargetParams.from_config(cfg)
    assert per_branch_values([0.1, [0.2, 0.3]], 2, "x") == ((0.1,), (0.2, 0.3))


# ------------------------------------------------------------------------------------------------
# Losses

def test_tradeoff_heatmap_loss_by_hand():
    # One image, one channel, 2 x 2: pred 1 everywhere, target (1, 0; 0.5, 0), weights
    # (1, 0.1; 1, 0.1) -> squared errors (0, 1; 0.25, 1) -> (0 + 0.1 + 0.25 + 0.1) / 4.
    pred = torch.ones(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    mask = torch.tensor([[[1.0, 0.1], [1.0, 0.1]]])
    torch.testing.assert_close(tradeoff_heatmap_loss(pred, target, mask),
                               torch.tensor([0.45 / 4]))
    # A target with an extra (centre) channel: only the first C channels are compared.
    target2 = torch.cat([target, torch.full_like(target, 7.0)], dim=1)
    torch.testing.assert_close(tradeoff_heatmap_loss(pred, target2, mask[:, None]),
                               torch.tensor([0.45 / 4]))


def test_tradeoff_loss_on_encoded_person():
    joints = np.array([[[6.0, 7.0, 1.0], [9.5, 8.0, 1.0]]])
    target, weights = encode_tradeoff_heatmaps(joints, 16, [2.0, 4.0], 0.1)
    pred = np.full_like(target, 0.25)
    expected = ((pred - target) ** 2 * weights).mean()
    loss = tradeoff_heatmap_loss(torch.from_numpy(pred)[None], torch.from_numpy(target)[None],
                                 torch.from_numpy(weights)[None])
    assert loss.shape == (1,)
    assert abs(loss.item() - expected) < 1e-7
    # Three branches: the mean of the three losses (the reference's channel concatenation).
    preds = [torch.from_numpy(pred)[None] * k for k in (1.0, 2.0, 0.0)]
    separate = [tradeoff_heatmap_loss(p, torch.from_numpy(target)[None],
                                      torch.from_numpy(weights)[None]) for p in preds]
    concatenated = tradeoff_heatmap_loss(torch.cat(preds, 1),
                                         torch.from_numpy(np.concatenate([target] * 3))[None],
                                         torch.from_numpy(weights)[None])
    got = branch_heatmap_loss(preds, [torch.from_numpy(target)[None]],
                              [torch.from_numpy(weights)[None]])
    torch.testing.assert_close(got, sum(separate) / 3)
    torch.testing.assert_close(got, concatenated)


def test_smooth_l1_offset_loss_by_hand():
    beta = 1 / 9
    assert abs(smooth_l1(torch.tensor(0.05)).item() - 0.5 * 0.05 ** 2 / beta) < 1e-7
    assert abs(smooth_l1(torch.tensor(-0.5)).item() - (0.5 - 0.5 * beta)) < 1e-7
    pred = torch.zeros(2, 2, 3, 3)
    target = torch.zeros(2, 2, 3, 3)
    weights = torch.zeros(2, 2, 3, 3)
    target[0, 0, 1, 1], weights[0, 0, 1, 1] = 0.05, 1.0
    target[1, 1, 2, 0], weights[1, 1, 2, 0] = 0.5, 0.5
    weights[1, 0, 0, 0] = 0.25  # weighted, exact prediction: counts, adds nothing
    expected = (0.5 * 0.05 ** 2 * 9 * 1.0 + (0.5 - 0.5 / 9) * 0.5) / 3
    assert abs(offsets_loss(pred, target, weights).item() - expected) < 1e-7
    # Nothing weighted: divided by 1.
    assert offsets_loss(pred + 1, target, torch.zeros_like(weights)).item() == 0.0


def test_regression_loss_stages_and_factors():
    torch.manual_seed(0)
    heat0 = [torch.rand(2, 18, 8, 8) for _ in range(3)]
    heat1 = [torch.rand(2, 17, 16, 16)]
    offsets = [[torch.rand(2, 34, 8, 8)]]
    targets = [[torch.rand(2, 18, 8, 8)], [torch.rand(2, 18, 16, 16)]]
    masks = [[torch.rand(2, 1, 8, 8)], [torch.rand(2, 1, 16, 16)]]
    offset_targets = [torch.rand(2, 34, 8, 8), None]
    offset_weights = [(torch.rand(2, 34, 8, 8) > 0.5).float(), None]
    loss = RegressionLoss((True, True), (1.0, 0.5), (True, False), (0.01, 0.02))
    heatmaps_losses, offsets_losses = loss([heat0, heat1], offsets, targets, masks,
                                           offset_targets, offset_weights)
    stage1 = tradeoff_heatmap_loss(heat1[0], targets[1][0], masks[1][0])
    # Stage 1 gets its own factor 0.5 (the reference would have used entry 0, 1.0).
    torch.testing.assert_close(heatmaps_losses[1], stage1 * 0.5)
    expected = offsets_loss(offsets[0], offset_targets[0], offset_weights[0]) * 0.01
    torch.testing.assert_close(offsets_losses[0], expected)
    assert offsets_losses[1] is None
    total = total_regression_loss(heatmaps_losses, offsets_losses)
    torch.testing.assert_close(total, heatmaps_losses[0].mean() + heatmaps_losses[1].mean()
                               + offsets_losses[0])
    cfg = get_default_config()
    built = RegressionLoss.from_config(cfg)
    assert built.offsets_loss_factor == [0.01, 0.01] and built.with_offsets_loss == [True, False]
    cfg.LOSS.OFFSETS_LOSS_FACTOR = [0.01]
    with pytest.raises(ConfigError, match="OFFSETS_LOSS_FACTOR"):
        RegressionLoss.from_config(cfg)
