"""MPII: person records from the originals' JSON annotations (1-based MATLAB coordinates)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from ..utils.io import read_json

# The originals move the MPII centre down by 15 px per scale unit and pad the scale by 1.25.
CENTER_Y_SHIFT = 15.0
SCALE_PADDING = 1.25


def annotation_file(root: str, image_set: str) -> str:
    return os.path.join(root, "annot", f"{image_set}.json")


def gt_mat_file(root: str, image_set: str) -> str:
    return os.path.join(root, "annot", f"gt_{image_set}.mat")


def mpii_records(root: str, image_set: str, num_joints: int) -> list[dict]:
    """One record per annotated person, converted to 0-based coordinates."""
    path = annotation_file(root, image_set)
    annotations = read_json(path, "MPII annotation",
                            "expected data/mpii/annot/{train,valid,test}.json, see data/README.md")
    records = []
    for index, ann in enumerate(annotations):
        center = np.array(ann["center"], dtype=np.float64)
        scale = np.array([ann["scale"], ann["scale"]], dtype=np.float64)
        if center[0] != -1:
            center[1] += CENTER_Y_SHIFT * scale[1]
            scale *= SCALE_PADDING
        center -= 1  # MATLAB is 1-based
        if "test" in image_set:
            joints = np.zeros((num_joints, 2))
            joints_vis = np.zeros(num_joints)
        else:
            joints = np.array(ann["joints"], dtype=np.float64) - 1
            joints_vis = np.array(ann["joints_vis"], dtype=np.float64)
            if joints.shape != (num_joints, 2):
                raise DataError(f"MPII annotation {index} in '{path}' has joints of shape "
                                 f"{joints.shape}; expected ({num_joints}, 2)")
        records.append({
            "image": os.path.join(root, "images", ann["image"]),
            # MPII has no image ids; the record index identifies the person for pred.mat order.
            "image_id": index,
            "center": center,
            "scale": scale,
            "joints": joints,
            "joints_vis": joints_vis,
            "score": 1.0,
        })
    return records
