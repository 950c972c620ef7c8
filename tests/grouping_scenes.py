"""Ideal bottom-up maps of people at known joints, shared by the grouping tests."""

import numpy as np
import torch


def render_people(positions, joint_tags, height, width, peaks=None, sigma=1.0):
    """Ideal maps for people at integer joint positions (P, J, 2) as x, y.

    joint_tags: (P,) one scalar tag a person, giving tag maps (J, H, W); or (P, J, D) a tag
    vector a joint, giving tag maps (J, H, W, D). Heatmaps (J, H, W): per-pixel maximum of
    Gaussians (peak ``peaks[p, j]``, default 1; a peak of 0 leaves the joint out). Each pixel of
    tag map j carries the tag of the nearest present joint j (an ideal embedding).
    """
    positions = np.asarray(positions, dtype=np.float64)
    num_people, num_joints = positions.shape[:2]
    joint_tags = np.asarray(joint_tags, dtype=np.float32)
    scalar_tags = joint_tags.ndim == 1
    if scalar_tags:
        joint_tags = np.broadcast_to(joint_tags[:, None, None], (num_people, num_joints, 1))
    peaks = np.ones((num_people, num_joints)) if peaks is None else np.asarray(peaks, float)
    rows, columns = np.mgrid[0:height, 0:width]
    heatmaps = np.zeros((num_joints, height, width), dtype=np.float32)
    tags = np.zeros((num_joints, height, width, joint_tags.shape[2]), dtype=np.float32)
    for joint in range(num_joints):
        nearest = np.full((height, width), np.inf)
        for person in range(num_people):
            if peaks[person, joint] == 0:
                continue
            x, y = positions[person, joint]
            squared = (columns - x) ** 2 + (rows - y) ** 2
            gaussian = peaks[person, joint] * np.exp(-squared / (2 * sigma ** 2))
            heatmaps[joint] = np.maximum(heatmaps[joint], gaussian)
            closer = squared < nearest
            tags[joint][closer] = joint_tags[person, joint]
            nearest = np.minimum(nearest, squared)
    return heatmaps, (tags[..., 0] if scalar_tags else tags)


def random_positions(rng, num_people, height, width, num_joints=17, min_separation=7):
    """Integer positions (P, J, 2), kept min_separation apart within each joint type."""
    positions = np.zeros((num_people, num_joints, 2), dtype=np.int64)
    for joint in range(num_joints):
        chosen = []
        while len(chosen) < num_people:
            candidate = rng.integers([3, 3], [width - 3, height - 3])
            if all(np.abs(candidate - other).max() >= min_separation for other in chosen):
                chosen.append(candidate)
        positions[:, joint] = chosen
    return positions


def as_batch(heatmaps, tags):
    """One image's maps as a batch of one."""
    return torch.from_numpy(heatmaps)[None], torch.from_numpy(tags)[None]
