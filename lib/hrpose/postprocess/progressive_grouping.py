"""HAE's progressive associative decoding: group joint types in the order of tag agreement.

docs/hae.md (progressive decoding). HigherHRNet's grouping (ae_grouping.match_by_tag)
visits the joint types in a fixed order, so a joint type whose tags sit far from the partial
persons built so far is matched early, fails the tag threshold and leaves one-joint persons
("isolated keypoints"). The progressive decoder instead picks, after every step, the joint type
that is easiest to attach next:

1. Candidates (heatmap NMS + top-k, ae_grouping.top_k_candidates) with value <=
   detection_threshold are dropped; joint types left without candidates are never visited.
2. Seeding: the lowest-index joint type that has candidates starts one person per candidate
   (COCO: the nose; CrowdPose: the left shoulder), as the reference.
3. Selection: for every joint type not visited yet, its score is the smallest L2 distance
   between any of its candidates' tags and any of the first max_num_people persons' mean tags;
   the type with the smallest score is next (ties: lowest joint index, as the reference's
   pending list is in index order).
4. Matching: that type's candidates are assigned to those persons with the Hungarian algorithm
   on ae_grouping.matching_cost (round(distance) * 100 - value with use_detection_val, padded
   with dummy persons); a pair is accepted when the unrounded distance is below tag_threshold,
   otherwise the candidate starts a new person. The type is then marked visited.
5. Steps 3-4 repeat until every joint type with candidates has been visited (or, with
   ignore_too_much, until max_num_people persons exist: the rest is skipped as in the fixed
   order). Then adjust, score and refine as HigherHRNet (ae_grouping's functions).

Where the reference crashes, this one does not: it drops empty joint types up front, so an
empty type can never win the selection (the reference scores it 10, and if it wins, its lazy
removal later calls list.index on a type already removed -> ValueError); an image without any
candidate gives no persons; ignore_too_much does not desynchronise the type bookkeeping (the
reference skips appending a score but still indexes the pending list with it). The reference
ignores TEST joint_order; so does this decoder (params.joint_order only affects the fixed order).

``count_isolated_keypoints`` counts one-joint persons, the figure HAE's decoding is meant to
reduce; ``GROUPING_FUNCTIONS`` maps the TEST.GROUPING names to the two decoders.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from ..utils.lookup import lookup
from .ae_grouping import (
    VALUE,
    AssignmentSolver,
    GroupedPoses,
    GroupingParams,
    PersonTable,
    TagMaps,
    group_keypoints,
)

GroupingFunction = Callable[..., list[GroupedPoses]]


class ProgressiveMatch(NamedTuple):
    """One image's grouping: poses (P, J, 3 + D) float32 rows (x, y, value, tags...) at integer
    heatmap pixels (missing joints all zero), and the joint types in the order they were
    visited (the seed type first; types without candidates are absent)."""

    poses: np.ndarray
    visit_order: tuple[int, ...]


def _candidate_rows(values: np.ndarray, locations: np.ndarray, tags: np.ndarray,
                    threshold: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per joint type with candidates above threshold: rows (n, 3 + D) and tags (n, D)."""
    candidates = {}
    for joint_type in range(values.shape[0]):
        keep = values[joint_type] > threshold
        if not keep.any():
            continue
        rows = np.concatenate((locations[joint_type], values[joint_type][:, None],
                               tags[joint_type]), axis=1)
        candidates[joint_type] = (rows[keep], tags[joint_type][keep])
    return candidates


def _nearest_tag_distances(pending_tags: list[np.ndarray], person_tags: np.ndarray) -> np.ndarray:
    """Per pending joint type, the smallest L2 distance of any candidate tag to any person tag.

    pending_tags: one non-empty (n_p, D) array per type; person_tags (m, D), m >= 1.
    """
    stacked = np.concatenate(pending_tags, axis=0).astype(np.float64)
    distances = np.linalg.norm(stacked[:, None, :] - person_tags[None, :, :], ord=2, axis=2)
    nearest = distances.min(axis=1)
    starts = np.cumsum([0] + [len(t) for t in pending_tags[:-1]])
    return np.minimum.reduceat(nearest, starts)


