"""Frame sources of the inference demo: a video file, a camera or images, as Frame records."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..datasets.images import native_stderr_silenced, read_image
from ..errors import DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_INFERENCE_FPS = 10.0
# Output rate of a video writer when the source does not report its frame rate.
FALLBACK_FPS = 25.0


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
            logger.info("%s runs at %.2f fps, below --inference-fps %.2f: every frame is used",
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
