"""The inference API and the video demo against the validation path, on tiny synthetic data."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrpose.apis import DetectionFile, PosePredictor, TorchvisionPersonDetector, person_box_source
from hrpose.apis.frames import ImageSource, frame_step
from hrpose.apis.video import run_inference_demo
from hrpose.config import load_config
from hrpose.datasets.coco_format import clean_box, load_coco_file
from hrpose.datasets.synthetic import generate_synthetic_dataset
from hrpose.engine.run_dir import make_run_paths
from hrpose.engine.trainer import validate_model
from hrpose.errors import DataError, DataFileNotFoundError
from hrpose.evaluation.results import load_keypoint_results
from hrpose.models import build_model
from hrpose.utils.checkpoint import save_checkpoint_atomic
from video_frames import read_frames

REPO_ROOT = Path(__file__).resolve().parents[1]

TOPDOWN_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
BOTTOMUP_CFG = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml"
TOPDOWN_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]",
                "TEST.USE_GT_BBOX", "True"]
# A random model's heatmaps are low: a low threshold makes the grouping return persons.
BOTTOMUP_OPTS = ["DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32, 64]",
                 "TEST.DETECTION_THRESHOLD", "0.001", "MODEL.PRETRAINED", ""]
VIDEO_SIZE = (128, 96)  # width, height of the synthetic test video
VIDEO_FPS = 10.0
NUM_VIDEO_FRAMES = 6
LOW_BOX = [1.0, 1.0, 20.0, 30.0, 0.2]  # a detection below --box-threshold 0.5 in every frame


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_inference")
    generate_synthetic_dataset(str(root), num_train=1, num_val=2, seed=3, min_size=96,
                               max_size=128)
    return root


def common_opts(data_root, out_root, model_file=""):
    return ["DATASET.ROOT", str(data_root), "OUTPUT_DIR", str(out_root / "output"),
            "LOG_DIR", str(out_root / "log"), "DEVICE", "cpu", "WORKERS", "0",
            "TEST.MODEL_FILE", str(model_file)]


def random_checkpoint(repo_root, cfg_file, opts, path):
    """A randomly initialised (He) model of the experiment, saved as a bare state dict."""
    torch.manual_seed(0)
    model = build_model(load_config(str(repo_root / cfg_file), opts), is_train=True)
    save_checkpoint_atomic(model.state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    """(config, validation results by image id) of a random top-down and bottom-up model."""
    out = tmp_path_factory.mktemp("inference_models")
    built = {}
    for kind, cfg_file, opts in (("topdown", TOPDOWN_CFG, TOPDOWN_OPTS),
                                 ("bottomup", BOTTOMUP_CFG, BOTTOMUP_OPTS)):
        checkpoint = random_checkpoint(REPO_ROOT, cfg_file, common_opts(data, out) + opts,
                                       out / f"{kind}.pth")
        cfg = load_config(str(REPO_ROOT / cfg_file), common_opts(data, out, checkpoint) + opts)
        paths = make_run_paths(cfg, cfg_file, "valid")
        os.makedirs(paths.output_dir, exist_ok=True)
        validate_model(cfg, paths)
        results = load_keypoint_results(os.path.join(paths.output_dir, "results",
                                                     "keypoints_val_results.json"))
        by_image = {}
        for result in results:
            by_image.setdefault(result["image_id"], []).append(result)
        built[kind] = (cfg_file, cfg, checkpoint, opts, by_image)
    return built


def val_images(data_root):
    coco = load_coco_file(str(data_root / "annotations" / "person_keypoints_val.json"))
    return coco, {image_id: str(data_root / "images" / "val"
                                / coco.loadImgs(image_id)[0]["file_name"])
                  for image_id in sorted(coco.getImgIds())}


def ground_truth_boxes(coco, image_id, convention="hrnet"):
    """The boxes of the persons the validation loop tests with TEST.USE_GT_BBOX True."""
    info = coco.loadImgs(image_id)[0]
    boxes = []
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
        box = clean_box(ann["bbox"], info["width"], info["height"], convention)
        if box is None or ann["area"] <= 0 or max(ann["keypoints"]) == 0:
            continue
        boxes.append(box)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def assert_same_poses(persons, results):
    assert len(persons) == len(results)
    for person, result in zip(persons, results):
        np.testing.assert_allclose(person.keypoints.reshape(-1), result["keypoints"], rtol=0,
                                   atol=1e-4)
        assert person.score == pytest.approx(result["score"], abs=1e-6)
        assert person.keypoints.shape == (17, 3) and person.keypoints.dtype == np.float64


def test_topdown_predictor_gives_the_validation_poses(models, data):
    cfg_file, cfg, checkpoint, _, by_image = models["topdown"]
    predictor = PosePredictor.from_config(cfg, checkpoint)
    coco, images = val_images(data)
    assert sum(map(len, by_image.values())) >= 4
    for image_id, path in images.items():
        boxes = ground_truth_boxes(coco, image_id)
        persons = predictor(path, boxes=boxes)
        assert_same_poses(persons, by_image.get(image_id, []))
        for person in persons:   # each pose keeps the box it was found in
            assert any(np.allclose(person.box, box) for box in boxes)
        # A BGR array gives what its file gives; a box source stands in for explicit boxes.
        from_array = PosePredictor(cfg, predictor.model, "cpu",
                                   box_source=lambda image, key: boxes)(cv2.imread(path))
        assert_same_poses(from_array, by_image.get(image_id, []))


def test_bottomup_predictor_gives_the_validation_poses(models, data):
    cfg_file, cfg, checkpoint, opts, by_image = models["bottomup"]
    predictor = PosePredictor.from_config(cfg_file, checkpoint, "cpu",
                                          opts=common_opts(data, data) + opts)
    _, images = val_images(data)
    assert sum(map(len, by_image.values())) >= 2
    for image_id, path in images.items():
        persons = predictor(path, boxes=np.zeros((0, 4)))  # boxes are ignored
        assert_same_poses(persons, by_image.get(image_id, []))
        kept = predictor.predict(path, keep_maps=True)       # the maps route finds them too
        assert_same_poses(kept.persons, by_image.get(image_id, []))
        assert kept.maps.heatmaps.shape[1] == 17


def test_topdown_predictor_needs_boxes_and_a_uint8_picture(models):
    _, cfg, checkpoint, _, _ = models["topdown"]
    predictor = PosePredictor.from_config(cfg, checkpoint, "cpu")
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="person boxes"):
        predictor(image)
    with pytest.raises(DataError, match="uint8"):
        predictor(image.astype(np.float32), boxes=[[0, 0, 10, 10]])
    assert predictor(image, boxes=np.zeros((0, 5))) == []


def test_detection_file_boxes_by_frame_with_a_threshold(tmp_path):
    path = tmp_path / "detections.json"
    path.write_text(json.dumps([
        {"image_id": 3, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.4},
        {"image_id": 3, "category_id": 2, "bbox": [5, 5, 10, 10], "score": 0.99},
        {"image_id": 4, "bbox": [0, 0, 8, 9], "score": 0.5}]))
    source = DetectionFile(str(path), score_threshold=0.5)
    np.testing.assert_array_equal(source(None, 3), [[1, 2, 30, 40, 0.9]])
    np.testing.assert_array_equal(source(None, 4), [[0, 0, 8, 9, 0.5]])
    assert source(None, 5).shape == (0, 5) and source.image_ids == [3, 4]
    path.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3]}]))
    with pytest.raises(DataError, match="entry 0"):
        DetectionFile(str(path))


class FakeDetector(torch.nn.Module):
    """torchvision's detection interface with fixed outputs; records what it was given."""

    def forward(self, images):
        self.seen = images
        return [{"boxes": torch.tensor([[10.0, 20.0, 40.0, 80.0], [0.0, 0.0, 5.0, 5.0],
                                        [1.0, 2.0, 3.0, 4.0]]),
                 "labels": torch.tensor([1, 1, 3]), "scores": torch.tensor([0.9, 0.3, 0.95])}]


