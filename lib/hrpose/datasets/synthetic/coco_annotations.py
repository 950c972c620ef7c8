"""COCO annotations of a synthetic scene, and the simulated person detector's results on it."""

from __future__ import annotations

import math

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..metadata import COCO
from .body import KEYPOINT_PARTS
from .drawing import CROWD_OWNER
from .scenes import Scene

PERSON_CATEGORY_ID = 1
MIN_VISIBLE_PIXELS = 64
MIN_VISIBLE_FRACTION = 0.12
MIN_CONTOUR_AREA = 4.0
MIN_CROWD_PIXELS = 64


# ----------------------------------------------------------------------------------------------
# Annotations


def keypoint_annotation(keypoints: np.ndarray, face_visible: dict[str, bool], owner: np.ndarray,
                        part: np.ndarray, owner_id: int) -> list:
    """COCO's flat [x, y, v, ...]: v=2 visible, v=1 in the image but hidden, v=0 (at 0, 0) outside.

    A keypoint is visible when the pixel under it belongs to this person and to one of the parts
    that meet at the keypoint; anything else drawn over it hides it.
    """
    height, width = owner.shape
    flat = []
    for index, name in enumerate(COCO.keypoint_names):
        x, y = round(float(keypoints[index, 0]), 2), round(float(keypoints[index, 1]), 2)
        if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
            flat += [0.0, 0.0, 0]
            continue
        column, row = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        turned_away = name in face_visible and not face_visible[name]
        seen = (not turned_away and owner[row, column] == owner_id
                and int(part[row, column]) in KEYPOINT_PARTS[index])
        flat += [x, y, 2 if seen else 1]
    return flat


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a binary mask, without the tiny ones."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [contour for contour in contours
            if len(contour) >= 3 and cv2.contourArea(contour) >= MIN_CONTOUR_AREA]


def polygons_area(polygons: list[list[float]], height: int, width: int) -> float:
    """The area of COCO polygons as pycocotools computes it (by rasterising them)."""
    return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))))


def contours_bbox(contours: list[np.ndarray]) -> list[float]:
    """Tight [x, y, w, h] around contours of pixel positions, counting pixels inclusively."""
    points = np.concatenate([contour.reshape(-1, 2) for contour in contours])
    low, high = points.min(axis=0), points.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0] + 1), float(high[1] - low[1] + 1)]


def person_annotation(scene: Scene, index: int) -> dict | None:
    """The annotation of one person (without ids), or None if too little of it shows."""
    owner_id = index + 1
    mask = scene.owner == owner_id
    visible = int(np.count_nonzero(mask))
    if visible < MIN_VISIBLE_PIXELS or visible < MIN_VISIBLE_FRACTION * scene.drawn_areas[index]:
        return None
    # Stray specks of a few pixels are left out of both the segmentation and the box.
    contours = mask_polygons(mask)
    if not contours:
        return None
    height, width = mask.shape
    segmentation = [contour.reshape(-1).astype(np.float64).tolist() for contour in contours]
    area = polygons_area(segmentation, height, width)
    if area <= 0:
        return None
    figure = scene.figures[index]
    keypoints = keypoint_annotation(figure.keypoints, figure.face_visible, scene.owner, scene.part,
                                    owner_id)
    return {
        "area": area,
        "bbox": contours_bbox(contours),
        "category_id": PERSON_CATEGORY_ID,
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        "segmentation": segmentation,
    }


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed run-length encoding (column-major runs, starting with background)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return {"counts": [int(run) for run in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def crowd_annotation(scene: Scene) -> dict | None:
    """One iscrowd=1 annotation covering every visible pixel of the crowd, as COCO marks crowds."""
    mask = scene.owner == CROWD_OWNER
    area = int(np.count_nonzero(mask))
    if area < MIN_CROWD_PIXELS:
        return None
    rows, columns = np.nonzero(mask)
    return {
        "area": float(area),
        "bbox": [float(columns.min()), float(rows.min()),
                 float(columns.max() - columns.min() + 1), float(rows.max() - rows.min() + 1)],
        "category_id": PERSON_CATEGORY_ID,
        "iscrowd": 1,
        "keypoints": [0] * (3 * COCO.num_keypoints),
        "num_keypoints": 0,
        "segmentation": uncompressed_rle(mask),
    }


def scene_annotations(scene: Scene) -> list[dict]:
    """Annotations (without ids) of every person who shows enough, then the crowd region."""
    annotations = [person_annotation(scene, index) for index in range(len(scene.figures))]
    if scene.has_crowd:
        annotations.append(crowd_annotation(scene))
    return [annotation for annotation in annotations if annotation is not None]


# ----------------------------------------------------------------------------------------------
# Simulated person detector (the role of COCO_val2017_detections_AP_H_56_person.json)


def simulated_detections(rng: np.random.Generator, annotations: list[dict], image_id: int,
                         width: int, height: int) -> list[dict]:
    """A noisy box for most people, a few misses, and low-scoring false positives."""
    detections = []
    for annotation in annotations:
        if annotation["iscrowd"] or rng.random() < 0.05:
            continue
        x, y, w, h = annotation["bbox"]
        center = np.array([x + w / 2, y + h / 2]) + rng.normal(0, 0.06, 2) * [w, h]
        size = np.array([w, h]) * np.exp(rng.normal(0, 0.1, 2))
        score = 0.5 + 0.5 * rng.beta(4.0, 1.3) if rng.random() < 0.9 else rng.uniform(0.2, 0.5)
        detections.append(clipped_detection(center, size, score, image_id, width, height))
    for _ in range(rng.poisson(0.7)):
        size = rng.uniform(0.05, 0.5, 2) * [width, height]
        center = rng.uniform([0, 0], [width, height])
        score = rng.uniform(0.02, 0.45) if rng.random() < 0.9 else rng.uniform(0.45, 0.8)
        detections.append(clipped_detection(center, size, score, image_id, width, height))
    return [d for d in detections if d is not None]


def clipped_detection(center: np.ndarray, size: np.ndarray, score: float, image_id: int,
                      width: int, height: int) -> dict | None:
    """A COCO detection result with its box clipped to the image, or None if nothing is left."""
    x0, y0 = np.maximum(center - size / 2, 0.0)
    x1, y1 = min(center[0] + size[0] / 2, width - 1.0), min(center[1] + size[1] / 2, height - 1.0)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return {
        "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                 round(float(y1 - y0), 2)],
        "category_id": PERSON_CATEGORY_ID,
        "image_id": int(image_id),
        "score": round(float(min(score, 0.999)), 4),
    }
