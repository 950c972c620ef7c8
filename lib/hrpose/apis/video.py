"""The inference demo's run loop: frames -> poses -> annotated video, frames and one pose file.

Frame sources (apis.frames) yield ``Frame`` records (BGR picture, frame number, timestamp); a
video is subsampled as the originals' demo did (every round(video fps / inference fps)-th frame).
``run_inference_demo`` runs a PosePredictor over a source and writes, under an output folder:

- ``<name>_pose.mp4``: the annotated frames (codec mp4v) at the rate they were sampled, for a
  video or camera (images of any sizes are written as annotated images instead);
- ``frames/``: each annotated frame as a JPEG (``--write-frames``; always for images);
- ``maps/``: per frame, the heatmaps blended over the picture and the tag map (bottom-up models);
- ``<name>_poses.json`` (or ``.csv``; apis.pose_file): every processed frame with its frame
  number and timestamp (seconds) and its persons as COCO keypoint result entries plus the box.

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
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..utils.io import temporary_sibling
from ..utils.vis import save_image
from .annotate import draw_persons, write_map_images
from .frames import FALLBACK_FPS, Frame, FrameSource
from .pose_file import OUTPUT_FORMATS, write_pose_file
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
DEFAULT_VISUALIZATION_THRESHOLD = 0.3


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
                drawn = draw_persons(frame.image, persons, info,
                                     draw_boxes=not predictor.bottom_up, track_ids=track_ids)
                if video is not None:
                    video.write(drawn)
                name = _frame_file_name(frame, used_names)
                if frames_dir is not None:
                    path = os.path.join(frames_dir, f"{name}.jpg")
                    save_image(path, drawn)
                    frame_files.append(path)
                if maps_dir is not None:
                    write_map_images(maps_dir, name, frame.image, prediction.maps)
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
