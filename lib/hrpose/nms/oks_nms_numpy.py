"""OKS non-maximum suppression in NumPy: the fallback and the specification of the compiled
extension."""

from __future__ import annotations

import numpy as np

__all__ = ["oks_iou", "oks_nms", "soft_oks_nms"]

# np.spacing(1): keeps the OKS denominator positive when both areas are zero.
EPS = float(np.spacing(1.0))

SOFT_NMS_METHODS = ("gaussian", "linear")

# Which poses' keypoint scores decide, under a vis_threshold, whether a keypoint counts:
# "both": scored above it in both poses (symmetric: OKS(a, b) == OKS(b, a));
# "candidate": in the candidate only, which is what the reference's in_vis_thre computes
# (``list(vg > t) and list(vd > t)`` is the second list, the candidate's, for any K > 0).
VIS_RULES = ("both", "candidate")

# The kept poses must not depend on whether the compiled extension was built. So both
# implementations take every exp (the per-keypoint terms and the soft-NMS decay) from np.exp on
# contiguous float64 arrays, where the C library's exp could differ from NumPy's SIMD exp by an
# ulp; and every other operation is IEEE-exact (+, -, *, /, comparisons), performed in the same
# order in both, with keypoints summed left to right.


def validated_sigmas(sigmas) -> np.ndarray:
    """The per-keypoint OKS constants as a float64 vector, checked to be usable."""
    sigmas = np.ascontiguousarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or sigmas.shape[0] == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D array (one per keypoint), "
                         f"got shape {sigmas.shape}")
    if not sigmas.min() > 0:  # also rejects NaN
        raise ValueError("sigmas must all be positive: they divide the squared keypoint distances")
    return sigmas


def validated_poses(poses, num_keypoints: int, name: str = "poses") -> np.ndarray:
    """A stack of poses as a C-contiguous float64 (N, K, 3) array; an empty input becomes
    (0, K, 3)."""
    poses = np.ascontiguousarray(poses, dtype=np.float64)
    if poses.size == 0 and poses.ndim != 3:
        poses = poses.reshape(0, num_keypoints, 3)
    if poses.ndim != 3 or poses.shape[1:] != (num_keypoints, 3):
        raise ValueError(f"{name} must have shape (N, K, 3), got {poses.shape}; "
                         f"sigmas has {num_keypoints} entries, so K = {num_keypoints}")
    return poses


def validated_vector(values, length: int, name: str) -> np.ndarray:
    """A per-pose quantity (scores, areas) as a float64 vector with one entry per pose."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.shape != (length,):
        raise ValueError(f"{name} must have shape (N,) = ({length},), one per pose, "
                         f"got {values.shape}")
    return values


def validated_vis_threshold(vis_threshold) -> float | None:
    return None if vis_threshold is None else float(vis_threshold)


def validated_vis_rule(vis_rule: str) -> str:
    if vis_rule not in VIS_RULES:
        raise ValueError(f"vis_rule must be one of {VIS_RULES}, got {vis_rule!r}")
    return vis_rule


def validated_nms_inputs(poses, scores, areas, sigmas):
    """(poses, scores, areas, variances) checked against each other and converted to float64."""
    sigmas = validated_sigmas(sigmas)
    poses = validated_poses(poses, sigmas.shape[0])
    scores = validated_vector(scores, poses.shape[0], "scores")
    areas = validated_vector(areas, poses.shape[0], "areas")
    return poses, scores, areas, keypoint_variances(sigmas)


def validated_oks_inputs(pose, candidates, pose_area, candidate_areas, sigmas):
    """(pose, candidates, pose_area, candidate_areas, variances) for a one-against-many OKS."""
    sigmas = validated_sigmas(sigmas)
    pose = np.ascontiguousarray(pose, dtype=np.float64)
    if pose.shape != (sigmas.shape[0], 3):
        raise ValueError(f"pose must have shape (K, 3), got {pose.shape}; "
                         f"sigmas has {sigmas.shape[0]} entries, so K = {sigmas.shape[0]}")
    candidates = validated_poses(candidates, sigmas.shape[0], "candidates")
    candidate_areas = validated_vector(candidate_areas, candidates.shape[0], "candidate_areas")
    return pose, candidates, float(pose_area), candidate_areas, keypoint_variances(sigmas)


def validated_soft_options(threshold, method: str, max_dets) -> tuple[float, str, int]:
    """(threshold, method, max_dets) of soft NMS, rejecting values that have no meaning."""
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"method must be one of {SOFT_NMS_METHODS}, got {method!r}")
    threshold = float(threshold)
    if method == "gaussian" and not threshold > 0:
        raise ValueError(f"the gaussian method divides by threshold, so it must be positive, "
                         f"got {threshold}")
    if int(max_dets) != max_dets or max_dets < 0:
        raise ValueError(f"max_dets must be a non-negative integer, got {max_dets!r}")
    return threshold, method, int(max_dets)


def keypoint_variances(sigmas: np.ndarray) -> np.ndarray:
    """(2 * sigma) ** 2 per keypoint, the OKS normaliser of each keypoint's squared distance."""
    doubled = sigmas * 2
    return doubled * doubled


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices from highest to lowest score; NaN scores first; tied scores higher index first.

    That is ``argsort(kind="stable")[::-1]``. The reference's ``argsort()[::-1]`` sorts with
    NumPy's default, unstable kind, so it gives the same order wherever the scores are distinct,
    but its order of tied scores depends on the array's length and the CPU's sort routine.
    """
    return np.argsort(scores, kind="stable")[::-1]


def keypoint_similarities(pose, pose_area, candidates, candidate_areas, variances) -> np.ndarray:
    """exp(-e_k) of every candidate keypoint, shape (M, K), before any visibility selection."""
    dx = candidates[:, :, 0] - pose[:, 0]
    dy = candidates[:, :, 1] - pose[:, 1]
    denominators = (pose_area + candidate_areas) / 2 + EPS
    errors = (dx * dx + dy * dy) / variances / denominators[:, None] / 2
    return np.exp(-errors)


def counted_keypoints(pose, candidates, vis_threshold: float, vis_rule: str) -> np.ndarray:
    """(M, K) bool: which keypoints of each pair count in its OKS under vis_threshold."""
    visible = candidates[:, :, 2] > vis_threshold
    if vis_rule == "both":
        visible &= pose[:, 2] > vis_threshold
    return visible


def one_vs_many_oks(pose, pose_area, candidates, candidate_areas, variances, vis_threshold,
                    vis_rule="both") -> np.ndarray:
    """OKS of one pose against each candidate, on already validated float64 inputs."""
    similarities = keypoint_similarities(pose, pose_area, candidates, candidate_areas, variances)
    if vis_threshold is None:
        counted = np.full(candidates.shape[0], candidates.shape[1])
    else:
        visible = counted_keypoints(pose, candidates, vis_threshold, vis_rule)
        # Adding an exact zero leaves a sum unchanged, so masking matches skipping the keypoint.
        similarities = np.where(visible, similarities, 0.0)
        counted = visible.sum(axis=1)
    # cumsum adds left to right like the compiled loop; np.sum's pairwise order would differ in
    # the last bits.
    totals = np.cumsum(similarities, axis=1)[:, -1]
    return np.where(counted > 0, totals / np.maximum(counted, 1), 0.0)


def rescored(scores: np.ndarray, oks: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Soft-NMS scores after decaying each by its overlap with the pose just kept."""
    if method == "linear":
        return np.where(oks >= threshold, scores * (1 - oks), scores)
    return scores * np.exp(-(oks * oks) / threshold)


