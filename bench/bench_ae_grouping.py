"""Times HigherHRNet's associative-embedding grouping and post-processing against plain loops.

Part 1, grouping: group_keypoints on (1, J, 128, 128) heatmaps with flip-style tags (1, J, 128,
128, 2), HigherHRNet's experiment settings (detection threshold 0.1, tag threshold 1,
USE_DETECTION_VAL, NMS 5/2, 30 people at most, adjust and refine on), on synthetic maps with 2,
5, 10 and 30 people: a Gaussian per present joint at a random sub-pixel position, small noise,
some joints only weakly visible (below the detection threshold, so refine has work; never the
first joint type visited: see random_people), tags = the person's value + small noise. The
baseline is the reference written out plainly (tests/reference_grouping.py, the decoder the
grouping tests check against): torch NMS and top-k (as the reference), then Python loops over
joint types and persons, per-element adjust, per-person refine with NumPy on the CPU, and a
pure-Python O(n^3) Hungarian solver (as the reference's `munkres`; checked against scipy's
optimum at start-up).

Part 2, pipeline: everything after the network forward for one 512x512 image with flip test and
PROJECT2IMAGE: a fake model replays precomputed outputs (1/4 resolution heatmaps + tags, 1/2
resolution heatmaps; the mirrored pass its own outputs), then resizing, flip averaging,
projection to 512x512, grouping and back-projection; infer_bottom_up against the reference's
steps written plainly with the baseline grouping.

Ours groups with the Hungarian solver --assignment-solver names (TEST.ASSIGNMENT_SOLVER; default
munkres, the reference's tie-breaking; scipy: linear_sum_assignment); the scenes have no tied
assignments (see random_people), so either gives the baseline's persons.

Both run with the malloc settings the tools set at start (utils.allocator.reuse_freed_memory:
image-sized buffers are reused instead of being faulted in again for every image);
--default-malloc leaves glibc's defaults.

Prints per case the time per image of both (each image's fastest of --repeats runs), the
speed ratio (target: 10x) and the largest difference of coordinates and scores. Exits with
status 1 if any result differs (other persons, another order, or a coordinate, value, tag or
score off by more than 1e-6); a missed speed target is reported.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hrpose.datasets.topdown import normalize_image
from hrpose.postprocess.ae_grouping import GroupingParams, group_keypoints
from hrpose.postprocess.assignment import ASSIGNMENT_SOLVERS
from hrpose.postprocess.bottomup import (
    BottomUpTestParams,
    infer_bottom_up,
    resize_align_multi_scale,
)
from hrpose.utils.allocator import reuse_freed_memory
from hrpose.utils.transforms import flip_permutation, get_affine_transform

# The plain-loop reference decoder lives with the tests that check the library against it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_grouping import COCO_JOINT_ORDER, reference_group  # noqa: E402

TARGET_SPEEDUP = 10.0
TOLERANCE = 1e-6
NUM_JOINTS = 17
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, nargs="+", default=[2, 5, 10, 30],
                        help="people per image, one grouping case each")
    parser.add_argument("--images", type=int, default=5,
                        help="distinct random images per grouping case")
    parser.add_argument("--map-size", type=int, default=128, help="heatmap side (grouping cases)")
    parser.add_argument("--pipeline-people", type=int, nargs="*", default=[5, 30],
                        help="people per image, one whole-pipeline case each (none: skip)")
    parser.add_argument("--pipeline-images", type=int, default=2,
                        help="distinct random images per pipeline case")
    parser.add_argument("--image-size", type=int, default=512, help="pipeline image side")
    parser.add_argument("--weak", type=float, default=0.12,
                        help="probability that a joint is only weakly visible (below threshold)")
    parser.add_argument("--noise", type=float, default=0.005, help="heatmap noise (std)")
    parser.add_argument("--tag-noise", type=float, default=0.05, help="tag noise (std)")
    parser.add_argument("--tag-spacing", type=float, default=1.5,
                        help="distance between the tag values of two people")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per image; the fastest one counts")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc settings as they are (the tools change them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--assignment-solver", choices=sorted(ASSIGNMENT_SOLVERS),
                        default="munkres", help="our grouping's Hungarian solver")
    return parser.parse_args(argv)


def grouping_params(assignment_solver: str) -> GroupingParams:
    """HigherHRNet's COCO experiment settings (TEST node, DATASET.MAX_NUM_PEOPLE)."""
    return GroupingParams(num_joints=NUM_JOINTS, max_num_people=30, detection_threshold=0.1,
                          tag_threshold=1.0, use_detection_val=True, ignore_too_much=False,
                          nms_kernel=5, nms_padding=2, adjust=True, refine=True,
                          assignment_solver=assignment_solver)


