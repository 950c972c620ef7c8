"""Joint scores and the whole regression decoder: maps to poses, both results, rescoring."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..ae_grouping import heatmap_nms
from ..bottomup import BottomUpPrediction, ModelCallable, get_final_preds
from .candidates import candidate_poses, pose_nms, strongest
from .gaussian_fit import gaussian_fit_adjust
from .maps import regression_multi_scale_maps
from .params import DecodedPoses, RegressionMaps, RegressionPrediction, RegressionTestParams

# absorb_heat finds heatmap peaks with this max-pool window.
ABSORB_NMS_KERNEL = 5


Rescorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------
# Joint scores


def heat_values(heatmaps: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Bilinear heatmap values (P, J) float32 at poses (P, J, >=2) on maps (J, H, W), 0 outside.

    As the reference: k = int(x) (truncated toward zero), u = x - k; a joint is read when
    0 <= int(x) and int(x) + 1 < W (rows likewise), so points in the last row or column read 0
    and points in (-1, 0) extrapolate from pixels 0 and 1.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    poses = np.asarray(poses, dtype=np.float32)
    num_joints, height, width = heatmaps.shape
    x, y = poses[..., 0], poses[..., 1]
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(finite, x, np.float32(0)), np.where(finite, y, np.float32(0))
    left, top = np.trunc(x).astype(np.int64), np.trunc(y).astype(np.int64)
    u, v = x - left.astype(np.float32), y - top.astype(np.float32)
    inside = finite & (left >= 0) & (left + 1 < width) & (top >= 0) & (top + 1 < height)
    left, top = np.clip(left, 0, max(width - 2, 0)), np.clip(top, 0, max(height - 2, 0))
    right, bottom = np.minimum(left + 1, width - 1), np.minimum(top + 1, height - 1)
    joint = np.broadcast_to(np.arange(num_joints), x.shape)
    one = np.float32(1)
    value = (heatmaps[joint, top, left] * (one - v) * (one - u)
             + heatmaps[joint, bottom, left] * (one - u) * v
             + heatmaps[joint, top, right] * u * (one - v)
             + heatmaps[joint, bottom, right] * u * v)
    return np.where(inside, value, np.float32(0)).astype(np.float32)


def absorb_heat(heatmaps: torch.Tensor, poses: np.ndarray,
                params: RegressionTestParams) -> np.ndarray:
    """Snap joints to heatmap peaks; returns new poses (P, J, 3) float32 (x, y, score).

    heatmaps (J, H, W) (any device); poses (P, J, 3) in the maps' pixels. Per joint type the
    top max_num_people peaks of a 5 x 5 max-pool NMS (values <= keypoint_threshold count as 0,
    but their positions still attract); a joint closer than max_absorb_distance to its nearest
    peak moves there and its score is multiplied by the peak value, otherwise its score is
    multiplied by the heatmap at its truncated position (see fix_absorb_index).
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    if len(poses) == 0:
        return poses
    maps = heatmaps.detach().float()
    num_joints, height, width = maps.shape
    suppressed = heatmap_nms(maps[None], ABSORB_NMS_KERNEL, ABSORB_NMS_KERNEL // 2)[0]
    values, index = suppressed.reshape(num_joints, -1).topk(
        min(params.max_num_people, height * width), dim=1)
    values = values * (values > params.keypoint_threshold).float()
    peaks = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=2)
    peaks = peaks.cpu().numpy().astype(np.float32)  # (J, K, 2)
    values = values.cpu().numpy()
    maps_cpu = maps.cpu().numpy()
    distance = np.sqrt(((poses[:, :, None, :2] - peaks[None]) ** 2).sum(axis=3))  # (P, J, K)
    nearest = np.argmin(distance, axis=2)
    nearest_distance = np.take_along_axis(distance, nearest[..., None], axis=2)[..., 0]
    joint = np.broadcast_to(np.arange(num_joints), nearest.shape)
    snap = nearest_distance < params.max_absorb_distance
    x, y = poses[..., 0], poses[..., 1]
    finite = np.isfinite(x) & np.isfinite(y)
    column = np.trunc(np.where(finite, x, 0)).astype(np.int64)
    row = np.trunc(np.where(finite, y, 0)).astype(np.int64)
    if params.fix_absorb_index:
        fallback = maps_cpu[joint, np.clip(row, 0, height - 1), np.clip(column, 0, width - 1)]
    else:
        # The reference reads det[j, int(x), int(y)], clamping int(x) to H - 1, int(y) to W - 1.
        fallback = maps_cpu[joint, np.clip(column, 0, height - 1), np.clip(row, 0, width - 1)]
    poses[..., :2] = np.where(snap[..., None], peaks[joint, nearest], poses[..., :2])
    poses[..., 2] *= np.where(snap, values[joint, nearest], fallback)
    return poses


