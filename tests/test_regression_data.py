"""Regression training samples from hand-made COCO and CrowdPose files: centre, targets, batches.

Every image is 200 x 200 and augmentation is off (scale 1, no rotation or shift), so the affine
is known: a crop of side 200 around (100, 100), hence output pixel u = 0.16 x at output size 32
and input pixel 0.64 x at input size 128. Expected maps are computed here from the reference's
formulas (the regression repository's lib/dataset/target_generators/), not by the codec.
"""

import json

import cv2
import numpy as np
import pytest
import torch

from hrpose.codecs.regression import RegressionTargetParams
from hrpose.config import load_config
from hrpose.datasets.bottomup import BottomUpAugmentation
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.datasets.regression import (
    RegressionDataset,
    build_regression_dataset,
    collate_regression_batch,
)

SIDE = 200
OUTPUT = 32
INPUT = 128
ZOOM = OUTPUT / SIDE  # 0.16
INPUT_ZOOM = INPUT / SIDE  # 0.64
NO_AUGMENTATION = dict(max_rotation=0.0, min_scale=1.0, max_scale=1.0, max_translate=0.0)

# Person A: 15 labelled COCO keypoints (ankles unlabelled), box 120 x 150, area 10000.
PERSON_A = np.array([[100, 50], [95, 45], [105, 45], [90, 48], [110, 48], [80, 70], [120, 70],
                     [72, 95], [128, 95], [70, 118], [130, 118], [88, 125], [112, 125],
                     [86, 150], [114, 150], [0, 0], [0, 0]], dtype=np.float64)
VISIBLE_A = np.array([2] * 15 + [0, 0])
BOX_A = [60.0, 40.0, 120.0, 150.0]
# Person B: small (area 500 < 32^2), three keypoints in the lower right corner.
PERSON_B = {0: (175.0, 170.0), 5: (170.0, 180.0), 6: (185.0, 180.0)}
BOX_B = [165.0, 165.0, 25.0, 25.0]


def gaussian_channel(center_x, center_y, sigma, size=OUTPUT):
    """The reference's Gaussian window for one point, written out pixel by pixel."""
    channel = np.zeros((size, size))
    left, right = int(np.floor(center_x - 3 * sigma - 1)), int(np.ceil(center_x + 3 * sigma + 2))
    top, bottom = int(np.floor(center_y - 3 * sigma - 1)), int(np.ceil(center_y + 3 * sigma + 2))
    for row in range(max(top, 0), min(bottom, size)):
        for column in range(max(left, 0), min(right, size)):
            channel[row, column] = np.exp(-((column - center_x) ** 2 + (row - center_y) ** 2)
                                          / (2 * sigma ** 2))
    return channel


def coco_keypoints(points: dict[int, tuple[float, float]], num_joints: int) -> list[float]:
    flat = [0.0] * (3 * num_joints)
    for joint, (x, y) in points.items():
        flat[3 * joint:3 * joint + 3] = [x, y, 2]
    return flat


