"""The synthetic-data demo: make the data if needed, train, validate, draw predictions, and run the
trained model on a short video made from the validation images."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np
from yacs.config import CfgNode

from ..config.model_extras import is_bottom_up
from ..datasets.build import split_source
from ..datasets.coco_format import annotation_file, image_folder, load_coco_file
from ..datasets.metadata import get_keypoint_info
from ..datasets.synthetic import (
    DETECTION_FILE,
    generate_synthetic_dataset,
    synthetic_dataset_exists,
)
from ..datasets.topdown import read_image
from ..engine.device import select_device
from ..engine.run_dir import RunPaths
from ..engine.trainer import BEST_MODEL_NAME, FINAL_MODEL_NAME, train
from ..errors import DataError
from ..evaluation.results import load_keypoint_results
from ..utils.checkpoint import CheckpointError
from ..utils.io import atomic_path, atomic_write, read_json
from ..utils.render import render_results
from .boxes import DEFAULT_BOX_THRESHOLD, person_box_source
from .frames import open_frame_source
from .predictor import PosePredictor
from .video import DEFAULT_VISUALIZATION_THRESHOLD, VIDEO_CODEC, DemoOutputs, run_inference_demo

logger = logging.getLogger(__name__)

DEMO_VIDEO_DIR = "demo_video"
DEMO_VIDEO_FRAMES = 24
DEMO_VIDEO_FPS = 4.0
# Mid grey (BGR) right and below the smaller pictures; it keeps their pixel coordinates.
PAD_COLOUR = (128, 128, 128)


@dataclass(frozen=True)
class DemoVideo:
    """A video of dataset images: the file, a detection file keyed by frame index (None when no
    detections were asked for), the image id shown in each frame, and the frame size (width,
    height)."""

    video_file: str
    detection_file: str | None
    image_ids: list[int]
    size: tuple[int, int]


@dataclass(frozen=True)
class DemoResult:
    """What run_demo produced: the best validation indicator, the images with predictions drawn,
    the demo video and the outputs of the trained model on it."""

    best: float
    drawn_images: list[str]
    video: DemoVideo
    inference: DemoOutputs

    @property
    def annotated_video(self) -> str | None:
        return self.inference.video_file

    @property
    def poses_file(self) -> str:
        return self.inference.poses_file


def ensure_synthetic_dataset(root: str, seed: int = 0) -> None:
    """Generate the default synthetic dataset under root unless a complete one is there."""
    if synthetic_dataset_exists(root):
        logger.info("synthetic dataset found at %s", root)
        return
    logger.info("generating the synthetic dataset at %s ...", root)
    summary = generate_synthetic_dataset(root, seed=seed, show_progress=True)
    logger.info("synthetic dataset written: %s", summary)


def _even(value: int) -> int:
    # MPEG-4 frames have even sides; an odd side would lose its last row or column.
    return value + value % 2


def pad_to_canvas(image: np.ndarray, size: tuple[int, int],
                  colour: tuple[int, int, int] = PAD_COLOUR) -> np.ndarray:
    """image in the top-left corner of a (width, height) canvas filled with colour."""
    width, height = size
    if image.shape[0] > height or image.shape[1] > width:
        raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image does not fit a "
                         f"{width}x{height} canvas")
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = colour
    canvas[:image.shape[0], :image.shape[1]] = image
    return canvas


def frame_detections(detection_file: str, image_ids: list[int]) -> list[dict]:
    """The entries of a COCO-format detection file for image_ids[frame], re-keyed by frame index
    (image_id = frame), in frame order and, within a frame, in file order; boxes unchanged."""
    entries = read_json(detection_file, "person detection",
                        "a COCO-format detection results JSON: a list of {image_id, bbox, score, "
                        "category_id} entries")
    if not isinstance(entries, list):
        raise DataError(f"detection file '{detection_file}' must hold a JSON list of {{image_id, "
                        f"bbox, score, category_id}} entries, not a {type(entries).__name__}")
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in image_ids}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image_id" not in entry:
            raise DataError(f"detection file '{detection_file}': entry {position} is not an "
                            f"{{image_id, bbox, score, category_id}} object")
        if entry["image_id"] in by_image:
            by_image[entry["image_id"]].append(entry)
    return [{**entry, "image_id": frame}
            for frame, image_id in enumerate(image_ids) for entry in by_image[image_id]]


def write_demo_video(annotation_path: str, images_dir: str, output_dir: str,
                     detection_file: str | None = None, num_frames: int = DEMO_VIDEO_FRAMES,
                     fps: float = DEMO_VIDEO_FPS, name: str = "synthetic_val") -> DemoVideo:
    """Write <output_dir>/<name>.mp4 (codec mp4v at fps): one frame per image of the annotation
    file, the first num_frames in file order, each padded right and below (never resized, so
    boxes keep their coordinates) onto one canvas as large as the largest of them (sides rounded
    up to even numbers). With detection_file, also write <output_dir>/<name>_detections.json: its
    entries for those images with image_id replaced by the frame index, as the top-down video
    demo looks boxes up. Both files appear complete or not at all."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    coco = load_coco_file(annotation_path)
    chosen = coco.dataset["images"][:num_frames]
    if not chosen:
        raise DataError(f"annotation file '{annotation_path}' lists no images to make a video of")
    images = [read_image(os.path.join(images_dir, entry["file_name"]), color_rgb=False)
              for entry in chosen]
    image_ids = [int(entry["id"]) for entry in chosen]
    size = (_even(max(image.shape[1] for image in images)),
            _even(max(image.shape[0] for image in images)))
    detections = frame_detections(detection_file, image_ids) if detection_file else None

    video_file = os.path.join(output_dir, f"{name}.mp4")
    written_detections = None
    with atomic_path(video_file, keep_suffix=True) as temporary:
        writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps, size)
        try:
            if not writer.isOpened():
                raise DataError(f"cannot write the demo video '{video_file}': cv2.VideoWriter "
                                f"with codec {VIDEO_CODEC} at {size[0]}x{size[1]} did not open "
                                f"(OpenCV built without FFmpeg, or the folder is not writable)")
            for image in images:
                writer.write(pad_to_canvas(image, size))
        finally:
            writer.release()
        if detections is not None:
            written_detections = os.path.join(output_dir, f"{name}_detections.json")
            with atomic_write(written_detections, "w") as handle:
                json.dump(detections, handle, allow_nan=False)
    logger.info("demo video: %d frames of %dx%d at %.1f fps in %s%s", len(images), size[0],
                size[1], fps, video_file,
                f"; {len(detections)} person boxes by frame in {written_detections}"
                if written_detections else "")
    return DemoVideo(video_file, written_detections, image_ids, size)


