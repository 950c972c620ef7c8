# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled OKS non-maximum suppression, returning exactly the kept indices of oks_nms_numpy."""

# The kernels perform the NumPy module's floating-point operations in the same order, in float64,
# and sum keypoints left to right, so both implementations agree to the last bit wherever NumPy's
# float64 exp is the C library's (every x86-64 CPU without AVX-512). NumPy's AVX-512 exp may differ by
# an ulp, which could change a decision only for an OKS or score within an ulp of its rival.
# cdivision lets a zero denominator give inf/nan as NumPy does instead of raising.

from libc.float cimport DBL_EPSILON
from libc.math cimport exp, isnan
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

from hrpose.nms.oks_nms_numpy import (
    validated_nms_inputs,
    validated_oks_inputs,
    validated_soft_options,
    validated_vis_threshold,
)

__all__ = ["oks_iou", "oks_nms", "soft_oks_nms"]

# GCC may otherwise fuse dx * dx + dy * dy into one fused multiply-add on targets that have it,
# rounding once where NumPy rounds twice.
cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("fp-contract=off")
    #elif defined(__clang__)
    #pragma clang fp contract(off)
    #endif
    """

# exp(-800) is about 1e-348, far below half the smallest subnormal, so every exp (NumPy's SIMD ones
# included) returns exactly 0 there; returning it directly skips the C library's slow underflow path.
cdef double UNDERFLOW_ERROR = 800.0


cdef struct Ranked:
    double score
    Py_ssize_t position  # where the pose sits in the array NumPy would sort; breaks ties
    Py_ssize_t index     # which pose it is


cdef double pair_oks(const double* pose, double pose_area, const double* candidate,
                     double candidate_area, const double* variances, Py_ssize_t num_keypoints,
                     bint use_visibility, double vis_threshold) noexcept nogil:
    """OKS of two (K, 3) poses laid out as x, y, score triples."""
    cdef double denominator = (pose_area + candidate_area) / 2 + DBL_EPSILON  # DBL_EPSILON == np.spacing(1)
    cdef double total = 0.0
    cdef double dx, dy, error
    cdef Py_ssize_t k, counted = 0
    for k in range(num_keypoints):
        if use_visibility and not (pose[3 * k + 2] > vis_threshold and candidate[3 * k + 2] > vis_threshold):
            continue
        dx = candidate[3 * k] - pose[3 * k]
        dy = candidate[3 * k + 1] - pose[3 * k + 1]
        error = (dx * dx + dy * dy) / variances[k] / denominator / 2
        if not error >= UNDERFLOW_ERROR:  # written so that NaN still reaches exp and the OKS stays NaN
            total += exp(-error)
        counted += 1
    if counted == 0:
        return 0.0
    return total / counted


cdef double rescored(double score, double oks, double threshold, bint linear) noexcept nogil:
    """A soft-NMS score after decaying it by its overlap with the pose just kept."""
    if linear:
        return score * (1 - oks) if oks >= threshold else score
    return score * exp(-(oks * oks) / threshold)


cdef int ranks_first(const void* first, const void* second) noexcept nogil:
    """qsort comparator reproducing numpy.argsort(kind="stable")[::-1]."""
    cdef const Ranked* a = <const Ranked*>first
    cdef const Ranked* b = <const Ranked*>second
    cdef bint a_nan = isnan(a.score)
    cdef bint b_nan = isnan(b.score)
    # NumPy sorts NaN above every number, so the reversed order starts with them.
    if a_nan != b_nan:
        return -1 if a_nan else 1
    if not a_nan and a.score != b.score:
        return -1 if a.score > b.score else 1
    # Reversing a stable ascending sort puts the later of two tied entries first.
    if a.position != b.position:
        return -1 if a.position > b.position else 1
    return 0


cdef void sort_descending(Ranked* ranked, Py_ssize_t count) noexcept nogil:
    # (score, position) is a strict total order, so any sort algorithm gives NumPy's result.
    if count > 1:
        qsort(ranked, <size_t>count, sizeof(Ranked), ranks_first)


cdef void rank_by_score(const double[::1] scores, Ranked* ranked) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(scores.shape[0]):
        ranked[i].score = scores[i]
        ranked[i].position = i
        ranked[i].index = i
    sort_descending(ranked, scores.shape[0])


cdef Py_ssize_t greedy_nms(const double[:, :, ::1] poses, const double[::1] areas,
                           const double[::1] variances, Ranked* ranked, double threshold,
                           bint use_visibility, double vis_threshold, int64_t[::1] kept) noexcept nogil:
    """Greedy OKS NMS over poses already ranked by score; fills kept and returns how many."""
    cdef Py_ssize_t num_keypoints = poses.shape[1]
    cdef Py_ssize_t remaining = poses.shape[0]
    cdef Py_ssize_t num_kept = 0
    cdef Py_ssize_t j, top, survivors
    cdef const double* first_pose = &poses[0, 0, 0]
    while remaining > 0:
        top = ranked[0].index
        kept[num_kept] = top
        num_kept += 1
        survivors = 0
        # Survivors move to the front in rank order; writes never overtake the read position j.
        for j in range(1, remaining):
            if pair_oks(first_pose + 3 * num_keypoints * top, areas[top],
                        first_pose + 3 * num_keypoints * ranked[j].index, areas[ranked[j].index],
                        &variances[0], num_keypoints, use_visibility, vis_threshold) <= threshold:
                ranked[survivors] = ranked[j]
                survivors += 1
        remaining = survivors
    return num_kept


cdef Py_ssize_t soft_nms(const double[:, :, ::1] poses, const double[::1] areas,
                         const double[::1] variances, Ranked* ranked, double threshold, bint linear,
                         Py_ssize_t max_dets, bint use_visibility, double vis_threshold,
                         int64_t[::1] kept) noexcept nogil:
    """Soft OKS NMS over poses already ranked by score; fills kept and returns how many."""
    cdef Py_ssize_t num_keypoints = poses.shape[1]
    cdef Py_ssize_t num_poses = poses.shape[0]
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t num_kept = 0
    cdef Py_ssize_t j, top
    cdef double oks
    cdef const double* first_pose = &poses[0, 0, 0]
    while start < num_poses and num_kept < max_dets:
        top = ranked[start].index
        kept[num_kept] = top
        num_kept += 1
        start += 1
        for j in range(start, num_poses):
            oks = pair_oks(first_pose + 3 * num_keypoints * top, areas[top],
                           first_pose + 3 * num_keypoints * ranked[j].index, areas[ranked[j].index],
                           &variances[0], num_keypoints, use_visibility, vis_threshold)
            ranked[j].score = rescored(ranked[j].score, oks, threshold, linear)
            ranked[j].position = j
        sort_descending(ranked + start, num_poses - start)
    return num_kept


cdef Ranked* allocate_ranked(Py_ssize_t count) except NULL:
    cdef Ranked* ranked = <Ranked*>malloc(max(count, 1) * sizeof(Ranked))
    if ranked == NULL:
        raise MemoryError(f"cannot allocate the ranking of {count} poses")
    return ranked


def oks_iou(pose, candidates, pose_area, candidate_areas, sigmas, vis_threshold=None):
    """OKS of one (K, 3) pose against each of M (K, 3) candidates, as a float64 (M,) array.

    With ``vis_threshold``, only keypoints scored above it in both poses count, and a pair with no
    such keypoint has OKS 0.
    """
    pose, candidates, pose_area, candidate_areas, variances = validated_oks_inputs(
        pose, candidates, pose_area, candidate_areas, sigmas)
    vis_threshold = validated_vis_threshold(vis_threshold)
    cdef const double[:, ::1] pose_view = pose
    cdef const double[:, :, ::1] candidate_view = candidates
    cdef const double[::1] area_view = candidate_areas
    cdef const double[::1] variance_view = variances
    cdef double area = pose_area
    cdef bint use_visibility = vis_threshold is not None
    cdef double visibility = vis_threshold if use_visibility else 0.0
    cdef Py_ssize_t num_keypoints = candidate_view.shape[1]
    cdef Py_ssize_t i
    result = np.empty(candidate_view.shape[0], dtype=np.float64)
    cdef double[::1] result_view = result
    with nogil:
        for i in range(candidate_view.shape[0]):
            result_view[i] = pair_oks(&pose_view[0, 0], area, &candidate_view[i, 0, 0], area_view[i],
                                      &variance_view[0], num_keypoints, use_visibility, visibility)
    return result


def oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None):
    """Greedy OKS NMS: indices of the kept poses (int64), in the order they were kept.

    The best remaining pose is kept and every remaining pose whose OKS with it exceeds
    ``threshold`` is dropped, until none remain.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    vis_threshold = validated_vis_threshold(vis_threshold)
    cdef Py_ssize_t num_poses = poses.shape[0]
    kept = np.empty(num_poses, dtype=np.int64)
    if num_poses == 0:
        return kept
    cdef const double[:, :, ::1] pose_view = poses
    cdef const double[::1] score_view = scores
    cdef const double[::1] area_view = areas
    cdef const double[::1] variance_view = variances
    cdef int64_t[::1] kept_view = kept
    cdef double overlap_limit = threshold
    cdef bint use_visibility = vis_threshold is not None
    cdef double visibility = vis_threshold if use_visibility else 0.0
    cdef Py_ssize_t num_kept
    cdef Ranked* ranked = allocate_ranked(num_poses)
    try:
        with nogil:
            rank_by_score(score_view, ranked)
            num_kept = greedy_nms(pose_view, area_view, variance_view, ranked, overlap_limit,
                                  use_visibility, visibility, kept_view)
    finally:
        free(ranked)
    return kept[:num_kept]


