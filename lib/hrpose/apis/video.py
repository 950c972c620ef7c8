"""The inference demo: frames from a video, a camera or images -> poses -> annotated video, frames
and one pose file.

Frame sources yield ``Frame`` records (BGR picture, frame number, timestamp); a video is
subsampled as the originals' demo did (every round(video fps / inference fps)-th frame).
``run_inference_demo`` runs a PosePredictor over a source and writes, under an output folder:

- ``<name>_pose.mp4``: the annotated frames (codec mp4v) at the rate they were sampled, for a
  video or camera (images of any sizes are written as annotated images instead);
- ``frames/``: each annotated frame as a JPEG (``--write-frames``; always for images);
- ``maps/``: per frame, the heatmaps blended over the picture and the tag map (bottom-up models);
- ``<name>_poses.json`` (or ``.csv``): every processed frame with its frame number and timestamp
  (seconds) and its persons as COCO keypoint result entries plus the person box.

Two video extras, both off by default (apis.tracking): ``track`` gives every written person a
``track_id`` (OKS matching to the persons of the previous frames) and draws it in a colour of its
own; ``smooth`` (which turns tracking on) runs each track's joints through a One-Euro filter, so
the drawn and written keypoints are the smoothed ones.

An image that cannot be read among several is skipped with a warning naming it; the others'
outputs are written and the run then ends with a one-line ``SkippedImagesError``.

The pose file and the video are written under temporary names and renamed when complete, so an
error leaves no half-written output; Ctrl-C (the way to stop a camera) ends the run cleanly with
what was processed so far.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..datasets.images import native_stderr_silenced, read_image
from ..errors import DataError, DataFileNotFoundError
from ..evaluation.results import to_json_compatible
from ..postprocess.tag_maps import render_heatmap, render_tag_map, warp_to_image
from ..utils.io import atomic_write, temporary_sibling
from ..utils.vis import draw_poses, save_image
from .predictor import Person, PosePredictor
from .tracking import (
    DEFAULT_BETA,
    DEFAULT_MAX_AGE,
    DEFAULT_MIN_CUTOFF,
    DEFAULT_OKS_THRESHOLD,
    PoseTracker,
    TrackSmoother,
)

logger = logging.getLogger(__name__)

VIDEO_CODEC = "mp4v"
VIDEO_SUFFIX = ".mp4"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_INFERENCE_FPS = 10.0
DEFAULT_VISUALIZATION_THRESHOLD = 0.3
# Joints whose confidence is at or below this are not drawn.
KEYPOINT_DRAW_THRESHOLD = 0.2
# Output rate of a video writer when the source does not report its frame rate.
FALLBACK_FPS = 25.0
MAP_BLEND = 0.6  # weight of the rendered heatmap over the picture in maps/*_heatmap.jpg
OUTPUT_FORMATS = ("json", "csv")


@dataclass
class Frame:
    """One picture of a source: index = frame number in the video (every frame counted) or
    position in the image list; timestamp in seconds from the start (None for images);
    image_id = the key of a detection file (the frame number, or an image's numeric file stem);
    name = the image file for image sources."""

    index: int
    image: np.ndarray
    timestamp: float | None
    image_id: int
    name: str | None = None


def frame_step(video_fps: float, inference_fps: float) -> int:
    """Process every step-th frame: round(video fps / inference fps), as the originals' demo;
    1 when either rate is unknown or not positive, or the video is slower than asked for."""
    if not (math.isfinite(video_fps) and video_fps > 0) or inference_fps <= 0:
        return 1
    return max(1, round(video_fps / inference_fps))


class FrameSource:
    """Base of the frame sources: name (for output files), kind, frames per second of the
    sampled output (None for images), expected number of frames (None if unknown)."""

    kind = "images"
    name = "images"
    output_fps: float | None = None
    total: int | None = None
    video_fps: float | None = None
    step = 1

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def describe(self) -> dict:
        return {"source": self.name, "source_type": self.kind, "video_fps": self.video_fps,
                "frame_step": self.step}


class _CaptureSource(FrameSource):
    """Frames of an OpenCV capture, every step-th one, at most max_frames of them."""

    def __init__(self, capture: cv2.VideoCapture, what: str, inference_fps: float,
                 max_frames: int | None):
        self.capture = capture
        self.what = what
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.video_fps = fps if math.isfinite(fps) and fps > 0 else None
        self.step = frame_step(fps, inference_fps)
        if inference_fps > 0 and self.video_fps is not None and self.video_fps < inference_fps:
            logger.info("%s runs at %.2f fps, below --inferenceFps %.2f: every frame is used",
                        what, self.video_fps, inference_fps)
        rate = self.video_fps or (inference_fps if inference_fps > 0 else FALLBACK_FPS)
        self.output_fps = rate / self.step
        self.max_frames = max_frames
        self._first = self._read()
        if self._first is None:
            capture.release()
            raise DataError(f"{what} gave no frame that could be read (empty, or not a video "
                            f"OpenCV can decode)")

    def _read(self) -> np.ndarray | None:
        ok, image = self.capture.read()
        return image if ok and image is not None and image.size else None

    def _timestamp(self, index: int, started: float) -> float:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        index, emitted, started = 0, 0, time.monotonic()
        image = self._first   # frame 0, read when the source was opened
        self._first = None
        while self.max_frames is None or emitted < self.max_frames:
            if index % self.step == 0:
                image = self._read() if image is None else image
                if image is None:
                    break
                yield Frame(index, image, self._timestamp(index, started), index)
                emitted += 1
                image = None
            elif not self.capture.grab():   # a skipped frame: advance without decoding it
                break
            index += 1

    def close(self) -> None:
        self.capture.release()


class VideoSource(_CaptureSource):
    """The frames of a video file, every round(fps / inference_fps)-th one."""

    kind = "video"

    def __init__(self, path: str, inference_fps: float = DEFAULT_INFERENCE_FPS,
                 max_frames: int | None = None):
        if not os.path.isfile(path):
            raise DataFileNotFoundError(f"video file not found: '{path}'")
        with native_stderr_silenced():
            capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise DataError(f"cannot open video '{path}': OpenCV (FFmpeg) cannot decode it "
                            f"(expected a video file such as .mp4, .avi or .mov)")
        self.path = path
        self.name = Path(path).stem
        super().__init__(capture, f"video '{path}'", inference_fps, max_frames)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count > 0:
            self.total = math.ceil(count / self.step)
            if max_frames is not None:
                self.total = min(self.total, max_frames)

    def _timestamp(self, index: int, started: float) -> float:
        if self.video_fps:
            return index / self.video_fps
        return float(self.capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0

    def describe(self) -> dict:
        return {**super().describe(), "source": self.path}


class CameraSource(_CaptureSource):
    """Frames of a camera (OpenCV device index) until Ctrl-C or max_frames; timestamps are the
    seconds since the first frame."""

    kind = "camera"

    def __init__(self, index: int, inference_fps: float = DEFAULT_INFERENCE_FPS,
                 max_frames: int | None = None):
        # OpenCV crashes the process (segmentation fault) on a negative index.
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise DataError(f"camera index must be a non-negative integer (0 is the first "
                            f"camera), got {index!r}")
        index = int(index)
        with native_stderr_silenced():
            capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            raise DataError(f"cannot open camera {index} (no such device, or it is in use)")
        self.name = f"camera{index}"
        super().__init__(capture, f"camera {index}", inference_fps, max_frames)
        self.total = max_frames

    def _timestamp(self, index: int, started: float) -> float:
        return time.monotonic() - started

    def describe(self) -> dict:
        return {**super().describe(), "source": self.name}


def list_images(spec: str) -> list[str]:
    """The image files an --image argument names: a file, a folder (its images, sorted by name)
    or a .txt list (one path a line, relative to the list's folder; blank and '#' lines skipped).
    """
    if not os.path.exists(spec):
        raise DataFileNotFoundError(f"image, folder or list not found: '{spec}'")
    if os.path.isdir(spec):
        paths = [os.path.join(spec, name) for name in sorted(os.listdir(spec))
                 if name.lower().endswith(IMAGE_SUFFIXES)]
        if not paths:
            raise DataFileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder "
                                        f"'{spec}'")
        return paths
    if spec.lower().endswith(".txt"):
        folder = os.path.dirname(spec)
        with open(spec, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
        paths = [line if os.path.isabs(line) else os.path.join(folder, line)
                 for line in lines if line and not line.startswith("#")]
        if not paths:
            raise DataError(f"image list '{spec}' names no images")
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise DataFileNotFoundError(f"image list '{spec}' names {len(missing)} missing "
                                        f"file(s), first '{missing[0]}'")
        return paths
    return [spec]


class ImageSource(FrameSource):
    """Image files one by one; a numeric file stem (COCO's 000000000139.jpg) is the image id a
    detection file is looked up with, otherwise the position in the list.

    Of several images, one that cannot be read (missing, empty, corrupt) is skipped with a
    warning naming it, and listed in ``skipped`` as (path, reason); a single image raises.
    """

    kind = "images"

    def __init__(self, spec: str, max_frames: int | None = None):
        self.paths = list_images(spec)[:max_frames]
        self.total = len(self.paths)
        self.name = Path(spec.rstrip("/\\")).stem or "images"
        self.spec = spec
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = []
        for position, path in enumerate(self.paths):
            stem = Path(path).stem
            image_id = int(stem) if stem.isdigit() else position
            try:
                image = read_image(path, color_rgb=False)
            except DataError as error:
                if len(self.paths) == 1:
                    raise
                logger.warning("skipping image %d of %d: %s", position + 1, len(self.paths),
                               error)
                self.skipped.append((path, str(error)))
                continue
            yield Frame(position, image, None, image_id, path)

    def describe(self) -> dict:
        return {**super().describe(), "source": self.spec,
                "skipped_images": [path for path, _ in self.skipped]}


def open_frame_source(video: str | None = None, image: str | None = None,
                      camera: int | None = None, inference_fps: float = DEFAULT_INFERENCE_FPS,
                      max_frames: int | None = None) -> FrameSource:
    """The one source named by a video file, an image spec or a camera index."""
    given = [value is not None for value in (video, image, camera)]
    if sum(given) != 1:
        raise DataError("give exactly one input: a video file, images, or a camera index")
    if video is not None:
        return VideoSource(video, inference_fps, max_frames)
    if image is not None:
        return ImageSource(image, max_frames)
    return CameraSource(camera, inference_fps, max_frames)


class AnnotatedVideoWriter:
    """An mp4v video written under a temporary name and renamed to path by finish(); frames of
    another size than the first are resized to it."""

    def __init__(self, path: str, fps: float):
        self.path = path
        self.fps = fps
        # Unique, so two runs writing the same video never share a temporary file.
        self.temporary = str(temporary_sibling(path, keep_suffix=True))
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.writer = cv2.VideoWriter(self.temporary, cv2.VideoWriter_fourcc(*VIDEO_CODEC),
                                          self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise DataError(f"cannot write the video '{self.path}': cv2.VideoWriter with "
                                f"codec {VIDEO_CODEC} did not open (OpenCV without FFmpeg, or "
                                f"the folder is not writable); --write-frames writes JPEGs")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def finish(self) -> str | None:
        """Close the file and move it into place; None if no frame was written."""
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        os.replace(self.temporary, self.path)
        return self.path

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.temporary)


def csv_header(keypoint_names, tracked: bool = False) -> list[str]:
    columns = ["frame", "timestamp", "image", "person", *(["track_id"] if tracked else []),
               "score", "box_x", "box_y", "box_w", "box_h"]
    for name in keypoint_names:
        columns += [f"{name}_x", f"{name}_y", f"{name}_score"]
    return columns


def non_finite_as_null(value):
    """JSON-ready values with NaN and infinities as None: the pose file stays strict JSON (a
    diverged model's NaN keypoints read back as null, not as the non-standard NaN token)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: non_finite_as_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [non_finite_as_null(item) for item in value]
    return value


def write_pose_file(path: str, records: list[dict], header: dict, output_format: str) -> str:
    """The poses of every processed frame as JSON ({...header, frames: [...]}) or CSV (one row
    per person with its frame number and timestamp; frames without persons have no row; a
    track_id column when the header has 'tracking')."""
    if output_format == "json":
        payload = non_finite_as_null(to_json_compatible({**header, "frames": records}))
        with atomic_write(path, "w") as handle:
            json.dump(payload, handle, allow_nan=False)
        return path
    if output_format != "csv":
        raise DataError(f"unknown pose file format {output_format!r}; use one of "
                        f"{', '.join(OUTPUT_FORMATS)}")
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        tracked = "tracking" in header
        writer.writerow(csv_header(header["keypoint_names"], tracked))
        for record in records:
            timestamp = "" if record["timestamp"] is None else f"{record['timestamp']:.6f}"
            for number, person in enumerate(record["persons"]):
                row = [record["frame"], timestamp, record["image"] or "", number,
                       *([person["track_id"]] if tracked else []),
                       repr(person["score"]), *map(repr, person["bbox"])]
                row += [repr(value) for value in person["keypoints"]]
                writer.writerow(row)
    return path


class SkippedImagesError(DataError):
    """Some images of a folder or list could not be read; the others' outputs were written
    (``outputs``)."""

    def __init__(self, message: str, outputs: "DemoOutputs"):
        super().__init__(message)
        self.outputs = outputs


def skipped_images_message(skipped: list[tuple[str, str]], total: int, poses_file: str) -> str:
    """One line: how many images were skipped, the first one's reason, where the rest went."""
    first = skipped[0][1]
    return (f"{len(skipped)} of {total} images could not be read and were skipped (first: "
            f"{first}); the poses of the other {total - len(skipped)} are in '{poses_file}'")


@dataclass
class DemoOutputs:
    """What a demo run wrote and how fast it went."""

    poses_file: str
    video_file: str | None
    frames_dir: str | None
    maps_dir: str | None
    num_frames: int
    num_persons: int
    seconds: float
    frame_files: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("nan")


def _frame_file_name(frame: Frame, used: set[str]) -> str:
    if frame.name is None:
        return f"frame_{frame.index:08d}"
    stem = Path(frame.name).stem
    name = stem if stem not in used else f"{frame.index:06d}_{stem}"
    used.add(name)
    return name


def _write_maps(folder: str, name: str, image: np.ndarray, maps) -> None:
    size = (image.shape[1], image.shape[0])
    heat = warp_to_image(render_heatmap(maps.heatmaps), maps.center, maps.scale,
                         maps.heatmap_size, size)
    blended = cv2.addWeighted(heat, MAP_BLEND, image, 1.0 - MAP_BLEND, 0.0)
    tags = warp_to_image(render_tag_map(maps.heatmaps, maps.tags), maps.center, maps.scale,
                         maps.heatmap_size, size)
    save_image(os.path.join(folder, f"{name}_heatmap.jpg"), blended)
    save_image(os.path.join(folder, f"{name}_tags.jpg"), tags)


class PersonTracking:
    """The demo's --track / --smooth step: track ids for the persons of consecutive frames and,
    with smooth, their keypoints One-Euro filtered per track (apis.tracking).

    tracking(persons, timestamp) -> (persons, track ids): the persons are the same ones, or
    copies with smoothed keypoints (scores and boxes unchanged); timestamp in seconds.
    """

    def __init__(self, sigmas, smooth: bool = False, min_cutoff: float = DEFAULT_MIN_CUTOFF,
                 beta: float = DEFAULT_BETA, oks_threshold: float = DEFAULT_OKS_THRESHOLD,
                 max_age: int = DEFAULT_MAX_AGE):
        self.tracker = PoseTracker(sigmas, oks_threshold, max_age)
        self.smoother = TrackSmoother(min_cutoff, beta) if smooth else None

    def __call__(self, persons: list[Person], timestamp: float
                 ) -> tuple[list[Person], list[int]]:
        num_joints = self.tracker.sigmas.shape[0]
        poses = np.zeros((len(persons), num_joints, 3))
        boxes = np.zeros((len(persons), 4))
        for n, person in enumerate(persons):
            poses[n], boxes[n] = person.keypoints, person.box
        ids = self.tracker.update(poses, boxes)
        if self.smoother is not None:
            smoothed = self.smoother(ids, poses, timestamp)
            self.smoother.retain(self.tracker.track_ids)
            persons = [replace(person, keypoints=pose) for person, pose in zip(persons, smoothed)]
        return persons, [int(i) for i in ids]

    def describe(self) -> dict:
        """The settings, for the pose file's header."""
        tracker = self.tracker
        header = {"tracking": {"oks_threshold": tracker.oks_threshold,
                               "max_age": tracker.max_age,
                               "keypoint_threshold": tracker.keypoint_threshold}}
        if self.smoother is not None:
            header["smoothing"] = {"filter": "one_euro", "min_cutoff": self.smoother.min_cutoff,
                                   "beta": self.smoother.beta,
                                   "d_cutoff": self.smoother.d_cutoff,
                                   "keypoint_threshold": self.smoother.keypoint_threshold}
        return header


def _frame_time(frame: Frame, source: FrameSource) -> float:
    """The frame's timestamp in seconds; for images, its position at the source's (or the
    fallback) frame rate."""
    if frame.timestamp is not None:
        return frame.timestamp
    return frame.index / (source.output_fps or FALLBACK_FPS)


def run_inference_demo(predictor: PosePredictor, source: FrameSource, output_dir: str,
                       visualization_threshold: float = DEFAULT_VISUALIZATION_THRESHOLD,
                       write_video: bool = True, write_frames: bool = False,
                       write_maps: bool = False, output_format: str = "json",
                       config_file: str = "", track: bool = False, smooth: bool = False,
                       smooth_min_cutoff: float = DEFAULT_MIN_CUTOFF,
                       smooth_beta: float = DEFAULT_BETA) -> DemoOutputs:
    """Run predictor over source and write the outputs described in the module docstring.

    Persons scoring below visualization_threshold are neither drawn nor written. Image sources
    write annotated images (frames/) instead of a video. track: a track_id per person (JSON key,
    CSV column) drawn on the frames; smooth (implies track): One-Euro smoothing per track with
    smooth_min_cutoff (Hz) and smooth_beta (Hz per pixel/second).

    Images of a folder or list that cannot be read are skipped (``ImageSource``); the outputs of
    the others are written, then a ``SkippedImagesError`` that carries them says how many were
    skipped (a DataError: the tools exit with status 2, so that scripts notice).
    """
    if output_format not in OUTPUT_FORMATS:
        raise DataError(f"unknown pose file format {output_format!r}; use one of "
                        f"{', '.join(OUTPUT_FORMATS)}")
    if write_maps and not predictor.bottom_up:
        raise DataError(f"--write-maps draws the heatmaps and tag maps of bottom-up models; "
                        f"{predictor.cfg.MODEL.NAME} is top-down")
    is_images = source.kind == "images"
    write_frames = write_frames or is_images
    os.makedirs(output_dir, exist_ok=True)
    poses_file = os.path.join(output_dir, f"{source.name}_poses.{output_format}")
    frames_dir = os.path.join(output_dir, "frames") if write_frames else None
    maps_dir = os.path.join(output_dir, "maps") if write_maps else None
    video = None
    if write_video and not is_images:
        video = AnnotatedVideoWriter(os.path.join(output_dir, f"{source.name}_pose{VIDEO_SUFFIX}"),
                                     source.output_fps or FALLBACK_FPS)
    info = predictor.keypoint_info
    tracking = None
    if track or smooth:
        tracking = PersonTracking(info.sigmas_array, smooth, smooth_min_cutoff, smooth_beta)
    records: list[dict] = []
    frame_files: list[str] = []
    used_names: set[str] = set()
    num_persons = 0
    started = time.monotonic()
    bar = tqdm(total=source.total, unit="frame", desc="inference", dynamic_ncols=True,
               disable=not sys.stderr.isatty())
    try:
        try:
            for frame in source:
                prediction = predictor.predict(frame.image, image_id=frame.image_id,
                                               keep_maps=write_maps)
                persons = [p for p in prediction.persons if p.score >= visualization_threshold]
                track_ids = None
                if tracking is not None:
                    persons, track_ids = tracking(persons, _frame_time(frame, source))
                results = [p.to_result(frame.image_id) for p in persons]
                for result, track_id in zip(results, track_ids or []):
                    result["track_id"] = track_id
                records.append({"frame": frame.index, "timestamp": frame.timestamp,
                                "image": frame.name, "image_id": frame.image_id,
                                "persons": results})
                num_persons += len(persons)
                drawn = _draw(frame.image, persons, info, draw_boxes=not predictor.bottom_up,
                              track_ids=track_ids)
                if video is not None:
                    video.write(drawn)
                name = _frame_file_name(frame, used_names)
                if frames_dir is not None:
                    path = os.path.join(frames_dir, f"{name}.jpg")
                    save_image(path, drawn)
                    frame_files.append(path)
                if maps_dir is not None:
                    _write_maps(maps_dir, name, frame.image, prediction.maps)
                bar.update(1)
                bar.set_postfix(persons=len(persons))
        except KeyboardInterrupt:
            # Ctrl-C is how a camera run ends: keep what was processed.
            logger.info("interrupted: writing the %d frames processed so far", len(records))
        seconds = time.monotonic() - started
        skipped = getattr(source, "skipped", [])
        if skipped and not records:
            raise DataError(f"none of the {len(skipped)} images could be read (first: "
                            f"{skipped[0][1]})")
        header = {**source.describe(), "model": predictor.cfg.MODEL.NAME, "config": config_file,
                  "dataset": info.name, "keypoint_names": list(info.keypoint_names),
                  "skeleton": [list(pair) for pair in info.skeleton],
                  "output_fps": source.output_fps,
                  "visualization_threshold": visualization_threshold,
                  "num_frames": len(records),
                  **(tracking.describe() if tracking is not None else {})}
        video_file = video.finish() if video is not None else None
        write_pose_file(poses_file, records, header, output_format)
    except BaseException:
        if video is not None:
            video.abandon()
        raise
    finally:
        bar.close()
        source.close()
    outputs = DemoOutputs(poses_file, video_file, frames_dir, maps_dir, len(records),
                          num_persons, seconds, frame_files)
    logger.info("%d frames, %d persons in %.1f s (%.2f frames/s)", outputs.num_frames,
                outputs.num_persons, outputs.seconds, outputs.frames_per_second)
    if skipped:
        # Written but incomplete: the caller (and a script's exit status) must notice.
        raise SkippedImagesError(skipped_images_message(skipped, len(skipped) + len(records),
                                                        poses_file), outputs)
    return outputs


def track_color(track_id: int) -> tuple[int, int, int]:
    """A BGR colour per track id: hues a golden-ratio turn apart, so that ids close in number
    (tracks started close in time) get clearly different colours."""
    hue = int(round((track_id * 0.6180339887498949) % 1.0 * 180)) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)
    return tuple(int(c) for c in bgr[0, 0])


def _label_anchor(person: Person, draw_boxes: bool) -> tuple[int, int]:
    """Top-left corner of the person box (top-down) or of its drawn joints (bottom-up)."""
    if draw_boxes:
        return int(round(person.box[0])), int(round(person.box[1]))
    shown = person.keypoints[person.keypoints[:, 2] > KEYPOINT_DRAW_THRESHOLD]
    joints = shown if len(shown) else person.keypoints
    return int(round(joints[:, 0].min())), int(round(joints[:, 1].min()))


def _draw_track_label(canvas: np.ndarray, text: str, anchor: tuple[int, int],
                      color: tuple[int, int, int]) -> None:
    """The text in black on a box of the colour, above anchor (inside the picture)."""
    scale = max(0.35, max(canvas.shape[:2]) / 1000)
    thickness = max(1, int(round(scale * 1.5)))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                                thickness)
    x = min(max(anchor[0], 0), max(canvas.shape[1] - width - 2, 0))
    y = min(max(anchor[1], height + baseline + 2), canvas.shape[0] - 1)
    cv2.rectangle(canvas, (x, y - height - baseline - 2), (x + width + 2, y), color, -1)
    cv2.putText(canvas, text, (x + 1, y - baseline - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), thickness, cv2.LINE_AA)


def _draw(image: np.ndarray, persons: list[Person], info, draw_boxes: bool,
          track_ids: list[int] | None = None) -> np.ndarray:
    """The picture with the persons' skeletons and, for top-down models, their boxes; with
    track ids, each box in its track's colour and the id written at its top-left corner."""
    if not persons:
        return image.copy()
    poses = np.stack([person.keypoints for person in persons])
    canvas = draw_poses(image, poses, info, KEYPOINT_DRAW_THRESHOLD)
    for n, person in enumerate(persons):
        color = (0, 255, 0) if track_ids is None else track_color(track_ids[n])
        if draw_boxes:
            x, y, w, h = (int(round(v)) for v in person.box)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), color, 1)
        if track_ids is not None:
            _draw_track_label(canvas, str(track_ids[n]), _label_anchor(person, draw_boxes),
                              color)
    return canvas
