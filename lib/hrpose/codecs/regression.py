"""Heatmap-guided keypoint regression targets (2020 paper): centre, tradeoff heatmaps, offsets.

The codec of "Bottom-Up Human Pose Estimation by Ranking Heatmap-Guided Adaptive Keypoint
Estimates" (docs/regression.md, targets). Layout shared with the regression loss and
the regression decoder:

* joints of one image at one output resolution: (P, J + 1, 3) float as (x, y, v) in output pixels
  of a square S x S map, the person's centre appended as joint J (``with_center_joint``).
* heatmaps: (J + 1, S, S) float32, per pixel the maximum over people of a Gaussian centred on the
  sub-pixel joint position, keypoints with sigma SIGMA and the centre with CENTER_SIGMA; and one
  weight map (1, S, S) float32: 1 inside any joint's window, BG_WEIGHT elsewhere (the "tradeoff"
  target that turns the background down). The training mask is the crowd mask times the weights.
* offsets: (2J, S, S) float32 laid out (x0, y0, x1, y1, ...): at pixel (px, py) near a person's
  centre, joint j sits at (px - offset_x, py - offset_y); weights (2J, S, S) float32 are
  1 / sqrt(person area) where an offset is given, 0 elsewhere.

Window arithmetic is the reference's, value for value: a Gaussian is drawn over columns
[floor(x - 3 sigma - 1), ceil(x + 3 sigma + 2)) (rows likewise) at integer pixel positions; an
offset window covers [int(cx) - r, int(cx) + r) around the truncated centre (8 x 8 for r = 4),
clipped. Heatmaps are vectorised over people and joints; offsets loop over people only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .associative_embedding import resolve_sigma

# A person whose annotated area is below this gets no centre (COCO; CrowdPose has no area test).
CENTER_MIN_AREA = 32.0 ** 2
# The reference chooses the sigma by channel index: index < 17 uses SIGMA, the rest CENTER_SIGMA.
# With J = 17 (COCO) that is the centre; with CrowdPose's J = 14 the centre (index 14) gets SIGMA.
REFERENCE_CENTER_SIGMA_INDEX = 17
# A Gaussian's window reaches this many sigmas (plus one or two pixels) from the joint.
WINDOW_SIGMAS = 3
# Weight-map value inside a joint's window.
FOREGROUND_WEIGHT = 1.0


def _check_joints(joints: np.ndarray, name: str = "joints") -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[2] < 3:
        raise ValueError(f"{name} must have shape (people, joints, 3 or more) as x, y, v; "
                         f"got {joints.shape}")
    return joints


# ------------------------------------------------------------------------------------------------
# The centre joint


def center_joints(keypoints: np.ndarray, boxes: np.ndarray, areas: np.ndarray | None = None,
                  min_area: float = CENTER_MIN_AREA,
                  use_bbox_center: bool = False) -> np.ndarray:
    """Each person's centre (P, 3) as (x, y, v), in the keypoints' pixels (original image).

    keypoints (P, J, 3) as (x, y, v); boxes (P, 4) as x, y, w, h; areas (P,) the annotations'
    ``area`` (segmentation area), or None to skip the area test (CrowdPose). A person with area
    < min_area has no centre (0, 0, 0). Otherwise v = 1 and the centre is the mean of the
    joints with v > 0, or the box centre when no joint is labelled or ``use_bbox_center``.
    (The reference divides the sum over all J rows by the count of labelled ones; unlabelled
    rows are (0, 0) in COCO-format files, so that is the same mean.)
    """
    keypoints = _check_joints(keypoints, "keypoints")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] != keypoints.shape[0]:
        raise ValueError(f"got {boxes.shape[0]} boxes for {keypoints.shape[0]} people")
    labelled = keypoints[..., 2] > 0
    count = labelled.sum(axis=1)
    mean = (keypoints[..., :2] * labelled[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    box_center = np.stack([(2 * boxes[:, 0] + boxes[:, 2]) / 2.0,
                           (2 * boxes[:, 1] + boxes[:, 3]) / 2.0], axis=1)
    use_box = (count == 0) | bool(use_bbox_center)
    centers = np.zeros((keypoints.shape[0], 3))
    centers[:, :2] = np.where(use_box[:, None], box_center, mean)
    centers[:, 2] = 1.0
    if areas is not None:
        areas = np.asarray(areas, dtype=np.float64).reshape(-1)
        if areas.shape[0] != keypoints.shape[0]:
            raise ValueError(f"got {areas.shape[0]} areas for {keypoints.shape[0]} people")
        centers[areas < min_area] = 0.0
    return centers


def with_center_joint(keypoints: np.ndarray, boxes: np.ndarray, areas: np.ndarray | None = None,
                      min_area: float = CENTER_MIN_AREA,
                      use_bbox_center: bool = False) -> np.ndarray:
    """Joints (P, J + 1, 3): the keypoints with ``center_joints`` appended as the last joint."""
    keypoints = _check_joints(keypoints, "keypoints")
    centers = center_joints(keypoints, boxes, areas, min_area, use_bbox_center)
    return np.concatenate([keypoints[..., :3], centers[:, None, :]], axis=1)


def areas_in_input_pixels(areas: np.ndarray, matrix: np.ndarray,
                          reference: bool = True) -> np.ndarray:
    """People's areas (P,) (box w * h, or segmentation areas) carried into the network input.

    matrix: the (2, 3) affine from the image to the input crop. The reference multiplies by
    matrix[0, 0] * matrix[1, 1], which is zoom^2 cos^2(r) under a rotation r (areas shrink by up
    to a quarter at 30 degrees); reference=False uses |det| = zoom^2, the true area factor.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    factor = matrix[0, 0] * matrix[1, 1] if reference else abs(np.linalg.det(matrix[:, :2]))
    return np.asarray(areas, dtype=np.float64).reshape(-1) * factor


