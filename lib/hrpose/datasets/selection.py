"""The originals' optional training-sample selection (DATASET.SELECT_DATA)."""

from __future__ import annotations

import numpy as np

PIXEL_STD = 200.0


def select_records(records: list[dict]) -> list[dict]:
    """Keep records whose visible-joint mean lies close enough to the box centre.

    A record is kept when exp(-|mean - centre|^2 / (0.2^2 * 2 * area)) exceeds
    (0.2/16) * num_visible + 0.45 - 0.2/16, as in the HRNet repository.
    """
    kept = []
    for record in records:
        visible = np.asarray(record["joints_vis"]) > 0
        num_visible = int(visible.sum())
        if num_visible == 0:
            continue
        joint_mean = np.asarray(record["joints"])[visible].mean(axis=0)
        area = record["scale"][0] * record["scale"][1] * PIXEL_STD ** 2
        distance_sq = float(np.sum((joint_mean - record["center"]) ** 2))
        similarity = np.exp(-distance_sq / (0.2 ** 2 * 2.0 * area))
        if similarity > (0.2 / 16) * num_visible + 0.45 - 0.2 / 16:
            kept.append(record)
    return kept
