# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled OKS non-maximum suppression, returning exactly the kept indices of oks_nms_numpy."""

# The kernels perform the NumPy module's floating-point operations in the same order, in float64,
# and sum keypoints left to right. Every exp is NumPy's, called on contiguous float64 buffers as
# the NumPy module calls it: the C library's exp differs from NumPy's SIMD exp by an ulp on some
# inputs (CPUs with AVX-512), which turns a soft-NMS decay of 1.0 into 0.9999999999999999 and
# reorders tied poses. So both implementations keep the same poses, bit for bit, on any CPU.
# cdivision lets a zero denominator give inf/nan as NumPy does instead of raising.

from libc.float cimport DBL_EPSILON
from libc.math cimport isnan
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

from hrpose.nms.oks_nms_numpy import (
    validated_nms_inputs,
    validated_oks_inputs,
    validated_soft_options,
    validated_vis_rule,
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

cdef object numpy_exp = np.exp


cdef struct Ranked:
    double score
    Py_ssize_t position  # where the pose sits in the array NumPy would sort; breaks ties
    Py_ssize_t index     # which pose it is


cdef struct OksProblem:
    const double* poses       # (N, K, 3) x, y, score triples
    const double* areas       # (N,)
    const double* variances   # (K,) (2 sigma)^2
    Py_ssize_t num_keypoints
    bint use_visibility
    bint candidate_only       # vis_rule "candidate": only the candidate's scores decide
    double vis_threshold


cdef class Workspace:
    """Buffers for one NMS call: exp arguments and results (one entry per candidate keypoint)
    and one OKS per candidate."""
    cdef object arguments_array
    cdef object results_array
    cdef object arguments_view
    cdef object results_view
    cdef Py_ssize_t view_length
    cdef object overlaps_array
    cdef double* arguments
    cdef double* results
    cdef double* overlaps

    def __cinit__(self, Py_ssize_t num_candidates, Py_ssize_t num_keypoints):
        # Zeros: entries past the current count still go through exp (see exp()).
        self.arguments_array = np.zeros(max(num_candidates * num_keypoints, 1))
        self.results_array = np.empty_like(self.arguments_array)
        self.arguments_view = self.arguments_array
        self.results_view = self.results_array
        self.view_length = self.arguments_array.shape[0]
        self.overlaps_array = np.empty(max(num_candidates, 1))
        cdef double[::1] arguments = self.arguments_array
        cdef double[::1] results = self.results_array
        cdef double[::1] overlaps = self.overlaps_array
        self.arguments = &arguments[0]
        self.results = &results[0]
        self.overlaps = &overlaps[0]

    cdef void exp(self, Py_ssize_t count) except *:
        """results[:count] = np.exp(arguments[:count]).

        Slicing the arrays costs more than the exp of a few hundred values, so the views are
        cut anew only when count falls below half their length: the entries between count and
        the view's end (earlier arguments, or the initial zeros) are computed and not read.
        """
        if count > self.view_length or 2 * count < self.view_length:
            self.arguments_view = self.arguments_array[:count]
            self.results_view = self.results_array[:count]
            self.view_length = count
        if count > 0:
            numpy_exp(self.arguments_view, self.results_view)


cdef void fill_negated_errors(const OksProblem* problem, Py_ssize_t top, const Ranked* candidates,
                              Py_ssize_t count, double* out) noexcept nogil:
    """-e_k of every keypoint of each candidate against pose top, candidate after candidate."""
    cdef Py_ssize_t num_keypoints = problem.num_keypoints
    cdef const double* pose = problem.poses + 3 * num_keypoints * top
    cdef const double* candidate
    cdef double denominator, dx, dy
    cdef Py_ssize_t i, j, k
    for i in range(count):
        j = candidates[i].index
        candidate = problem.poses + 3 * num_keypoints * j
        denominator = (problem.areas[top] + problem.areas[j]) / 2 + DBL_EPSILON  # == np.spacing(1)
        for k in range(num_keypoints):
            dx = candidate[3 * k] - pose[3 * k]
            dy = candidate[3 * k + 1] - pose[3 * k + 1]
            out[i * num_keypoints + k] = -((dx * dx + dy * dy) / problem.variances[k] / denominator / 2)


cdef double summed_oks(const OksProblem* problem, Py_ssize_t top, Py_ssize_t candidate_index,
                       const double* similarities) noexcept nogil:
    """OKS from one candidate's per-keypoint exp(-e_k), counting the keypoints the rule admits."""
    cdef Py_ssize_t num_keypoints = problem.num_keypoints
    cdef const double* pose = problem.poses + 3 * num_keypoints * top
    cdef const double* candidate = problem.poses + 3 * num_keypoints * candidate_index
    cdef double threshold = problem.vis_threshold
    cdef double total = 0.0
    cdef Py_ssize_t k, counted = 0
    for k in range(num_keypoints):
        if problem.use_visibility and not (candidate[3 * k + 2] > threshold and (
                problem.candidate_only or pose[3 * k + 2] > threshold)):
            continue
        total += similarities[k]
        counted += 1
    if counted == 0:
        return 0.0
    return total / counted


cdef void compute_overlaps(const OksProblem* problem, Workspace workspace, Py_ssize_t top,
                           const Ranked* candidates, Py_ssize_t count) except *:
    """workspace.overlaps[:count] = OKS of pose top against each of the count candidates."""
    cdef Py_ssize_t i
    fill_negated_errors(problem, top, candidates, count, workspace.arguments)
    workspace.exp(count * problem.num_keypoints)
    for i in range(count):
        workspace.overlaps[i] = summed_oks(problem, top, candidates[i].index,
                                           workspace.results + i * problem.num_keypoints)


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


cdef Py_ssize_t greedy_nms(const OksProblem* problem, Workspace workspace, Ranked* ranked,
                           Py_ssize_t num_poses, double threshold, int64_t[::1] kept) except -1:
    """Greedy OKS NMS over poses already ranked by score; fills kept and returns how many."""
    cdef Py_ssize_t remaining = num_poses
    cdef Py_ssize_t num_kept = 0
    cdef Py_ssize_t j, top, survivors
    while remaining > 0:
        top = ranked[0].index
        kept[num_kept] = top
        num_kept += 1
        compute_overlaps(problem, workspace, top, ranked + 1, remaining - 1)
        survivors = 0
        # Survivors move to the front in rank order; writes never overtake the read position j.
        for j in range(1, remaining):
            if workspace.overlaps[j - 1] <= threshold:
                ranked[survivors] = ranked[j]
                survivors += 1
        remaining = survivors
    return num_kept


cdef Py_ssize_t soft_nms(const OksProblem* problem, Workspace workspace, Ranked* ranked,
                         Py_ssize_t num_poses, double threshold, bint linear, Py_ssize_t max_dets,
                         int64_t[::1] kept) except -1:
    """Soft OKS NMS over poses already ranked by score; fills kept and returns how many."""
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t num_kept = 0
    cdef Py_ssize_t i, count, top
    cdef double oks
    while start < num_poses and num_kept < max_dets:
        top = ranked[start].index
        kept[num_kept] = top
        num_kept += 1
        start += 1
        count = num_poses - start
        compute_overlaps(problem, workspace, top, ranked + start, count)
        if linear:
            for i in range(count):
                oks = workspace.overlaps[i]
                if oks >= threshold:
                    ranked[start + i].score = ranked[start + i].score * (1 - oks)
        else:
            for i in range(count):
                oks = workspace.overlaps[i]
                workspace.arguments[i] = -(oks * oks) / threshold
            workspace.exp(count)
            for i in range(count):
                ranked[start + i].score = ranked[start + i].score * workspace.results[i]
        for i in range(count):
            ranked[start + i].position = i
        sort_descending(ranked + start, count)
    return num_kept


cdef Ranked* allocate_ranked(Py_ssize_t count) except NULL:
    cdef Ranked* ranked = <Ranked*>malloc(max(count, 1) * sizeof(Ranked))
    if ranked == NULL:
        raise MemoryError(f"cannot allocate the ranking of {count} poses")
    return ranked


cdef OksProblem oks_problem(const double[:, :, ::1] poses, const double[::1] areas,
                            const double[::1] variances, object vis_threshold, str vis_rule):
    cdef OksProblem problem
    problem.poses = &poses[0, 0, 0]
    problem.areas = &areas[0]
    problem.variances = &variances[0]
    problem.num_keypoints = poses.shape[1]
    problem.use_visibility = vis_threshold is not None
    problem.candidate_only = vis_rule == "candidate"
    problem.vis_threshold = vis_threshold if vis_threshold is not None else 0.0
    return problem


def oks_iou(pose, candidates, pose_area, candidate_areas, sigmas, vis_threshold=None,
            vis_rule="both"):
    """OKS of one (K, 3) pose against each of M (K, 3) candidates, as a float64 (M,) array.

    With ``vis_threshold``, only keypoints scored above it count: in both poses (``vis_rule``
    "both", the default) or in the candidate only ("candidate", the reference's ``in_vis_thre``);
    a pair with no such keypoint has OKS 0.
    """
    pose, candidates, pose_area, candidate_areas, variances = validated_oks_inputs(
        pose, candidates, pose_area, candidate_areas, sigmas)
    vis_threshold, vis_rule = validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule)
    cdef Py_ssize_t num_candidates = candidates.shape[0]
    result = np.empty(num_candidates, dtype=np.float64)
    if num_candidates == 0:
        return result
    # Pose 0 is the pose, poses 1..M the candidates.
    poses = np.concatenate([pose[None], candidates])
    areas = np.concatenate([[pose_area], candidate_areas])
    cdef OksProblem problem = oks_problem(poses, areas, variances, vis_threshold, vis_rule)
    cdef Workspace workspace = Workspace(num_candidates, problem.num_keypoints)
    cdef double[::1] result_view = result
    cdef Py_ssize_t i
    cdef Ranked* ranked = allocate_ranked(num_candidates)
    try:
        for i in range(num_candidates):
            ranked[i].index = i + 1
        compute_overlaps(&problem, workspace, 0, ranked, num_candidates)
        for i in range(num_candidates):
            result_view[i] = workspace.overlaps[i]
    finally:
        free(ranked)
    return result


def oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None, vis_rule="both"):
    """Greedy OKS NMS: indices of the kept poses (int64), in the order they were kept.

    The best remaining pose (in ``descending_order``) is kept and every remaining pose whose OKS
    with it exceeds ``threshold`` is dropped, until none remain. ``vis_threshold`` and
    ``vis_rule`` as in ``oks_iou``, the kept pose being the first argument.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    vis_threshold, vis_rule = validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule)
    cdef Py_ssize_t num_poses = poses.shape[0]
    kept = np.empty(num_poses, dtype=np.int64)
    if num_poses == 0:
        return kept
    cdef OksProblem problem = oks_problem(poses, areas, variances, vis_threshold, vis_rule)
    cdef Workspace workspace = Workspace(num_poses - 1, problem.num_keypoints)
    cdef Py_ssize_t num_kept
    cdef Ranked* ranked = allocate_ranked(num_poses)
    try:
        rank_by_score(scores, ranked)
        num_kept = greedy_nms(&problem, workspace, ranked, num_poses, float(threshold), kept)
    finally:
        free(ranked)
    return kept[:num_kept]


def soft_oks_nms(poses, scores, areas, threshold, sigmas, vis_threshold=None, method="gaussian",
                 max_dets=20, vis_rule="both"):
    """Soft OKS NMS: indices of at most ``max_dets`` kept poses (int64), in the order they were kept.

    Instead of dropping overlapping poses, their scores decay ("gaussian": by exp(-oks^2 / threshold);
    "linear": by (1 - oks) where oks >= threshold) and the rest are re-ranked (``descending_order``)
    after each pose is kept. ``vis_threshold`` and ``vis_rule`` as in ``oks_iou``.
    """
    poses, scores, areas, variances = validated_nms_inputs(poses, scores, areas, sigmas)
    threshold, method, max_dets = validated_soft_options(threshold, method, max_dets)
    vis_threshold, vis_rule = validated_vis_threshold(vis_threshold), validated_vis_rule(vis_rule)
    cdef Py_ssize_t num_poses = poses.shape[0]
    kept = np.empty(min(num_poses, max_dets), dtype=np.int64)
    if kept.shape[0] == 0:
        return kept
    cdef OksProblem problem = oks_problem(poses, areas, variances, vis_threshold, vis_rule)
    cdef Workspace workspace = Workspace(num_poses - 1, problem.num_keypoints)
    cdef Py_ssize_t num_kept
    cdef Ranked* ranked = allocate_ranked(num_poses)
    try:
        rank_by_score(scores, ranked)
        num_kept = soft_nms(&problem, workspace, ranked, num_poses, threshold, method == "linear",
                            max_dets, kept)
    finally:
        free(ranked)
    return kept[:num_kept]
