"""PosePredictor: a trained model applied to one picture, with the validation loop's decoding.

    predictor = PosePredictor.from_config("experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
                                          "models/pytorch/pose_coco/pose_hrnet_w32_256x192.pth")
    persons = predictor(cv2.imread("people.jpg"), boxes=[[x, y, w, h, score], ...])

Pictures are HxWx3 uint8 arrays in OpenCV's BGR order (what cv2.imread and cv2.VideoCapture
give), or image file paths; they are turned into the channel order the model was trained with
(DATASET.COLOR_RGB). Top-down models need person boxes: passed in, or from the box source the
predictor was built with (apis.boxes); bottom-up models find the persons themselves and ignore
boxes. Crops, flip test, decoding, rescoring and OKS-NMS (top-down), the whole-image pipeline
and grouping (bottom-up) and the regression pipeline's "final" result with the rescore net of
RESCORE.* (keypoint-regression models) are the functions the validation loops call
(postprocess.topdown, postprocess.bottomup_inference, postprocess.regression, postprocess.rescore),
so a picture gives the poses tools/valid.py writes for it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..config import load_config
from ..config.model_extras import is_bottom_up, is_regression
from ..datasets.build import split_source
from ..datasets.metadata import KeypointInfo, get_keypoint_info
from ..datasets.topdown import normalize_image, read_image
from ..engine.backends import inference_model
from ..engine.device import IMAGE_MEMORY_FORMAT, select_device
from ..errors import DataError
from ..models import build_model
from ..postprocess.bottomup import PERSON_CATEGORY_ID, MultiScaleMaps, coco_keypoint_results
from ..postprocess.bottomup_inference import grouping_function, infer_image, test_params
from ..postprocess.regression import RegressionTestParams, infer_regression
from ..postprocess.rescore import load_rescorer
from ..postprocess.topdown import decode_poses, predict_heatmaps, select_poses
from ..utils.checkpoint import CheckpointError, load_model_weights
from ..utils.transforms import box_to_center_scale, get_affine_transform
from .boxes import BoxSource, as_box_array

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Person:
    """One person: keypoints (J, 3) float64 rows x, y, confidence in image pixels; score (the
    validation loop's person score); box (4,) x, y, w, h float64 in image pixels: the person box
    the pose came from (top-down), or the span of the keypoints as the results file writes it
    (bottom-up)."""

    keypoints: np.ndarray
    score: float
    box: np.ndarray = field(default_factory=lambda: np.zeros(4))

    def to_result(self, image_id: int = 0) -> dict:
        """A COCO keypoint result entry (plain Python numbers) with the box as 'bbox'."""
        return {"image_id": int(image_id), "category_id": PERSON_CATEGORY_ID,
                "keypoints": [float(v) for v in self.keypoints.reshape(-1)],
                "score": float(self.score), "bbox": [float(v) for v in self.box]}


class Prediction(NamedTuple):
    """The persons of a picture and, when asked for (bottom-up only), the maps they came from."""

    persons: list[Person]
    maps: MultiScaleMaps | None = None


def to_bgr_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An image path or array as an HxWx3 uint8 BGR array (grey and BGRA arrays are converted)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image), color_rgb=False)
    if not isinstance(image, np.ndarray):
        raise DataError(f"expected an image path or an HxWx3 uint8 array, got "
                        f"{type(image).__name__}")
    if image.dtype != np.uint8:
        raise DataError(f"expected a uint8 image (as cv2.imread gives), got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise DataError(f"expected an HxWx3 image, got shape {image.shape}")
    return image


def crop_person(image: np.ndarray, center: np.ndarray, scale: np.ndarray, image_size,
                convention: str) -> torch.Tensor:
    """The normalised 3xHxW network input of one box, cut as TopDownDataset cuts a test sample
    (no rotation): the affine crop of get_affine_transform, bilinear, black outside the image."""
    size = (int(image_size[0]), int(image_size[1]))
    matrix = get_affine_transform(center, scale, 0.0, size, convention)
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, size, flags=cv2.INTER_LINEAR)
    return normalize_image(crop)


def _float32(values: np.ndarray) -> np.ndarray:
    # The test loader hands centre, scale and box score over as float32; rounding the same way
    # gives exactly the validation loop's numbers.
    return np.asarray(values, dtype=np.float32).astype(np.float64)


class PosePredictor:
    """A pose model in eval mode on a device, run by TEST.BACKEND, with the test-time settings
    of its config."""

    def __init__(self, cfg: CfgNode, model: nn.Module, device: torch.device | str | None = None,
                 box_source: BoxSource | None = None):
        self.cfg = cfg
        self.device = select_device(cfg) if device is None else torch.device(device)
        model = model.to(self.device, memory_format=IMAGE_MEMORY_FORMAT)
        self.model = inference_model(cfg, model, self.device)
        self.box_source = box_source
        self.bottom_up = is_bottom_up(cfg.MODEL.NAME)
        self.regression = is_regression(cfg.MODEL.NAME)
        dataset_name = split_source(cfg, is_train=False)[0]
        self.keypoint_info: KeypointInfo = get_keypoint_info(dataset_name)
        if self.keypoint_info.num_keypoints != cfg.MODEL.NUM_JOINTS:
            raise DataError(f"MODEL.NUM_JOINTS is {cfg.MODEL.NUM_JOINTS} but dataset "
                            f"'{dataset_name}' has {self.keypoint_info.num_keypoints} keypoints")
        if self.regression:
            self._regression_params = RegressionTestParams.from_config(cfg, self.keypoint_info)
            # Loaded once here, as the validation loop loads it once per run.
            self._rescorer = load_rescorer(cfg, self.keypoint_info)
        elif self.bottom_up:
            self._pipeline, self._grouping = test_params(cfg, self.keypoint_info.flip_index)
            self._group = grouping_function(cfg)
        else:
            self._flip_index = self.keypoint_info.flip_index if cfg.TEST.FLIP_TEST else None
            self._aspect_ratio = cfg.MODEL.IMAGE_SIZE[0] / cfg.MODEL.IMAGE_SIZE[1]

    @classmethod
    def from_config(cls, cfg: CfgNode | str | os.PathLike, checkpoint_path: str | None = None,
                    device: torch.device | str | None = None,
                    box_source: BoxSource | None = None,
                    opts: list[str] | None = None) -> "PosePredictor":
        """Build the model of cfg (a frozen config, or an experiment YAML path plus KEY VALUE
        opts) and load checkpoint_path (default TEST.MODEL_FILE) strictly. device: default
        DEVICE's choice (CUDA when available under 'auto')."""
        if isinstance(cfg, (str, os.PathLike)):
            cfg = load_config(os.fspath(cfg), list(opts or []))
        elif opts:
            raise ValueError("opts apply to a config file path; merge them into a CfgNode first")
        path = checkpoint_path or cfg.TEST.MODEL_FILE
        if not path:
            raise CheckpointError("no model weights: pass a checkpoint path, or set "
                                  "TEST.MODEL_FILE to a .pth file (see models/README.md)")
        model = build_model(cfg, is_train=False)
        load_model_weights(model, path)
        return cls(cfg, model, device, box_source)

    def __call__(self, image: np.ndarray | str | os.PathLike, boxes=None,
                 image_id: int | None = None) -> list[Person]:
        """The persons in image; see predict."""
        return self.predict(image, boxes, image_id).persons

    def model_image(self, image: np.ndarray) -> np.ndarray:
        """A BGR picture in the channel order the model was trained with (DATASET.COLOR_RGB)."""
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if self.cfg.DATASET.COLOR_RGB else image

    @torch.no_grad()
    def predict(self, image: np.ndarray | str | os.PathLike, boxes=None,
                image_id: int | None = None, keep_maps: bool = False) -> Prediction:
        """The persons in a BGR picture (or an image file).

        boxes (top-down): (N, 4) x, y, w, h or (N, 5) with a detector score (which multiplies the
        person score); without them the box source is asked for the boxes of (image, image_id).
        Bottom-up models ignore boxes; keep_maps (bottom-up only) also returns the aggregated
        heatmaps and tags. Top-down persons are rescored and OKS-NMS'd as in validation and come
        in NMS order; bottom-up persons in the grouping's order.
        """
        image = to_bgr_image(image)
        if self.regression:
            if keep_maps:
                raise DataError(f"heatmap and tag-map images are made for associative-embedding "
                                f"models; {self.cfg.MODEL.NAME} is a keypoint-regression model")
            return Prediction(self._predict_regression(image, image_id))
        if self.bottom_up:
            return self._predict_bottom_up(image, image_id, keep_maps)
        if keep_maps:
            raise DataError(f"heatmap and tag-map images are made for bottom-up models; "
                            f"{self.cfg.MODEL.NAME} is top-down")
        if boxes is None:
            if self.box_source is None:
                raise DataError(f"{self.cfg.MODEL.NAME} is a top-down model: pass person boxes, "
                                f"or build the predictor with a box source (apis.boxes)")
            boxes = self.box_source(image, image_id)
        return Prediction(self._predict_top_down(image, as_box_array(boxes)))

    def _predict_top_down(self, image: np.ndarray, boxes: np.ndarray) -> list[Person]:
        if len(boxes) == 0:
            return []
        cfg = self.cfg
        picture = self.model_image(image)
        convention = cfg.DATASET.COORD_CONVENTION
        centers, scales = box_to_center_scale(boxes[:, :4], self._aspect_ratio, convention)
        batch_size = cfg.TEST.BATCH_SIZE_PER_GPU
        poses = []
        for start in range(0, len(boxes), batch_size):
            chunk = slice(start, start + batch_size)
            crops = torch.stack([crop_person(picture, center, scale, cfg.MODEL.IMAGE_SIZE,
                                             convention)
                                 for center, scale in zip(centers[chunk], scales[chunk])])
            crops = crops.to(self.device, memory_format=IMAGE_MEMORY_FORMAT)
            heatmaps = predict_heatmaps(self.model, crops, self._flip_index,
                                        cfg.TEST.SHIFT_HEATMAP)
            poses.append(decode_poses(cfg, heatmaps, _float32(centers[chunk]),
                                      _float32(scales[chunk])))
        poses = np.concatenate(poses)
        keep, scores = select_poses(cfg, poses, _float32(boxes[:, 4]), _float32(scales),
                                    np.zeros(len(poses), dtype=np.int64),
                                    self.keypoint_info.sigmas_array)
        return [Person(poses[i], float(scores[i]), boxes[i, :4].copy()) for i in keep]

    def _predict_regression(self, image: np.ndarray, image_id: int | None) -> list[Person]:
        final = infer_regression(self.model, self.model_image(image), self._regression_params,
                                 self.device, rescorer=self._rescorer).final
        return self._persons(final.poses, final.scores, image_id)

    def _persons(self, poses: np.ndarray, scores: np.ndarray,
                 image_id: int | None) -> list[Person]:
        """Persons as the results file writes them (box = the span of the keypoints)."""
        entries = coco_keypoint_results(poses, scores, 0 if image_id is None else image_id)
        return [Person(np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3),
                       entry["score"], np.asarray(entry["bbox"], dtype=np.float64))
                for entry in entries]

    def _predict_bottom_up(self, image: np.ndarray, image_id: int | None,
                           keep_maps: bool) -> Prediction:
        result = infer_image(self.cfg, self.model, self.model_image(image), self._pipeline,
                             self._grouping, self._group, self.device, keep_maps)
        prediction = result.prediction
        persons = self._persons(prediction.poses, prediction.scores, image_id)
        return Prediction(persons, result.maps if keep_maps else None)
