"""Bad data ends in one clear line that names the file (and the entry), or in a warning that does,
whatever the number of DataLoader workers; degenerate boxes are skipped and counted."""

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data._utils import ExceptionWrapper

from hrpose.apis import PosePredictor
from hrpose.apis.boxes import DetectionFile
from hrpose.apis.frames import ImageSource
from hrpose.apis.video import SkippedImagesError, run_inference_demo
from hrpose.config import load_config
from hrpose.datasets.bottomup import BottomUpDataset
from hrpose.datasets.build import build_topdown_dataset
from hrpose.datasets.images import read_image
from hrpose.datasets.mpii import mpii_records
from hrpose.datasets.synthetic import DETECTION_FILE, generate_synthetic_dataset
from hrpose.engine.cli import original_message
from hrpose.errors import DataError, DataFileNotFoundError
from hrpose.models import build_model
from hrpose.utils.checkpoint import save_checkpoint_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
TOPDOWN_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
BOTTOMUP_CFG = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml"
TOPDOWN_OPTS = ["MODEL.IMAGE_SIZE", "[32, 32]", "MODEL.HEATMAP_SIZE", "[8, 8]",
                "TEST.USE_GT_BBOX", "True", "TRAIN.END_EPOCH", "1",
                "TRAIN.BATCH_SIZE_PER_GPU", "4", "TEST.BATCH_SIZE_PER_GPU", "4", "DEVICE", "cpu"]
BOTTOMUP_OPTS = ["DATASET.INPUT_SIZE", "64", "DATASET.OUTPUT_SIZE", "[16, 32]",
                 "TRAIN.END_EPOCH", "1", "TRAIN.BATCH_SIZE_PER_GPU", "2", "DEVICE", "cpu",
                 "MODEL.PRETRAINED", ""]
# What tools/*.py log on the console: "2026-01-01 12:00:00,000 message".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
TRAIN_FILE = "annotations/person_keypoints_train.json"
FIRST_TRAIN_IMAGE = "images/train/000000000001.jpg"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_data_errors") / "data"
    generate_synthetic_dataset(str(root), num_train=2, num_val=2, seed=1, min_size=96,
                               max_size=112)
    return root


@pytest.fixture
def data(pristine, tmp_path):
    """A copy of the tiny synthetic dataset that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(pristine, root)
    return root


def edit_json(path, change):
    value = json.loads(Path(path).read_text())
    change(value)
    Path(path).write_text(json.dumps(value))


def run_tool(tool, cfg_file, data_root, out, *opts, flags=()):
    return subprocess.run(
        [sys.executable, tool, *map(str, flags), "--cfg", cfg_file, "DATASET.ROOT", str(data_root),
         "OUTPUT_DIR", str(out / "output"), "LOG_DIR", str(out / "log"), *map(str, opts)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def error_lines(result):
    """The stderr lines that are not log lines; must be exactly the one 'error:' line."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]


def assert_one_error_line(result, *expected):
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def topdown_config(data, tmp_path, *opts):
    return load_config(str(REPO_ROOT / TOPDOWN_CFG),
                       ["DATASET.ROOT", str(data), "OUTPUT_DIR", str(tmp_path / "out"),
                        *TOPDOWN_OPTS, *opts])


def truncate_jpeg(path, keep=0.6):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])


# --- image files -------------------------------------------------------------------------------

def damage(path, kind):
    if kind == "missing":
        Path(path).unlink()
    elif kind == "empty":
        Path(path).write_bytes(b"")
    else:
        Path(path).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 8)


UNREADABLE = {"missing": "image not found", "empty": "is an empty file (0 bytes)",
              "corrupt": "cannot decode image"}


@pytest.mark.parametrize("workers", [0, 2])
def test_missing_training_image_is_one_line_naming_it(data, tmp_path, workers):
    damage(data / FIRST_TRAIN_IMAGE, "missing")
    result = run_tool("tools/train.py", TOPDOWN_CFG, data, tmp_path, "WORKERS", workers,
                      *TOPDOWN_OPTS)
    line = assert_one_error_line(result, UNREADABLE["missing"], str(data / FIRST_TRAIN_IMAGE))
    assert "DataLoader worker" not in line


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_image_error_names_the_file(data, tmp_path, kind):
    damage(data / FIRST_TRAIN_IMAGE, kind)
    dataset = build_topdown_dataset(topdown_config(data, tmp_path), is_train=True)
    with pytest.raises(DataError, match=re.escape(UNREADABLE[kind])) as caught:
        dataset[0]
    assert str(data / FIRST_TRAIN_IMAGE) in str(caught.value)


