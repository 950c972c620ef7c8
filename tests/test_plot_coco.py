"""tools/plot_coco.py and hrpose.apis.plot on a tiny generated synthetic dataset: one drawn image
per image id, drawn where the keypoints are and nowhere much else, the ground truth in its own
colour, and clear errors for results that do not fit the skeleton or images that are missing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrpose.apis.plot import load_results, plot_coco_results
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.datasets.synthetic import generate_synthetic_dataset
from hrpose.errors import DataError, DataFileNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = get_keypoint_info("synthetic")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(annotation file, image folder, GT annotations, results file made from the GT)."""
    root = tmp_path_factory.mktemp("plot") / "synthetic"
    generate_synthetic_dataset(root, num_train=2, num_val=2, seed=1, min_size=140, max_size=176)
    annotation_file = root / "annotations" / "person_keypoints_val.json"
    annotations = json.loads(annotation_file.read_text())["annotations"]
    results = []
    for annotation in annotations:
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        keypoints[:, 2] = (keypoints[:, 2] > 0).astype(np.float64)  # labelled -> confidence 1
        results.append({"image_id": annotation["image_id"], "category_id": 1, "score": 1.0,
                        "keypoints": [float(v) for v in keypoints.reshape(-1)]})
    results_file = root / "gt_results.json"
    results_file.write_text(json.dumps(results))
    return str(annotation_file), str(root / "images" / "val"), annotations, str(results_file)


def image_file(folder, image_id):
    return os.path.join(folder, f"{image_id:012d}.jpg")


def test_tool_draws_one_image_per_image_id_where_the_keypoints_are(dataset, tmp_path):
    annotation_file, images_dir, annotations, results_file = dataset
    output = tmp_path / "drawn"
    result = subprocess.run([sys.executable, "tools/plot_coco.py", "--results", results_file,
                             "--annotations", annotation_file, "--images", images_dir,
                             "--output", str(output), "--dataset", "synthetic"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    image_ids = sorted({annotation["image_id"] for annotation in annotations})
    assert len(image_ids) == 2
    assert sorted(os.listdir(output)) == [f"{image_id:012d}.jpg" for image_id in image_ids]
    files = {image["id"]: image["file_name"]
             for image in json.loads(Path(annotation_file).read_text())["images"]}
    for annotation in annotations:
        original = cv2.imread(os.path.join(images_dir, files[annotation["image_id"]]))
        drawn = cv2.imread(image_file(output, annotation["image_id"]))
        assert drawn.shape == original.shape
        difference = np.abs(drawn.astype(np.int16) - original.astype(np.int16)).max(axis=2)
        height, width = difference.shape
        keypoints = np.asarray(annotation["keypoints"]).reshape(-1, 3)
        shown = [(int(round(x)), int(round(y))) for x, y, v in keypoints
                 if v > 0 and 1 <= x < width - 1 and 1 <= y < height - 1]
        assert len(shown) >= 5
        for x, y in shown:
            assert difference[y - 1:y + 2, x - 1:x + 2].max() > 60, (x, y)
        # Away from the skeleton the picture is the original, up to JPEG noise.
        assert np.median(difference) < 6


def test_ground_truth_drawn_in_its_own_colour(dataset, tmp_path):
    annotation_file, images_dir, annotations, results_file = dataset
    results = load_results(results_file)
    first = min(annotation["image_id"] for annotation in annotations)
    only_first = [entry for entry in results if entry["image_id"] == first]
    plain = plot_coco_results(only_first, annotation_file, images_dir, str(tmp_path / "plain"),
                              SYNTHETIC)
    with_gt = plot_coco_results(only_first, annotation_file, images_dir, str(tmp_path / "gt"),
                                SYNTHETIC, with_gt=True)
    # The ground truth brings the image without results too.
    assert [os.path.basename(p) for p in plain] == [f"{first:012d}.jpg"]
    assert len(with_gt) == 2
    a, b = (cv2.imread(p).astype(np.int16) for p in (plain[0], with_gt[0]))
    changed = np.abs(a - b).max(axis=2) > 60
    assert changed.sum() > 20
    blue, green, red = (b[..., c][changed] for c in range(3))
    assert np.mean(green - np.maximum(blue, red)) > 40

    # A score threshold above every person leaves the image undrawn but still written.
    none = plot_coco_results(only_first, annotation_file, images_dir, str(tmp_path / "none"),
                             SYNTHETIC, score_threshold=1.5)
    assert len(none) == 1


def test_errors_name_the_problem(dataset, tmp_path):
    annotation_file, images_dir, _, results_file = dataset
    results = load_results(results_file)
    with pytest.raises(DataError, match="--dataset crowdpose"):
        plot_coco_results([{**results[0], "keypoints": results[0]["keypoints"][:42]}],
                          annotation_file, images_dir, str(tmp_path), SYNTHETIC)
    with pytest.raises(DataFileNotFoundError, match="not found"):
        plot_coco_results(results, annotation_file, str(tmp_path / "nowhere"), str(tmp_path),
                          SYNTHETIC)
    with pytest.raises(DataError, match="not in the annotation file"):
        plot_coco_results([{**results[0], "image_id": 5}], annotation_file, images_dir,
                          str(tmp_path), SYNTHETIC)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(DataError, match="JSON list"):
        load_results(str(bad))