def soft_oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None, method="gaussian",
                 max_dets=20):
    """Soft OKS NMS: indices of at most ``max_dets`` kept poses (int64), in the order they were kept.

    Instead of dropping overlapping poses, their scores decay ("gaussian": by exp(-oks^2 / threshold);
    "linear": by (1 - oks) where oks >= threshold) and the rest are re-ranked after each pose is kept.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    threshold, method, max_dets = validated_soft_options(threshold, method, max_dets)
    vis_threshold = validated_vis_threshold(vis_threshold)
    cdef Py_ssize_t num_poses = poses.shape[0]
    kept = np.empty(min(num_poses, max_dets), dtype=np.int64)
    if kept.shape[0] == 0:
        return kept
    cdef const double[:, :, ::1] pose_view = poses
    cdef const double[::1] score_view = scores
    cdef const double[::1] area_view = areas
    cdef const double[::1] variance_view = variances
    cdef int64_t[::1] kept_view = kept
    cdef double decay_threshold = threshold
    cdef bint linear = method == "linear"
    cdef Py_ssize_t most_kept = max_dets
    cdef bint use_visibility = vis_threshold is not None
    cdef double visibility = vis_threshold if use_visibility else 0.0
    cdef Py_ssize_t num_kept
    cdef Ranked* ranked = allocate_ranked(num_poses)
    try:
        with nogil:
            rank_by_score(score_view, ranked)
            num_kept = soft_nms(pose_view, area_view, variance_view, ranked, decay_threshold, linear,
                                most_kept, use_visibility, visibility, kept_view)
    finally:
        free(ranked)
    return kept[:num_kept]
