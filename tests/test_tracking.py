"""Video extras: the One-Euro filter, per-track smoothing, OKS tracking and their demo wiring."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from hrpose.apis.frames import VideoSource
from hrpose.apis.predictor import Person, Prediction
from hrpose.apis.tracking import (
    DEFAULT_BETA,
    DEFAULT_MIN_CUTOFF,
    OneEuroFilter,
    PoseTracker,
    TrackSmoother,
    match_by_oks,
    oks_matrix,
    one_euro_alpha,
)
from hrpose.apis.video import run_inference_demo
from hrpose.config import load_config
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.models import build_model
from hrpose.utils.checkpoint import save_checkpoint_atomic

COCO = get_keypoint_info("coco")
FPS = 30.0


def run_filter(one_euro, signal, fps=FPS, masks=None):
    """The filter's outputs for signal[t] fed at t / fps seconds."""
    masks = [None] * len(signal) if masks is None else masks
    return np.stack([one_euro(value, t / fps, mask)
                     for t, (value, mask) in enumerate(zip(signal, masks))])


# ---------------------------------------------------------------------------- One-Euro filter

def test_alpha_is_that_of_an_exponential_filter_with_the_cutoff_time_constant():
    # tau = 1 / (2 pi f): a step of dt = tau gives alpha 1 / 2.
    assert one_euro_alpha(1.0 / (2 * math.pi), 1.0) == pytest.approx(0.5)
    assert one_euro_alpha(1.0, 1.0 / FPS) == pytest.approx(1 / (1 + FPS / (2 * math.pi)))


def test_a_constant_signal_is_kept_and_a_step_to_a_constant_is_reached():
    constant = run_filter(OneEuroFilter(), np.full((50, 17, 2), 7.5))
    np.testing.assert_array_equal(constant, 7.5)
    step = run_filter(OneEuroFilter(), np.concatenate([np.zeros((1, 2)), np.full((90, 2), 10.0)]))
    assert step[0] == pytest.approx([0.0, 0.0])
    assert 0.0 < step[1, 0] < 10.0                       # smoothed, not jumped
    assert np.all(np.diff(step[:, 0]) >= 0)              # no overshoot on the way
    assert abs(step[-1] - 10.0).max() < 1e-3             # 3 s at 30 frames/s


def test_noise_on_a_constant_loses_most_of_its_variance():
    rng = np.random.default_rng(0)
    noisy = 100.0 + rng.normal(0.0, 2.0, (600, 17, 2))
    settled = slice(60, None)
    strong = run_filter(OneEuroFilter(min_cutoff=0.5, beta=0.0), noisy)[settled]
    assert noisy[settled].var() / strong.var() > 10
    defaults = run_filter(OneEuroFilter(), noisy)[settled]
    assert noisy[settled].var() / defaults.var() > 3
    assert abs(defaults.mean() - 100.0) < 0.1            # unbiased


def test_elements_are_filtered_independently_as_by_scalar_filters():
    rng = np.random.default_rng(1)
    signal = rng.normal(0.0, 5.0, (40, 3, 2)) + np.linspace(0, 80, 40)[:, None, None]
    masks = rng.random((40, 3, 2)) > 0.3
    together = run_filter(OneEuroFilter(1.0, 0.05), signal, masks=masks)
    for j in range(3):
        for c in range(2):
            alone = run_filter(OneEuroFilter(1.0, 0.05), signal[:, j, c], masks=masks[:, j, c])
            np.testing.assert_allclose(together[:, j, c], alone, rtol=0, atol=1e-12)


def test_a_ramp_is_followed_with_the_lag_of_its_cutoff_and_less_with_beta():
    speed = 100.0                                        # pixels per second
    ramp = speed * np.arange(120) / FPS
    lags = {}
    for beta in (0.0, DEFAULT_BETA):
        out = run_filter(OneEuroFilter(DEFAULT_MIN_CUTOFF, beta), ramp[:, None])[:, 0]
        lag = ramp - out
        assert np.all(lag >= -1e-9)
        assert np.all(np.diff(out) > 0)                  # always moving forwards
        # Steady state: the speed estimate is the slope, the lag speed / (2 pi cutoff).
        cutoff = DEFAULT_MIN_CUTOFF + beta * speed
        assert lag[-1] == pytest.approx(speed / (2 * math.pi * cutoff), rel=0.02)
        assert lag.max() <= speed / (2 * math.pi * DEFAULT_MIN_CUTOFF) + 1e-9
        lags[beta] = lag[-1]
    assert lags[DEFAULT_BETA] < lags[0.0] / 3


