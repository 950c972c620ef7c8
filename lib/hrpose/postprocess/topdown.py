"""Top-down post-processing: heatmaps (flip test) to poses, person rescoring, per-image OKS-NMS."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..codecs.dark import decode_dark
from ..codecs.heatmap import decode_standard, flip_back, shift_flipped_heatmaps
from ..nms import oks_nms, soft_oks_nms
from ..utils.transforms import transform_preds

PIXEL_STD = 200.0


def rescore_poses(keypoint_scores: np.ndarray, box_scores: np.ndarray,
                  visibility_threshold: float) -> np.ndarray:
    """Person score = mean keypoint confidence above the threshold (0 if none) x box score.

    keypoint_scores (N, K), box_scores (N,) -> (N,).
    """
    above = keypoint_scores > visibility_threshold
    counts = above.sum(axis=1)
    sums = np.where(above, keypoint_scores, 0.0).sum(axis=1)
    mean_above = np.divide(sums, counts, out=np.zeros_like(sums, dtype=np.float64),
                           where=counts > 0)
    return mean_above * box_scores


def box_areas(scales: np.ndarray) -> np.ndarray:
    """Areas of the padded person boxes, (N, 2) scales in units of 200 px -> (N,)."""
    return np.prod(scales * PIXEL_STD, axis=1)


def nms_per_image(poses: np.ndarray, scores: np.ndarray, areas: np.ndarray,
                  image_ids: np.ndarray, oks_threshold: float, sigmas: np.ndarray,
                  soft: bool = False) -> np.ndarray:
    """Indices of the poses that survive OKS-NMS within their image, in image order.

    poses (N, K, 3) in image coordinates; an image whose NMS keeps nothing keeps all its poses,
    as the originals do.
    """
    suppress = soft_oks_nms if soft else oks_nms
    kept = []
    order = np.argsort(image_ids, kind="stable")
    boundaries = np.flatnonzero(np.diff(image_ids[order])) + 1
    for members in np.split(order, boundaries):
        if members.size == 0:
            continue
        keep = suppress(poses[members], scores[members], areas[members], oks_threshold, sigmas)
        kept.append(members[keep] if len(keep) else members)
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def coco_results(poses: np.ndarray, scores: np.ndarray, image_ids: np.ndarray,
                 centers: np.ndarray, scales: np.ndarray, category_id: int = 1) -> list[dict]:
    """COCO keypoint result entries (plain Python numbers) for poses (N, K, 3)."""
    return [
        {
            "image_id": int(image_id),
            "category_id": category_id,
            "keypoints": [float(v) for v in pose.reshape(-1)],
            "score": float(score),
            "center": [float(v) for v in center],
            "scale": [float(v) for v in scale],
        }
        for pose, score, image_id, center, scale in zip(poses, scores, image_ids, centers, scales)
    ]


def final_heatmaps(output) -> torch.Tensor:
    """Models with intermediate supervision return a list; the last map is the prediction."""
    return output[-1] if isinstance(output, (list, tuple)) else output


def decode_heatmaps(heatmaps: torch.Tensor, test_cfg: CfgNode):
    """Heatmap-pixel coords and confidences by the decoder TEST.DECODER names."""
    if test_cfg.DECODER == "dark":
        return decode_dark(heatmaps, test_cfg.BLUR_KERNEL, test_cfg.DARK_STEP)
    return decode_standard(heatmaps, test_cfg.POST_PROCESS)


def predict_heatmaps(model: nn.Module, images: torch.Tensor, flip_index: np.ndarray | None,
                     shift_heatmap: bool) -> torch.Tensor:
    """Heatmaps of a batch, averaged with those of the mirrored batch when flip_index is given."""
    heatmaps = final_heatmaps(model(images))
    if flip_index is None:
        return heatmaps
    flipped = flip_back(final_heatmaps(model(images.flip(3))), flip_index)
    if shift_heatmap:
        flipped = shift_flipped_heatmaps(flipped)
    return (heatmaps + flipped) * 0.5


def decode_poses(cfg: CfgNode, heatmaps: torch.Tensor, center: np.ndarray,
                 scale: np.ndarray) -> np.ndarray:
    """Poses (N, K, 3) float64 (x, y in image pixels, confidence) of a batch's heatmaps.

    center, scale (N, 2): the crop boxes the batch was cut from. The decoder is TEST.DECODER's,
    the coordinate convention DATASET.COORD_CONVENTION's. The validation loop and
    apis.PosePredictor both decode through here.
    """
    coords, maxvals = _to_host(*decode_heatmaps(heatmaps, cfg.TEST))
    image_coords = transform_preds(coords, np.asarray(center, dtype=np.float64),
                                   np.asarray(scale, dtype=np.float64), cfg.MODEL.HEATMAP_SIZE,
                                   cfg.DATASET.COORD_CONVENTION)
    return np.concatenate([image_coords, maxvals], 2)


def _to_host(coords: torch.Tensor, maxvals: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Decoded coords (N, K, 2) and maxvals (N, K, 1) as float64 NumPy arrays, copied off an
    accelerator in one transfer (one wait for the device)."""
    dtype = torch.promote_types(coords.dtype, maxvals.dtype)  # NumPy has no bfloat16
    coords, maxvals = coords.to(dtype), maxvals.to(dtype)
    if coords.device.type != "cpu":
        both = torch.cat([coords, maxvals], 2).cpu()
        coords, maxvals = both[..., :2], both[..., 2:]
    return coords.numpy().astype(np.float64), maxvals.numpy().astype(np.float64)


def select_poses(cfg: CfgNode, poses: np.ndarray, box_scores: np.ndarray, scales: np.ndarray,
                 image_ids: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person scores and the poses that survive per-image OKS-NMS: (kept indices, scores (N,)).

    Score = mean keypoint confidence above TEST.IN_VIS_THRE times the box score; NMS with
    TEST.OKS_THRE (soft with TEST.SOFT_NMS) on the padded box areas. The validation loop and
    apis.PosePredictor both select through here.
    """
    scores = rescore_poses(poses[:, :, 2], box_scores, cfg.TEST.IN_VIS_THRE)
    keep = nms_per_image(poses, scores, box_areas(scales), image_ids, cfg.TEST.OKS_THRE, sigmas,
                         soft=cfg.TEST.SOFT_NMS)
    return keep, scores