def progressive_match(values: np.ndarray, locations: np.ndarray, tags: np.ndarray,
                      params: GroupingParams,
                      assignment: AssignmentSolver | None = None) -> ProgressiveMatch:
    """Group one image's candidates into persons, visiting the easiest joint type next.

    values (J, K), locations (J, K, 2) (x, y), tags (J, K, D): one image of
    ae_grouping.Candidates. Seeding, selection, matching and stopping as in the module
    docstring; ``assignment`` is a rectangular linear-assignment solver (None:
    params.assignment_solver). Persons are listed in the order they were started.
    """
    assignment = params.solver(assignment)
    persons = PersonTable.for_candidates(values, tags, params)
    candidates = _candidate_rows(values, locations, tags, params.detection_threshold)
    pending = sorted(candidates)
    if not pending:
        return ProgressiveMatch(persons.poses(), ())
    seed = pending.pop(0)
    for row, tag in zip(*candidates[seed]):
        persons.start(seed, row, tag)
    visit_order = [seed]
    while pending:
        if params.ignore_too_much and len(persons) >= params.max_num_people:
            break
        num_grouped = min(len(persons), params.max_num_people)
        person_tags = persons.mean_tags(num_grouped)
        scores = _nearest_tag_distances([candidates[p][1] for p in pending], person_tags)
        joint_type = pending.pop(int(np.argmin(scores)))
        rows, joint_tags = candidates[joint_type]
        persons.match(joint_type, rows, joint_tags, person_tags, params, assignment)
        visit_order.append(joint_type)
    return ProgressiveMatch(persons.poses(), tuple(visit_order))


def _progressive_poses(values: np.ndarray, locations: np.ndarray, tags: np.ndarray,
                       params: GroupingParams, assignment: AssignmentSolver) -> np.ndarray:
    return progressive_match(values, locations, tags, params, assignment).poses


def group_keypoints_progressive(heatmaps: torch.Tensor, tags: TagMaps,
                                params: GroupingParams,
                                assignment: AssignmentSolver | None = None
                                ) -> list[GroupedPoses]:
    """ae_grouping.group_keypoints with progressive matching: persons and scores per image.

    Same inputs and outputs: heatmaps (N, J, H, W) (aggregated, un-suppressed; any device),
    tags (N, J or 1, H, W), (N, J or 1, H, W, D) or D maps (N, J or 1, H, W); poses in heatmap
    pixels, adjusted, scored (mean joint value, before refine), refined, as params says.
    """
    return group_keypoints(heatmaps, tags, params, assignment, matcher=_progressive_poses)


# TEST.GROUPING -> decoder with group_keypoints' signature.
GROUPING_FUNCTIONS: dict[str, GroupingFunction] = {
    "fixed": group_keypoints,
    "progressive": group_keypoints_progressive,
}


def get_grouping_function(name: str) -> GroupingFunction:
    """The decoder a TEST.GROUPING value names ('fixed' or 'progressive')."""
    return lookup(GROUPING_FUNCTIONS, name, "unknown grouping {!r}")


def count_isolated_keypoints(poses: np.ndarray, detection_threshold: float) -> int:
    """Number of persons in one image with exactly one joint whose value is above the threshold.

    poses (P, J, >= 3) (x, y, value, ...). Measure the grouping itself on poses decoded with
    refine off: refine fills missing joints from the heatmaps and hides the isolated ones.
    """
    poses = np.asarray(poses)
    if poses.size == 0:
        return 0
    found = (poses[:, :, VALUE] > detection_threshold).sum(axis=1)
    return int((found == 1).sum())


def isolated_keypoints_per_image(grouped: Sequence[GroupedPoses],
                                 detection_threshold: float) -> np.ndarray:
    """count_isolated_keypoints for every image of a batch; (N,) int64."""
    return np.array([count_isolated_keypoints(g.poses, detection_threshold) for g in grouped],
                    dtype=np.int64)
