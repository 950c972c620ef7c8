"""OKS NMS: compiled and NumPy bit for bit, against a brute-force reference, HRNet's oks_iou, by
hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import hrpose
from hrpose import nms
from hrpose.datasets.metadata import COCO, get_keypoint_info

SIGMAS = COCO.sigmas_array
CROWDPOSE_SIGMAS = get_keypoint_info("crowdpose").sigmas_array
NUM_KEYPOINTS = len(SIGMAS)
NUM_RANDOM_PROBLEMS = 1000
EPS = float(np.spacing(1.0))

IMPLEMENTATIONS = [
    pytest.param(nms.numpy_impl, id="numpy"),
    pytest.param(nms.compiled_impl, id="compiled"),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    if request.param is None:
        pytest.skip("the compiled OKS-NMS extension is not built")
    return request.param


@dataclass(frozen=True)
class Problem:
    poses: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
    threshold: float
    vis_threshold: float | None


def clustered_problem(rng: np.random.Generator, sigmas: np.ndarray = SIGMAS) -> Problem:
    """Up to 30 jittered copies of a few people, so that many candidates overlap strongly."""
    num_keypoints = len(sigmas)
    num_poses = int(rng.integers(0, 31))
    num_people = int(rng.integers(1, 4))
    people = (rng.uniform(0, 150, (num_people, 1, 2))
              + rng.normal(0, 25, (num_people, num_keypoints, 2)))
    jitter = (rng.exponential(4.0, (num_poses, 1, 1))
              * rng.normal(size=(num_poses, num_keypoints, 2)))
    xy = people[rng.integers(0, num_people, num_poses)] + jitter
    keypoint_scores = rng.uniform(0, 1, (num_poses, num_keypoints, 1))
    scores = rng.uniform(0, 1, num_poses)
    if rng.uniform() < 0.3:
        scores = np.round(scores, 1)  # tied scores exercise the tie-breaking rule
    return Problem(
        poses=np.concatenate([xy, keypoint_scores], axis=2),
        scores=scores,
        areas=rng.uniform(2000, 8000, num_poses),
        threshold=float(rng.uniform(0.3, 0.95)),
        # 0.97 leaves most pairs with no keypoint visible in both, whose OKS is 0.
        vis_threshold=[None, 0.2, 0.5, 0.97][int(rng.integers(0, 4))],
    )


def reference_oks(g, d, area_g, area_d, sigmas, vis_threshold) -> float:
    """OKS of poses g and d (lists of [x, y, score]) straight from its definition, one keypoint at
    a time."""
    total = 0.0
    counted = 0
    for k, sigma in enumerate(sigmas):
        if vis_threshold is not None and not (g[k][2] > vis_threshold and d[k][2] > vis_threshold):
            continue
        dx = d[k][0] - g[k][0]
        dy = d[k][1] - g[k][1]
        variance = (2 * sigma) * (2 * sigma)
        e = (dx * dx + dy * dy) / variance / ((area_g + area_d) / 2 + EPS) / 2
        total += math.exp(-e)
        counted += 1
    return total / counted if counted else 0.0


class ReferenceOks:
    """Memoised reference OKS between poses i and j of one problem; the NMS loops ask for pairs
    repeatedly."""

    def __init__(self, problem: Problem):
        self.poses = problem.poses.tolist()
        self.areas = problem.areas.tolist()
        self.sigmas = SIGMAS.tolist()
        self.vis_threshold = problem.vis_threshold
        self.cache: dict[tuple[int, int], float] = {}

    def __call__(self, i: int, j: int) -> float:
        if (i, j) not in self.cache:
            self.cache[i, j] = reference_oks(self.poses[i], self.poses[j], self.areas[i],
                                             self.areas[j], self.sigmas, self.vis_threshold)
        return self.cache[i, j]


def descending(scores: list[float]) -> list[int]:
    """Positions by descending score; ties go to the later position (numpy's stable argsort
    reversed)."""
    return sorted(range(len(scores)), key=lambda position: (scores[position], position),
                  reverse=True)


def reference_oks_nms(problem: Problem, oks: ReferenceOks) -> list[int]:
    order = descending(problem.scores.tolist())
    kept = []
    while order:
        top, order = order[0], order[1:]
        kept.append(top)
        order = [i for i in order if oks(top, i) <= problem.threshold]
    return kept


def reference_soft_oks_nms(problem: Problem, oks: ReferenceOks, method: str,
                           max_dets: int = 20) -> list[int]:
    scores = problem.scores.tolist()
    order = descending(scores)
    remaining = [scores[i] for i in order]
    kept = []
    while order and len(kept) < max_dets:
        top, order, remaining = order[0], order[1:], remaining[1:]
        kept.append(top)
        for position, i in enumerate(order):
            overlap = oks(top, i)
            if method == "gaussian":
                remaining[position] *= math.exp(-(overlap * overlap) / problem.threshold)
            elif overlap >= problem.threshold:
                remaining[position] *= 1 - overlap
        reranked = descending(remaining)
        order = [order[p] for p in reranked]
        remaining = [remaining[p] for p in reranked]
    return kept


ALGORITHMS = {
    "oks_nms": (
        lambda impl, p: impl.oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS,
                                     p.vis_threshold),
        reference_oks_nms,
    ),
    "soft_gaussian": (
        lambda impl, p: impl.soft_oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS,
                                          p.vis_threshold, method="gaussian"),
        lambda p, oks: reference_soft_oks_nms(p, oks, "gaussian"),
    ),
    "soft_linear": (
        lambda impl, p: impl.soft_oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS,
                                          p.vis_threshold, method="linear"),
        lambda p, oks: reference_soft_oks_nms(p, oks, "linear"),
    ),
}


@pytest.fixture(scope="module")
def random_problems() -> list[Problem]:
    rng = np.random.default_rng(20240601)
    return [clustered_problem(rng) for _ in range(NUM_RANDOM_PROBLEMS)]


@pytest.fixture(scope="module")
def reference_results(random_problems) -> dict[str, list[list[int]]]:
    oks_tables = [ReferenceOks(problem) for problem in random_problems]
    return {name: [reference(problem, oks)
                   for problem, oks in zip(random_problems, oks_tables, strict=True)]
            for name, (_, reference) in ALGORITHMS.items()}


def test_random_problems_actually_suppress(random_problems, reference_results):
    # Without real overlaps the agreement tests below would prove little.
    suppressing = [len(kept) < len(problem.scores)
                   for problem, kept in zip(random_problems, reference_results["oks_nms"],
                                            strict=True)
                   if len(problem.scores) > 1]
    assert np.mean(suppressing) > 0.5


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_same_kept_indices_as_reference(impl, algorithm, random_problems, reference_results):
    run, _ = ALGORITHMS[algorithm]
    for number, (problem, expected) in enumerate(zip(random_problems, reference_results[algorithm],
                                                     strict=True)):
        kept = run(impl, problem)
        assert kept.dtype == np.int64
        assert kept.tolist() == expected, f"problem {number} ({len(problem.scores)} poses)"


def requires_compiled():
    if nms.compiled_impl is None:
        pytest.skip("the compiled OKS-NMS extension is not built")


def borderline_problem(rng: np.random.Generator, sigmas: np.ndarray) -> Problem:
    """Poses in tied-score groups, some exact duplicates, at distances where the OKS is about
    1e-8 (keypoint errors e_k near 19), so that a soft-NMS decay exp(-oks^2 / t) lies within an
    ulp or two of 1: where one exp differing by an ulp from another turns a tie into an order."""
    num_keypoints = len(sigmas)
    num_poses = int(rng.integers(2, 26))
    area = float(rng.uniform(2000, 8000))
    base = rng.uniform(0, 100, (1, num_keypoints, 2))
    variances = (2 * sigmas) ** 2
    # Offsets of length sqrt(2 e_k var_k area) give keypoint error e_k.
    errors = (rng.uniform(17, 21, (num_poses, 1, 1))
              + rng.normal(0, 0.5, (num_poses, num_keypoints, 1)))
    directions = rng.normal(size=(num_poses, num_keypoints, 2))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    offsets = directions * np.sqrt(2 * errors * variances[None, :, None] * area)
    xy = base + offsets * rng.integers(0, 2, (num_poses, 1, 1))  # about half sit on the base pose
    duplicates = rng.integers(0, num_poses, 1 + num_poses // 3)
    xy[duplicates[1:]] = xy[duplicates[0]]
    keypoint_scores = rng.uniform(0, 1, (num_poses, num_keypoints, 1))
    return Problem(
        poses=np.concatenate([xy, keypoint_scores], axis=2),
        scores=rng.choice([0.9, 0.8, 0.5], num_poses),
        areas=np.full(num_poses, area) * rng.choice([1.0, 1.0, 1.5], num_poses),
        threshold=float(rng.choice([0.3, 0.5, 0.9])),
        vis_threshold=[None, 0.2, 0.5][int(rng.integers(0, 3))],
    )


@pytest.mark.parametrize("sigmas", [SIGMAS, CROWDPOSE_SIGMAS], ids=["17_joints", "14_joints"])
@pytest.mark.parametrize("vis_rule", ["both", "candidate"])
def test_compiled_and_numpy_keep_the_same_poses_bit_for_bit(sigmas, vis_rule):
    # Which poses are kept must not depend on whether a C compiler was there at install. The
    # clustered problems have score ties; the borderline ones ties of decayed scores too.
    requires_compiled()
    rng = np.random.default_rng(len(sigmas) + 100 * (vis_rule == "both"))
    problems = [borderline_problem(rng, sigmas) for _ in range(400)]
    problems += [clustered_problem(rng, sigmas) for _ in range(150)]
    compiled, numpy_impl = nms.compiled_impl, nms.numpy_impl
    for number, p in enumerate(problems):
        common = dict(sigmas=sigmas, vis_threshold=p.vis_threshold, vis_rule=vis_rule)
        args = (p.poses, p.scores, p.areas, p.threshold)
        for name, run in (("oks_nms", lambda impl: impl.oks_nms(*args, **common)),
                          ("soft gaussian", lambda impl: impl.soft_oks_nms(*args, **common)),
                          ("soft linear", lambda impl: impl.soft_oks_nms(*args, method="linear",
                                                                         **common))):
            assert run(compiled).tolist() == run(numpy_impl).tolist(), f"{name}, problem {number}"
        for top in range(min(3, len(p.scores))):
            oks_args = (p.poses[top], p.poses, p.areas[top], p.areas)
            assert np.array_equal(compiled.oks_iou(*oks_args, **common),
                                  numpy_impl.oks_iou(*oks_args, **common)), f"OKS, problem {number}"


def test_borderline_problems_have_decays_within_an_ulp_of_one():
    # The bit-for-bit test above is only telling if many decays exp(-a), a = oks^2 / t, really
    # sit where an exp an ulp off changes them: a near 2^-53 is rounded by exp to 1 or to
    # 1 - 2^-53, the largest double below 1. (On this project's AVX-512 CPUs, the C library's
    # exp in place of NumPy's changed the soft-NMS result of about 2 % of these problems.)
    rng = np.random.default_rng(3)
    near_one = total = 0
    for _ in range(200):
        p = borderline_problem(rng, SIGMAS)
        oks = nms.numpy_impl.oks_iou(p.poses[0], p.poses[1:], p.areas[0], p.areas[1:], SIGMAS)
        exponent = oks * oks / p.threshold
        near_one += np.count_nonzero((exponent >= 2.0 ** -56) & (exponent <= 2.0 ** -50))
        total += len(oks)
    assert near_one > 0.1 * total


def hrnet_oks_iou(g, d, a_g, a_d, sigmas, in_vis_thre=None) -> np.ndarray:
    """oks_iou of HRNet's lib/nms/nms.py (leoxiaobin/deep-high-resolution-net.pytorch; the same
    function is in microsoft/human-pose-estimation.pytorch), rewritten: g is one flat (3K,) pose,
    d an (M, 3K) stack. With in_vis_thre the reference selects e with the Python expression
    ``list(vg > t) and list(vd > t)``, kept here as it is: for K > 0 it is the candidate's list."""
    variances = (sigmas * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    ious = np.zeros(d.shape[0])
    for n in range(d.shape[0]):
        xd, yd, vd = d[n, 0::3], d[n, 1::3], d[n, 2::3]
        e = ((xd - xg) ** 2 + (yd - yg) ** 2) / variances / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            e = e[list(vg > in_vis_thre) and list(vd > in_vis_thre)]
        ious[n] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return ious


def hrnet_oks_nms(poses, scores, areas, threshold, sigmas, in_vis_thre) -> list[int]:
    """HRNet's greedy oks_nms loop around hrnet_oks_iou (ties ordered as hrpose orders them)."""
    flat = poses.reshape(len(poses), -1)
    order = np.argsort(scores, kind="stable")[::-1]
    kept = []
    while order.size > 0:
        top = order[0]
        kept.append(int(top))
        oks = hrnet_oks_iou(flat[top], flat[order[1:]], areas[top], areas[order[1:]], sigmas,
                            in_vis_thre)
        order = order[1:][oks <= threshold]
    return kept


@pytest.mark.parametrize("sigmas", [SIGMAS, CROWDPOSE_SIGMAS], ids=["17_joints", "14_joints"])
def test_candidate_vis_rule_is_the_references_in_vis_thre(impl, sigmas):
    rng = np.random.default_rng(11)
    rule_mattered = 0
    for _ in range(150):
        p = clustered_problem(rng, sigmas)
        if len(p.scores) < 2:
            continue
        threshold = p.vis_threshold if p.vis_threshold is not None else 0.5
        flat = p.poses.reshape(len(p.poses), -1)
        expected = hrnet_oks_iou(flat[0], flat[1:], p.areas[0], p.areas[1:], sigmas, threshold)
        candidate = impl.oks_iou(p.poses[0], p.poses[1:], p.areas[0], p.areas[1:], sigmas,
                                 threshold, vis_rule="candidate")
        both = impl.oks_iou(p.poses[0], p.poses[1:], p.areas[0], p.areas[1:], sigmas, threshold)
        # np.sum adds pairwise, hrpose left to right: equal up to rounding.
        np.testing.assert_allclose(candidate, expected, rtol=1e-13, atol=1e-300)
        rule_mattered += np.count_nonzero(np.abs(both - expected) > 1e-9)
        assert impl.oks_nms(p.poses, p.scores, p.areas, p.threshold, sigmas, threshold,
                            vis_rule="candidate").tolist() == hrnet_oks_nms(
            p.poses, p.scores, p.areas, p.threshold, sigmas, threshold)
    assert rule_mattered > 100  # the default rule, both poses, is really a different one


def test_reference_in_vis_thre_ignores_the_kept_poses_scores(impl):
    # A pose whose second keypoint is unsure (0.1) against a candidate sure of both: the
    # reference, and vis_rule "candidate", count both keypoints; vis_rule "both" only the first.
    sigmas = np.array([0.5, 0.25])
    pose = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.1]])
    candidate = np.array([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    expected = hrnet_oks_iou(pose.reshape(-1), candidate.reshape(1, -1), 1.0, np.ones(1), sigmas,
                             0.5)
    assert expected == pytest.approx([(math.exp(-0.5) + math.exp(-2.0)) / 2], rel=1e-15)
    assert impl.oks_iou(pose, candidate, 1.0, np.ones(1), sigmas, 0.5, vis_rule="candidate") == \
        pytest.approx(expected, rel=1e-15)
    assert impl.oks_iou(pose, candidate, 1.0, np.ones(1), sigmas, 0.5) == \
        pytest.approx([math.exp(-0.5)], rel=1e-15)


@pytest.mark.parametrize("num_poses", [2, 15, 16, 17, 100, 1000])
def test_order_is_descending_score_with_ties_to_the_higher_index(impl, num_poses):
    # What hrpose guarantees, whatever the length: the reference's argsort()[::-1] where the
    # scores are distinct, and among tied scores the higher index first (the reversed stable
    # sort), where NumPy's default sort leaves the order of ties to its algorithm.
    rng = np.random.default_rng(num_poses)
    poses = np.zeros((num_poses, NUM_KEYPOINTS, 3))
    poses[:, :, 0] = np.arange(num_poses)[:, None] * 1000.0  # far apart: nothing is suppressed
    areas = np.full(num_poses, 100.0)
    tied = rng.choice([0.25, 0.5, 0.75], num_poses)
    expected = sorted(range(num_poses), key=lambda i: (tied[i], i), reverse=True)
    assert impl.oks_nms(poses, tied, areas, 0.5, SIGMAS).tolist() == expected
    distinct = rng.permutation(num_poses) / num_poses
    assert (impl.oks_nms(poses, distinct, areas, 0.5, SIGMAS).tolist()
            == np.argsort(distinct)[::-1].tolist())
    # Far-apart poses decay by exactly 1; soft NMS re-ranks the rest the same way after each
    # kept pose, so tied scores swap at every step, as the reference's re-sort does.
    remaining, soft_expected = expected, []
    while remaining:
        soft_expected.append(remaining[0])
        rest = remaining[1:]
        remaining = [rest[position] for position in descending([tied[i] for i in rest])]
    assert (impl.soft_oks_nms(poses, tied, areas, 0.5, SIGMAS, max_dets=num_poses).tolist()
            == soft_expected)


@pytest.mark.parametrize("vis_threshold", [None, 0.5])
def test_oks_of_a_pose_with_itself_is_one(impl, vis_threshold):
    pose = np.random.default_rng(0).uniform(0, 100, (NUM_KEYPOINTS, 3))
    pose[:, 2] = 0.9
    oks = impl.oks_iou(pose, pose[None], 1234.0, np.array([1234.0]), SIGMAS, vis_threshold)
    assert oks.tolist() == [1.0]


def test_hand_computed_oks(impl):
    # Variances (2 sigma)^2 = 1 and 0.25; the mean area is 1, so e = (0.5, 2.0) for unit offsets.
    sigmas = np.array([0.5, 0.25])
    pose = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    candidates = np.array([
        [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
        [[1.0, 0.0, 1.0], [0.0, 1.0, 0.1]],  # second keypoint hidden at vis_threshold 0.5
        [[1.0, 0.0, 0.1], [0.0, 1.0, 0.1]],  # nothing visible in both: OKS 0
    ])
    areas = np.array([1.0, 1.0, 1.0])
    all_keypoints = impl.oks_iou(pose, candidates, 1.0, areas, sigmas)
    assert all_keypoints == pytest.approx([(math.exp(-0.5) + math.exp(-2.0)) / 2] * 3, rel=1e-12)
    visible_only = impl.oks_iou(pose, candidates, 1.0, areas, sigmas, vis_threshold=0.5)
    assert visible_only == pytest.approx([(math.exp(-0.5) + math.exp(-2.0)) / 2, math.exp(-0.5),
                                          0.0], rel=1e-12)


def two_people_three_poses():
    """Poses 0 and 1 are the same person, pose 2 is far away; scores rank 1, 0, 2."""
    person = np.random.default_rng(1).uniform(0, 50, (NUM_KEYPOINTS, 2))
    poses = np.stack([person, person + 0.5, person + 500.0])
    poses = np.concatenate([poses, np.ones((3, NUM_KEYPOINTS, 1))], axis=2)
    return poses, np.array([0.8, 0.9, 0.3]), np.full(3, 2500.0)


def test_hand_computed_nms(impl):
    poses, scores, areas = two_people_three_poses()
    assert impl.oks_nms(poses, scores, areas, 0.5, SIGMAS).tolist() == [1, 2]
    # Pose 0's score decays below pose 2's, so it comes back last.
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS,
                             method="gaussian").tolist() == [1, 2, 0]
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS,
                             method="linear").tolist() == [1, 2, 0]
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS, max_dets=2).tolist() == [1, 2]
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS, max_dets=0).tolist() == []


