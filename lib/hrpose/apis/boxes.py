"""Person boxes for top-down models: a COCO-format detection file, or torchvision's Faster R-CNN.

A box source is a callable ``source(image, image_id) -> (N, 5) float64`` of rows
x, y, w, h, score in image pixels, already filtered by its score threshold. ``image`` is the
HxWx3 uint8 BGR picture (as OpenCV reads it) and ``image_id`` the key a detection file is
indexed by: a COCO image id, or for a video the frame index (0-based, counted over every frame
of the file, skipped ones included). Nothing is downloaded: the detector's weights are a file
the user supplies.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..config.model_extras import is_bottom_up
from ..datasets.coco_format import read_person_detections
from ..errors import DataError, DataFileNotFoundError
from ..utils.checkpoint import extract_state_dict, load_checkpoint_file, load_state_dict_strict

logger = logging.getLogger(__name__)

BoxSource = Callable[[np.ndarray, "int | None"], np.ndarray]

PERSON_CATEGORY_ID = 1  # 'person' in COCO detection results and in torchvision's COCO labels
DEFAULT_BOX_THRESHOLD = 0.5
DETECTOR_WEIGHTS_DIR = os.path.join("models", "pytorch", "detection")
# The file name under which torchvision publishes the COCO weights of fasterrcnn_resnet50_fpn.
DETECTOR_WEIGHTS_FILE = "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
BOX_COLUMNS = 5


def empty_boxes() -> np.ndarray:
    return np.zeros((0, BOX_COLUMNS), dtype=np.float64)


def as_box_array(boxes, default_score: float = 1.0) -> np.ndarray:
    """(N, 4) x, y, w, h boxes, optionally with a score column, as (N, 5) float64.

    A single box may be given as a flat sequence; boxes without a score get default_score;
    boxes with a width or height that is not positive are dropped (no crop can be cut from them).
    """
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return empty_boxes()
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] not in (4, BOX_COLUMNS):
        raise DataError(f"person boxes must be an (N, 4) array of x, y, w, h or (N, 5) with a "
                        f"score column; got shape {np.shape(boxes)}")
    if not np.isfinite(array).all():
        raise DataError("person boxes contain NaN or infinite values")
    if array.shape[1] == 4:
        array = np.concatenate([array, np.full((len(array), 1), default_score)], axis=1)
    return array[(array[:, 2] > 0) & (array[:, 3] > 0)]


class DetectionFile:
    """Person boxes from a COCO-format detection results file.

    The file holds a JSON list of {image_id, bbox: [x, y, w, h], score, category_id} entries
    (score defaults to 1, category_id to person; other categories are ignored); entries scoring
    below score_threshold are dropped. For a video, image_id is the frame index.
    """

    def __init__(self, path: str, score_threshold: float = DEFAULT_BOX_THRESHOLD):
        self.path = path
        self.score_threshold = score_threshold
        detections = read_person_detections(path, "a COCO-format detection results JSON: a "
                                                  "list of {image_id, bbox, score, category_id} "
                                                  "entries")
        by_image: dict[int, list[list[float]]] = defaultdict(list)
        for detection in detections:
            if detection["score"] >= score_threshold:
                by_image[detection["image_id"]].append([*detection["bbox"], detection["score"]])
        total = len(detections)
        self._boxes = {image_id: as_box_array(rows) for image_id, rows in by_image.items()}
        kept = sum(len(rows) for rows in self._boxes.values())
        degenerate = sum(len(rows) for rows in by_image.values()) - kept
        if degenerate:
            logger.warning("skipped %d person boxes of '%s' with zero or negative width or "
                           "height", degenerate, path)
        logger.info("%d of %d person boxes in %s score >= %s (%d images or frames)", kept, total,
                    path, score_threshold, len(self._boxes))

    @property
    def image_ids(self) -> list[int]:
        """The ids (frame indices) with at least one kept box, sorted."""
        return sorted(self._boxes)

    def __call__(self, image: np.ndarray | None, image_id: int | None) -> np.ndarray:
        if image_id is None:
            raise DataError(f"boxes from the detection file '{self.path}' are looked up by image "
                            f"id (or frame index); none was given")
        return self._boxes.get(int(image_id), empty_boxes()).copy()


def missing_weights_message(path: str) -> str:
    return (f"person detector weights not found: '{path}'. The top-down demo needs torchvision's "
            f"COCO Faster R-CNN ResNet-50-FPN weights ({DETECTOR_WEIGHTS_FILE}, "
            f"FasterRCNN_ResNet50_FPN_Weights.COCO_V1 in torchvision); download the file on a "
            f"machine with internet access, put it under {DETECTOR_WEIGHTS_DIR}/ and pass "
            f"--detector-weights {os.path.join(DETECTOR_WEIGHTS_DIR, DETECTOR_WEIGHTS_FILE)} "
            f"(nothing is downloaded at run time), or give boxes with --boxes detections.json")


class TorchvisionPersonDetector:
    """Person boxes from a torchvision detection model (by default Faster R-CNN ResNet-50-FPN).

    The model takes RGB float images in [0, 1] and returns {boxes (x1, y1, x2, y2), labels,
    scores}; persons (label 1) scoring at least score_threshold are kept. Build it from a weights
    file with ``from_weights``; the constructor takes any model with that interface.
    """

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu",
                 score_threshold: float = DEFAULT_BOX_THRESHOLD):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.score_threshold = score_threshold

    @classmethod
    def from_weights(cls, path: str, device: torch.device | str = "cpu",
                     score_threshold: float = DEFAULT_BOX_THRESHOLD) -> "TorchvisionPersonDetector":
        """fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) with a user's weights file
        (a state dict, loaded strictly on the CPU with weights_only=True)."""
        if not path or not os.path.isfile(path):
            raise DataFileNotFoundError(missing_weights_message(path))
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        source = f"detector weights '{path}'"
        load_state_dict_strict(model, extract_state_dict(load_checkpoint_file(path), source),
                               source)
        logger.info("person detector: Faster R-CNN ResNet-50-FPN from %s", path)
        return cls(model, device, score_threshold)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_id: int | None = None) -> np.ndarray:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0).to(self.device)
        output = self.model([tensor])[0]
        boxes = output["boxes"].detach().cpu().numpy().astype(np.float64)
        labels = output["labels"].detach().cpu().numpy()
        scores = output["scores"].detach().cpu().numpy().astype(np.float64)
        keep = (labels == PERSON_CATEGORY_ID) & (scores >= self.score_threshold)
        if not keep.any():
            return empty_boxes()
        boxes, scores = boxes[keep], scores[keep]
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        return as_box_array(np.concatenate([xywh, scores[:, None]], axis=1))


def person_box_source(cfg: CfgNode, detections: str | None = None,
                      detector_weights: str | None = None,
                      score_threshold: float = DEFAULT_BOX_THRESHOLD,
                      device: torch.device | str = "cpu") -> BoxSource | None:
    """The box source a command line asks for: None for a bottom-up model (it needs no boxes),
    a DetectionFile for detections, a TorchvisionPersonDetector for detector_weights; a top-down
    model with neither is an error that says what to pass."""
    if is_bottom_up(cfg.MODEL.NAME):
        if detections or detector_weights:
            logger.warning("%s is a bottom-up model: person boxes are not used", cfg.MODEL.NAME)
        return None
    if detections and detector_weights:
        raise DataError("give person boxes either from a detection file (--boxes) or from the "
                        "detector (--detector-weights), not both")
    if detections:
        return DetectionFile(detections, score_threshold)
    if detector_weights:
        return TorchvisionPersonDetector.from_weights(detector_weights, device, score_threshold)
    raise DataError(f"{cfg.MODEL.NAME} is a top-down model and needs person boxes: pass "
                    f"--boxes detections.json (COCO-format detection results; for a video "
                    f"image_id is the frame index) or --detector-weights PATH (torchvision's "
                    f"Faster R-CNN weights {DETECTOR_WEIGHTS_FILE}, kept under "
                    f"{DETECTOR_WEIGHTS_DIR}/)")