def test_detector_keeps_confident_persons_as_xywh_and_sees_rgb():
    fake = FakeDetector()
    detector = TorchvisionPersonDetector(fake, "cpu", score_threshold=0.5)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[..., 0] = 255  # blue in BGR
    boxes = detector(image)
    np.testing.assert_allclose(boxes, [[10, 20, 30, 60, 0.9]], rtol=1e-6)
    assert fake.seen[0][2].max() == 1.0 and fake.seen[0][0].max() == 0.0


def test_missing_detector_weights_say_where_to_put_them(models, tmp_path):
    _, cfg, _, _, _ = models["topdown"]
    with pytest.raises(DataFileNotFoundError, match="models/pytorch/detection/"):
        person_box_source(cfg, detector_weights=str(tmp_path / "frcnn.pth"))
    with pytest.raises(DataError, match="--boxes"):
        person_box_source(cfg)
    assert person_box_source(models["bottomup"][1]) is None


def test_frame_step_follows_the_original_demo():
    assert frame_step(30.0, 10.0) == 3
    assert frame_step(10.0, 5.0) == 2
    assert frame_step(5.0, 10.0) == 1       # slower than asked: every frame
    assert frame_step(0.0, 10.0) == 1       # unknown rate
    assert frame_step(30.0, 0.0) == 1       # --inference-fps 0: every frame