def test_a_timestamp_that_does_not_advance_changes_nothing():
    one_euro = OneEuroFilter()
    one_euro(np.array([0.0]), 0.0)
    first = one_euro(np.array([10.0]), 0.1)
    assert one_euro(np.array([50.0]), 0.1) == pytest.approx(first)
    assert one_euro(np.array([10.0]), 0.2) == pytest.approx(run_filter(
        OneEuroFilter(), np.array([[0.0], [10.0], [10.0]]), fps=10.0)[-1])


def test_bad_settings_are_refused():
    for settings in ({"min_cutoff": 0.0}, {"beta": -1.0}, {"d_cutoff": float("nan")}):
        with pytest.raises(ValueError):
            OneEuroFilter(**settings)


# ---------------------------------------------------------------------------- TrackSmoother

def test_low_confidence_joints_pass_through_and_leave_the_state_alone():
    rng = np.random.default_rng(2)
    poses = np.zeros((30, 17, 3))
    poses[:, :, :2] = 50.0 + rng.normal(0.0, 3.0, (30, 17, 2))
    poses[:, :, 2] = 0.9
    low = np.zeros(30, dtype=bool)
    low[[5, 6, 7, 20]] = True
    poses[low, 4, 2] = 0.05                              # joint 4 unsure in four frames
    poses[low, 4, :2] = 1000.0                           # ... and far off
    smoother = TrackSmoother()
    smoothed = np.stack([smoother([3], pose[None], t / FPS)[0] for t, pose in enumerate(poses)])
    np.testing.assert_array_equal(smoothed[low, 4], poses[low, 4])
    np.testing.assert_array_equal(smoothed[:, :, 2], poses[:, :, 2])   # scores untouched
    # Joint 4 in the other frames: as if the unsure frames had never been there.
    kept = np.flatnonzero(~low)
    reference = OneEuroFilter()
    expected = np.stack([reference(poses[t, 4, :2], t / FPS) for t in kept])
    np.testing.assert_allclose(smoothed[kept, 4, :2], expected, rtol=0, atol=1e-12)
    assert np.abs(smoothed[kept, 4, :2] - 50.0).max() < 20.0
    # Another joint is smoothed.
    assert np.std(smoothed[10:, 0, 0]) < np.std(poses[10:, 0, 0])


def test_each_track_has_its_own_filter_until_it_is_dropped():
    smoother = TrackSmoother()
    a, b = np.full((1, 17, 3), 10.0), np.full((1, 17, 3), 200.0)
    smoother([0, 1], np.concatenate([a, b]), 0.0)
    both = smoother([1, 0], np.concatenate([b + 5, a + 5]), 0.1)
    assert np.all(both[0, :, :2] > 200) and np.all(both[1, :, :2] < 15)
    smoother.retain([1])
    assert list(smoother.filters) == [1]
    restarted = smoother([0], a + 50, 0.2)
    np.testing.assert_array_equal(restarted, a + 50)     # a new filter: first value as is


# ---------------------------------------------------------------------------- PoseTracker

def person_pose(x, y, height=100.0, score=0.9):
    """A COCO-like pose: the 17 joints spread over a height x height / 2 box at (x, y)."""
    rng = np.random.default_rng(17)
    offsets = rng.random((17, 2)) * [height / 2, height]
    return np.concatenate([offsets + [x, y], np.full((17, 1), score)], axis=1)


def pose_box(pose):
    x0, y0 = pose[:, :2].min(axis=0)
    x1, y1 = pose[:, :2].max(axis=0)
    return [x0, y0, x1 - x0, y1 - y0]


def frame(*poses):
    return np.stack(poses), np.array([pose_box(p) for p in poses])