# ------------------------------------------------------------------------------------------------
# Tradeoff heatmaps


def channel_sigmas(num_channels: int, sigma: float, center_sigma: float,
                   fix_center_sigma: bool = False) -> np.ndarray:
    """The Gaussian sigma of each heatmap channel (C,) float64, the centre being the last.

    fix_center_sigma False reproduces the reference: channels with index < 17 use ``sigma``,
    the others ``center_sigma`` (right for COCO's 17 + 1 channels; CrowdPose's centre at index
    14 then gets ``sigma``, as the published CrowdPose models were trained). True gives the last
    channel ``center_sigma`` and every keypoint channel ``sigma``, on any dataset.
    """
    index = np.arange(int(num_channels))
    is_center = (index == num_channels - 1) if fix_center_sigma \
        else (index >= REFERENCE_CENTER_SIGMA_INDEX)
    return np.where(is_center, float(center_sigma), float(sigma))


def encode_tradeoff_heatmaps(joints: np.ndarray, output_size: int,
                             sigmas: float | Sequence[float] | np.ndarray,
                             bg_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (C, S, S) float32 and their weight map (1, S, S) float32 for joints (P, C, >=3).

    sigmas: one per channel (``channel_sigmas``) or one for all. A joint is drawn when v > 0 and
    0 <= x < S, 0 <= y < S (float tests): pixels (sx, sy) with sx in [floor(x - 3 sigma - 1),
    ceil(x + 3 sigma + 2)) and sy likewise, clipped to the map, get exp(-((sx - x)^2 +
    (sy - y)^2) / (2 sigma^2)) (float64, stored float32), people combined by a per-pixel
    maximum. The weight map is 1 on every drawn window (any channel) and bg_weight elsewhere.
    Bit-equal to the reference's per-pixel loops.
    """
    joints = _check_joints(joints)
    num_people, num_channels = joints.shape[:2]
    size = int(output_size)
    per_channel = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), (num_channels,))
    if np.any(per_channel <= 0):
        raise ValueError(f"heatmap sigmas must be positive, got {per_channel}")
    heatmaps = np.zeros((num_channels, size, size), dtype=np.float32)
    near_joint = np.zeros((size, size), dtype=bool)
    x, y = joints[..., 0], joints[..., 1]
    with np.errstate(invalid="ignore"):
        drawn = (joints[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < size) & (y < size)
    person, channel = np.nonzero(drawn)
    if person.size:
        x, y = x[person, channel], y[person, channel]
        sigma = per_channel[channel]
        left = np.floor(x - WINDOW_SIGMAS * sigma - 1).astype(np.int64)
        top = np.floor(y - WINDOW_SIGMAS * sigma - 1).astype(np.int64)
        right = np.minimum(np.ceil(x + WINDOW_SIGMAS * sigma + 2).astype(np.int64), size)
        bottom = np.minimum(np.ceil(y + WINDOW_SIGMAS * sigma + 2).astype(np.int64), size)
        span = np.arange(int(max((right - left).max(), (bottom - top).max(), 0)))
        columns = left[:, None] + span  # (n, K)
        rows = top[:, None] + span
        column_ok = (columns >= 0) & (columns < right[:, None])
        row_ok = (rows >= 0) & (rows < bottom[:, None])
        # The reference's expression, element for element: -((sx - x)^2 + (sy - y)^2) / (2 s^2).
        column_term = (columns - x[:, None]) ** 2
        row_term = (rows - y[:, None]) ** 2
        values = np.exp(-(column_term[:, None, :] + row_term[:, :, None])
                        / (2 * sigma ** 2)[:, None, None]).astype(np.float32)
        inside = row_ok[:, :, None] & column_ok[:, None, :]
        pixel = rows[:, :, None] * size + columns[:, None, :]
        flat = channel[:, None, None] * size * size + pixel
        np.maximum.at(heatmaps.reshape(-1), flat[inside], values[inside])
        near_joint.reshape(-1)[pixel[inside]] = True
    weights = np.where(near_joint, np.float32(FOREGROUND_WEIGHT),
                       np.float32(bg_weight)).astype(np.float32)[None]
    return heatmaps, weights


# ------------------------------------------------------------------------------------------------
# Offsets


def encode_offsets(joints: np.ndarray, areas: np.ndarray, output_size: int,
                   radius: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Offset targets (2J, S, S) and weights (2J, S, S), both float32, for joints (P, J + 1, >=3).

    The last joint is the centre; areas (P,) the people's areas (the weight is 1 / sqrt(area)).
    A person counts when int(v_centre) >= 1 and the truncated centre (cx, cy) = (int(x), int(y))
    lies in the map; each of its joints with v > 0 and 0 <= x < S, 0 <= y < S gets, at every
    pixel (px, py) with px in [max(cx - r, 0), min(cx + r, S)) (rows likewise), the offset
    (px - x, py - y) and the weight 1 / sqrt(area) on both channels.

    Overlaps follow the reference's sequential rule exactly (people in order, then joints, then
    pixels): a pixel whose offset for this joint is non-zero is overwritten only if the area
    last stored at that pixel (one float32 map shared by all joints, set by every write) is not
    smaller than this person's area. So the smaller person keeps the pixel, and once a person
    has written a pixel for one joint its later joints overwrite there (the stored area is its
    own then, up to float32 rounding of the area). People with a non-positive area get no
    offsets (the reference would write infinite weights).
    """
    joints = _check_joints(joints)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    num_people, count = joints.shape[:2]
    if areas.shape[0] != num_people:
        raise ValueError(f"got {areas.shape[0]} areas for {num_people} people")
    num_keypoints = count - 1
    if num_keypoints < 1:
        raise ValueError("joints need at least one keypoint before the centre joint")
    size = int(output_size)
    radius = int(radius)
    offsets = np.zeros((num_keypoints, 2, size, size), dtype=np.float32)
    weights = np.zeros((num_keypoints, 2, size, size), dtype=np.float32)
    area_map = np.zeros((size, size), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        center = np.trunc(joints[:, -1, :3])
        keypoints = joints[:, :-1]
        usable = ((keypoints[..., 2] > 0) & (keypoints[..., 0] >= 0) & (keypoints[..., 1] >= 0)
                  & (keypoints[..., 0] < size) & (keypoints[..., 1] < size))
        person_counts = ((center[:, 2] >= 1) & (center[:, 0] >= 0) & (center[:, 1] >= 0)
                         & (center[:, 0] < size) & (center[:, 1] < size) & (areas > 0))
    for person in np.flatnonzero(person_counts & usable.any(axis=1)):
        center_x, center_y = int(center[person, 0]), int(center[person, 1])
        left, right = max(center_x - radius, 0), min(center_x + radius, size)
        top, bottom = max(center_y - radius, 0), min(center_y + radius, size)
        if left >= right or top >= bottom:
            continue
        joint_ids = np.flatnonzero(usable[person])
        # A float64 scalar, so that comparisons with the float32 area map happen in float64 (a
        # Python float would be cast to float32 under NumPy 2's promotion rules).
        area = np.float64(areas[person])
        x = keypoints[person, joint_ids, 0][:, None, None]
        y = keypoints[person, joint_ids, 1][:, None, None]
        new_x = np.broadcast_to(np.arange(left, right)[None, None, :] - x,
                                (joint_ids.size, bottom - top, right - left))
        new_y = np.broadcast_to(np.arange(top, bottom)[None, :, None] - y, new_x.shape)
        window = (slice(top, bottom), slice(left, right))
        old = offsets[joint_ids][:, :, window[0], window[1]]
        empty = (old[:, 0] == 0) & (old[:, 1] == 0)  # (n, h, w)
        # Before this person's first write at a pixel the stored area is the previous owner's;
        # afterwards it is this person's own (as float32, so it may round below `area`).
        previous_allows = ~(area_map[window] < area)
        own_allows = not (np.float32(area) < area)
        candidate = empty | previous_allows
        written_before = np.logical_or.accumulate(candidate, axis=0)
        written_before = np.concatenate([np.zeros_like(written_before[:1]),
                                         written_before[:-1]], axis=0)
        write = np.where(written_before, empty | own_allows, candidate)
        if not write.any():
            continue
        joint_index, row, column = np.nonzero(write)
        target_joint = joint_ids[joint_index]
        rows, columns = row + top, column + left
        offsets[target_joint, 0, rows, columns] = new_x[joint_index, row, column]
        offsets[target_joint, 1, rows, columns] = new_y[joint_index, row, column]
        weights[target_joint, :, rows, columns] = np.float32(1.0 / np.sqrt(area))
        area_map[window][write.any(axis=0)] = area
    return (offsets.reshape(2 * num_keypoints, size, size),
            weights.reshape(2 * num_keypoints, size, size))


# ------------------------------------------------------------------------------------------------
# The inverse: ideal maps back to people


def decode_ideal_targets(heatmaps: np.ndarray, offsets: np.ndarray,
                         offset_weights: np.ndarray | None = None,
                         threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """People from target-like maps: (poses (P, J, 3) as x, y, v; centre peaks (P, 2) x, y).

    heatmaps (J + 1, S, S) (the last channel is the centre) or the centre map alone (S, S);
    offsets (2J, S, S); offset_weights (2J, S, S) or None. Centres are the pixels whose centre
    value is >= threshold and not below any 8-neighbour; of peaks within one pixel of a stronger
    (or equal, earlier) one only that one is kept. At each centre, joint j = pixel - offset,
    with v = 1 where the weight is > 0 (all joints when no weights are given), else (0, 0, 0).
    The inverse of ``encode_offsets`` for people whose windows do not overlap: the centre
    Gaussian peaks on the pixel nearest the centre, which lies in the offset window.
    """
    center = np.asarray(heatmaps, dtype=np.float64)
    center = center[-1] if center.ndim == 3 else center
    offsets = np.asarray(offsets, dtype=np.float64)
    num_keypoints = offsets.shape[0] // 2
    padded = np.pad(center, 1, mode="constant", constant_values=-np.inf)
    height, width = center.shape
    neighbours = np.stack([padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    peak = (center >= threshold) & (center >= neighbours.max(axis=0))
    rows, columns = np.nonzero(peak)
    order = np.argsort(-center[rows, columns], kind="stable")
    kept: list[tuple[int, int]] = []
    for row, column in zip(rows[order], columns[order]):
        if all(max(abs(row - r), abs(column - c)) > 1 for r, c in kept):
            kept.append((int(row), int(column)))
    poses = np.zeros((len(kept), num_keypoints, 3))
    if not kept:
        return poses, np.zeros((0, 2))
    rows = np.array([r for r, _ in kept])
    columns = np.array([c for _, c in kept])
    pairs = offsets[:, rows, columns].T.reshape(len(kept), num_keypoints, 2)
    poses[..., 0] = columns[:, None] - pairs[..., 0]
    poses[..., 1] = rows[:, None] - pairs[..., 1]
    if offset_weights is None:
        labelled = np.ones(poses.shape[:2], dtype=bool)
    else:
        weights = np.asarray(offset_weights)[:, rows, columns].T.reshape(len(kept),
                                                                        num_keypoints, 2)
        labelled = (weights > 0).any(axis=2)
    poses[..., 2] = labelled
    poses[~labelled] = 0.0
    return poses, np.stack([columns, rows], axis=1).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# All targets of one training sample


def per_branch_values(values, num_stages: int, name: str) -> tuple[tuple[float, ...], ...]:
    """Per stage, per branch numbers from a per-stage list of numbers or of lists.

    The reference's YAMLs write per-branch lists ([[0.1, 0.1, 0.1], [0.025]]); a plain number
    stands for one value shared by the stage's branches.
    """
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) != num_stages:
        raise ValueError(f"{name} has {len(values)} entries for {num_stages} stages: {values}")
    result = []
    for stage, entry in enumerate(values):
        entry = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        if not entry or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                for v in entry):
            raise ValueError(f"{name}[{stage}] must be a number or a non-empty list of numbers, "
                             f"got {values[stage]!r}")
        result.append(tuple(float(v) for v in entry))
    return tuple(result)


@dataclass(frozen=True)
class RegressionTargetParams:
    """Target settings; each field names the config key it stands for.

    output_sizes: DATASET.OUTPUT_SIZE (one square size per stage). sigmas, bg_weights: per
    stage, per heatmap branch (DATASET.SIGMA, DATASET.BG_WEIGHT; a stage's branches may share
    one value). center_sigma: DATASET.CENTER_SIGMA. offset_radius: DATASET.OFFSET_RADIUS.
    offset_stages: which stages get offset targets (LOSS.WITH_OFFSETS_LOSS).
    fix_center_sigma: DATASET.FIX_CENTER_SIGMA (see ``channel_sigmas``). use_bbox_center:
    DATASET.USE_BBOX_CENTER (see ``center_joints``).
    """

    output_sizes: tuple[int, ...] = (128,)
    sigmas: tuple[tuple[float, ...], ...] = ((2.0,),)
    bg_weights: tuple[tuple[float, ...], ...] = ((0.1,),)
    center_sigma: float = 4.0
    offset_radius: int = 4
    offset_stages: tuple[bool, ...] = (True,)
    fix_center_sigma: bool = False
    use_bbox_center: bool = False

    def __post_init__(self) -> None:
        num_stages = len(self.output_sizes)
        object.__setattr__(self, "output_sizes", tuple(int(s) for s in self.output_sizes))
        object.__setattr__(self, "sigmas", per_branch_values(self.sigmas, num_stages, "sigmas"))
        object.__setattr__(self, "bg_weights",
                           per_branch_values(self.bg_weights, num_stages, "bg_weights"))
        object.__setattr__(self, "offset_stages", tuple(bool(v) for v in self.offset_stages))
        if len(self.offset_stages) != num_stages:
            raise ValueError(f"offset_stages has {len(self.offset_stages)} entries for "
                             f"{num_stages} stages")
        for stage, (sigmas, weights) in enumerate(zip(self.sigmas, self.bg_weights)):
            if len(sigmas) > 1 and len(weights) > 1 and len(sigmas) != len(weights):
                raise ValueError(f"stage {stage} has {len(sigmas)} sigmas but {len(weights)} "
                                 f"background weights; give one per heatmap branch or one for all")
        if self.center_sigma <= 0 or self.offset_radius < 1:
            raise ValueError(f"need center_sigma > 0 and offset_radius >= 1, got "
                             f"{self.center_sigma} and {self.offset_radius}")

    def branch_settings(self, stage: int) -> list[tuple[float, float]]:
        """(sigma, bg_weight) of each heatmap branch of a stage, sigma resolved (< 0: S / 64)."""
        sigmas, weights = self.sigmas[stage], self.bg_weights[stage]
        count = max(len(sigmas), len(weights))
        sigmas = sigmas * count if len(sigmas) == 1 else sigmas
        weights = weights * count if len(weights) == 1 else weights
        size = self.output_sizes[stage]
        return [(resolve_sigma(s, size), w) for s, w in zip(sigmas, weights)]

    @classmethod
    def from_config(cls, cfg) -> "RegressionTargetParams":
        """The settings of a config tree (keys as in the field descriptions)."""
        from ..config import ConfigError

        data = cfg.DATASET
        num_stages = len(data.OUTPUT_SIZE)
        try:
            return cls(output_sizes=tuple(data.OUTPUT_SIZE),
                       sigmas=per_branch_values(data.SIGMA, num_stages, "DATASET.SIGMA"),
                       bg_weights=per_branch_values(data.BG_WEIGHT, num_stages,
                                                    "DATASET.BG_WEIGHT"),
                       center_sigma=float(data.CENTER_SIGMA),
                       offset_radius=int(data.OFFSET_RADIUS),
                       offset_stages=tuple(cfg.LOSS.WITH_OFFSETS_LOSS),
                       fix_center_sigma=bool(data.FIX_CENTER_SIGMA),
                       use_bbox_center=bool(data.USE_BBOX_CENTER))
        except ValueError as error:
            raise ConfigError(f"regression targets: {error} (DATASET.OUTPUT_SIZE, SIGMA, "
                              f"BG_WEIGHT and LOSS.WITH_OFFSETS_LOSS need one entry per "
                              f"stage)") from None


class RegressionTargets(NamedTuple):
    """One sample's targets, per stage (lowest resolution first).

    heatmaps[k]: list of (J + 1, S_k, S_k) float32, one per heatmap branch, or a single one when
    all the stage's branches share sigma and background weight. heatmap_masks[k]: the matching
    (1, S_k, S_k) float32 masks (crowd mask x background weights). offsets[k], offset_weights[k]:
    (2J, S_k, S_k) float32, or None for a stage without offset targets.
    """

    heatmaps: list[list[np.ndarray]]
    heatmap_masks: list[list[np.ndarray]]
    offsets: list[np.ndarray | None]
    offset_weights: list[np.ndarray | None]


def encode_regression_targets(joints_per_stage: Sequence[np.ndarray], areas: np.ndarray,
                              params: RegressionTargetParams,
                              masks: Sequence[np.ndarray] | None = None) -> RegressionTargets:
    """All targets of one augmented sample (what a dataset's __getitem__ returns).

    joints_per_stage[k]: (P, J + 1, 3) joints with the centre last, in stage k's output pixels
    (``with_center_joint`` before the augmentation); areas (P,) the offset-weight areas in input
    pixels; masks[k] (S_k, S_k) the crowd masks (1 = pixel counts), or None for all ones.
    """
    num_stages = len(params.output_sizes)
    if len(joints_per_stage) != num_stages:
        raise ValueError(f"got joints for {len(joints_per_stage)} stages, expected {num_stages}")
    if masks is not None and len(masks) != num_stages:
        raise ValueError(f"got {len(masks)} masks for {num_stages} stages")
    heatmaps, heatmap_masks, offsets, offset_weights = [], [], [], []
    for stage, (joints, size) in enumerate(zip(joints_per_stage, params.output_sizes)):
        joints = _check_joints(joints)
        settings = params.branch_settings(stage)
        if len(set(settings)) == 1:
            settings = settings[:1]
        stage_maps, stage_masks = [], []
        for sigma, bg_weight in settings:
            sigmas = channel_sigmas(joints.shape[1], sigma, params.center_sigma,
                                    params.fix_center_sigma)
            target, weights = encode_tradeoff_heatmaps(joints, size, sigmas, bg_weight)
            if masks is not None:
                weights = (np.asarray(masks[stage], dtype=np.float32)[None] * weights)
            stage_maps.append(target)
            stage_masks.append(weights.astype(np.float32))
        heatmaps.append(stage_maps)
        heatmap_masks.append(stage_masks)
        if params.offset_stages[stage]:
            stage_offsets, stage_weights = encode_offsets(joints, areas, size,
                                                          params.offset_radius)
        else:
            stage_offsets = stage_weights = None
        offsets.append(stage_offsets)
        offset_weights.append(stage_weights)
    return RegressionTargets(heatmaps, heatmap_masks, offsets, offset_weights)
