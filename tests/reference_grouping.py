"""HigherHRNet's associative-embedding decoder written out as plain loops, the yardstick of the
grouping tests and of bench/bench_ae_grouping.py.

Written from HigherHRNet's lib/core/group.py (HeatmapParser: nms, top_k, match_by_tag, adjust,
refine, parse): torch max-pool NMS and top-k, persons in a dict keyed by the first tag component
of the candidate that starts them, per-element adjust and per-person refine in NumPy. The
assignment solver is passed in: ``munkres_pairs`` (the munkres package the reference calls),
``scipy_pairs``, or any function of a cost matrix that returns (row, column) pairs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# HigherHRNet group.py: joint_order = [i - 1 for i in [1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10,
# 11, 14, 15, 16, 17]], the visiting order of the COCO joint types.
COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
# group.py pads the cost matrix with dummy persons of this cost.
PADDING_COST = 1e10

Solver = Callable[[np.ndarray], list]


def munkres_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """The reference's py_max_match: munkres.Munkres().compute on the (padded) cost matrix."""
    import munkres

    return [tuple(pair) for pair in munkres.Munkres().compute(np.array(cost, copy=True))]


def scipy_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    return list(zip(*linear_sum_assignment(cost)))


def reference_top_k(heatmaps: np.ndarray, tags: np.ndarray, params
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HeatmapParser.nms and top_k of one image: heatmaps (J, H, W), tags (J, H, W, D) ->
    tags (J, K, D), locations (J, K, 2) as (x, y), values (J, K)."""
    heatmaps = torch.as_tensor(heatmaps)[None]
    tags = torch.as_tensor(tags)[None]
    pool = torch.nn.MaxPool2d(params.nms_kernel, 1, params.nms_padding)
    suppressed = heatmaps * torch.eq(pool(heatmaps), heatmaps).float()
    _, num_joints, height, width = heatmaps.shape
    values, index = suppressed.reshape(1, num_joints, -1).topk(params.max_num_people, dim=2)
    flat_tags = tags.reshape(1, num_joints, width * height, -1)
    tag_k = torch.stack([torch.gather(flat_tags[:, :, :, i], 2, index)
                         for i in range(flat_tags.size(3))], dim=3)
    locations = torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=3)
    return tag_k[0].numpy(), locations[0].numpy(), values[0].numpy()


def reference_match(tag_k: np.ndarray, locations: np.ndarray, values: np.ndarray, params,
                    solve: Solver, joint_order=COCO_JOINT_ORDER) -> np.ndarray:
    """match_by_tag: poses (P, J, 3 + D) float32 in the order the persons were started."""
    num_joints = params.num_joints
    empty = np.zeros((num_joints, 3 + tag_k.shape[2]))
    joint_dict: dict[float, np.ndarray] = {}
    tag_dict: dict[float, list[np.ndarray]] = {}
    for i in range(num_joints):
        joint = joint_order[i]
        tags = tag_k[joint]
        joints = np.concatenate((locations[joint], values[joint, :, None], tags), 1)
        mask = joints[:, 2] > params.detection_threshold
        tags, joints = tags[mask], joints[mask]
        if joints.shape[0] == 0:
            continue
        if i == 0 or len(joint_dict) == 0:
            for tag, row in zip(tags, joints):
                joint_dict.setdefault(tag[0], np.copy(empty))[joint] = row
                tag_dict[tag[0]] = [tag]
            continue
        grouped_keys = list(joint_dict.keys())[:params.max_num_people]
        grouped_tags = [np.mean(tag_dict[key], axis=0) for key in grouped_keys]
        if params.ignore_too_much and len(grouped_keys) == params.max_num_people:
            continue
        distance = np.linalg.norm(joints[:, None, 3:] - np.array(grouped_tags)[None, :, :],
                                  ord=2, axis=2)
        cost = np.copy(distance)
        if params.use_detection_val:
            cost = np.round(distance) * 100 - joints[:, 2:3]
        num_added, num_grouped = cost.shape
        if num_added > num_grouped:
            cost = np.concatenate(
                (cost, np.zeros((num_added, num_added - num_grouped)) + PADDING_COST), axis=1)
        for row, column in solve(cost):
            if row < num_added and column < num_grouped \
                    and distance[row][column] < params.tag_threshold:
                key = grouped_keys[column]
                joint_dict[key][joint] = joints[row]
                tag_dict[key].append(tags[row])
            else:
                key = tags[row][0]
                joint_dict.setdefault(key, np.copy(empty))[joint] = joints[row]
                tag_dict[key] = [tags[row]]
    return np.array([joint_dict[key] for key in joint_dict]).astype(np.float32)


def quarter_steps(heatmap: np.ndarray, row: int, column: int) -> tuple[float, float]:
    """The step of adjust and refine: a quarter pixel per axis towards the strictly higher
    neighbour (else back), neighbours clamped to the map."""
    height, width = heatmap.shape
    step_x = 0.25 if heatmap[row, min(column + 1, width - 1)] > heatmap[row, max(column - 1, 0)] \
        else -0.25
    step_y = 0.25 if heatmap[min(row + 1, height - 1), column] > heatmap[max(0, row - 1), column] \
        else -0.25
    return step_x, step_y


def reference_adjust(poses: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """adjust, one joint at a time: a quarter pixel towards the higher neighbour, then + 0.5."""
    for pose in poses:
        for joint_id, joint in enumerate(pose):
            if joint[2] > 0:
                x, y = joint[0:2]
                step_x, step_y = quarter_steps(heatmaps[joint_id], int(y), int(x))
                pose[joint_id, 0:2] = (x + step_x + 0.5, y + step_y + 0.5)
    return poses


def reference_refine(heatmaps: np.ndarray, tags: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """refine of one person: each missing joint taken at the heatmap maximum penalised by the
    rounded tag distance to the person's mean tag. heatmaps (J, H, W), tags (J, H, W, D)."""
    found = []
    for joint_id in range(pose.shape[0]):
        if pose[joint_id, 2] > 0:
            x, y = pose[joint_id][:2].astype(np.int32)
            found.append(tags[joint_id, y, x])
    person_tag = np.mean(found, axis=0)
    answers = []
    for joint_id in range(pose.shape[0]):
        heatmap = heatmaps[joint_id]
        distance = ((tags[joint_id] - person_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        row, column = np.unravel_index(np.argmax(heatmap - np.round(distance)), heatmap.shape)
        step_x, step_y = quarter_steps(heatmap, row, column)
        answers.append((column + 0.5 + step_x, row + 0.5 + step_y, heatmap[row, column]))
    answers = np.array(answers)
    for joint_id in range(heatmaps.shape[0]):
        if answers[joint_id, 2] > 0 and pose[joint_id, 2] == 0:
            pose[joint_id, :3] = answers[joint_id]
    return pose


def reference_group(heatmaps: np.ndarray, tags: np.ndarray, params, solve: Solver = munkres_pairs,
                    joint_order=COCO_JOINT_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """HeatmapParser.parse of one image: heatmaps (J, H, W) float32, tags (J, H, W, D) float32
    on the CPU -> poses (P, J, 3 + D) float32, scores (P,) float32 (taken before refine)."""
    heatmaps, tags = np.asarray(heatmaps), np.asarray(tags)
    tag_k, locations, values = reference_top_k(heatmaps, tags, params)
    poses = reference_match(tag_k, locations, values, params, solve, joint_order)
    if params.adjust:
        poses = reference_adjust(poses, heatmaps)
    scores = [pose[:, 2].mean() for pose in poses]
    if params.refine:
        for pose in poses:
            reference_refine(heatmaps, tags, pose)
    return poses, np.array(scores, dtype=np.float32)