@pytest.fixture(scope="module")
def video(data, tmp_path_factory):
    """A 6-frame mp4v video of the two val images (resized) and per-frame GT detections."""
    folder = tmp_path_factory.mktemp("video")
    coco, images = val_images(data)
    path = folder / "people.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, VIDEO_SIZE)
    assert writer.isOpened()
    detections = []
    ids = list(images)
    for frame in range(NUM_VIDEO_FRAMES):
        image_id = ids[frame % len(ids)]
        image = cv2.imread(images[image_id])
        writer.write(cv2.resize(image, VIDEO_SIZE, interpolation=cv2.INTER_AREA))
        factor = np.array([VIDEO_SIZE[0] / image.shape[1], VIDEO_SIZE[1] / image.shape[0]] * 2)
        for box in ground_truth_boxes(coco, image_id):
            detections.append({"image_id": frame, "category_id": 1, "score": 0.9,
                               "bbox": [float(v) for v in box * factor]})
        detections.append({"image_id": frame, "category_id": 1, "score": LOW_BOX[4],
                           "bbox": LOW_BOX[:4]})
    writer.release()
    detection_file = folder / "detections.json"
    detection_file.write_text(json.dumps(detections))
    return path, detection_file


def run_demo(repo_root, *args):
    return subprocess.run([sys.executable, "tools/inference_demo.py", *map(str, args)],
                          capture_output=True, text=True, cwd=repo_root,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def check_demo_outputs(out, frames, timestamps):
    poses = json.loads((out / "people_poses.json").read_text())
    assert [f["frame"] for f in poses["frames"]] == frames
    assert [f["timestamp"] for f in poses["frames"]] == pytest.approx(timestamps)
    assert poses["num_frames"] == len(frames) and len(poses["keypoint_names"]) == 17
    written = read_frames(out / "people_pose.mp4")[0]
    assert len(written) == len(frames)
    assert written[0].shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)
    assert sorted(os.listdir(out / "frames")) == [f"frame_{i:08d}.jpg" for i in frames]
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporaries
    return poses


def test_video_demo_top_down_with_detections(repo_root, models, video, tmp_path):
    cfg_file, cfg, checkpoint, opts, _ = models["topdown"]
    video_path, detection_file = video
    out = tmp_path / "demo"
    result = run_demo(repo_root, "--cfg", cfg_file, "--video-file", video_path, "--output-dir", out,
                      "--inference-fps", "5", "--vis-threshold", "0", "--boxes", detection_file,
                      "--write-frames", *common_opts(cfg.DATASET.ROOT, tmp_path, checkpoint),
                      *opts)
    assert result.returncode == 0, result.stderr
    # 10 fps subsampled to 5: every second frame.
    poses = check_demo_outputs(out, [0, 2, 4], [0.0, 0.2, 0.4])
    assert poses["frame_step"] == 2 and poses["output_fps"] == pytest.approx(5.0)
    persons = [p for f in poses["frames"] for p in f["persons"]]
    assert persons and all(p["bbox"] != LOW_BOX[:4] for p in persons)
    # The demo's poses of a frame are the API's on the decoded frame with that frame's boxes.
    predictor = PosePredictor.from_config(cfg, checkpoint, "cpu",
                                          box_source=DetectionFile(str(detection_file)))
    expected = predictor(read_frames(video_path)[0][2], image_id=2)
    assert_same_poses(expected, poses["frames"][1]["persons"])