def test_oks_of_a_pose_with_itself_is_one_and_falls_with_distance():
    pose = person_pose(0, 0)
    area = np.prod(pose_box(pose)[2:])
    oks = oks_matrix(pose[None], [area], np.stack([pose, pose + [5, 0, 0], pose + [60, 0, 0]]),
                     np.full(3, area), COCO.sigmas_array)
    assert oks.shape == (1, 3)
    assert oks[0, 0] == pytest.approx(1.0) and 1.0 > oks[0, 1] > 0.3 > oks[0, 2]


def test_matching_maximises_the_total_oks_above_the_threshold():
    # Greedy would take (0, 0) and leave row 1 with 0.1; the assignment takes both 0.8+.
    assert sorted(match_by_oks([[0.9, 0.8], [0.85, 0.1]], 0.3)) == [(0, 1), (1, 0)]
    assert match_by_oks([[0.2, 0.1]], 0.3) == []
    assert match_by_oks(np.zeros((0, 2)), 0.3) == []


def test_two_persons_moving_smoothly_keep_their_ids_in_any_order():
    tracker = PoseTracker(COCO.sigmas_array)
    for t in range(10):
        a, b = person_pose(100 + 4 * t, 50 + t), person_pose(300 - 4 * t, 60)
        swapped = t % 3 == 2                                  # listed in either order
        ids = list(tracker.update(*(frame(b, a) if swapped else frame(a, b))))
        assert ids == ([1, 0] if swapped else [0, 1])
    assert sorted(tracker.track_ids) == [0, 1]


def test_a_new_person_gets_a_new_id_and_ids_are_never_reused():
    tracker = PoseTracker(COCO.sigmas_array, max_age=0)
    assert list(tracker.update(*frame(person_pose(100, 50)))) == [0]
    ids = tracker.update(*frame(person_pose(102, 50), person_pose(400, 50)))
    assert list(ids) == [0, 1]
    assert list(tracker.update(*frame(person_pose(400, 52)))) == [1]   # person 0 left
    assert list(tracker.update(*frame(person_pose(104, 50), person_pose(400, 54)))) == [2, 1]
    assert list(tracker.update(np.zeros((0, 17, 3)))) == []


def test_a_track_survives_max_age_missed_frames_and_is_dropped_after():
    tracker = PoseTracker(COCO.sigmas_array, max_age=2)
    tracker.update(*frame(person_pose(100, 50), person_pose(400, 50)))
    for _ in range(2):                                   # person 1 hidden for two frames
        tracker.update(*frame(person_pose(100, 50)))
    assert sorted(tracker.track_ids) == [0, 1]
    assert list(tracker.update(*frame(person_pose(100, 50), person_pose(402, 50)))) == [0, 1]
    for _ in range(3):                                   # hidden for three frames: dropped
        tracker.update(*frame(person_pose(100, 50)))
    assert tracker.track_ids == [0]
    assert list(tracker.update(*frame(person_pose(100, 50), person_pose(402, 50)))) == [0, 2]


def test_unsure_joints_do_not_count_and_boxless_poses_use_their_span():
    tracker = PoseTracker(COCO.sigmas_array)
    tracker.update(person_pose(100, 50)[None])           # no boxes: the joints' span
    moved = person_pose(101, 50)
    moved[:8, :2] += 500                                  # far off, but unsure
    moved[:8, 2] = 0.01
    assert list(tracker.update(moved[None])) == [0]
    assert list(tracker.update(person_pose(101, 50, score=0.01)[None])) == [1]   # nothing sure


# ---------------------------------------------------------------------------- the video demo

class MovingPersonsPredictor:
    """A stand-in PosePredictor: two persons walking across the frame, listed in either order,
    with jitter."""

    bottom_up = False
    keypoint_info = COCO
    cfg = SimpleNamespace(MODEL=SimpleNamespace(NAME="stub"))

    def __init__(self):
        self.rng = np.random.default_rng(5)

    def predict(self, image, image_id=0, keep_maps=False):
        persons = []
        for x, y in ((10 + 3 * image_id, 10), (120 - 3 * image_id, 30)):
            pose = person_pose(x, y, height=40.0)
            pose[:, :2] += self.rng.normal(0.0, 1.0, (17, 2))
            persons.append(Person(pose, 0.9, np.array(pose_box(pose))))
        return Prediction(persons[::-1] if image_id % 2 else persons)


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("tracking_video") / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 96))
    assert writer.isOpened()
    for index in range(6):
        writer.write(np.full((96, 160, 3), 40 * index, dtype=np.uint8))
    writer.release()
    return path


