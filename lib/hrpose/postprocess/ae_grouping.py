"""Associative-embedding grouping (HigherHRNet): heatmap NMS, top-k, tag matching, adjust, refine.

The bottom-up decoder of HigherHRNet (docs/higherhrnet.md, grouping step by step). The model
gives per joint type j a heatmap (J, H, W) and a tag map (J, H, W, D) (D = 1, or 2 with flip
test, one column per tag source); the tag maps may also come as a sequence of D maps (J, H, W),
which is how the test-time pipeline keeps them (see ``tag_components``). Decoding:

1. ``heatmap_nms`` keeps the local maxima of a max-pool window, ``top_k_candidates`` takes the
   ``max_num_people`` strongest of them per joint type with their (x, y) and tag vectors (torch,
   on the heatmaps' device);
2. ``match_by_tag`` visits the joint types in the reference order and assigns each joint type's
   candidates to the persons found so far by tag distance with the Hungarian algorithm (on the
   CPU; ``assignment`` module); a candidate farther than ``tag_threshold`` from its assigned
   person starts a new person;
3. ``adjust_poses`` moves every found joint a quarter pixel towards its higher neighbour and by
   +0.5; ``pose_scores`` is the mean joint value (missing joints count 0), taken before refine;
4. ``refine_poses`` fills the joints a person is missing from the heatmap maximum penalised by
   the rounded tag distance to the person's mean tag.

``group_keypoints`` runs all of it for a batch. With the defaults the output is the reference
algorithm's (float32 arrays, same arithmetic and dtypes, the reference's defects included),
among equal-cost assignments too (``GroupingParams.assignment_solver`` 'munkres' chooses as the
``munkres`` package the reference calls; 'scipy' is faster and may choose another optimum),
except that among equal heatmap values torch.topk's order may differ between devices and
versions. The reference's float person keys are kept by default;
``GroupingParams.unique_person_ids`` fixes them.

One file over 500 lines on purpose: the decoding steps above share the person table and the
reference's float32 arithmetic, and read in the order they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .assignment import ASSIGNMENT_SOLVERS, AssignmentSolver, get_assignment_solver

# The order in which the reference visits the joint types (COCO numbering: head, shoulders,
# hips, then elbows, wrists, knees, ankles). Its first 14 entries are a permutation of 0..13,
# which is what the reference uses for CrowdPose.
REFERENCE_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
# With USE_DETECTION_VAL the matching cost is round(tag distance) * this - detection value.
DETECTION_VAL_DISTANCE_FACTOR = 100.0
# Cost of the dummy persons that pad the matrix when a joint has more candidates than persons.
PADDING_COST = 1e10
# Adjust and refine move a joint this far towards the higher neighbour, then by HALF_PIXEL.
QUARTER_OFFSET = 0.25
HALF_PIXEL = 0.5
# refine_poses computes at most this many penalised-map pixels at once (bounds its memory).
REFINE_CHUNK_ELEMENTS = 1 << 22
# top_k_candidates suppresses at most this many heatmap pixels at once: small temporaries stay
# in the CPU's cache and in the allocator's reused memory (about 4 maps of 512 x 512).
NMS_CHUNK_ELEMENTS = 1 << 20
# Columns of a grouped joint row: x, y, value, then the D tag components.
X, Y, VALUE, FIRST_TAG = 0, 1, 2, 3


def default_joint_order(num_joints: int) -> tuple[int, ...]:
    """The reference visiting order for ``num_joints`` joint types.

    The reference takes the first ``num_joints`` entries of REFERENCE_JOINT_ORDER (COCO: all 17,
    CrowdPose: the first 14). Where those entries are not a permutation of 0..num_joints-1 the
    reference would fail; here the joint types are then visited in index order.
    """
    prefix = REFERENCE_JOINT_ORDER[:num_joints]
    if sorted(prefix) == list(range(num_joints)):
        return tuple(prefix)
    return tuple(range(num_joints))


@dataclass(frozen=True)
class GroupingParams:
    """Settings of the associative-embedding decoder (HigherHRNet's TEST node and one DATASET key).

    num_joints: J (DATASET.NUM_JOINTS). max_num_people: candidates kept per joint type and
    persons a joint type is matched against (DATASET.MAX_NUM_PEOPLE). detection_threshold: a
    candidate counts when its value is strictly above it (TEST.DETECTION_THRESHOLD).
    tag_threshold: an assignment is kept when the unrounded tag distance is strictly below it
    (TEST.TAG_THRESHOLD). use_detection_val: cost round(distance) * 100 - value instead of the
    distance (TEST.USE_DETECTION_VAL). ignore_too_much: once max_num_people persons exist, later
    joint types are skipped (TEST.IGNORE_TOO_MUCH). nms_kernel, nms_padding: the max-pool window
    (TEST.NMS_KERNEL, TEST.NMS_PADDING; 2 * padding + 1 must equal the kernel). adjust, refine:
    TEST.ADJUST, TEST.REFINE. joint_order: visiting order, None for ``default_joint_order``.
    assignment_solver: the Hungarian solver, a name of assignment.ASSIGNMENT_SOLVERS
    (TEST.ASSIGNMENT_SOLVER; 'munkres' breaks ties as the reference, 'scipy' is faster).

    unique_person_ids: fix for a reference defect. The reference keys persons by the first tag
    component of the candidate that started them, so two candidates with equal first tag
    components fall into one person (the later one overwrites the joint and resets the person's
    tag list). False (default) reproduces that; True gives every new person its own id.
    """

    num_joints: int
    max_num_people: int = 30
    detection_threshold: float = 0.2
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    nms_kernel: int = 3
    nms_padding: int = 1
    adjust: bool = True
    refine: bool = True
    joint_order: tuple[int, ...] | None = None
    unique_person_ids: bool = False
    assignment_solver: str = "munkres"

    def __post_init__(self) -> None:
        if self.num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {self.num_joints}")
        if self.max_num_people < 1:
            raise ValueError(f"max_num_people must be >= 1, got {self.max_num_people}")
        if self.nms_kernel < 1 or 2 * self.nms_padding + 1 != self.nms_kernel:
            raise ValueError(
                f"the heatmap NMS window must keep the map size: nms_kernel ({self.nms_kernel}) "
                f"must equal 2 * nms_padding + 1 (nms_padding {self.nms_padding})")
        if self.joint_order is not None:
            if sorted(self.joint_order) != list(range(self.num_joints)):
                raise ValueError(f"joint_order {tuple(self.joint_order)} is not a permutation of "
                                 f"0..{self.num_joints - 1}")
            object.__setattr__(self, "joint_order", tuple(int(j) for j in self.joint_order))
        if self.assignment_solver not in ASSIGNMENT_SOLVERS:
            raise ValueError(f"assignment_solver {self.assignment_solver!r} is not one of "
                             f"{sorted(ASSIGNMENT_SOLVERS)}")

    def visiting_order(self) -> tuple[int, ...]:
        """The joint types in the order match_by_tag visits them."""
        if self.joint_order is not None:
            return self.joint_order
        return default_joint_order(self.num_joints)

    def solver(self, assignment: AssignmentSolver | None = None) -> AssignmentSolver:
        """``assignment`` when given, else the solver assignment_solver names."""
        return assignment or get_assignment_solver(self.assignment_solver)


class Candidates(NamedTuple):
    """Top-k heatmap peaks per image and joint type, as CPU NumPy arrays.

    values (N, J, K) float32, descending along K; locations (N, J, K, 2) int64 (x = column,
    y = row); tags (N, J, K, D) float32.
    """

    values: np.ndarray
    locations: np.ndarray
    tags: np.ndarray


class GroupedPoses(NamedTuple):
    """One image's persons: poses (P, J, 3 + D) float32 rows (x, y, value, tags...) in heatmap
    pixels, missing joints all zero unless refined; scores (P,) float32."""

    poses: np.ndarray
    scores: np.ndarray


def _max_along(maps: torch.Tensor, padding: int, dim: int) -> torch.Tensor:
    """Maximum over the window [i - padding, i + padding] along ``dim`` (clipped at the ends)."""
    pooled = maps.clone()
    size = maps.shape[dim]
    for shift in range(1, min(padding, size - 1) + 1):
        lower = pooled.narrow(dim, 0, size - shift)    # position i sees i + shift
        torch.maximum(lower, maps.narrow(dim, shift, size - shift), out=lower)
        upper = pooled.narrow(dim, shift, size - shift)    # position i sees i - shift
        torch.maximum(upper, maps.narrow(dim, 0, size - shift), out=upper)
    return pooled


def window_max(maps: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """F.max_pool2d(maps, kernel, stride=1, padding=padding) of (N, C, H, W) maps, bit for bit.

    With kernel == 2 * padding + 1 (the size-keeping window) the maximum is taken separably,
    by shifted element-wise maxima along the rows and then along the columns (max_pool2d's
    padding never wins a maximum): element-wise maxima run on the CPU far faster than
    max_pool2d's kernel. Other windows go to max_pool2d.
    """
    if kernel != 2 * padding + 1:
        return F.max_pool2d(maps, kernel, stride=1, padding=padding)
    return _max_along(_max_along(maps, padding, 2), padding, 3)


def heatmap_nms(heatmaps: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """Zero every pixel of (N, J, H, W) heatmaps that is not the maximum of its window.

    Max-pool with stride 1 (``window_max``) and an equality test, as the reference: plateaus
    keep all their pixels. Runs on the heatmaps' device.
    """
    pooled = window_max(heatmaps, kernel, padding)
    # torch.where: masked_fill and a multiply by the mask are slower on the CPU.
    return torch.where(pooled == heatmaps, heatmaps, 0.0)


TagMaps = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def tag_components(tags: TagMaps, map_dims: int) -> tuple[torch.Tensor, ...]:
    """Tag maps as their D component maps, each with ``map_dims`` dimensions.

    tags: one map of map_dims dimensions (D = 1), a map with a trailing component axis
    (map_dims + 1 dimensions, split into views), or a sequence of D maps. Image-sized tag maps
    are kept as separate components because one buffer holding them all would be large enough
    for the CPU allocator to hand it back to the system after every image.
    """
    if isinstance(tags, (torch.Tensor, np.ndarray)):
        tags = torch.as_tensor(tags)
        if tags.dim() == map_dims:
            return (tags,)
        if tags.dim() == map_dims + 1:
            return tuple(tags.unbind(dim=-1))
        components = [tags]
    else:
        components = [torch.as_tensor(component) for component in tags]
    if not components or any(c.dim() != map_dims or c.shape != components[0].shape
                             for c in components):
        shapes = [tuple(c.shape) for c in components]
        raise ValueError(f"tag maps must be one array of {map_dims} or {map_dims + 1} dimensions "
                         f"or a sequence of equal arrays of {map_dims}; got shapes {shapes}")
    return tuple(components)


def top_k_candidates(heatmaps: torch.Tensor, tags: TagMaps,
                     params: GroupingParams) -> Candidates:
    """NMS, then the max_num_people strongest peaks per joint type with their tag vectors.

    heatmaps (N, J, H, W); tags (N, J, H, W[, D]) or D maps (N, J, H, W), or with one tag
    channel (N, 1, ...) shared by all joint types (MODEL.TAG_PER_JOINT False). Computed on the
    heatmaps' device, returned on the CPU. K = min(max_num_people, H * W).
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be (N, J, H, W), got {tuple(heatmaps.shape)}")
    num_images, num_joints, height, width = heatmaps.shape
    components = tag_components(tags, 4)
    tag_shape = components[0].shape
    if tag_shape[0] != num_images or tag_shape[2:4] != heatmaps.shape[2:4] \
            or tag_shape[1] not in (1, num_joints):
        raise ValueError(f"tags {tuple(tag_shape)} (x{len(components)}) do not fit heatmaps "
                         f"{tuple(heatmaps.shape)}")
    k = min(params.max_num_people, height * width)
    chunk = max(1, NMS_CHUNK_ELEMENTS // (num_images * height * width))
    values, index = [], []
    for start in range(0, num_joints, chunk):
        suppressed = heatmap_nms(heatmaps[:, start:start + chunk], params.nms_kernel,
                                 params.nms_padding)
        chunk_values, chunk_index = suppressed.flatten(2).topk(k, dim=2)
        values.append(chunk_values)
        index.append(chunk_index)
    values, index = torch.cat(values, dim=1), torch.cat(index, dim=1)
    # One gather per tag component (a component of component-last maps flattens without a copy).
    tag_k = torch.stack([
        torch.gather(component.reshape(num_images, tag_shape[1], height * width)
                     .expand(num_images, num_joints, height * width), 2, index)
        for component in components], dim=3)
    locations = torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=3)
    return Candidates(values.cpu().numpy(), locations.cpu().numpy(), tag_k.cpu().numpy())


def matching_cost(candidate_tags: np.ndarray, candidate_values: np.ndarray,
                  person_tags: np.ndarray, use_detection_val: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The Hungarian cost matrix of one joint type and the tag distances it is built from.

    candidate_tags (n, D), candidate_values (n,), person_tags (m, D) (the persons' mean tags).
    Returns cost (n, max(n, m)) and distances (n, m) float64: distances are L2 tag distances;
    cost is the distance, or round(distance) * 100 - value with use_detection_val (NumPy's
    round, half to even); when n > m, n - m columns of PADDING_COST are appended, so each extra
    candidate can be left to a dummy person.
    """
    candidate_tags = np.asarray(candidate_tags, dtype=np.float64)
    candidate_values = np.asarray(candidate_values, dtype=np.float64)
    difference = candidate_tags[:, None, :] - np.asarray(person_tags)[None, :, :]
    distances = np.linalg.norm(difference, ord=2, axis=2)
    cost = distances
    if use_detection_val:
        cost = np.round(distances) * DETECTION_VAL_DISTANCE_FACTOR - candidate_values[:, None]
    num_candidates, num_persons = distances.shape
    if num_candidates > num_persons:
        padding = np.full((num_candidates, num_candidates - num_persons), PADDING_COST)
        cost = np.concatenate((cost, padding), axis=1)
    return cost, distances


class PersonTable:
    """Persons under construction: joint rows (float64, as the reference builds them), the tags
    of their matched joints, and optionally the reference's float person keys.

    With unique_ids False a new person is keyed by the first tag component of the candidate
    that starts it and a candidate whose key already exists lands in that person, resetting its
    tag list (reference behaviour, GroupingParams.unique_person_ids False); with True every
    started candidate is a new person. Both groupings (fixed and progressive order) build their
    persons here.
    """

    def __init__(self, num_joints: int, row_width: int, unique_ids: bool) -> None:
        self.num_joints = num_joints
        self.row_width = row_width
        self.unique_ids = unique_ids
        self.joints: list[np.ndarray] = []
        self.tags: list[list[np.ndarray]] = []
        # Each person's tag vectors summed in the order they were added. With two or more tag
        # components NumPy's mean of a list of tag vectors (axis 0) adds them one after another,
        # so sum / count is the reference's mean bit for bit, without a mean call per person and
        # joint type. (With one component it sums 8 or more pairwise: the lists are averaged.)
        self.tag_sums: list[np.ndarray] = []
        self.index_of_key: dict[float, int] = {}

    @classmethod
    def for_candidates(cls, values: np.ndarray, tags: np.ndarray,
                       params: GroupingParams) -> PersonTable:
        """An empty table for one image's candidates: values (J, K), tags (J, K, D)."""
        if values.shape[0] != params.num_joints:
            raise ValueError(f"expected candidates for {params.num_joints} joint types, got "
                             f"{values.shape[0]}")
        return cls(params.num_joints, FIRST_TAG + tags.shape[-1], params.unique_person_ids)

    def __len__(self) -> int:
        return len(self.joints)

    def start(self, joint_type: int, row: np.ndarray, tag: np.ndarray) -> None:
        """A candidate starts a person; under the reference's float keys it may land in an old one.

        The reference does joints.setdefault(tag[0], zeros)[joint] = row; tags[tag[0]] = [tag].
        """
        person = None if self.unique_ids else self.index_of_key.get(float(tag[0]))
        if person is None:
            person = len(self.joints)
            self.joints.append(np.zeros((self.num_joints, self.row_width)))
            self.tags.append([])    # this list and the sum are set below
            self.tag_sums.append(tag)
            if not self.unique_ids:
                self.index_of_key[float(tag[0])] = person
        self.joints[person][joint_type] = row
        self.tags[person] = [tag]
        self.tag_sums[person] = np.array(tag, copy=True)

    def add(self, person: int, joint_type: int, row: np.ndarray, tag: np.ndarray) -> None:
        self.joints[person][joint_type] = row
        self.tags[person].append(tag)
        self.tag_sums[person] = self.tag_sums[person] + tag

    def mean_tags(self, count: int) -> np.ndarray:
        """Mean tags (count, D) of the first ``count`` persons (float32, as the reference)."""
        if self.tag_sums[0].shape[0] < 2:
            return np.array([np.mean(self.tags[person], axis=0) for person in range(count)])
        sums = np.array(self.tag_sums[:count])
        counts = np.array([len(self.tags[person]) for person in range(count)], dtype=sums.dtype)
        return sums / counts[:, None]

    def poses(self) -> np.ndarray:
        if not self.joints:
            return np.zeros((0, self.num_joints, self.row_width), dtype=np.float32)
        return np.array(self.joints).astype(np.float32)

    def match(self, joint_type: int, rows: np.ndarray, joint_tags: np.ndarray,
              person_tags: np.ndarray, params: GroupingParams,
              assignment: AssignmentSolver) -> None:
        """Assign one joint type's candidates, rows (n, 3 + D) and tags (n, D), to the first
        len(person_tags) persons (their mean tags) by ``assignment`` on ``matching_cost``; a
        candidate left to padding or farther than tag_threshold starts a person."""
        num_grouped = len(person_tags)
        cost, distances = matching_cost(rows[:, FIRST_TAG:], rows[:, VALUE], person_tags,
                                        params.use_detection_val)
        matched_rows, matched_columns = assignment(cost)
        for candidate, person in zip(matched_rows, matched_columns):
            if person < num_grouped and distances[candidate, person] < params.tag_threshold:
                self.add(int(person), joint_type, rows[candidate], joint_tags[candidate])
            else:
                self.start(joint_type, rows[candidate], joint_tags[candidate])


def match_by_tag(values: np.ndarray, locations: np.ndarray, tags: np.ndarray,
                 params: GroupingParams,
                 assignment: AssignmentSolver | None = None) -> np.ndarray:
    """Group one image's candidates into persons; returns poses (P, J, 3 + D) float32.

    values (J, K), locations (J, K, 2) (x, y), tags (J, K, D): one image of Candidates. Persons
    are listed in the order they were started. A pose row is (x, y, value, tag...) at the
    candidate's integer pixel; joints a person lacks are all zero.

    Joint types are visited in params.visiting_order(). Candidates with value <=
    detection_threshold are dropped. The first joint type with candidates starts one person per
    candidate. Every later one is matched against the first max_num_people persons (mean tags)
    by ``assignment`` (a rectangular linear-assignment solver returning row and column indices
    with rows ascending, as scipy's linear_sum_assignment; None: params.assignment_solver) on
    ``matching_cost``; a pair is kept when its unrounded distance is below tag_threshold,
    otherwise the candidate starts a person.
    """
    assignment = params.solver(assignment)
    table = PersonTable.for_candidates(values, tags, params)
    for position, joint_type in enumerate(params.visiting_order()):
        rows = np.concatenate((locations[joint_type], values[joint_type][:, None],
                               tags[joint_type]), axis=1)
        keep = rows[:, VALUE] > params.detection_threshold
        rows, joint_tags = rows[keep], tags[joint_type][keep]
        if rows.shape[0] == 0:
            continue
        if position == 0 or len(table) == 0:
            for row, tag in zip(rows, joint_tags):
                table.start(joint_type, row, tag)
            continue
        num_grouped = min(len(table), params.max_num_people)
        if params.ignore_too_much and num_grouped == params.max_num_people:
            continue
        table.match(joint_type, rows, joint_tags, table.mean_tags(num_grouped), params,
                    assignment)
    return table.poses()


def _quarter_steps(heatmaps: np.ndarray, joint_types: np.ndarray, rows: np.ndarray,
                   columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """+-0.25 per axis towards the strictly higher neighbour (ties -0.25), borders clamped.

    heatmaps (J, H, W); joint_types, rows, columns: integer arrays of one shape.
    """
    height, width = heatmaps.shape[1:]
    right = heatmaps[joint_types, rows, np.minimum(columns + 1, width - 1)]
    left = heatmaps[joint_types, rows, np.maximum(columns - 1, 0)]
    below = heatmaps[joint_types, np.minimum(rows + 1, height - 1), columns]
    above = heatmaps[joint_types, np.maximum(rows - 1, 0), columns]
    step_x = np.where(right > left, QUARTER_OFFSET, -QUARTER_OFFSET)
    step_y = np.where(below > above, QUARTER_OFFSET, -QUARTER_OFFSET)
    return step_x, step_y


def adjust_poses(poses: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Quarter-pixel adjustment of every joint with value > 0; returns a new float32 array.

    poses (P, J, C) as from match_by_tag; heatmaps (J, H, W) (the un-suppressed maps). The
    integer position (truncated) moves +0.25 towards the strictly larger of its two neighbours
    on each axis (-0.25 on a tie; neighbours clamped at the border), then by +0.5 (added to the
    stored coordinate, in float32 as the reference).
    """
    adjusted = np.array(poses, dtype=np.float32, copy=True)
    person, joint_type = np.nonzero(adjusted[:, :, VALUE] > 0)
    if person.size == 0:
        return adjusted
    x, y = adjusted[person, joint_type, X], adjusted[person, joint_type, Y]
    step_x, step_y = _quarter_steps(heatmaps, joint_type, y.astype(np.int64), x.astype(np.int64))
    adjusted[person, joint_type, X] = x + np.float32(step_x) + np.float32(HALF_PIXEL)
    adjusted[person, joint_type, Y] = y + np.float32(step_y) + np.float32(HALF_PIXEL)
    return adjusted


def pose_scores(poses: np.ndarray) -> np.ndarray:
    """Person score = mean value over all J joints (missing ones count 0); (P,) float32."""
    return np.array([pose[:, VALUE].mean() for pose in poses], dtype=np.float32)


def _penalised_argmax(heatmap: torch.Tensor, tag_maps: Sequence[torch.Tensor],
                      person_tags: torch.Tensor) -> torch.Tensor:
    """Per person, the first flat index of the maximum of heatmap - round(||tag - person tag||).

    heatmap (H, W) and its D tag maps (H, W) of one joint type, person_tags (n, D); float32, one
    device. The distance is built as the reference's NumPy expression evaluates it in float32
    (component differences squared, summed in component order, square root, round half to
    even), so the maximum and its first occurrence in row-major order are the same. Returns
    (n,) int64 on that device.
    """
    squared = None
    for component, tag_map in enumerate(tag_maps):
        difference = tag_map[None] - person_tags[:, component, None, None]
        difference.mul_(difference)
        squared = difference if squared is None else squared.add_(difference)
    penalised = torch.sub(heatmap, squared.sqrt_().round_(), out=squared)
    return penalised.reshape(person_tags.shape[0], -1).argmax(dim=1)


def _person_tags(poses: np.ndarray, components: Sequence[torch.Tensor]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean tag (P, D) float32 of each person at the truncated positions of its joints with
    value > 0, averaged as the reference averages its list of tag vectors, and (P,) bool: the
    person has such a joint (the mean of the others is left 0)."""
    person_tags = np.zeros((len(poses), len(components)), dtype=np.float32)
    has_joints = np.zeros(len(poses), dtype=bool)
    found_person, found_joint = np.nonzero(poses[:, :, VALUE] > 0)
    if found_person.size == 0:
        return person_tags, has_joints
    columns = poses[found_person, found_joint, X].astype(np.int32).astype(np.int64)
    rows = poses[found_person, found_joint, Y].astype(np.int32).astype(np.int64)
    tag_rows = np.zeros_like(found_joint) if components[0].shape[0] == 1 else found_joint
    index = [torch.as_tensor(a, device=components[0].device) for a in (tag_rows, rows, columns)]
    # (n, D) rows in person order, laid out as NumPy lays out the reference's list
    found_tags = torch.stack([component[index[0], index[1], index[2]]
                              for component in components], dim=1).cpu().numpy()
    persons, starts = np.unique(found_person, return_index=True)
    for person, person_rows in zip(persons, np.split(found_tags, starts[1:])):
        person_tags[person] = np.mean(person_rows, axis=0)
    has_joints[persons] = True
    return person_tags, has_joints


def refine_poses(poses: np.ndarray, heatmaps: torch.Tensor | np.ndarray,
                 tags: TagMaps) -> np.ndarray:
    """Fill the joints each person lacks; returns new (P, J, C) float32 poses.

    poses (P, J, C) of one image from match_by_tag (optionally adjusted); heatmaps (J, H, W);
    tags (J, H, W), (J, H, W, D) or D maps (J, H, W), or with one shared tag channel (1, ...);
    tensors on any device (the per-pixel work runs there) or NumPy arrays. Per person: its tag is
    the mean tag at the (truncated) positions of its joints with value > 0; for each joint type
    the map heatmap - round(tag distance to that mean) is maximised (first maximum in row-major
    order); the position moves as in adjust_poses and the value is the heatmap there. A joint is
    filled only when its current value is 0 and the new value is > 0; its tag columns stay 0. A
    person without any joint of value > 0 (possible only with a negative detection threshold)
    is returned unchanged, where the reference would average an empty list.

    The reference searches every joint type of every person; only the joints at value 0 can be
    filled, so only those are searched here, all persons lacking one joint type at once.
    """
    refined = np.array(poses, dtype=np.float32, copy=True)
    if len(refined) == 0:
        return refined
    heatmaps = torch.as_tensor(heatmaps, dtype=torch.float32)
    device = heatmaps.device
    components = [torch.as_tensor(component, dtype=torch.float32).to(device)
                  for component in tag_components(tags, 3)]
    shared_tags = components[0].shape[0] == 1
    height, width = heatmaps.shape[1:]
    person_tags, has_joints = _person_tags(refined, components)
    pair_person, pair_joint = np.nonzero((refined[:, :, VALUE] == 0) & has_joints[:, None])
    if pair_person.size == 0:
        return refined
    person_tags = torch.from_numpy(person_tags).to(device)
    chunk = max(1, REFINE_CHUNK_ELEMENTS // (height * width))
    order, best = [], []
    for joint_type in np.unique(pair_joint):
        pairs = np.flatnonzero(pair_joint == joint_type)
        tag_maps = [component[0 if shared_tags else joint_type] for component in components]
        for start in range(0, pairs.size, chunk):
            part = pairs[start:start + chunk]
            part_tags = person_tags[torch.as_tensor(pair_person[part], device=device)]
            best.append(_penalised_argmax(heatmaps[joint_type], tag_maps, part_tags))
            order.append(part)
    order = np.concatenate(order)
    pair_person, pair_joint = pair_person[order], pair_joint[order]
    best = torch.cat(best)
    rows, columns = torch.div(best, width, rounding_mode="floor"), best % width
    joint_types = torch.as_tensor(pair_joint, device=device)
    values = torch.stack([
        heatmaps[joint_types, rows, columns],
        heatmaps[joint_types, rows, (columns + 1).clamp(max=width - 1)],
        heatmaps[joint_types, rows, (columns - 1).clamp(min=0)],
        heatmaps[joint_types, (rows + 1).clamp(max=height - 1), columns],
        heatmaps[joint_types, (rows - 1).clamp(min=0), columns],
    ]).cpu().numpy()
    best = best.cpu().numpy()
    value, right, left, below, above = values
    step_x = np.where(right > left, QUARTER_OFFSET, -QUARTER_OFFSET)
    step_y = np.where(below > above, QUARTER_OFFSET, -QUARTER_OFFSET)
    fill = value > 0
    person, joint = pair_person[fill], pair_joint[fill]
    refined[person, joint, X] = (best % width + HALF_PIXEL + step_x)[fill]
    refined[person, joint, Y] = (best // width + HALF_PIXEL + step_y)[fill]
    refined[person, joint, VALUE] = value[fill]
    return refined


def refine_pose(pose: np.ndarray, heatmaps: torch.Tensor | np.ndarray,
                tags: TagMaps) -> np.ndarray:
    """refine_poses for one person: pose (J, C) -> new (J, C) float32."""
    return refine_poses(np.asarray(pose)[None], heatmaps, tags)[0]


def group_keypoints(heatmaps: torch.Tensor, tags: TagMaps, params: GroupingParams,
                    assignment: AssignmentSolver | None = None,
                    matcher: Callable[..., np.ndarray] | None = None) -> list[GroupedPoses]:
    """Decode a batch: persons and scores per image (HigherHRNet's HeatmapParser.parse).

    heatmaps (N, J, H, W) float (the aggregated, un-suppressed maps; any device); tags
    (N, J or 1, H, W), (N, J or 1, H, W, D) or D maps (N, J or 1, H, W) (``tag_components``).
    NMS, top-k and refine's per-pixel work run on the device; the heatmaps are copied to the CPU
    once for adjust. Scores are taken after adjust and before refine. Coordinates are in heatmap
    pixels (see bottomup.get_final_preds). matcher(values, locations, tags, params, assignment)
    -> poses groups one image's candidates; match_by_tag (the fixed joint order) when None.
    assignment: the Hungarian solver; None for params.assignment_solver.
    """
    matcher = matcher or match_by_tag
    assignment = params.solver(assignment)
    if heatmaps.shape[1] != params.num_joints:
        raise ValueError(f"heatmaps have {heatmaps.shape[1]} joint channels, "
                         f"the grouping expects {params.num_joints}")
    heatmaps = heatmaps.detach().float()
    tags = tuple(component.detach().float() for component in tag_components(tags, 4))
    candidates = top_k_candidates(heatmaps, tags, params)
    heatmaps_cpu = heatmaps.cpu().numpy() if params.adjust else None
    grouped = []
    for image in range(heatmaps.shape[0]):
        poses = matcher(candidates.values[image], candidates.locations[image],
                        candidates.tags[image], params, assignment)
        if params.adjust:
            poses = adjust_poses(poses, heatmaps_cpu[image])
        scores = pose_scores(poses)
        if params.refine:
            poses = refine_poses(poses, heatmaps[image],
                                 tuple(component[image] for component in tags))
        grouped.append(GroupedPoses(poses, scores))
    return grouped

