"""Top-down record loaders (COCO format, MPII), box cleaning, rescoring and per-image NMS."""

import json

import cv2
import numpy as np
import pytest

from hrpose.config import load_config
from hrpose.datasets.build import build_topdown_dataset
from hrpose.datasets.coco_format import clean_box
from hrpose.datasets.metadata import COCO, CROWDPOSE
from hrpose.errors import DataError
from hrpose.postprocess.topdown import nms_per_image, rescore_poses


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_image(path, width=64, height=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


def crowdpose_tree(root):
    keypoints = [10, 10, 2] * 14
    write_json(root / "json" / "crowdpose_test.json", {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48, "crowdIndex": 0.1}],
        "annotations": [
            # CrowdPose annotations carry no 'area'.
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [4, 4, 20, 30],
             "keypoints": keypoints, "num_keypoints": 14, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30, 4, 10, 10],
             "keypoints": [0] * 42, "num_keypoints": 0, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}],
    })
    write_image(root / "images" / "a.jpg")
    write_json(root / "json" / "dets.json", [
        {"image_id": 7, "category_id": 1, "bbox": [3, 3, 22, 31], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [30, 3, 5, 5], "score": 0.05},
    ])


def crowdpose_config(root, *opts):
    return load_config("experiments/crowdpose/hrnet/w32_256x192_adam_lr1e-3.yaml", [
        "DATASET.ROOT", str(root), "TEST.COCO_BBOX_FILE", str(root / "json" / "dets.json"),
        "DATASET.TRAIN_SET", "test", *opts])


def test_crowdpose_ground_truth_and_detection_records(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    crowdpose_tree(tmp_path)
    train = build_topdown_dataset(crowdpose_config(tmp_path), is_train=True)
    assert len(train) == 1  # the person without keypoints is dropped
    record = train.records[0]
    assert record["image_id"] == 7 and record["joints"].shape == (14, 2)
    assert train.keypoint_info is CROWDPOSE
    test = build_topdown_dataset(crowdpose_config(tmp_path, "TEST.IMAGE_THRE", "0.1"), False)
    assert [r["score"] for r in test.records] == [0.9]
    image, target, weight, meta = test[0]
    assert image.shape == (3, 256, 192) and target.shape == (14, 64, 48)


def test_detection_file_with_unknown_image_is_rejected(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    crowdpose_tree(tmp_path)
    write_json(tmp_path / "json" / "dets.json",
               [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}])
    with pytest.raises(DataError, match="image id 99"):
        build_topdown_dataset(crowdpose_config(tmp_path), is_train=False)


def test_unreadable_image_names_the_file(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    crowdpose_tree(tmp_path)
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    dataset = build_topdown_dataset(crowdpose_config(tmp_path), is_train=True)
    with pytest.raises(DataError, match="a.jpg"):
        dataset[0]


def test_mpii_records_are_zero_based_with_the_centre_shift(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    joints = [[float(10 + j), float(20 + j)] for j in range(16)]
    write_json(tmp_path / "annot" / "valid.json", [
        {"image": "x.jpg", "center": [30.0, 40.0], "scale": 0.5, "joints": joints,
         "joints_vis": [1] * 15 + [0]}])
    write_image(tmp_path / "images" / "x.jpg")
    cfg = load_config("experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml",
                      ["DATASET.ROOT", str(tmp_path), "DATASET.TRAIN_SET", "valid"])
    record = build_topdown_dataset(cfg, is_train=True).records[0]
    np.testing.assert_allclose(record["center"], [29.0, 39.0 + 15 * 0.5])
    np.testing.assert_allclose(record["scale"], [0.625, 0.625])
    np.testing.assert_allclose(record["joints"][0], [9.0, 19.0])
    assert record["joints_vis"][-1] == 0


def test_clean_box_clips_and_follows_the_convention():
    assert clean_box([-5, 2, 20, 10], 12, 100, "hrnet") == [0.0, 2.0, 11.0, 9.0]
    assert clean_box([-5, 2, 20, 10], 12, 100, "dark") == [0.0, 2.0, 12.0, 10.0]
    assert clean_box([50, 2, 20, 10], 12, 100, "hrnet") is None


def test_rescore_uses_confident_keypoints_only():
    scores = np.array([[0.1, 0.5, 0.9], [0.1, 0.1, 0.1]])
    np.testing.assert_allclose(rescore_poses(scores, np.array([0.5, 1.0]), 0.2), [0.35, 0.0])


def test_nms_per_image_suppresses_within_images_only():
    rng = np.random.default_rng(0)
    pose = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], axis=1)
    poses = np.stack([pose, pose + [0.5, 0.5, 0], pose, pose + [60, 0, 0]])
    keep = nms_per_image(poses, np.array([0.9, 0.8, 0.7, 0.6]), np.full(4, 1e4),
                         np.array([1, 1, 2, 1]), 0.9, COCO.sigmas_array)
    assert sorted(keep.tolist()) == [0, 2, 3]