def test_ties_and_nan_scores_rank_like_reversed_stable_argsort(impl):
    # Far-apart poses keep everything, so the result is the ranking itself.
    poses = np.zeros((5, NUM_KEYPOINTS, 3))
    poses[:, :, 0] = np.arange(5)[:, None] * 1000.0
    scores = np.array([0.5, np.nan, 0.5, 0.7, np.nan])
    areas = np.full(5, 100.0)
    expected = np.argsort(scores, kind="stable")[::-1].tolist()
    assert expected == [4, 1, 3, 2, 0]
    assert impl.oks_nms(poses, scores, areas, 0.5, SIGMAS).tolist() == expected
    # Soft NMS re-sorts the remaining poses after each kept one, and each reversed stable sort swaps
    # the two tied 0.5 scores again, as the reference's argsort()[::-1] does.
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS,
                             method="linear").tolist() == [4, 1, 3, 0, 2]


def test_nan_coordinates_give_nan_oks_and_are_suppressed(impl):
    poses, scores, areas = two_people_three_poses()
    poses[2, 4, 0] = np.nan
    oks = impl.oks_iou(poses[1], poses, areas[1], areas, SIGMAS)
    assert np.isnan(oks[2]) and not np.isnan(oks[:2]).any()
    # NaN <= threshold is false, so a NaN OKS suppresses, as in the reference.
    assert impl.oks_nms(poses, scores, areas, 0.5, SIGMAS).tolist() == [1]