# ---------------------------------------------------------------------------------------------
# Synthetic people and maps


@dataclass
class People:
    """positions (P, J, 2) float x, y in input pixels; peaks (P, J); tags (P,)."""

    positions: np.ndarray
    peaks: np.ndarray
    tags: np.ndarray


def random_people(rng: np.random.Generator, num_people: int, width: float, height: float,
                  min_separation: float, margin: float, args: argparse.Namespace) -> People:
    """People whose joints of one type are at least min_separation apart (so their peaks
    survive the NMS) and margin from the border; most joints clearly visible, some weak; tags
    args.tag_spacing apart."""
    positions = np.zeros((num_people, NUM_JOINTS, 2))
    for joint in range(NUM_JOINTS):
        chosen: list[np.ndarray] = []
        while len(chosen) < num_people:
            point = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin])
            if all(np.abs(point - other).max() >= min_separation for other in chosen):
                chosen.append(point)
        positions[:, joint] = chosen
    peaks = rng.uniform(0.3, 1.0, (num_people, NUM_JOINTS))
    weak = rng.random((num_people, NUM_JOINTS)) < args.weak
    # The first joint type visited is always visible, so every person is started there. When
    # a later joint type has both new candidates and persons without it, the reference's
    # rounded costs have exact ties (chains of re-assignments that cost the same), which
    # Hungarian solvers break differently: no exact comparison would be possible.
    weak[:, COCO_JOINT_ORDER[0]] = False
    peaks[weak] = rng.uniform(0.03, 0.08, int(weak.sum()))
    tags = rng.permutation(num_people) * args.tag_spacing - num_people * args.tag_spacing / 2
    return People(positions, peaks, tags + rng.uniform(-0.2, 0.2))


def render_maps(rng: np.random.Generator, people: People, factor: float, height: int, width: int,
                sigma: float, args: argparse.Namespace, tag_dim: int = 1
                ) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (J, h, w) and tags (J, h, w, tag_dim) float32 of people drawn on a map that is
    ``factor`` times the input size (pixel centres aligned). Heatmap: per-pixel maximum of the
    people's Gaussians plus noise. Tags: the value of the person whose joint is nearest, plus
    independent noise per component."""
    centers = (people.positions + 0.5) * factor - 0.5
    rows = np.arange(height, dtype=np.float64)[None, :, None]
    columns = np.arange(width, dtype=np.float64)[None, None, :]
    heatmaps = np.zeros((NUM_JOINTS, height, width), dtype=np.float32)
    tags = np.zeros((NUM_JOINTS, height, width, tag_dim), dtype=np.float32)
    for joint in range(NUM_JOINTS):
        x = centers[:, joint, 0][:, None, None]
        y = centers[:, joint, 1][:, None, None]
        squared = (columns - x) ** 2 + (rows - y) ** 2
        gaussians = people.peaks[:, joint, None, None] * np.exp(-squared / (2 * sigma ** 2))
        heatmaps[joint] = gaussians.max(axis=0)
        nearest = squared.argmin(axis=0)
        tags[joint] = people.tags[nearest][..., None]
    heatmaps += rng.normal(0.0, args.noise, heatmaps.shape).astype(np.float32)
    tags += rng.normal(0.0, args.tag_noise, tags.shape).astype(np.float32)
    return heatmaps, tags


# ---------------------------------------------------------------------------------------------
# The baseline: the reference's decoder written plainly


def hungarian(cost: list[list[float]]) -> list[tuple[int, int]]:
    """Minimum-cost assignment of every row of an n x m cost matrix (n <= m), pure Python.

    The O(n^2 m) shortest-augmenting-path form of the Kuhn-Munkres algorithm with row and column
    potentials. Returns (row, column) pairs in ascending row order, as munkres.Munkres.compute.
    """
    num_rows, num_columns = len(cost), len(cost[0])
    if num_rows > num_columns:
        raise ValueError("hungarian needs at least as many columns as rows")
    infinity = math.inf
    row_potential = [0.0] * (num_rows + 1)
    column_potential = [0.0] * (num_columns + 1)
    # owner[j]: 1-based row assigned to column j (0: free); column 0 is a virtual start column.
    owner = [0] * (num_columns + 1)
    previous = [0] * (num_columns + 1)
    for row in range(1, num_rows + 1):
        owner[0] = row
        column = 0
        slack = [infinity] * (num_columns + 1)
        visited = [False] * (num_columns + 1)
        while True:
            visited[column] = True
            current_row = owner[column]
            current_cost = cost[current_row - 1]
            current_potential = row_potential[current_row]
            delta = infinity
            next_column = 0
            for j in range(1, num_columns + 1):
                if not visited[j]:
                    reduced = current_cost[j - 1] - current_potential - column_potential[j]
                    if reduced < slack[j]:
                        slack[j] = reduced
                        previous[j] = column
                    if slack[j] < delta:
                        delta = slack[j]
                        next_column = j
            for j in range(num_columns + 1):
                if visited[j]:
                    row_potential[owner[j]] += delta
                    column_potential[j] -= delta
                else:
                    slack[j] -= delta
            column = next_column
            if owner[column] == 0:
                break
        while column:
            before = previous[column]
            owner[column] = owner[before]
            column = before
    pairs = [(owner[j] - 1, j - 1) for j in range(1, num_columns + 1) if owner[j]]
    return sorted(pairs)


def hungarian_is_optimal(rng: np.random.Generator, trials: int = 30) -> bool:
    """Self-check of the baseline solver: on random matrices shaped like the grouping's
    (rectangular, rounded-distance costs with padding) its total cost is scipy's optimum."""
    from scipy.optimize import linear_sum_assignment
    for _ in range(trials):
        rows = int(rng.integers(1, 12))
        columns = int(rng.integers(rows, 16))
        cost = np.round(rng.uniform(0, 5, (rows, columns))) * 100 - rng.random((rows, columns))
        cost[:, rng.random(columns) < 0.2] = 1e10
        pairs = hungarian(cost.tolist())
        if [row for row, _ in pairs] != list(range(rows)) \
                or len({column for _, column in pairs}) != rows:
            return False
        optimum = cost[linear_sum_assignment(cost)].sum()
        total = cost[tuple(np.array(pairs).T)].sum()
        if not math.isclose(total, optimum, rel_tol=1e-12, abs_tol=1e-9):
            return False
    return True


