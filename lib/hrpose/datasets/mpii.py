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


def _numbers(value, shape: tuple[int, ...]) -> bool:
    """Whether value is nested lists of finite numbers (not booleans, not strings) of shape."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists
        return False
    return array.shape == shape and array.dtype.kind in "iuf" and bool(np.isfinite(array).all())


def _shape_text(value) -> str:
    """How an array-like value is not the expected numbers: its shape, or what is wrong."""
    try:
        array = np.asarray(value)
    except ValueError:
        return "of uneven lengths"
    if array.dtype.kind not in "iuf":
        return "that are not all numbers"
    if not np.isfinite(array).all():
        return "with NaN or infinite values"
    return f"of shape {array.shape}"


def annotation_problem(annotation, num_joints: int, with_joints: bool) -> str | None:
    """What makes an MPII person entry unusable, or None if nothing."""
    if not isinstance(annotation, dict):
        return f"is a {type(annotation).__name__}, not an object"
    if not isinstance(annotation.get("image"), str):
        return "has no 'image' file name"
    if not _numbers(annotation.get("center"), (2,)):
        return f"has center {annotation.get('center')!r}; expected [x, y]"
    if not _numbers(annotation.get("scale"), ()):
        return f"has scale {annotation.get('scale')!r}; expected a number"
    # A centre x of -1 marks a person without a position, which the originals keep as it is.
    if annotation["scale"] <= 0 and annotation["center"][0] != -1:
        # Evaluation pairs the predictions with gt_<set>.mat by position: no entry is skipped.
        return (f"has scale {annotation.get('scale')!r}; expected a positive number (the "
                f"person's height / 200)")
    if with_joints:
        for key, shape in (("joints", (num_joints, 2)), ("joints_vis", (num_joints,))):
            if key not in annotation:
                return f"has no '{key}'"
            if not _numbers(annotation[key], shape):
                return (f"has {key} {_shape_text(annotation.get(key))}; expected {shape} "
                        f"numbers (MODEL.NUM_JOINTS is {num_joints})")
    return None


def mpii_records(root: str, image_set: str, num_joints: int) -> list[dict]:
    """One record per annotated person, converted to 0-based coordinates."""
    path = annotation_file(root, image_set)
    annotations = read_json(path, "MPII annotation",
                            "expected data/mpii/annot/{train,valid,test}.json, see data/README.md")
    if not isinstance(annotations, list):
        raise DataError(f"MPII annotation file '{path}' must hold a JSON list of person entries, "
                        f"not a {type(annotations).__name__}")
    with_joints = "test" not in image_set
    records = []
    for index, ann in enumerate(annotations):
        problem = annotation_problem(ann, num_joints, with_joints)
        if problem:
            raise DataError(f"MPII annotation file '{path}': entry {index} {problem}")
        center = np.array(ann["center"], dtype=np.float64)
        scale = np.array([ann["scale"], ann["scale"]], dtype=np.float64)
        if center[0] != -1:
            center[1] += CENTER_Y_SHIFT * scale[1]
            scale *= SCALE_PADDING
        center -= 1  # MATLAB is 1-based
        if with_joints:
            joints = np.array(ann["joints"], dtype=np.float64) - 1
            joints_vis = np.array(ann["joints_vis"], dtype=np.float64)
        else:
            joints = np.zeros((num_joints, 2))
            joints_vis = np.zeros(num_joints)
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