def test_demo_writes_track_ids_and_smoothed_poses(small_video, tmp_path):
    outputs = run_inference_demo(MovingPersonsPredictor(), VideoSource(str(small_video), 0),
                                 str(tmp_path / "tracked"), write_frames=True, smooth=True)
    poses = json.loads(Path(outputs.poses_file).read_text())
    assert poses["tracking"]["max_age"] >= 0 and poses["smoothing"]["beta"] == DEFAULT_BETA
    ids = [[p["track_id"] for p in f["persons"]] for f in poses["frames"]]
    assert ids == [[0, 1], [1, 0]] * 3
    raw = MovingPersonsPredictor()
    first = [p.keypoints for p in raw.predict(None, 0).persons]
    second = [p.keypoints for p in raw.predict(None, 1).persons]
    written = [np.reshape(p["keypoints"], (17, 3)) for p in poses["frames"][1]["persons"]]
    np.testing.assert_allclose(np.reshape(poses["frames"][0]["persons"][0]["keypoints"],
                                          (17, 3)), first[0])   # a first pose is kept as is
    assert not np.allclose(written[0], second[0])                 # later ones are smoothed
    np.testing.assert_array_equal(written[0][:, 2], second[0][:, 2])
    # The id labels are drawn: the frames differ from untracked ones.
    plain = run_inference_demo(MovingPersonsPredictor(), VideoSource(str(small_video), 0),
                               str(tmp_path / "plain"), write_frames=True, output_format="csv")
    assert not np.array_equal(cv2.imread(outputs.frame_files[0]),
                              cv2.imread(plain.frame_files[0]))
    with open(plain.poses_file, newline="") as handle:
        assert "track_id" not in next(csv.reader(handle))


def test_demo_csv_has_a_track_id_column(small_video, tmp_path):
    outputs = run_inference_demo(MovingPersonsPredictor(), VideoSource(str(small_video), 0),
                                 str(tmp_path / "out"), write_video=False, output_format="csv",
                                 track=True)
    with open(outputs.poses_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["track_id"] for row in rows[:4]] == ["0", "1", "1", "0"]
    assert rows[0]["person"] == "0" and rows[1]["person"] == "1"


TOPDOWN_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
TOPDOWN_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]"]


def test_demo_command_line_tracks_and_smooths(repo_root, small_video, tmp_path):
    opts = ["OUTPUT_DIR", str(tmp_path / "output"), "LOG_DIR", str(tmp_path / "log"),
            "DEVICE", "cpu", "WORKERS", "0", *TOPDOWN_OPTS]
    torch.manual_seed(0)
    model = build_model(load_config(str(repo_root / TOPDOWN_CFG), opts), is_train=True)
    checkpoint = tmp_path / "model.pth"
    save_checkpoint_atomic(model.state_dict(), str(checkpoint))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": i, "category_id": 1, "score": 0.9,
                                  "bbox": [10.0 + 5 * i, 10.0, 40.0, 70.0]} for i in range(3)]))
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "tools/inference_demo.py", "--cfg", TOPDOWN_CFG, "--video-file",
         str(small_video), "--output-dir", str(out), "--inference-fps", "0", "--vis-threshold", "0",
         "--boxes", str(boxes), "--max-frames", "3", "--smooth", "--smooth-beta", "0.05",
         *opts, "TEST.MODEL_FILE", str(checkpoint)],
        capture_output=True, text=True, cwd=repo_root, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    poses = json.loads((out / "walk_poses.json").read_text())
    persons = [p for f in poses["frames"] for p in f["persons"]]
    assert len(persons) == 3 and all(isinstance(p["track_id"], int) for p in persons)
    assert poses["smoothing"]["beta"] == 0.05