def hungarian_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """The baseline's solver in the form reference_grouping takes."""
    return hungarian(cost.tolist())


def baseline_group(heatmaps: torch.Tensor, tags: torch.Tensor, params: GroupingParams
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The reference's HeatmapParser.parse for one image (tests/reference_grouping.py with the
    pure-Python solver): heatmaps (1, J, H, W), tags (1, J, H, W, D) on the CPU -> poses
    (P, J, 3 + D) float32, scores (P,)."""
    return reference_group(heatmaps[0].numpy(), tags[0].numpy(), params, hungarian_pairs)


class ReplayModel:
    """Fake network: answers the k-th call with outputs[k % len(outputs)] (original, mirrored)."""

    def __init__(self, outputs: list[list[torch.Tensor]]) -> None:
        self.outputs = outputs
        self.calls = 0

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        answer = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return answer


def baseline_pipeline(model: ReplayModel, image: np.ndarray, input_size: int,
                      flip_index: list[int], params: GroupingParams
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The reference's valid.py steps for one image at scale 1 with flip and PROJECT2IMAGE:
    get_multi_stage_outputs, aggregate_results, parse, get_final_preds."""
    num_joints = params.num_joints
    resized, center, scale = resize_align_multi_scale(image, input_size, 1.0, 1.0)
    base_size = (resized.shape[1], resized.shape[0])
    with torch.no_grad():
        tensor = normalize_image(resized).unsqueeze(0)
        heatmaps, tags = [], []
        for flipped in (False, True):
            outputs = model(torch.flip(tensor, [3]) if flipped else tensor)
            heatmaps_sum = 0
            num_heatmaps = 0
            for i, output in enumerate(outputs):
                if i != len(outputs) - 1:
                    output = F.interpolate(output, size=(outputs[-1].size(2), outputs[-1].size(3)),
                                           mode="bilinear", align_corners=False)
                if flipped:
                    output = torch.flip(output, [3])
                    heatmaps_sum += output[:, :num_joints][:, flip_index]
                else:
                    heatmaps_sum += output[:, :num_joints]
                num_heatmaps += 1
                if i == 0:
                    tag = output[:, num_joints:]
                    tags.append(tag[:, flip_index] if flipped else tag)
            heatmaps.append(heatmaps_sum / num_heatmaps)
        size = (base_size[1], base_size[0])
        heatmaps = [F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
                    for maps in heatmaps]
        tags = [F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
                for maps in tags]
        final_heatmaps = (heatmaps[0] + heatmaps[1]) / 2.0
        final_heatmaps = final_heatmaps / 1.0
        final_tags = torch.cat([torch.unsqueeze(maps, dim=4) for maps in tags], dim=4)
    poses, scores = baseline_group(final_heatmaps, final_tags, params)
    inverse = get_affine_transform(center, scale, 0, (final_heatmaps.size(3),
                                                      final_heatmaps.size(2)), inverse=True)
    results = np.array(poses, dtype=np.float64)
    for person in results:
        for joint in person:
            x, y = joint[0], joint[1]
            joint[0] = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
            joint[1] = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    return results, scores


