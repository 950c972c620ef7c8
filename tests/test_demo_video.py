"""The demo's video step: a video of the synthetic val images, detections keyed by frame, and the
trained model's annotated video (here a random narrow top-down model) on it."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrpose.apis import demo
from hrpose.apis.boxes import DEFAULT_BOX_THRESHOLD
from hrpose.apis.demo import annotate_video, trained_checkpoint, write_demo_video
from hrpose.config import load_config
from hrpose.datasets.synthetic import DETECTION_FILE, generate_synthetic_dataset
from hrpose.errors import DataError
from hrpose.models import build_model
from hrpose.utils.checkpoint import CheckpointError, save_checkpoint_atomic
from video_frames import read_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
TOPDOWN_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
TOPDOWN_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]"]
NUM_VAL = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_demo_video")
    generate_synthetic_dataset(str(root), num_train=2, num_val=NUM_VAL, seed=1, min_size=140,
                               max_size=176)
    annotations = json.loads((root / "annotations" / "person_keypoints_val.json").read_text())
    return root, annotations["images"]


def paths_of(root):
    return (str(root / "annotations" / "person_keypoints_val.json"), str(root / "images" / "val"),
            str(root / DETECTION_FILE))


def even(value):
    return value + value % 2


@pytest.fixture(scope="module")
def video(data, tmp_path_factory):
    root, _ = data
    annotations, images_dir, detections = paths_of(root)
    return write_demo_video(annotations, images_dir, str(tmp_path_factory.mktemp("video")),
                            detections)


def test_video_pads_every_val_image_onto_one_canvas(data, video):
    root, images = data
    # Fewer val images than the default 24 frames: one frame per image, in file order.
    assert video.image_ids == [image["id"] for image in images]
    widths, heights = [image["width"] for image in images], [image["height"] for image in images]
    assert len(set(widths)) > 1 or len(set(heights)) > 1  # the padding is exercised
    size = (even(max(widths)), even(max(heights)))
    assert video.size == size
    assert video.video_file.endswith(os.path.join("synthetic_val.mp4"))
    frames, fps = read_frames(video.video_file)
    assert len(frames) == NUM_VAL and fps == pytest.approx(demo.DEMO_VIDEO_FPS)
    for frame, image in zip(frames, images):
        assert frame.shape == (size[1], size[0], 3)
        picture = cv2.imread(str(root / "images" / "val" / image["file_name"]))
        height, width = picture.shape[:2]
        # Not resized: the picture sits unscaled in the top-left corner (up to mp4v's loss) ...
        difference = np.abs(frame[:height, :width].astype(int) - picture.astype(int))
        assert difference.mean() < 12
        # ... and the rest is the neutral padding colour.
        padding = np.concatenate([frame[height:].reshape(-1, 3), frame[:, width:].reshape(-1, 3)])
        if len(padding):
            assert np.abs(padding.astype(int) - demo.PAD_COLOUR).mean() < 12
    assert not [name for name in os.listdir(os.path.dirname(video.video_file))
                if name.startswith(".")]


def test_detections_are_keyed_by_frame_with_unchanged_boxes(data, video):
    root, _ = data
    original = json.loads((root / DETECTION_FILE).read_text())
    keyed = json.loads(Path(video.detection_file).read_text())
    expected = [{**entry, "image_id": frame} for frame, image_id in enumerate(video.image_ids)
                for entry in original if entry["image_id"] == image_id]
    assert keyed == expected
    assert {entry["image_id"] for entry in keyed} == set(range(NUM_VAL))


def test_the_first_frames_only_and_no_detection_file_for_bottom_up(data, tmp_path):
    root, images = data
    annotations, images_dir, _ = paths_of(root)
    short = write_demo_video(annotations, images_dir, str(tmp_path), num_frames=2, name="short")
    assert short.image_ids == [image["id"] for image in images[:2]]
    assert short.detection_file is None
    assert len(read_frames(short.video_file)[0]) == 2
    assert sorted(os.listdir(tmp_path)) == ["short.mp4"]


def test_a_writer_that_does_not_open_is_a_clear_error(data, tmp_path, monkeypatch):
    class ClosedWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(demo.cv2, "VideoWriter", ClosedWriter)
    annotations, images_dir, detections = paths_of(data[0])
    with pytest.raises(DataError, match="cannot write the demo video .*synthetic_val.mp4"):
        write_demo_video(annotations, images_dir, str(tmp_path), detections)
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_trained_checkpoint_prefers_the_best_model(tmp_path):
    with pytest.raises(CheckpointError, match="model_best.pth or final_state.pth"):
        trained_checkpoint(str(tmp_path))
    (tmp_path / "final_state.pth").write_bytes(b"")
    assert trained_checkpoint(str(tmp_path)) == str(tmp_path / "final_state.pth")
    (tmp_path / "model_best.pth").write_bytes(b"")
    assert trained_checkpoint(str(tmp_path)) == str(tmp_path / "model_best.pth")


def test_top_down_model_annotates_every_frame_with_the_frame_boxes(data, video, tmp_path):
    root, _ = data
    opts = ["DATASET.ROOT", str(root), "OUTPUT_DIR", str(tmp_path / "output"),
            "LOG_DIR", str(tmp_path / "log"), "DEVICE", "cpu", "WORKERS", "0", *TOPDOWN_OPTS]
    cfg = load_config(str(REPO_ROOT / TOPDOWN_CFG), opts)
    torch.manual_seed(0)
    checkpoint = tmp_path / "output" / "final_state.pth"
    checkpoint.parent.mkdir(parents=True)
    save_checkpoint_atomic(build_model(cfg, is_train=True).state_dict(), str(checkpoint))

    out = tmp_path / "annotated"
    outputs = annotate_video(cfg, trained_checkpoint(str(checkpoint.parent)), video.video_file,
                             str(out), video.detection_file, visualization_threshold=0.0)
    assert outputs.video_file == str(out / "synthetic_val_pose.mp4")
    assert outputs.poses_file == str(out / "synthetic_val_poses.json")
    frames, fps = read_frames(outputs.video_file)
    assert len(frames) == NUM_VAL and fps == pytest.approx(demo.DEMO_VIDEO_FPS)
    assert frames[0].shape == (video.size[1], video.size[0], 3)

    poses = json.loads(Path(outputs.poses_file).read_text())
    assert [f["frame"] for f in poses["frames"]] == list(range(NUM_VAL))
    assert poses["frame_step"] == 1 and poses["num_frames"] == NUM_VAL
    boxes = json.loads(Path(video.detection_file).read_text())
    for record in poses["frames"]:
        frame_boxes = [entry["bbox"] for entry in boxes if entry["image_id"] == record["frame"]
                       and entry["score"] >= DEFAULT_BOX_THRESHOLD]
        # Each person comes from one of this frame's boxes, in the frame's own coordinates.
        assert all(person["image_id"] == record["frame"] for person in record["persons"])
        assert all(any(person["bbox"] == pytest.approx(box) for box in frame_boxes)
                   for person in record["persons"])
    assert sum(len(record["persons"]) for record in poses["frames"]) > 0
