"""Candidate poses at the centre-map peaks and the reference's joint-distance pose NMS."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..ae_grouping import heatmap_nms
from .params import RegressionTestParams

# Centre-peak NMS kernel by map size (h + w) / 2: 7 above POOL_THRESHOLD1, 5 above
# POOL_THRESHOLD2, 3 otherwise.
POOL_KERNELS = (3, 5, 7)


def pool_kernel(height: int, width: int, params: RegressionTestParams) -> int:
    """The centre-NMS kernel of a map: 7, 5 or 3 by (h + w) / 2 against POOL_THRESHOLD1/2."""
    map_size = (height + width) / 2.0
    if map_size > params.pool_threshold1:
        return POOL_KERNELS[2]
    if map_size > params.pool_threshold2:
        return POOL_KERNELS[1]
    return POOL_KERNELS[0]


def center_peaks(center_map: torch.Tensor, params: RegressionTestParams,
                 factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices and values of the centre peaks of a (h, w) map, strongest first.

    Max-pool NMS (kernel by ``pool_kernel``, plateaus kept), the top max_num_people values,
    those above keypoint_threshold * factor.
    """
    height, width = center_map.shape
    kernel = pool_kernel(height, width, params)
    suppressed = heatmap_nms(center_map[None, None], kernel, kernel // 2).reshape(-1)
    values, index = suppressed.topk(min(params.max_num_people, suppressed.numel()))
    keep = values > params.keypoint_threshold * factor
    return index[keep], values[keep]


def candidate_poses(heatmaps: Sequence[torch.Tensor], keypoints: Sequence[torch.Tensor],
                    scales: Sequence[float], base_width: int,
                    params: RegressionTestParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate poses (n, J, 2) float32 in base pixels and their centre scores (n,) float32.

    Per scale: the centre map (last channel) times factor / its maximum x scale 1's maximum
    (factor 1 at scale 1, scale_decrease elsewhere), ``center_peaks``, and the keypoint map at
    each peak times base_width / map width. Scales in the given order, peaks strongest first.
    """
    reference_max = None
    for current_scale, maps in zip(scales, heatmaps):
        if current_scale == 1.0:
            reference_max = maps[0, -1].max()
    if reference_max is None:
        raise ValueError(f"the test scales {tuple(scales)} do not include 1.0")
    num_joints = keypoints[0].shape[1] // 2
    poses, scores = [], []
    for current_scale, maps, points in zip(scales, heatmaps, keypoints):
        ratio = base_width / maps.shape[-1]
        factor = 1.0 if current_scale == 1.0 else params.scale_decrease
        center_map = maps[0, -1].float()
        # The reference's arithmetic and order: factor * map / max(map) * max(scale-1 map).
        center_map = factor * center_map / center_map.max() * reference_max
        index, values = center_peaks(center_map, params, factor)
        flat = points[0].permute(1, 2, 0).reshape(-1, num_joints, 2)
        poses.append((ratio * flat[index]).cpu().numpy())
        scores.append(values.cpu().numpy())
    return (np.concatenate(poses).astype(np.float32),
            np.concatenate(scores).astype(np.float32))


def pose_nms(poses: np.ndarray, scores: np.ndarray, dist_threshold: float,
             overlap_threshold: int) -> np.ndarray:
    """Indices of the poses (P, J, >=2) kept by the reference's joint-distance NMS, in keep order.

    Two poses are duplicates when more than overlap_threshold of their joints are closer than
    dist_threshold (Euclidean); a pose is always its own duplicate. Visiting the poses in order,
    a pose not yet suppressed keeps the highest-scoring member of its duplicate group (the first
    of equal scores) unless that one is already suppressed, and suppresses the group.
    """
    poses = np.asarray(poses, dtype=np.float32)[..., :2]
    scores = np.asarray(scores)
    count = poses.shape[0]
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    distance = np.sqrt(((poses[:, None] - poses[None]) ** 2).sum(axis=3))
    duplicate = (distance < dist_threshold).sum(axis=2) > overlap_threshold
    # The reference relies on J > overlap_threshold to put a pose in its own group.
    duplicate |= np.eye(count, dtype=bool)
    suppressed = np.zeros(count, dtype=bool)
    keep = []
    for pose in range(count):
        if suppressed[pose]:
            continue
        group = np.flatnonzero(duplicate[pose])
        best = group[np.argmax(scores[group])]
        if suppressed[best]:
            continue
        keep.append(best)
        suppressed[group] = True
    return np.asarray(keep, dtype=np.int64)


def strongest(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` highest scores, descending (earlier first among equals); all
    indices in their order when there are no more than ``limit``."""
    if len(scores) <= limit:
        return np.arange(len(scores))
    return np.argsort(-np.asarray(scores), kind="stable")[:limit]