# ---------------------------------------------------------------------------------------------
# Cases


@dataclass
class Outcome:
    label: str
    baseline_s: float
    ours_s: float
    images: int
    persons: float
    identical: bool
    coordinate_difference: float
    score_difference: float

    @property
    def speedup(self) -> float:
        return self.baseline_s / self.ours_s


def differences(ours: tuple[np.ndarray, np.ndarray], baseline: tuple[np.ndarray, np.ndarray]
                ) -> tuple[bool, float, float]:
    """Whether both found the same persons in the same order with every column (x, y, value,
    tags) and score within TOLERANCE; the largest |difference| of the coordinates (x, y) and of
    the scores (inf when the persons differ)."""
    (poses, scores), (expected_poses, expected_scores) = ours, baseline
    if poses.shape != expected_poses.shape or scores.shape != expected_scores.shape:
        return False, math.inf, math.inf
    if poses.size == 0:
        return True, 0.0, 0.0
    columns = np.abs(poses.astype(np.float64) - expected_poses.astype(np.float64))
    score = float(np.abs(scores.astype(np.float64) - expected_scores.astype(np.float64)).max())
    coordinate = float(columns[..., :2].max())
    return max(float(columns.max()), score) <= TOLERANCE, coordinate, score


def timed(run, inputs: list, repeats: int) -> tuple[float, list]:
    """Time of run(*item) summed over the inputs, each item's time the least of ``repeats``
    runs (the machine may be shared), after one untimed warm-up call; and the results."""
    run(*inputs[0])
    total = 0.0
    results = []
    for item in inputs:
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            result = run(*item)
            best = min(best, time.perf_counter() - started)
        total += best
        results.append(result)
    return total, results


def compare(label: str, baseline, ours, inputs: list, repeats: int) -> Outcome:
    """Times the baseline, then ours, on the same inputs and compares their results."""
    baseline_s, expected = timed(baseline, inputs, repeats)
    ours_s, got = timed(ours, inputs, repeats)
    compared = [differences(a, b) for a, b in zip(got, expected)]
    return Outcome(label, baseline_s, ours_s, len(inputs),
                   float(np.mean([len(poses) for poses, _ in expected])),
                   all(c[0] for c in compared), max(c[1] for c in compared),
                   max(c[2] for c in compared))


def grouping_case(rng: np.random.Generator, num_people: int, args: argparse.Namespace
                  ) -> Outcome:
    params = grouping_params(args.assignment_solver)
    size = args.map_size
    inputs = []
    for _ in range(args.images):
        people = random_people(rng, num_people, size, size, 7.0, 2.0, args)
        heatmaps, tags = render_maps(rng, people, 1.0, size, size, 2.0, args, tag_dim=2)
        inputs.append((torch.from_numpy(heatmaps)[None], torch.from_numpy(tags)[None]))

    def ours(heatmaps, tags):
        grouped = group_keypoints(heatmaps, tags, params)[0]
        return grouped.poses, grouped.scores

    return compare(f"grouping {size}x{size}, {num_people} people",
                   lambda h, t: baseline_group(h, t, params), ours, inputs, args.repeats)