def write_dataset(root, name, num_joints):
    """One 200 x 200 image with persons A and B and a crowd region over [0, 30) x [0, 30)."""
    a = {j: tuple(PERSON_A[j]) for j in range(num_joints) if j < 17 and VISIBLE_A[j]}
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": BOX_A, "area": 10000.0,
         "keypoints": coco_keypoints(a, num_joints), "num_keypoints": len(a),
         "segmentation": [[60, 40, 180, 40, 180, 190, 60, 190]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": BOX_B, "area": 500.0,
         "keypoints": coco_keypoints(PERSON_B, num_joints), "num_keypoints": 3,
         "segmentation": [[165, 165, 190, 165, 190, 190, 165, 190]]},
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 30, 30],
         "area": 900.0, "keypoints": [0.0] * (3 * num_joints), "num_keypoints": 0,
         "segmentation": [[0, 0, 30, 0, 30, 30, 0, 30]]},
    ]
    content = {"images": [{"id": 1, "file_name": "000000000001.jpg", "height": SIDE,
                           "width": SIDE}],
               "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    if name == "crowdpose":
        annotation_file = root / "json" / "crowdpose_train.json"
        image_dir = root / "images"
    else:
        annotation_file = root / "annotations" / "person_keypoints_train.json"
        image_dir = root / "images" / "train"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_file.write_text(json.dumps(content))
    cv2.imwrite(str(image_dir / "000000000001.jpg"), np.full((SIDE, SIDE, 3), 90, np.uint8))


def make_dataset(root, name, flip, num_joints=17):
    params = RegressionTargetParams(output_sizes=(OUTPUT,), sigmas=((2.0,),), bg_weights=((0.1,),),
                                    center_sigma=4.0, offset_radius=4)
    augmentation = BottomUpAugmentation(**NO_AUGMENTATION, flip_probability=1.0 if flip else 0.0)
    return RegressionDataset(name, str(root), "train", True, params, input_size=INPUT,
                             augmentation=augmentation, keypoint_info=get_keypoint_info(name))


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression_coco")
    write_dataset(root, "coco", 17)
    return root


def test_item_shapes_centre_channel_and_offsets(coco_root):
    image, heatmaps, masks, offsets, weights = make_dataset(coco_root, "coco", flip=False)[0]
    assert image.shape == (3, INPUT, INPUT) and image.dtype == torch.float32
    assert len(heatmaps) == 1 and len(heatmaps[0]) == 1
    assert heatmaps[0][0].shape == (18, OUTPUT, OUTPUT)
    assert masks[0][0].shape == (1, OUTPUT, OUTPUT)
    assert offsets[0].shape == weights[0].shape == (34, OUTPUT, OUTPUT)

    # A's centre: the mean of its labelled joints, at 1/4 of the input; B (area 500) has none,
    # so the centre channel is A's Gaussian with CENTER_SIGMA 4 and nothing else.
    center = PERSON_A[VISIBLE_A > 0].mean(axis=0) * ZOOM
    np.testing.assert_allclose(heatmaps[0][0][17].numpy(),
                               gaussian_channel(center[0], center[1], 4.0), atol=1e-6)
    # B's keypoints are drawn (sigma 2) although it has no centre.
    nose_b = np.array(PERSON_B[0]) * ZOOM
    assert heatmaps[0][0][0, int(nose_b[1]), int(nose_b[0])] > 0.5

    # Offsets: the 8 x 8 window [int(c) - 4, int(c) + 4) around A's truncated centre, pixel -
    # joint, weighted 1 / sqrt(box area in input pixels); unlabelled joints get nothing.
    column, row = int(center[0]), int(center[1])
    expected_weight = 1.0 / np.sqrt(BOX_A[2] * BOX_A[3] * INPUT_ZOOM ** 2)
    for joint in range(17):
        labelled = VISIBLE_A[joint] > 0
        weighted = weights[0][2 * joint] > 0
        assert int(weighted.sum()) == (64 if labelled else 0), joint
        if labelled:
            assert weighted[row - 4:row + 4, column - 4:column + 4].all()
            x, y = PERSON_A[joint] * ZOOM
            assert offsets[0][2 * joint, row, column].item() == pytest.approx(column - x, abs=1e-4)
            assert offsets[0][2 * joint + 1, row, column].item() == pytest.approx(row - y, abs=1e-4)
            assert weights[0][2 * joint, row, column].item() == pytest.approx(expected_weight,
                                                                              rel=1e-5)

    # Mask: the crowd region counts 0, background 0.1, pixels near a joint 1.
    mask = masks[0][0][0].numpy()
    assert mask[1, 1] == 0.0
    assert mask[31, 0] == pytest.approx(0.1)
    nose = (PERSON_A[0] * ZOOM).astype(int)
    assert mask[nose[1], nose[0]] == 1.0


def test_flipped_item_keeps_the_centre_as_the_centre(coco_root):
    _, heatmaps, _, offsets, weights = make_dataset(coco_root, "coco", flip=True)[0]
    center = PERSON_A[VISIBLE_A > 0].mean(axis=0) * ZOOM
    # The reference flips joints as x -> S - 1 - x at the output size.
    flipped_x = OUTPUT - 1 - center[0]
    np.testing.assert_allclose(heatmaps[0][0][17].numpy(),
                               gaussian_channel(flipped_x, center[1], 4.0), atol=1e-6)
    column, row = int(flipped_x), int(center[1])
    # Joint 1 (left eye) of the flipped sample is A's right eye (joint 2) mirrored.
    x = OUTPUT - 1 - PERSON_A[2, 0] * ZOOM
    assert offsets[0][2, row, column].item() == pytest.approx(column - x, abs=1e-4)
    assert weights[0][2, row, column].item() > 0


def test_crowdpose_skips_the_area_test_and_the_mask(tmp_path):
    write_dataset(tmp_path, "crowdpose", 14)
    _, heatmaps, masks, offsets, weights = make_dataset(tmp_path, "crowdpose", flip=False)[0]
    assert heatmaps[0][0].shape == (15, OUTPUT, OUTPUT) and offsets[0].shape[0] == 28
    # CrowdPose trains unmasked: the crowd region counts.
    assert masks[0][0][0, 1, 1] == pytest.approx(0.1)
    # B (area 500) has a centre here; with the reference's channel-index rule the CrowdPose
    # centre (channel 14 < 17) is drawn with SIGMA 2, not CENTER_SIGMA.
    a = PERSON_A[:14][VISIBLE_A[:14] > 0].mean(axis=0) * ZOOM
    b = np.array(list(PERSON_B.values())).mean(axis=0) * ZOOM
    expected = np.maximum(gaussian_channel(a[0], a[1], 2.0), gaussian_channel(b[0], b[1], 2.0))
    np.testing.assert_allclose(heatmaps[0][0][14].numpy(), expected, atol=1e-6)
    # B's offsets exist (its window holds its own, smaller-area, entries).
    assert weights[0][0, int(b[1]), int(b[0])] > 0


def test_config_built_dataset_and_batches_of_two_stages(coco_root):
    cfg = load_config("", [
        "MODEL.NAME", "pose_higher_hrnet_regression", "DATASET.DATASET", "coco",
        "DATASET.ROOT", str(coco_root), "DATASET.TRAIN_SET", "train",
        "DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32, 64]", "LOSS.NUM_STAGES", "2",
        "DATASET.SIGMA", "[[2.0, 2.0, 2.0], [2.0]]",
        "DATASET.BG_WEIGHT", "[[0.1, 0.1, 0.1], [0.025]]",
        "LOSS.WITH_HEATMAPS_LOSS", "[True, True]", "LOSS.HEATMAPS_LOSS_FACTOR", "[1.0, 1.0]",
        "LOSS.WITH_OFFSETS_LOSS", "[True, False]", "LOSS.OFFSETS_LOSS_FACTOR", "[0.01, 0.01]",
        "TEST.WITH_HEATMAPS", "[True, True]"])
    dataset = build_regression_dataset(cfg, is_train=True)
    images, heatmaps, masks, offsets, weights = collate_regression_batch([dataset[0], dataset[0]])
    assert images.shape == (2, 3, 128, 128)
    # Branches of a stage that share sigma and background weight share one target.
    assert [[tuple(h.shape) for h in stage] for stage in heatmaps] == [[(2, 18, 32, 32)],
                                                                       [(2, 18, 64, 64)]]
    assert [[tuple(m.shape) for m in stage] for stage in masks] == [[(2, 1, 32, 32)],
                                                                    [(2, 1, 64, 64)]]
    assert offsets[0].shape == weights[0].shape == (2, 34, 32, 32)
    assert offsets[1] is None and weights[1] is None
    # The 1/2-resolution stage's background weight is its own (0.025).
    assert masks[1][0].min().item() == 0.0
    assert np.isclose(np.unique(masks[1][0].numpy()), 0.025).any()
    test_set = build_regression_dataset(cfg, is_train=False, training_split=True)
    image, meta = test_set[0]
    assert image.shape == (SIDE, SIDE, 3) and meta["image_id"] == 1