def test_video_demo_bottom_up_writes_maps(repo_root, models, video, tmp_path):
    cfg_file, cfg, checkpoint, opts, _ = models["bottomup"]
    out = tmp_path / "demo"
    result = run_demo(repo_root, "--cfg", cfg_file, "--video-file", video[0], "--output-dir", out,
                      "--inference-fps", "0", "--vis-threshold", "0", "--write-frames",
                      "--write-maps",
                      *common_opts(cfg.DATASET.ROOT, tmp_path, checkpoint), *opts)
    assert result.returncode == 0, result.stderr
    frames = list(range(NUM_VIDEO_FRAMES))
    poses = check_demo_outputs(out, frames, [i / VIDEO_FPS for i in frames])
    assert any(f["persons"] for f in poses["frames"])
    maps = sorted(os.listdir(out / "maps"))
    assert maps[:2] == ["frame_00000000_heatmap.jpg", "frame_00000000_tags.jpg"]
    assert len(maps) == 2 * NUM_VIDEO_FRAMES
    assert cv2.imread(str(out / "maps" / maps[0])).shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)


def test_image_folder_demo_writes_a_csv_with_frame_numbers(models, data, tmp_path):
    _, cfg, checkpoint, _, by_image = models["bottomup"]
    predictor = PosePredictor.from_config(cfg, checkpoint, "cpu")
    outputs = run_inference_demo(predictor, ImageSource(str(data / "images" / "val")),
                                 str(tmp_path / "out"), visualization_threshold=0.0,
                                 output_format="csv")
    assert outputs.video_file is None and outputs.num_frames == 2
    with open(outputs.poses_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(map(len, by_image.values()))
    first = by_image[min(by_image)][0]
    assert rows[0]["frame"] == "0" and rows[0]["timestamp"] == ""
    assert float(rows[0]["nose_x"]) == pytest.approx(first["keypoints"][0], abs=1e-9)
    assert len(os.listdir(outputs.frames_dir)) == 2


@pytest.mark.parametrize("case", ["missing", "unreadable", "no-boxes"])
def test_video_demo_errors_are_one_clear_line(repo_root, models, video, tmp_path, case):
    cfg_file, cfg, checkpoint, opts, _ = models["topdown"]
    video_path, expected = {
        "missing": (tmp_path / "nowhere.mp4", ("video file not found", "nowhere.mp4")),
        "unreadable": (tmp_path / "notes.mp4", ("cannot open video", "notes.mp4")),
        "no-boxes": (video[0], ("needs person boxes", "--boxes", "--detector-weights")),
    }[case]
    if case == "unreadable":
        video_path.write_text("not a video\n")
    result = run_demo(repo_root, "--cfg", cfg_file, "--video-file", video_path,
                      "--output-dir", tmp_path / "demo",
                      *common_opts(cfg.DATASET.ROOT, tmp_path, checkpoint), *opts)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(text in errors[0] for text in expected), result.stderr


def test_pose_file_writes_non_finite_values_as_null(tmp_path):
    """A diverged model's NaN keypoints must not put the non-standard NaN token in the file."""
    from hrpose.apis.pose_file import write_pose_file

    records = [{"frame": 0, "persons": [{"keypoints": np.array([[1.0, np.nan, np.inf]]),
                                         "score": np.float32(0.5)}]}]
    path = write_pose_file(str(tmp_path / "poses.json"), records, {"keypoint_names": ["nose"]},
                           "json")

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    payload = json.loads(Path(path).read_text(), parse_constant=refuse)
    assert payload["frames"][0]["persons"][0]["keypoints"] == [[1.0, None, None]]
    assert payload["frames"][0]["persons"][0]["score"] == 0.5