def fake_outputs(rng: np.random.Generator, people: People, input_size: int,
                 flip_index: list[int], args: argparse.Namespace) -> list[list[torch.Tensor]]:
    """HigherHRNet-like outputs of the image and of its mirror: [(1, 2J, s/4, s/4) heatmaps +
    tags, (1, J, s/2, s/2) heatmaps] each, with independent noise."""
    mirrored = People(people.positions.copy(), people.peaks[:, flip_index], people.tags)
    mirrored.positions = people.positions[:, flip_index].copy()
    mirrored.positions[..., 0] = input_size - 1 - mirrored.positions[..., 0]
    answers = []
    for view in (people, mirrored):
        quarter, tags = render_maps(rng, view, 0.25, input_size // 4, input_size // 4, 2.0, args)
        half, _ = render_maps(rng, view, 0.5, input_size // 2, input_size // 2, 2.0, args)
        stage0 = np.concatenate((quarter, tags[..., 0]), axis=0)
        answers.append([torch.from_numpy(stage0)[None], torch.from_numpy(half)[None]])
    return answers


def pipeline_case(rng: np.random.Generator, num_people: int, args: argparse.Namespace) -> Outcome:
    params = grouping_params(args.assignment_solver)
    size = args.image_size
    flip_index = [int(j) for j in flip_permutation(COCO_FLIP_PAIRS, NUM_JOINTS)]
    test_params = BottomUpTestParams(input_size=size, scale_factors=(1.0,), flip_test=True,
                                     flip_index=tuple(flip_index), project2image=True)
    inputs = []
    for _ in range(args.pipeline_images):
        people = random_people(rng, num_people, size, size, 28.0, 8.0, args)
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        inputs.append((fake_outputs(rng, people, size, flip_index, args), image))

    def ours(outputs, image):
        prediction = infer_bottom_up(ReplayModel(outputs), image, test_params, params)
        return prediction.poses, prediction.scores

    def baseline(outputs, image):
        return baseline_pipeline(ReplayModel(outputs), image, size, flip_index, params)

    return compare(f"pipeline {size}x{size} flip, {num_people} people", baseline, ours, inputs,
                   args.repeats)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = not args.default_malloc and reuse_freed_memory()
    allocator = "glibc malloc keeps freed memory" if kept else "default malloc"
    rng = np.random.default_rng(args.seed)
    if not hungarian_is_optimal(np.random.default_rng(args.seed + 1)):
        print("the baseline's Hungarian solver is not optimal", file=sys.stderr)
        return 1
    print(f"AE grouping (HigherHRNet settings: detection 0.1, tag 1, detection value, NMS 5/2, "
          f"30 people, adjust + refine, {args.assignment_solver} solver), "
          f"torch {torch.get_num_threads()} CPU thread(s), seed {args.seed}, {allocator}",
          flush=True)
    header = (f"{'case':<34} {'imgs':>4} {'found':>5} {'baseline ms':>12} {'ours ms':>9} "
              f"{'ratio':>7} {'identical':>9} {'max |dxy|':>10} {'max |dscore|':>12}")
    print(header)
    print("-" * len(header))
    outcomes = []
    cases = [(grouping_case, n) for n in args.people]
    cases += [(pipeline_case, n) for n in args.pipeline_people]
    for run_case, num_people in cases:
        outcome = run_case(rng, num_people, args)
        outcomes.append(outcome)
        print(f"{outcome.label:<34} {outcome.images:>4} {outcome.persons:>5.1f} "
              f"{1e3 * outcome.baseline_s / outcome.images:>12.2f} "
              f"{1e3 * outcome.ours_s / outcome.images:>9.2f} {outcome.speedup:>6.1f}x "
              f"{'yes' if outcome.identical else 'NO':>9} {outcome.coordinate_difference:>10.2e} "
              f"{outcome.score_difference:>12.2e}", flush=True)
    best = max(outcomes, key=lambda o: o.speedup)
    worst = min(outcomes, key=lambda o: o.speedup)
    verdict = "met" if best.speedup >= TARGET_SPEEDUP else "NOT met"
    print(f"speed-up from {worst.speedup:.1f}x ({worst.label}) to {best.speedup:.1f}x "
          f"({best.label}); target {TARGET_SPEEDUP:.0f}x: {verdict}")
    missed = [o.label for o in outcomes if o.speedup < TARGET_SPEEDUP]
    if missed:
        print(f"below {TARGET_SPEEDUP:.0f}x: " + "; ".join(missed))
    identical = all(o.identical for o in outcomes)
    print(f"results identical to the baseline (same persons, same order, |difference| <= "
          f"{TOLERANCE:.0e}) in every case: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
