"""Pose rescoring (2020 paper's "joint shape and heat-value scoring"): feature, net, OKS targets.

docs/regression.md (rescore). A small network predicts, from a pose's shape and joint scores,
how good the pose is (its OKS with the ground truth); at test time its output multiplies the
person score. This module holds:

* ``rescore_feature``: poses (P, J, 3) in image pixels -> (P, 2L + L + J): the L limb vectors
  p[a] - p[b] flattened (dx0, dy0, dx1, dy1, ...), the L limb lengths, both divided by the mean
  length of the two torso limbs (at least 1), then the J joint scores. The limbs come from the
  dataset's metadata (``KeypointInfo.rescore_limbs``): 74 values for COCO, 59 for CrowdPose;
* ``apply_rescore_net`` / ``Rescorer``: net output (NaN -> 0) times the scores, the net loaded
  once by the caller;
* ``load_rescorer``: RESCORE.USE and RESCORE.MODEL_FILE -> a ``Rescorer`` (net of
  RESCORE.HIDDEN_LAYER hidden units, loaded strictly, in eval mode) or None;
* ``coco_oks`` and ``best_oks_per_detection``: the training targets, as the reference's COCOeval
  subclass records them (best OKS per detection, non-ignored ground truth first, no exclusivity),
  and ``rescore_samples`` for one image;
* ``write_rescore_data`` / ``read_rescore_data``: the training data as a plain .npz (poses and
  OKS), written atomically; ``rescore_training_arrays`` turns it into features and targets.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..errors import DataError, DataFileNotFoundError
from ..models.rescore_net import RescoreNet
from ..utils.checkpoint import (
    CheckpointError,
    extract_state_dict,
    load_checkpoint_file,
    load_state_dict_strict,
)
from ..utils.io import atomic_write

logger = logging.getLogger(__name__)

# A torso length below this (pixels) is replaced by it before normalising.
MIN_TORSO_LENGTH = 1.0
# COCOeval's keypoint area ranges (all, medium, large): its evaluateImg runs once per range, so
# the reference records every detection once per range.
COCO_AREA_RANGES = ((0.0, 1e10), (32.0 ** 2, 96.0 ** 2), (96.0 ** 2, 1e10))
# COCO keypoint evaluation keeps this many detections per image (maxDets[-1]).
MAX_DETECTIONS = 20
# The reference drops a target of exactly this OKS (a match to a person without labelled
# keypoints whose enlarged box holds every predicted joint) by setting it to 0.
DEGENERATE_OKS = 1.0
RESCORE_DATA_KEYS = ("poses", "oks")


# ------------------------------------------------------------------------------------------------
# The feature


def rescore_feature_size(num_joints: int, num_limbs: int) -> int:
    """Length of the rescore feature: 2 per limb vector, 1 per limb length, 1 per joint score."""
    return 3 * int(num_limbs) + int(num_joints)


def rescore_feature(poses: np.ndarray, limbs: Sequence[Sequence[int]],
                    torso_limbs: Sequence[int]) -> np.ndarray:
    """The rescore features (P, 3L + J) float32 of poses (P, J, >=3) (x, y, joint score).

    limbs: L pairs (a, b), limb vector p[a] - p[b]; torso_limbs: the indices of the two limbs
    whose mean length normalises the vectors and lengths (replaced by 1 when below 1). Layout:
    [dx0, dy0, dx1, dy1, ..., length0, ..., length(L-1), score0, ..., score(J-1)]. Computed in
    float64, returned float32.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[2] < 3:
        raise ValueError(f"poses must have shape (people, joints, 3) as x, y, score; "
                         f"got {poses.shape}")
    limbs = np.asarray(limbs, dtype=np.int64).reshape(-1, 2)
    torso = [int(i) for i in torso_limbs]
    if len(torso) != 2 or not all(0 <= i < len(limbs) for i in torso):
        raise ValueError(f"torso_limbs must be two indices into the {len(limbs)} limbs, "
                         f"got {tuple(torso_limbs)}")
    if limbs.size and (limbs.min() < 0 or limbs.max() >= poses.shape[1]):
        raise ValueError(f"a limb joint index is outside 0..{poses.shape[1] - 1}")
    vectors = poses[:, limbs[:, 0], :2] - poses[:, limbs[:, 1], :2]  # (P, L, 2)
    squared = vectors ** 2
    lengths = np.sqrt(squared[..., 0] + squared[..., 1])  # (P, L)
    torso_length = (lengths[:, torso[0]] + lengths[:, torso[1]]) / 2
    torso_length = np.where(torso_length < MIN_TORSO_LENGTH, MIN_TORSO_LENGTH, torso_length)
    features = np.concatenate([(vectors / torso_length[:, None, None]).reshape(len(poses),
                                                                                2 * len(limbs)),
                               lengths / torso_length[:, None], poses[..., 2]], axis=1)
    return features.astype(np.float32)