@pytest.mark.parametrize("poses", [np.zeros((0, NUM_KEYPOINTS, 3)), []])
def test_empty_input_keeps_nothing(impl, poses):
    for kept in (impl.oks_nms(poses, [], [], 0.9, SIGMAS),
                 impl.soft_oks_nms(poses, [], [], 0.9, SIGMAS),
                 impl.oks_iou(np.zeros((NUM_KEYPOINTS, 3)), poses, 1.0, [], SIGMAS)):
        assert kept.shape == (0,)
    assert impl.oks_nms(poses, [], [], 0.9, SIGMAS).dtype == np.int64


BAD_CALLS = {
    "poses 2-D": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS)), np.zeros(4), np.ones(4), 0.9,
                                      SIGMAS),
                  r"poses must have shape \(N, K, 3\), got \(4, 17\); sigmas has 17 entries"),
    "K differs from sigmas": (lambda f: f.oks_nms(np.zeros((4, 5, 3)), np.zeros(4), np.ones(4), 0.9,
                                                  SIGMAS),
                              r"poses must have shape \(N, K, 3\), got \(4, 5, 3\); "
                              r"sigmas has 17 entries"),
    "scores length": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(3), np.ones(4),
                                          0.9, SIGMAS),
                      r"scores must have shape \(N,\) = \(4,\)"),
    "areas length": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4),
                                              np.ones(5), 0.9, SIGMAS),
                     r"areas must have shape \(N,\) = \(4,\)"),
    "sigmas 2-D": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4), np.ones(4),
                                       0.9, SIGMAS[None]),
                   r"sigmas must be a non-empty 1-D array"),
    "sigma zero": (lambda f: f.oks_nms(np.zeros((4, 2, 3)), np.zeros(4), np.ones(4), 0.9,
                                       [0.1, 0.0]),
                   r"sigmas must all be positive"),
    "unknown method": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4),
                                                np.ones(4), 0.9, SIGMAS, method="hard"),
                       r"method must be one of"),
    "negative max_dets": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4),
                                                   np.ones(4), 0.9, SIGMAS, max_dets=-1),
                          r"max_dets must be a non-negative integer"),
    "gaussian threshold zero": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)),
                                                         np.zeros(4), np.ones(4), 0.0, SIGMAS),
                                r"threshold, so it must be positive"),
    "unknown vis_rule": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4),
                                             np.ones(4), 0.9, SIGMAS, 0.5, vis_rule="pose"),
                         r"vis_rule must be one of \('both', 'candidate'\), got 'pose'"),
    "oks pose shape": (lambda f: f.oks_iou(np.zeros((5, 3)), np.zeros((2, NUM_KEYPOINTS, 3)), 1.0,
                                           np.ones(2), SIGMAS),
                       r"pose must have shape \(K, 3\), got \(5, 3\); sigmas has 17 entries"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_shape_and_option_errors(impl, case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call(impl)


FALLBACK_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    # A None entry makes `from hrpose.nms import _oks_nms` raise ImportError, as if it were
    # never built.
    sys.modules["hrpose.nms._oks_nms"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from hrpose import nms
        data = np.load(sys.argv[1])
        args = (data["poses"], data["scores"], data["areas"], 0.5, data["sigmas"])
        kept = {"oks_nms": nms.oks_nms(*args).tolist(),
                "soft_gaussian": nms.soft_oks_nms(*args).tolist(),
                "soft_linear": nms.soft_oks_nms(*args, method="linear").tolist()}
    print(json.dumps({"compiled": nms.COMPILED, "is_numpy": nms.oks_nms is nms.numpy_impl.oks_nms,
                      "warnings": [[w.category.__name__, str(w.message)] for w in caught],
                      "kept": kept}))
""")


def test_numpy_fallback_warns_once_and_gives_the_same_results(tmp_path: Path):
    rng = np.random.default_rng(7)
    problem = next(p for p in iter(lambda: clustered_problem(rng), None) if len(p.scores) >= 10)
    problem_file = tmp_path / "problem.npz"
    np.savez(problem_file, poses=problem.poses, scores=problem.scores, areas=problem.areas,
             sigmas=SIGMAS)
    # Run against the same hrpose this test imported, whether installed or on the path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(hrpose.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, str(problem_file)],
                               capture_output=True, text=True, env=env, check=True)
    report = json.loads(completed.stdout)
    assert report["compiled"] is False and report["is_numpy"] is True
    assert len(report["warnings"]) == 1
    category, message = report["warnings"][0]
    assert category == "RuntimeWarning"
    assert "NumPy fallback" in message and "pip install -e ." in message
    args = (problem.poses, problem.scores, problem.areas, 0.5, SIGMAS)
    assert report["kept"] == {"oks_nms": nms.oks_nms(*args).tolist(),
                              "soft_gaussian": nms.soft_oks_nms(*args).tolist(),
                              "soft_linear": nms.soft_oks_nms(*args, method="linear").tolist()}