def test_unreadable_bottomup_image_is_one_line_with_workers(data, tmp_path):
    damage(data / FIRST_TRAIN_IMAGE, "missing")
    result = run_tool("tools/train.py", BOTTOMUP_CFG, data, tmp_path, "WORKERS", 2,
                      *BOTTOMUP_OPTS)
    assert_one_error_line(result, "image not found", str(data / FIRST_TRAIN_IMAGE))


def test_worker_error_is_reduced_to_the_message_the_worker_raised():
    message = "image not found: '/data/a b: c.jpg'"
    try:
        raise DataFileNotFoundError(message)
    except DataFileNotFoundError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 3")
    with pytest.raises(DataFileNotFoundError) as caught:
        wrapper.reraise()
    assert "Original Traceback" in str(caught.value)  # what PyTorch hands the main process
    assert original_message(caught.value) == message
    assert original_message(DataError("plain: message")) == "plain: message"


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_cut_off_image_is_one_error_and_nothing_from_opencv(tmp_path, capfd, suffix):
    picture = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    encoded = cv2.imencode(suffix, picture)[1].tobytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(encoded[:len(encoded) // 2])
    with pytest.raises(DataError, match=re.escape(f"cannot decode image '{path}'")):
        read_image(str(path), color_rgb=False)
    assert capfd.readouterr().err == ""


def test_truncated_jpeg_is_used_and_named_once(data, caplog):
    path = data / FIRST_TRAIN_IMAGE
    intact = cv2.imread(str(path))
    truncate_jpeg(path)
    with caplog.at_level(logging.WARNING, logger="hrpose"):
        first = read_image(str(path), color_rgb=False)
        read_image(str(path), color_rgb=False)
    assert first.shape == intact.shape
    named = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(named) == 1 and "truncated JPEG" in named[0]


def test_training_on_a_truncated_jpeg_names_it_instead_of_libjpeg(data, tmp_path):
    truncate_jpeg(data / FIRST_TRAIN_IMAGE)
    result = run_tool("tools/train.py", TOPDOWN_CFG, data, tmp_path, "WORKERS", 0,
                      *TOPDOWN_OPTS)
    assert result.returncode == 0, result.stderr
    assert "Premature end of JPEG file" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "truncated JPEG" in line]
    assert warnings and all(str(data / FIRST_TRAIN_IMAGE) in line for line in warnings)


# --- annotation entries ------------------------------------------------------------------------

def break_first_annotation(kind):
    def change(annotations):
        annotation = annotations["annotations"][0]
        if kind == "no-bbox":
            del annotation["bbox"]
        elif kind == "keypoint-count":
            annotation["keypoints"] = annotation["keypoints"][:-3]
        else:
            annotation["keypoints"][4] = "12.5"
    return change


ANNOTATION_PROBLEMS = {
    "no-bbox": "has no 'bbox'",
    "keypoint-count": "has 48 keypoint values; expected 51",
    "strings": "has keypoint value '12.5' at position 4",
}


def test_bad_annotation_is_one_line_naming_file_and_id(data, tmp_path, topdown_checkpoint):
    val_file = data / "annotations" / "person_keypoints_val.json"
    edit_json(val_file, break_first_annotation("strings"))
    first_id = json.loads(val_file.read_text())["annotations"][0]["id"]
    result = run_tool("tools/valid.py", TOPDOWN_CFG, data, tmp_path, "WORKERS", 2,
                      *TOPDOWN_OPTS, "TEST.MODEL_FILE", topdown_checkpoint)
    assert_one_error_line(result, f"annotation file '{val_file}': annotation {first_id} of image",
                          ANNOTATION_PROBLEMS["strings"])


@pytest.mark.parametrize("kind", sorted(ANNOTATION_PROBLEMS))
def test_topdown_dataset_checks_annotations_at_load_time(data, tmp_path, kind):
    edit_json(data / TRAIN_FILE, break_first_annotation(kind))
    first_id = json.loads((data / TRAIN_FILE).read_text())["annotations"][0]["id"]
    expected = f"'{data / TRAIN_FILE}': annotation {first_id} of image 1 "
    with pytest.raises(DataError, match=re.escape(expected + ANNOTATION_PROBLEMS[kind])):
        build_topdown_dataset(topdown_config(data, tmp_path), is_train=True)


@pytest.mark.parametrize("kind", sorted(ANNOTATION_PROBLEMS))
def test_bottomup_dataset_checks_annotations_at_load_time(data, kind):
    edit_json(data / TRAIN_FILE, break_first_annotation(kind))
    with pytest.raises(DataError, match=re.escape(ANNOTATION_PROBLEMS[kind])):
        BottomUpDataset("synthetic", str(data), "train", is_train=True, input_size=64,
                        output_sizes=[16])


@pytest.mark.parametrize("change, problem", [
    ({"joints": [["x", 1]] * 16}, "has joints that are not all numbers; expected (16, 2)"),
    ({"joints": [[1, 1]] * 15}, "has joints of shape (15, 2); expected (16, 2) numbers "
                                "(MODEL.NUM_JOINTS is 16)"),
    ({"scale": 0}, "has scale 0; expected a positive number"),
])
def test_bad_mpii_entry_names_the_file_and_entry(tmp_path, change, problem):
    entry = {"image": "a.jpg", "center": [50, 60], "scale": 1.2,
             "joints": [[10, 10]] * 16, "joints_vis": [1] * 16}
    path = tmp_path / "annot" / "train.json"
    path.parent.mkdir()
    path.write_text(json.dumps([entry, {**entry, **change}]))
    with pytest.raises(DataError, match=re.escape(f"'{path}': entry 1 {problem}")):
        mpii_records(str(tmp_path), "train", 16)


# --- degenerate boxes --------------------------------------------------------------------------

def test_degenerate_ground_truth_boxes_are_skipped_and_counted(data, tmp_path, caplog):
    intact = len(build_topdown_dataset(topdown_config(data, tmp_path), is_train=True))
    boxes = {}

    def change(annotations):
        people = [a for a in annotations["annotations"] if max(a["keypoints"]) > 0]
        people[0]["bbox"][2] = 0.0  # zero width
        people[1]["bbox"][3] = -4.0  # negative height
        people[2]["bbox"][2:] = [0.5, 0.5]  # less than a pixel: its cleaned box is 0 x 0
        boxes.update({p["id"]: p["bbox"] for p in people[:3]})
    edit_json(data / TRAIN_FILE, change)
    with caplog.at_level(logging.WARNING, logger="hrpose"):
        dataset = build_topdown_dataset(topdown_config(data, tmp_path), is_train=True)
    assert len(dataset) == intact - 3
    warning = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    ids = ", ".join(str(i) for i in sorted(boxes))
    assert warning == [f"skipped 3 person annotations of '{data / TRAIN_FILE}' whose box has "
                       f"zero or negative width or height (ids {ids})"]
    for index in range(len(dataset)):
        assert torch.isfinite(dataset[index][0]).all()


def write_detections(data, boxes):
    detections = [{"image_id": 1000001, "category_id": 1, "score": 0.9, "bbox": box}
                  for box in boxes]
    (data / DETECTION_FILE).write_text(json.dumps(detections))
    return data / DETECTION_FILE


def test_degenerate_detection_boxes_are_skipped_and_counted(data, tmp_path, caplog):
    path = write_detections(data, [[10, 10, 30, 40], [10, 10, 0, 40], [10, 10, -5, -5]])
    cfg = topdown_config(data, tmp_path, "TEST.USE_GT_BBOX", "False",
                         "TEST.COCO_BBOX_FILE", str(path))
    with caplog.at_level(logging.WARNING, logger="hrpose"):
        dataset = build_topdown_dataset(cfg, is_train=False)
        boxes = DetectionFile(str(path), score_threshold=0.5)
    assert len(dataset) == 1 and len(boxes(None, 1000001)) == 1
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert warnings == [f"skipped 2 person boxes of '{path}' with zero or negative width or "
                        f"height"] * 2


@pytest.mark.parametrize("bad", [[10, 10, 1e12, 40], [10, -3e6, 30, 40]])
def test_impossible_detection_boxes_are_rejected_naming_the_entry(data, tmp_path, bad):
    path = write_detections(data, [[10, 10, 30, 40], bad])
    cfg = topdown_config(data, tmp_path, "TEST.USE_GT_BBOX", "False",
                         "TEST.COCO_BBOX_FILE", str(path))
    with pytest.raises(DataError, match=f"'{re.escape(str(path))}': entry 1 has bbox"):
        build_topdown_dataset(cfg, is_train=False)


def test_non_finite_detection_box_is_rejected_naming_the_entry(data, tmp_path):
    path = data / DETECTION_FILE
    path.write_text('[{"image_id": 1000001, "category_id": 1, "score": 0.9, '
                    '"bbox": [10, 10, NaN, 40]}]')
    with pytest.raises(DataError, match="entry 0 needs an integer image_id, a bbox of four"):
        DetectionFile(str(path))


# --- image folders in the demo -----------------------------------------------------------------

@pytest.fixture(scope="module")
def topdown_checkpoint(pristine, tmp_path_factory):
    """A randomly initialised top-down model of TOPDOWN_CFG, saved as a bare state dict."""
    path = tmp_path_factory.mktemp("data_errors_model") / "topdown.pth"
    torch.manual_seed(0)
    cfg = load_config(str(REPO_ROOT / TOPDOWN_CFG), ["DATASET.ROOT", str(pristine),
                                                     *TOPDOWN_OPTS])
    save_checkpoint_atomic(build_model(cfg, is_train=True).state_dict(), str(path))
    return path


def image_folder_with_a_bad_image(data, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in sorted(p.name for p in (data / "images" / "val").iterdir()):
        shutil.copy(data / "images" / "val" / name, folder / name)
    (folder / "000001000000.jpg").write_bytes(b"\xff\xd8 this is not a picture" * 4)
    return folder


def test_image_folder_demo_writes_the_good_frames_and_names_the_bad_one(
        data, tmp_path, topdown_checkpoint, caplog):
    folder = image_folder_with_a_bad_image(data, tmp_path)
    cfg = topdown_config(data, tmp_path, "TEST.MODEL_FILE", str(topdown_checkpoint))
    boxes = DetectionFile(str(data / DETECTION_FILE), score_threshold=0.0)
    predictor = PosePredictor.from_config(cfg, str(topdown_checkpoint), "cpu", box_source=boxes)
    bad = str(folder / "000001000000.jpg")
    with caplog.at_level(logging.WARNING, logger="hrpose"), \
            pytest.raises(SkippedImagesError) as caught:
        run_inference_demo(predictor, ImageSource(str(folder)), str(tmp_path / "out"),
                           visualization_threshold=0.0)
    outputs = caught.value.outputs
    poses = json.loads(Path(outputs.poses_file).read_text())
    assert [frame["image"] for frame in poses["frames"]] == [
        str(folder / "000001000001.jpg"), str(folder / "000001000002.jpg")]
    assert poses["skipped_images"] == [bad] and outputs.num_frames == 2
    assert any(frame["persons"] for frame in poses["frames"])
    assert str(caught.value) == (f"1 of 3 images could not be read and were skipped (first: "
                                 f"cannot decode image '{bad}' (96 bytes): corrupt, or not an "
                                 f"image format OpenCV reads); the poses of the other 2 are in "
                                 f"'{outputs.poses_file}'")
    warnings = [r.getMessage() for r in caplog.records if bad in r.getMessage()]
    assert warnings == [f"skipping image 1 of 3: cannot decode image '{bad}' (96 bytes): "
                        f"corrupt, or not an image format OpenCV reads"]


def test_image_folder_without_a_readable_image_writes_no_pose_file(
        data, tmp_path, topdown_checkpoint):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_bytes(b"not a png")
    cfg = topdown_config(data, tmp_path, "TEST.MODEL_FILE", str(topdown_checkpoint))
    predictor = PosePredictor.from_config(cfg, str(topdown_checkpoint), "cpu",
                                          box_source=DetectionFile(str(data / DETECTION_FILE)))
    with pytest.raises(DataError, match=re.escape(
            f"none of the 2 images could be read (first: image '{folder / 'a.jpg'}' is an "
            f"empty file (0 bytes))")):
        run_inference_demo(predictor, ImageSource(str(folder)), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "frames_poses.json").exists()


def test_image_folder_demo_tool_exits_2_after_writing(data, tmp_path, topdown_checkpoint):
    folder = image_folder_with_a_bad_image(data, tmp_path)
    out = tmp_path / "demo"
    result = run_tool("tools/inference_demo.py", TOPDOWN_CFG, data, tmp_path, *TOPDOWN_OPTS,
                      "TEST.MODEL_FILE", topdown_checkpoint, "WORKERS", 0,
                      flags=["--image", folder, "--output-dir", out, "--box-threshold", 0,
                             "--boxes", data / DETECTION_FILE])
    assert_one_error_line(result, "1 of 3 images could not be read",
                          str(folder / "000001000000.jpg"), str(out / "frames_poses.json"))
    poses = json.loads((out / "frames_poses.json").read_text())
    assert poses["num_frames"] == 2
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000001000001.jpg",
                                                                   "000001000002.jpg"]


def test_a_single_unreadable_image_is_an_error(data, tmp_path):
    path = tmp_path / "one.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="is an empty file"):
        list(ImageSource(str(path)))
    assert np.array_equal(next(iter(ImageSource(str(data / FIRST_TRAIN_IMAGE)))).image,
                          cv2.imread(str(data / FIRST_TRAIN_IMAGE)))