def rescore_limbs_of(keypoint_info) -> tuple[tuple[tuple[int, int], ...], tuple[int, int]]:
    """(limbs, torso limbs) of a dataset's KeypointInfo, or a clear error if it defines none."""
    limbs = tuple(keypoint_info.rescore_limbs)
    torso = tuple(keypoint_info.rescore_torso_limbs)
    if not limbs or len(torso) != 2:
        raise ValueError(f"dataset '{keypoint_info.name}' defines no rescore limbs "
                         f"(KeypointInfo.rescore_limbs and rescore_torso_limbs in "
                         f"datasets/metadata.py); rescoring needs them")
    return limbs, torso


def pose_rescore_features(poses: np.ndarray, keypoint_info) -> np.ndarray:
    """``rescore_feature`` with the limbs of a dataset's metadata."""
    limbs, torso = rescore_limbs_of(keypoint_info)
    return rescore_feature(poses, limbs, torso)


# ------------------------------------------------------------------------------------------------
# Using the net


def _module_device(net: nn.Module) -> torch.device:
    for parameter in net.parameters():
        return parameter.device
    return torch.device("cpu")


def apply_rescore_net(net: nn.Module, features: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """New person scores (P,) float32: net(features) (P, 1), NaN set to 0, times scores (P,).

    The net (features F -> 1) runs without gradients on its own device; the caller puts it in
    eval mode (``Rescorer`` does).
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    features = np.asarray(features, dtype=np.float32)
    if features.shape[0] != scores.shape[0]:
        raise ValueError(f"got {features.shape[0]} feature rows for {scores.shape[0]} scores")
    if scores.size == 0:
        return scores.copy()
    with torch.no_grad():
        output = net(torch.from_numpy(features).to(_module_device(net)))
    factor = output.detach().float().cpu().numpy().reshape(-1)
    if factor.shape[0] != scores.shape[0]:
        raise ValueError(f"the rescore net returned {factor.shape[0]} values for "
                         f"{scores.shape[0]} poses; it must map each feature row to one value")
    factor = np.where(np.isnan(factor), np.float32(0), factor)
    return (factor * scores).astype(np.float32)


class Rescorer:
    """A loaded rescore net with its dataset's limbs: rescorer(poses, scores) -> new scores.

    poses (P, J, >=3) in image pixels (x, y, joint score), scores (P,). Build it once per run
    (the reference rebuilt and reloaded the net for every image); the net is put in eval mode.
    """

    def __init__(self, net: nn.Module, keypoint_info):
        self.limbs, self.torso_limbs = rescore_limbs_of(keypoint_info)
        self.num_joints = keypoint_info.num_keypoints
        self.net = net.eval()

    @property
    def feature_size(self) -> int:
        return rescore_feature_size(self.num_joints, len(self.limbs))

    def __call__(self, poses: np.ndarray, scores: np.ndarray) -> np.ndarray:
        poses = np.asarray(poses)
        if poses.ndim != 3 or poses.shape[1] != self.num_joints:
            raise ValueError(f"poses must be (people, {self.num_joints}, 3), got {poses.shape}")
        features = rescore_feature(poses, self.limbs, self.torso_limbs)
        return apply_rescore_net(self.net, features, scores)


# ------------------------------------------------------------------------------------------------
# Training targets: best OKS per detection


def coco_oks(detections: np.ndarray, gt_keypoints: np.ndarray, gt_areas: np.ndarray,
             gt_boxes: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """OKS (D, G) float64 between detections (D, J, >=2) and ground truths (G, J, 3), as COCOeval.

    gt_areas (G,): the OKS scale (COCO: annotation area; CrowdPose: box w * h * 0.53); gt_boxes
    (G, 4) x, y, w, h; sigmas (J,) already divided by 10. A ground truth with labelled joints
    (v > 0) is compared on those; one without is compared on all joints by their distance
    outside its box enlarged by its width and height on every side.
    """
    detections = np.asarray(detections, dtype=np.float64)
    gt_keypoints = np.asarray(gt_keypoints, dtype=np.float64)
    num_detections, num_gts = detections.shape[0], gt_keypoints.shape[0]
    if num_detections == 0 or num_gts == 0:
        return np.zeros((num_detections, num_gts))
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    gt_areas = np.asarray(gt_areas, dtype=np.float64).reshape(-1)
    boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labelled = gt_keypoints[..., 2] > 0  # (G, J)
    has_labels = labelled.any(axis=1)  # (G,)
    xd, yd = detections[:, None, :, 0], detections[:, None, :, 1]  # (D, 1, J)
    near_x, near_y = xd - gt_keypoints[None, :, :, 0], yd - gt_keypoints[None, :, :, 1]
    x0, x1 = boxes[:, 0] - boxes[:, 2], boxes[:, 0] + boxes[:, 2] * 2
    y0, y1 = boxes[:, 1] - boxes[:, 3], boxes[:, 1] + boxes[:, 3] * 2
    box_x = np.maximum(0, x0[None, :, None] - xd) + np.maximum(0, xd - x1[None, :, None])
    box_y = np.maximum(0, y0[None, :, None] - yd) + np.maximum(0, yd - y1[None, :, None])
    dx = np.where(has_labels[None, :, None], near_x, box_x)
    dy = np.where(has_labels[None, :, None], near_y, box_y)
    error = (dx ** 2 + dy ** 2) / variances / (gt_areas[None, :, None] + np.spacing(1)) / 2
    counted = np.where(has_labels[:, None], labelled, True)[None]  # (1, G, J)
    return (np.exp(-error) * counted).sum(axis=2) / counted.sum(axis=2)


def best_oks_per_detection(oks: np.ndarray, gt_ignored: np.ndarray) -> np.ndarray:
    """Each detection's best OKS (D,) under COCOeval's greedy scan without exclusivity.

    oks (D, G); gt_ignored (G,) bool. The scan visits non-ignored ground truths first and
    stops at the first ignored one once a non-ignored one matched, so the result is the
    maximum over the non-ignored ground truths, or over all of them when every one is ignored.
    """
    oks = np.asarray(oks, dtype=np.float64)
    gt_ignored = np.asarray(gt_ignored, dtype=bool).reshape(-1)
    if oks.shape[1] != gt_ignored.shape[0]:
        raise ValueError(f"oks has {oks.shape[1]} ground-truth columns, gt_ignored "
                         f"{gt_ignored.shape[0]} entries")
    if oks.shape[1] == 0:
        raise ValueError("no ground truth to match")
    counted = ~gt_ignored if (~gt_ignored).any() else np.ones_like(gt_ignored)
    return oks[:, counted].max(axis=1)


class RescoreData(NamedTuple):
    """Rescore training samples: poses (N, J, 3) float32 (x, y, joint score, image pixels) and
    the best OKS (N,) float64 of each against the ground truth."""

    poses: np.ndarray
    oks: np.ndarray


def rescore_samples(poses: np.ndarray, scores: np.ndarray, gt_keypoints: np.ndarray,
                    gt_boxes: np.ndarray, gt_areas: np.ndarray, gt_ignore: np.ndarray,
                    sigmas: Sequence[float],
                    area_ranges: Sequence[tuple[float, float]] = COCO_AREA_RANGES,
                    max_detections: int = MAX_DETECTIONS,
                    range_areas: np.ndarray | None = None) -> RescoreData:
    """The training samples of one image, as the reference's COCOeval subclass records them.

    poses (D, J, 3) and person scores (D,) of the detections; ground truth: keypoints (G, J, 3),
    boxes (G, 4), OKS areas (G,), gt_ignore (G,) (crowd, or no labelled keypoint). The
    detections are sorted by score (stable) and cut to max_detections; for every area range
    a ground truth is also ignored when its area (range_areas, default gt_areas; CrowdPose: box
    w * h * 0.53) is outside [low, high]; each detection is recorded with its
    ``best_oks_per_detection`` once per range. An image without ground truth gives nothing.
    """
    poses = np.asarray(poses, dtype=np.float64)
    num_joints = poses.shape[1] if poses.ndim == 3 else 0
    empty = RescoreData(np.zeros((0, num_joints, 3), dtype=np.float32), np.zeros(0))
    gt_keypoints = np.asarray(gt_keypoints, dtype=np.float64)
    if len(poses) == 0 or len(gt_keypoints) == 0:
        return empty
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")[:max_detections]
    poses = poses[order]
    oks = coco_oks(poses, gt_keypoints, gt_areas, gt_boxes, sigmas)
    areas = np.asarray(gt_areas if range_areas is None else range_areas,
                       dtype=np.float64).reshape(-1)
    ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    recorded_poses, recorded_oks = [], []
    for low, high in area_ranges:
        ignored = ignore | (areas < low) | (areas > high)
        recorded_poses.append(poses[..., :3])
        recorded_oks.append(best_oks_per_detection(oks, ignored))
    return RescoreData(np.concatenate(recorded_poses).astype(np.float32),
                       np.concatenate(recorded_oks))


def concatenate_rescore_data(parts: Sequence[RescoreData]) -> RescoreData:
    """Samples of many images as one RescoreData (an empty list gives an empty one)."""
    parts = [part for part in parts if len(part.oks)]
    if not parts:
        return RescoreData(np.zeros((0, 0, 3), dtype=np.float32), np.zeros(0))
    return RescoreData(np.concatenate([p.poses for p in parts]).astype(np.float32),
                       np.concatenate([p.oks for p in parts]).astype(np.float64))


def write_rescore_data(path: str | os.PathLike, data: RescoreData) -> Path:
    """Write the samples to ``path`` as an .npz with arrays 'poses' and 'oks', atomically.

    The name is used as given (no '.npz' is appended); parent folders are created.
    """
    poses = np.asarray(data.poses, dtype=np.float32)
    oks = np.asarray(data.oks, dtype=np.float64).reshape(-1)
    if poses.ndim != 3 or poses.shape[2] != 3 or poses.shape[0] != oks.shape[0]:
        raise ValueError(f"rescore data needs poses (N, J, 3) and oks (N,), got {poses.shape} "
                         f"and {oks.shape}")
    target = Path(path)
    with atomic_write(target, "wb") as handle:
        np.savez(handle, poses=poses, oks=oks)
    return target


def read_rescore_data(path: str | os.PathLike, num_joints: int | None = None) -> RescoreData:
    """Read samples written by ``write_rescore_data``; a missing or malformed file raises a
    DataError that names it (and the joint count, when num_joints is given and differs)."""
    if not os.path.isfile(path):
        raise DataFileNotFoundError(f"rescore data file not found: '{path}' (write it with "
                                    f"tools/rescore_data.py)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in RESCORE_DATA_KEYS if key not in archive.files]
            if missing:
                raise DataError(f"rescore data file '{path}' lacks the arrays {missing}; "
                                f"expected {list(RESCORE_DATA_KEYS)}")
            poses, oks = archive["poses"], archive["oks"]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"rescore data file '{path}' is not a readable .npz: {error}") from None
    if poses.ndim != 3 or poses.shape[2] != 3 or oks.shape != (poses.shape[0],):
        raise DataError(f"rescore data file '{path}' holds poses {poses.shape} and oks "
                        f"{oks.shape}; expected (N, J, 3) and (N,)")
    if num_joints is not None and poses.shape[0] and poses.shape[1] != num_joints:
        raise DataError(f"rescore data file '{path}' has poses of {poses.shape[1]} joints, "
                        f"the dataset has {num_joints}")
    return RescoreData(poses.astype(np.float32), oks.astype(np.float64))


def rescore_training_arrays(data: RescoreData,
                            keypoint_info) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, F) float32 and targets (N, 1) float32 for training the rescore net.

    Targets of exactly 1.0 become 0, as the reference does when loading (see DEGENERATE_OKS).
    """
    features = pose_rescore_features(data.poses, keypoint_info)
    targets = np.where(np.asarray(data.oks) == DEGENERATE_OKS, 0.0, data.oks)
    return features, targets.astype(np.float32).reshape(-1, 1)


def build_rescore_net(cfg: CfgNode, keypoint_info) -> RescoreNet:
    """A fresh rescore net for a dataset's feature (3 x its rescore limbs + its joints) with
    RESCORE.HIDDEN_LAYER hidden units."""
    limbs, _ = rescore_limbs_of(keypoint_info)
    features = rescore_feature_size(keypoint_info.num_keypoints, len(limbs))
    return RescoreNet(features, cfg.RESCORE.HIDDEN_LAYER)


def load_rescorer(cfg: CfgNode, keypoint_info) -> Rescorer | None:
    """The rescorer of a test run, or None when RESCORE.USE is off or RESCORE.MODEL_FILE empty.

    The net is loaded once, strictly: a missing file, or one whose tensors do not fit the
    dataset's feature or RESCORE.HIDDEN_LAYER, stops with an error that names the file.
    """
    path = cfg.RESCORE.MODEL_FILE
    if not cfg.RESCORE.USE or not path:
        if cfg.RESCORE.USE:
            logger.info("RESCORE.MODEL_FILE is empty: person scores are not rescored")
        return None
    if not os.path.isfile(path):
        raise CheckpointError(f"RESCORE.MODEL_FILE not found: '{path}' (train a rescore net "
                              f"with tools/rescore_data.py and tools/rescore_train.py, or set "
                              f"RESCORE.USE False to test without rescoring)")
    net = build_rescore_net(cfg, keypoint_info)
    source = f"RESCORE.MODEL_FILE '{path}'"
    try:
        load_state_dict_strict(net, extract_state_dict(load_checkpoint_file(path), source),
                               source=source)
    except CheckpointError as error:
        raise CheckpointError(f"{error}\n  expected a rescore net for dataset "
                              f"'{keypoint_info.name}' ({net.l1.in_features} features) with "
                              f"RESCORE.HIDDEN_LAYER {cfg.RESCORE.HIDDEN_LAYER} hidden "
                              f"units") from None
    logger.info("rescoring person scores with %s", path)
    return Rescorer(net, keypoint_info)
