"""OKS NMS: the compiled and NumPy implementations against a brute-force reference and by hand."""

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
from hrpose.datasets.metadata import COCO

SIGMAS = COCO.sigmas_array
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


def clustered_problem(rng: np.random.Generator) -> Problem:
    """Up to 30 jittered copies of a few people, so that many candidates overlap strongly."""
    num_poses = int(rng.integers(0, 31))
    num_people = int(rng.integers(1, 4))
    people = rng.uniform(0, 150, (num_people, 1, 2)) + rng.normal(0, 25, (num_people, NUM_KEYPOINTS, 2))
    jitter = rng.exponential(4.0, (num_poses, 1, 1)) * rng.normal(size=(num_poses, NUM_KEYPOINTS, 2))
    xy = people[rng.integers(0, num_people, num_poses)] + jitter
    keypoint_scores = rng.uniform(0, 1, (num_poses, NUM_KEYPOINTS, 1))
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
    """OKS of poses g and d (lists of [x, y, score]) straight from its definition, one keypoint at a time."""
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
    """Memoised reference OKS between poses i and j of one problem; the NMS loops ask for pairs repeatedly."""

    def __init__(self, problem: Problem):
        self.poses = problem.poses.tolist()
        self.areas = problem.areas.tolist()
        self.sigmas = SIGMAS.tolist()
        self.vis_threshold = problem.vis_threshold
        self.cache: dict[tuple[int, int], float] = {}

    def __call__(self, i: int, j: int) -> float:
        if (i, j) not in self.cache:
            self.cache[i, j] = reference_oks(self.poses[i], self.poses[j], self.areas[i], self.areas[j],
                                             self.sigmas, self.vis_threshold)
        return self.cache[i, j]


def descending(scores: list[float]) -> list[int]:
    """Positions by descending score; ties go to the later position (numpy's stable argsort reversed)."""
    return sorted(range(len(scores)), key=lambda position: (scores[position], position), reverse=True)


def reference_oks_nms(problem: Problem, oks: ReferenceOks) -> list[int]:
    order = descending(problem.scores.tolist())
    kept = []
    while order:
        top, order = order[0], order[1:]
        kept.append(top)
        order = [i for i in order if oks(top, i) <= problem.threshold]
    return kept


def reference_soft_oks_nms(problem: Problem, oks: ReferenceOks, method: str, max_dets: int = 20) -> list[int]:
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
        lambda impl, p: impl.oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS, p.vis_threshold),
        reference_oks_nms,
    ),
    "soft_gaussian": (
        lambda impl, p: impl.soft_oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS, p.vis_threshold,
                                          method="gaussian"),
        lambda p, oks: reference_soft_oks_nms(p, oks, "gaussian"),
    ),
    "soft_linear": (
        lambda impl, p: impl.soft_oks_nms(p.poses, p.scores, p.areas, p.threshold, SIGMAS, p.vis_threshold,
                                          method="linear"),
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
    return {name: [reference(problem, oks) for problem, oks in zip(random_problems, oks_tables, strict=True)]
            for name, (_, reference) in ALGORITHMS.items()}


def test_random_problems_actually_suppress(random_problems, reference_results):
    # Without real overlaps the agreement tests below would prove little.
    suppressing = [len(kept) < len(problem.scores)
                   for problem, kept in zip(random_problems, reference_results["oks_nms"], strict=True)
                   if len(problem.scores) > 1]
    assert np.mean(suppressing) > 0.5


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_same_kept_indices_as_reference(impl, algorithm, random_problems, reference_results):
    run, _ = ALGORITHMS[algorithm]
    for number, (problem, expected) in enumerate(zip(random_problems, reference_results[algorithm], strict=True)):
        kept = run(impl, problem)
        assert kept.dtype == np.int64
        assert kept.tolist() == expected, f"problem {number} ({len(problem.scores)} poses)"


def test_compiled_oks_matches_numpy(random_problems):
    if nms.compiled_impl is None:
        pytest.skip("the compiled OKS-NMS extension is not built")
    for problem in random_problems:
        if len(problem.scores) == 0:
            continue
        args = (problem.poses[0], problem.poses, problem.areas[0], problem.areas, SIGMAS, problem.vis_threshold)
        # The same operations in the same order; only the exp of NumPy's AVX-512 loops may differ from
        # the C library's, and then by an ulp or so.
        np.testing.assert_allclose(nms.compiled_impl.oks_iou(*args), nms.numpy_impl.oks_iou(*args),
                                   rtol=1e-14, atol=0)


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
    assert visible_only == pytest.approx([(math.exp(-0.5) + math.exp(-2.0)) / 2, math.exp(-0.5), 0.0],
                                         rel=1e-12)


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
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS, method="gaussian").tolist() == [1, 2, 0]
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS, method="linear").tolist() == [1, 2, 0]
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
    assert impl.soft_oks_nms(poses, scores, areas, 0.5, SIGMAS, method="linear").tolist() == [4, 1, 3, 0, 2]


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
    "poses 2-D": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS)), np.zeros(4), np.ones(4), 0.9, SIGMAS),
                  r"poses must have shape \(N, K, 3\), got \(4, 17\); sigmas has 17 entries"),
    "K differs from sigmas": (lambda f: f.oks_nms(np.zeros((4, 5, 3)), np.zeros(4), np.ones(4), 0.9, SIGMAS),
                              r"poses must have shape \(N, K, 3\), got \(4, 5, 3\); sigmas has 17 entries"),
    "scores length": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(3), np.ones(4), 0.9, SIGMAS),
                      r"scores must have shape \(N,\) = \(4,\)"),
    "areas length": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4), np.ones(5), 0.9,
                                              SIGMAS),
                     r"areas must have shape \(N,\) = \(4,\)"),
    "sigmas 2-D": (lambda f: f.oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4), np.ones(4), 0.9,
                                       SIGMAS[None]),
                   r"sigmas must be a non-empty 1-D array"),
    "sigma zero": (lambda f: f.oks_nms(np.zeros((4, 2, 3)), np.zeros(4), np.ones(4), 0.9, [0.1, 0.0]),
                   r"sigmas must all be positive"),
    "unknown method": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4), np.ones(4), 0.9,
                                                SIGMAS, method="hard"),
                       r"method must be one of"),
    "negative max_dets": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4), np.ones(4),
                                                   0.9, SIGMAS, max_dets=-1),
                          r"max_dets must be a non-negative integer"),
    "gaussian threshold zero": (lambda f: f.soft_oks_nms(np.zeros((4, NUM_KEYPOINTS, 3)), np.zeros(4),
                                                         np.ones(4), 0.0, SIGMAS),
                                r"threshold, so it must be positive"),
    "oks pose shape": (lambda f: f.oks_iou(np.zeros((5, 3)), np.zeros((2, NUM_KEYPOINTS, 3)), 1.0, np.ones(2),
                                           SIGMAS),
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
    # A None entry makes `from hrpose.nms import _oks_nms` raise ImportError, as if it were never built.
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
                      "warnings": [[w.category.__name__, str(w.message)] for w in caught], "kept": kept}))
""")


def test_numpy_fallback_warns_once_and_gives_the_same_results(tmp_path: Path):
    rng = np.random.default_rng(7)
    problem = next(p for p in iter(lambda: clustered_problem(rng), None) if len(p.scores) >= 10)
    problem_file = tmp_path / "problem.npz"
    np.savez(problem_file, poses=problem.poses, scores=problem.scores, areas=problem.areas, sigmas=SIGMAS)
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
