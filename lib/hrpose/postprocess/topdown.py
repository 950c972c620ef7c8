"""Top-down post-processing: person rescoring and per-image OKS-NMS into COCO result entries."""

from __future__ import annotations

import numpy as np

from ..nms import oks_nms, soft_oks_nms

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