# ------------------------------------------------------------------------------------------------
# The whole decoder


def _person_scores(poses: np.ndarray) -> np.ndarray:
    if len(poses) == 0:
        return np.zeros(0, dtype=np.float32)
    return poses[..., 2].mean(axis=1).astype(np.float32)


def decode_regression(maps: RegressionMaps,
                      params: RegressionTestParams) -> tuple[DecodedPoses, DecodedPoses]:
    """The "regression" and "final" results of one image in base pixels (see the package doc)."""
    num_joints = params.num_joints
    fused = maps.fused.detach().float()
    keypoint_maps = fused[:num_joints]
    candidates, center_scores = candidate_poses(maps.heatmaps, maps.keypoints, maps.scales,
                                                fused.shape[-1], params)
    keep = pose_nms(candidates, center_scores, params.dist_threshold, params.overlap_threshold)
    poses, center_scores = candidates[keep], center_scores[keep]
    top = strongest(center_scores, params.max_num_people)
    poses, center_scores = poses[top], center_scores[top]
    if len(poses) == 0:
        empty = DecodedPoses(np.zeros((0, num_joints, 3), dtype=np.float32),
                             np.zeros(0, dtype=np.float32))
        return empty, empty
    heatmaps_cpu = keypoint_maps.cpu().numpy()
    joint_scores = center_scores[:, None] * heat_values(heatmaps_cpu, poses)
    regression = np.concatenate([poses, joint_scores[..., None]], axis=2).astype(np.float32)
    final = np.concatenate([poses, np.broadcast_to(center_scores[:, None, None],
                                                   poses.shape[:2] + (1,))], axis=2)
    final = absorb_heat(keypoint_maps, final, params)
    final = gaussian_fit_adjust(final, heatmaps_cpu, center_scores, params)
    return (DecodedPoses(regression, _person_scores(regression)),
            DecodedPoses(final, _person_scores(final)))


def infer_regression(model: ModelCallable, image: np.ndarray, params: RegressionTestParams,
                     device: torch.device | str | None = None,
                     transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                     rescorer: Rescorer | None = None) -> RegressionPrediction:
    """The whole test-time pipeline for one (H, W, 3) uint8 RGB image (model in eval mode).

    Returns both results in image pixels (poses (P, J, 3) float64 rows x, y, joint score; scores
    (P,) float32). rescorer(poses in image pixels, scores) -> new scores (e.g.
    postprocess.rescore.Rescorer, loaded once) is applied to both, as the reference does.
    """
    maps = regression_multi_scale_maps(model, image, params, device, transform)
    results = []
    for decoded in decode_regression(maps, params):
        poses = get_final_preds(decoded.poses, maps.center, maps.scale, maps.base_size)
        scores = decoded.scores
        if rescorer is not None and len(poses):
            scores = np.asarray(rescorer(poses, scores), dtype=np.float32)
        results.append(BottomUpPrediction(poses, scores))
    return RegressionPrediction(*results)