def trained_checkpoint(output_dir: str) -> str:
    """The model a training run left in output_dir: model_best.pth, else final_state.pth."""
    for name in (BEST_MODEL_NAME, FINAL_MODEL_NAME):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            return path
    raise CheckpointError(f"no trained model in '{output_dir}': expected {BEST_MODEL_NAME} or "
                          f"{FINAL_MODEL_NAME} (written by training)")


def annotate_video(cfg: CfgNode, checkpoint_path: str, video_file: str, output_dir: str,
                   detection_file: str | None = None,
                   box_threshold: float = DEFAULT_BOX_THRESHOLD,
                   visualization_threshold: float = DEFAULT_VISUALIZATION_THRESHOLD,
                   config_file: str = "") -> DemoOutputs:
    """Run the model of cfg with checkpoint_path on every frame of video_file, as
    tools/inference_demo.py does with --inference-fps 0: <output_dir>/<video name>_pose.mp4 and
    <video name>_poses.json. Top-down models take their boxes from detection_file (image_id =
    frame index); bottom-up models need none."""
    device = select_device(cfg)
    boxes = person_box_source(cfg, None if is_bottom_up(cfg.MODEL.NAME) else detection_file,
                              None, box_threshold, device)
    source = open_frame_source(video=video_file, inference_fps=0)
    try:
        predictor = PosePredictor.from_config(cfg, checkpoint_path, device, box_source=boxes)
    except BaseException:
        source.close()
        raise
    return run_inference_demo(predictor, source, output_dir, visualization_threshold,
                              config_file=config_file)


def demo_detection_file(cfg: CfgNode) -> str | None:
    """The person boxes of the test split for a top-down model (None for bottom-up): the
    TEST.COCO_BBOX_FILE validation used, else the synthetic dataset's detection file."""
    if is_bottom_up(cfg.MODEL.NAME):
        return None
    if cfg.TEST.COCO_BBOX_FILE:
        return cfg.TEST.COCO_BBOX_FILE
    name, root, _ = split_source(cfg, is_train=False)
    if name == "synthetic":
        return os.path.join(root, DETECTION_FILE)
    raise DataError(f"{cfg.MODEL.NAME} is a top-down model: the demo video needs person boxes "
                    f"from TEST.COCO_BBOX_FILE (a COCO-format detection file of the test split)")


def run_demo(cfg: CfgNode, paths: RunPaths, num_images: int = 8,
             num_video_frames: int = DEMO_VIDEO_FRAMES, config_file: str = "") -> DemoResult:
    """Train cfg on the synthetic data, draw the final predictions on a few val images, then run
    the trained model on a video of the first val images (under <run>/demo_video/)."""
    if cfg.DATASET.DATASET == "synthetic":
        ensure_synthetic_dataset(cfg.DATASET.ROOT, seed=cfg.SEED)
    best = train(cfg, paths)
    name, root, image_set = split_source(cfg, is_train=False)
    results_file = os.path.join(paths.output_dir, "results", f"keypoints_{image_set}_results.json")
    annotations = annotation_file(name, root, image_set)
    coco = load_coco_file(annotations)
    folder = image_folder(name, root, image_set)
    image_paths = {image["id"]: os.path.join(folder, image["file_name"])
                   for image in coco.dataset["images"]}
    drawn = render_results(load_keypoint_results(results_file), image_paths,
                           get_keypoint_info(name), os.path.join(paths.output_dir, "demo_images"),
                           num_images)

    video_dir = os.path.join(paths.output_dir, DEMO_VIDEO_DIR)
    video = write_demo_video(annotations, folder, video_dir, demo_detection_file(cfg),
                             num_video_frames, name=f"{name}_{image_set}")
    checkpoint = trained_checkpoint(paths.output_dir)
    logger.info("running %s on the demo video", checkpoint)
    inference = annotate_video(cfg, checkpoint, video.video_file, video_dir,
                               video.detection_file, config_file=config_file)
    logger.info("annotated video %s; poses %s", inference.video_file, inference.poses_file)
    return DemoResult(best, drawn, video, inference)
