"""Tests of the synthetic dataset generator: determinism, COCO validity, true labels, atomicity."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from hrpose.datasets import synthetic
from hrpose.datasets.metadata import COCO
from hrpose.datasets.synthetic import body, coco_annotations, drawing, files
from hrpose.errors import DataError

# Small enough that a dataset takes well under a second.
SMALL = {"num_train": 6, "num_val": 4, "min_size": 128, "max_size": 160}


def generate(root: Path, **options) -> dict:
    return synthetic.generate_synthetic_dataset(root, **{**SMALL, **options})


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def load_coco(path: Path) -> CocoApi:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return CocoApi(str(path))


def annotation_path(root: Path, split: str) -> Path:
    return root / synthetic.ANNOTATION_FILE_PATTERN.format(split=split)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, seed=0)
    return root


# ----------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_identical_files(dataset, tmp_path):
    generate(tmp_path / "again", seed=0)
    assert file_bytes(tmp_path / "again") == file_bytes(dataset)


def test_worker_processes_give_identical_files(dataset, tmp_path):
    generate(tmp_path / "parallel", seed=0, num_workers=2)
    assert file_bytes(tmp_path / "parallel") == file_bytes(dataset)


def test_different_seed_gives_different_images(dataset, tmp_path):
    generate(tmp_path / "other", seed=1)
    original, other = file_bytes(dataset), file_bytes(tmp_path / "other")
    images = [name for name in original if name.endswith(".jpg")]
    assert images and all(original[name] != other[name] for name in images)


def test_an_image_does_not_depend_on_how_many_come_before_or_after(dataset, tmp_path):
    generate(tmp_path / "fewer", seed=0, num_train=3)
    fewer, original = file_bytes(tmp_path / "fewer"), file_bytes(dataset)
    images = [name for name in fewer if name.endswith(".jpg")]
    assert len(images) == 3 + SMALL["num_val"]
    assert all(fewer[name] == original[name] for name in images)


# ----------------------------------------------------------------------------------------------
# COCO validity


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_annotation_file_is_valid_coco(dataset, split):
    coco = load_coco(annotation_path(dataset, split))
    image_folder = dataset / synthetic.IMAGE_FOLDER_PATTERN.format(split=split)
    images = coco.loadImgs(coco.getImgIds())
    assert len(images) == SMALL[f"num_{split}"]
    assert sorted(path.name for path in image_folder.iterdir()) == sorted(
        image["file_name"] for image in images)
    for image in images:
        assert SMALL["min_size"] <= image["width"] <= SMALL["max_size"]
        assert SMALL["min_size"] <= image["height"] <= SMALL["max_size"]
    (category,) = coco.loadCats(coco.getCatIds())
    assert category["id"] == 1 and category["name"] == "person"
    assert category["keypoints"] == list(COCO.keypoint_names)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in COCO.skeleton]
    assert coco.getAnnIds(), "a split without a single person annotation"


def test_image_ids_are_unique_across_splits(dataset):
    ids = [image_id for split in synthetic.SPLITS
           for image_id in load_coco(annotation_path(dataset, split)).getImgIds()]
    assert len(ids) == len(set(ids)) and min(ids) >= 1


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_annotations_are_truthful_and_consistent(dataset, split):
    coco = load_coco(annotation_path(dataset, split))
    annotations = coco.loadAnns(coco.getAnnIds())
    ids = [annotation["id"] for annotation in annotations]
    assert min(ids) >= 1 and len(ids) == len(set(ids))
    for annotation in annotations:
        image = coco.loadImgs(annotation["image_id"])[0]
        width, height = image["width"], image["height"]
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        assert keypoints.shape == (COCO.num_keypoints, 3)
        visibility = keypoints[:, 2]
        assert set(visibility.tolist()) <= {0.0, 1.0, 2.0}
        assert np.all(keypoints[visibility == 0, :2] == 0)
        labelled = keypoints[visibility > 0]
        assert np.all((labelled[:, 0] >= 0) & (labelled[:, 0] <= width - 1))
        assert np.all((labelled[:, 1] >= 0) & (labelled[:, 1] <= height - 1))
        assert annotation["num_keypoints"] == int(np.count_nonzero(visibility))
        x, y, box_width, box_height = annotation["bbox"]
        assert x >= 0 and y >= 0 and box_width > 0 and box_height > 0
        assert x + box_width <= width and y + box_height <= height
        # The area is the segmentation's, as pycocotools rasterises it.
        assert annotation["area"] > 0
        segmentation_area = float(mask_utils.area(coco.annToRLE(annotation)))
        assert annotation["area"] == pytest.approx(segmentation_area)
        if annotation["iscrowd"]:
            assert annotation["num_keypoints"] == 0 and not np.any(keypoints)
        else:
            assert isinstance(annotation["segmentation"], list)
            assert all(len(polygon) >= 6 for polygon in annotation["segmentation"])


def test_ground_truth_as_predictions_scores_perfect_ap(dataset):
    coco = load_coco(annotation_path(dataset, "val"))
    results = []
    for annotation in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        if annotation["num_keypoints"] == 0:
            continue
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        keypoints[:, 2] = keypoints[:, 2] > 0  # a confidence of 1 for every labelled keypoint
        results.append({"image_id": annotation["image_id"], "category_id": 1,
                        "keypoints": keypoints.reshape(-1).tolist(), "score": 1.0})
    assert results
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_detection_file_has_coco_detection_format(dataset):
    detections = json.loads((dataset / synthetic.DETECTION_FILE).read_text(encoding="utf-8"))
    coco = load_coco(annotation_path(dataset, "val"))
    images = {image["id"]: image for image in coco.loadImgs(coco.getImgIds())}
    assert isinstance(detections, list) and detections
    for detection in detections:
        assert set(detection) == {"image_id", "category_id", "bbox", "score"}
        assert detection["category_id"] == 1
        image = images[detection["image_id"]]  # a val image id
        x, y, width, height = detection["bbox"]
        assert x >= 0 and y >= 0 and width > 0 and height > 0
        assert x + width <= image["width"] and y + height <= image["height"]
        assert 0 < detection["score"] < 1


def test_manifest_summarises_the_files(dataset):
    assert synthetic.synthetic_dataset_exists(dataset)
    summary = generate(dataset, seed=0)
    assert summary["generated"] is False
    for split in synthetic.SPLITS:
        coco = load_coco(annotation_path(dataset, split))
        people = coco.getAnnIds(iscrowd=False)
        assert summary["splits"][split]["images"] == len(coco.getImgIds())
        assert summary["splits"][split]["people"] == len(people)


# ----------------------------------------------------------------------------------------------
# Visibility labels


def test_occlusion_produces_occluded_keypoints():
    counts = {0: 0, 1: 0, 2: 0}
    for index in range(30):
        sample = synthetic.make_image_sample(3, "train", index, 128, 192)
        for annotation in sample.annotations:
            for visibility in annotation["keypoints"][2::3]:
                counts[visibility] += 1
    total = sum(counts.values())
    assert 0.05 * total < counts[1] < 0.6 * total
    assert counts[2] > 0.3 * total


def test_keypoint_visibility_follows_the_owner_buffer():
    height, width = 20, 30
    owner = np.zeros((height, width), np.uint8)
    part = np.zeros((height, width), np.uint8)
    owner[:, :10], part[:, :10] = 1, body.PART_ID["left_forearm"]  # person 1's forearm
    owner[:, 10:20] = drawing.OBJECT_OWNER  # an object in front
    owner[:, 20:], part[:, 20:] = 1, body.PART_ID["torso"]  # person 1's own torso
    keypoints = np.full((COCO.num_keypoints, 2), 5.0)
    wrist, elbow = COCO.keypoint_names.index("left_wrist"), COCO.keypoint_names.index("left_elbow")
    knee, nose = COCO.keypoint_names.index("left_knee"), COCO.keypoint_names.index("nose")
    keypoints[elbow] = (15.0, 5.0)  # under the object
    keypoints[knee] = (25.0, 5.0)  # under the torso, which the knee does not belong to
    keypoints[nose] = (-1.0, 5.0)  # outside the image
    face_visible = {name: True for name in body.FACE_KEYPOINTS}
    face_visible["left_eye"] = False  # turned away from the viewer
    flat = coco_annotations.keypoint_annotation(keypoints, face_visible, owner, part, owner_id=1)
    visibility = dict(zip(COCO.keypoint_names, flat[2::3]))
    assert visibility["left_wrist"] == 2
    assert visibility["left_elbow"] == 1
    assert visibility["left_knee"] == 1
    assert visibility["left_eye"] == 1
    assert visibility["nose"] == 0 and flat[3 * nose:3 * nose + 2] == [0.0, 0.0]
    assert flat[3 * wrist:3 * wrist + 2] == [5.0, 5.0]


def test_uncompressed_rle_round_trips_through_pycocotools():
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 5)) < 0.5, np.ones((4, 6), bool), np.zeros((3, 3), bool)):
        rle = coco_annotations.uncompressed_rle(mask)
        compressed = mask_utils.frPyObjects(rle, *mask.shape)
        # Compared with pycocotools' own encoding (its decode warns under NumPy 2).
        assert compressed == mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert mask_utils.area(compressed) == np.count_nonzero(mask)


# ----------------------------------------------------------------------------------------------
# Writing


def test_interrupted_generation_leaves_nothing_at_root(tmp_path, monkeypatch):
    written = []
    real_write_image = files.write_image

    def failing_write_image(path, image):
        if len(written) == 3:
            raise RuntimeError("simulated crash")
        real_write_image(path, image)
        written.append(path)

    monkeypatch.setattr(files, "write_image", failing_write_image)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone too
    assert not synthetic.synthetic_dataset_exists(tmp_path / "data")


def test_staging_folder_of_a_killed_run_is_removed(tmp_path):
    # Above Linux's largest pid_max, so no process can have this id.
    stale = tmp_path / ".data.partial-4194305-0123abcd"
    (stale / "images").mkdir(parents=True)
    generate(tmp_path / "data")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_existing_dataset_is_kept_unless_overwritten(tmp_path):
    root = tmp_path / "data"
    assert generate(root)["generated"] is True
    manifest = root / synthetic.MANIFEST_FILE
    before = manifest.stat().st_mtime_ns
    assert generate(root)["generated"] is False
    assert manifest.stat().st_mtime_ns == before
    assert generate(root, seed=5, overwrite=True)["generated"] is True
    assert json.loads(manifest.read_text(encoding="utf-8"))["options"]["seed"] == 5
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_incomplete_folder_is_not_mistaken_for_a_dataset(tmp_path):
    root = tmp_path / "data"
    generate(root)
    (root / synthetic.MANIFEST_FILE).unlink()
    assert not synthetic.synthetic_dataset_exists(root)
    with pytest.raises(DataError, match="not a complete synthetic dataset"):
        generate(root)
    generate(root, overwrite=True)
    assert synthetic.synthetic_dataset_exists(root)


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="min_size"):
        generate(tmp_path / "data", min_size=200, max_size=100)
    with pytest.raises(ValueError, match=">= 0"):
        generate(tmp_path / "data", num_train=-1)
    assert not (tmp_path / "data").exists()