def oks_iou(pose, candidates, pose_area, candidate_areas, sigmas, vis_threshold=None,
            vis_rule="both") -> np.ndarray:
    """OKS of one (K, 3) pose against each of M (K, 3) candidates, as a float64 (M,) array.

    With ``vis_threshold``, only keypoints scored above it count: in both poses (``vis_rule``
    "both", the default) or in the candidate only ("candidate", the reference's ``in_vis_thre``);
    a pair with no such keypoint has OKS 0.
    """
    pose, candidates, pose_area, candidate_areas, variances = validated_oks_inputs(
        pose, candidates, pose_area, candidate_areas, sigmas)
    return one_vs_many_oks(pose, pose_area, candidates, candidate_areas, variances,
                           validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule))


def oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None,
            vis_rule="both") -> np.ndarray:
    """Greedy OKS NMS: indices of the kept poses (int64), in the order they were kept.

    The best remaining pose (in ``descending_order``) is kept and every remaining pose whose OKS
    with it exceeds ``threshold`` is dropped, until none remain. ``vis_threshold`` and
    ``vis_rule`` as in ``oks_iou``, the kept pose being the first argument.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    threshold = float(threshold)
    vis_threshold, vis_rule = validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule)
    order = descending_order(scores)
    kept = []
    while order.size > 0:
        top, rest = order[0], order[1:]
        kept.append(top)
        oks = one_vs_many_oks(poses[top], areas[top], poses[rest], areas[rest], variances,
                              vis_threshold, vis_rule)
        order = rest[oks <= threshold]
    return np.asarray(kept, dtype=np.int64)


def soft_oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None, method="gaussian",
                 max_dets=20, vis_rule="both") -> np.ndarray:
    """Soft OKS NMS: indices of at most ``max_dets`` kept poses (int64), in the order they were
    kept.

    Instead of dropping overlapping poses, their scores decay ("gaussian": by
    exp(-oks^2 / threshold); "linear": by (1 - oks) where oks >= threshold) and the rest are
    re-ranked (``descending_order``) after each pose is kept. ``vis_threshold`` and
    ``vis_rule`` as in ``oks_iou``.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    threshold, method, max_dets = validated_soft_options(threshold, method, max_dets)
    vis_threshold, vis_rule = validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule)
    order = descending_order(scores)
    remaining_scores = scores[order]
    kept = []
    while order.size > 0 and len(kept) < max_dets:
        top, order, remaining_scores = order[0], order[1:], remaining_scores[1:]
        kept.append(top)
        oks = one_vs_many_oks(poses[top], areas[top], poses[order], areas[order], variances,
                              vis_threshold, vis_rule)
        remaining_scores = rescored(remaining_scores, oks, threshold, method)
        reranked = descending_order(remaining_scores)
        order, remaining_scores = order[reranked], remaining_scores[reranked]
    return np.asarray(kept, dtype=np.int64)
