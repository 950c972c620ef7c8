"""COCO-format keypoint files (COCO, CrowdPose, OCHuman, synthetic): paths, person records,
boxes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO

from ..errors import DataError, DataFileNotFoundError
from ..utils.io import read_json
from ..utils.transforms import box_to_center_scale

logger = logging.getLogger(__name__)

PERSON_CATEGORY_ID = 1
# A detection box coordinate or side beyond this many pixels cannot be in a photograph: the
# entry is garbage (an overflow, or a unit mix-up) rather than a person.
MAX_BOX_PIXELS = 100_000


@dataclass(frozen=True)
class CocoLayout:
    """Where a COCO-format dataset keeps its annotation file and images, as the originals lay it
    out."""

    annotation_pattern: str  # relative to the dataset root, formatted with the image set
    image_folder_pattern: str  # relative to the dataset root, formatted with the image set


LAYOUTS: dict[str, CocoLayout] = {
    "coco": CocoLayout("annotations/person_keypoints_{image_set}.json", "images/{image_set}"),
    "synthetic": CocoLayout("annotations/person_keypoints_{image_set}.json", "images/{image_set}"),
    "crowdpose": CocoLayout("json/crowdpose_{image_set}.json", "images"),
    "ochuman": CocoLayout("annotations/ochuman_coco_format_{image_set}_range_0.00_1.00.json",
                          "images"),
}


def annotation_file(dataset: str, root: str, image_set: str) -> str:
    """The annotation JSON of a split; COCO's test-dev has image information only."""
    if dataset == "coco" and "test" in image_set:
        return os.path.join(root, "annotations", f"image_info_{image_set}.json")
    return os.path.join(root, LAYOUTS[dataset].annotation_pattern.format(image_set=image_set))


def image_folder(dataset: str, root: str, image_set: str) -> str:
    """The folder holding a split's images; COCO's test-dev images live in test2017."""
    if dataset == "coco" and "test" in image_set:
        image_set = "test2017"
    return os.path.join(root, LAYOUTS[dataset].image_folder_pattern.format(image_set=image_set))


def load_coco_file(path: str, num_keypoints: int | None = None) -> COCO:
    """Load an annotation file with pycocotools, with errors that name the file; with
    num_keypoints, also check every image and annotation entry (``check_entries``)."""
    if not os.path.isfile(path):
        raise DataFileNotFoundError(f"annotation file not found: '{path}' (see data/README.md "
                                    f"for the expected layout; `python tools/make_synthetic.py` "
                                    f"makes the synthetic dataset)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"annotation file '{path}' is not valid JSON: {error}") from None
    except (KeyError, TypeError, AssertionError) as error:
        raise DataError(f"annotation file '{path}' is not in COCO format ({error!r})") from None
    if num_keypoints is not None:
        check_entries(coco, path, num_keypoints)
    return coco


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values) -> bool:
    """Whether values is a list of finite int and float numbers (fast on long lists)."""
    if not isinstance(values, list):
        return False
    types = set(map(type, values))
    # Integers are finite; COCO's keypoints are all integers.
    return types <= {int} or (types <= {int, float} and all(map(math.isfinite, values)))


def annotation_problem(annotation, num_keypoints: int) -> str | None:
    """What makes an annotation entry unusable (its bbox or keypoints), or None if nothing."""
    if not isinstance(annotation, dict):
        return f"is a {type(annotation).__name__}, not an object"
    if "bbox" not in annotation:
        return "has no 'bbox' (expected [x, y, w, h])"
    bbox = annotation["bbox"]
    if not (_numbers(bbox) and len(bbox) == 4):
        return f"has bbox {bbox!r}; expected four numbers [x, y, w, h]"
    keypoints = annotation.get("keypoints")
    if keypoints:
        if not isinstance(keypoints, list):
            return f"has keypoints {keypoints!r}; expected a list of numbers"
        if len(keypoints) != 3 * num_keypoints:
            return (f"has {len(keypoints)} keypoint values; expected {3 * num_keypoints} (x, y, "
                    f"v for each of the {num_keypoints} keypoints)")
        if not _numbers(keypoints):
            position, value = next((n, v) for n, v in enumerate(keypoints)
                                   if not _finite_number(v))
            return f"has keypoint value {value!r} at position {position}; expected numbers"
    area = annotation.get("area")
    if area is not None and not _finite_number(area):
        return f"has area {area!r}; expected a number"
    count = annotation.get("num_keypoints", 0)
    if not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
        return f"has num_keypoints {count!r}; expected a count"
    return None


def image_problem(image) -> str | None:
    """What makes an image entry unusable (file name, size), or None if nothing."""
    if not isinstance(image.get("file_name"), str):
        return "has no 'file_name'"
    for key in ("width", "height"):
        value = image.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return f"has {key} {value!r}; expected a positive number of pixels"
    return None


def check_entries(coco: COCO, path: str, num_keypoints: int) -> None:
    """A DataError naming the file and the entry for the first image or annotation entry that
    cannot be used (no file name or size; no bbox; keypoints of the wrong count or not numbers)."""
    for image in coco.dataset.get("images", []):
        problem = image_problem(image)
        if problem:
            raise DataError(f"annotation file '{path}': image {image.get('id')} {problem}")
    for annotation in coco.dataset.get("annotations", []):
        problem = annotation_problem(annotation, num_keypoints)
        if problem:
            raise DataError(f"annotation file '{path}': annotation {annotation.get('id')} of "
                            f"image {annotation.get('image_id')} {problem}")


def clean_box(box, image_width: int, image_height: int, convention: str):
    """Clip an [x, y, w, h] box to the image as the originals do; None if nothing is left.

    DARK counts pixels inclusively, so its cleaned width and height are one larger.
    """
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    extra = 1.0 if convention == "dark" else 0.0
    return [x1, y1, x2 - x1 + extra, y2 - y1 + extra]


def has_no_extent(box) -> bool:
    """Whether an [x, y, w, h] box has zero or negative width or height (no crop fits it)."""
    return not (box[2] > 0 and box[3] > 0)


def ids_text(ids: list, shown: int = 5) -> str:
    """The first few ids of a list, for a log line."""
    more = f", ... ({len(ids)} in all)" if len(ids) > shown else ""
    return ", ".join(str(i) for i in ids[:shown]) + more


def ground_truth_records(coco: COCO, images_dir: str, num_joints: int, aspect_ratio: float,
                         convention: str, annotation_path: str = "") -> list[dict]:
    """One record per non-crowd person with at least one labelled keypoint (the originals'
    cleaning).

    A person whose box has zero or negative width or height is skipped with a warning that
    counts them: no crop can be cut around it (the originals keep such a box when its area is
    positive, and a box under 1 x 1 pixel then gives a crop of scale 0).
    """
    records, degenerate = [], []
    for image_id in sorted(coco.getImgIds()):
        image = coco.loadImgs(image_id)[0]
        width, height = image["width"], image["height"]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            if ann.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID:
                continue
            box = clean_box(ann["bbox"], width, height, convention)
            # CrowdPose annotations carry no 'area'; their box stands in for it.
            area = ann.get("area")
            area = ann["bbox"][2] * ann["bbox"][3] if area is None else area
            if box is None or area <= 0:
                continue
            if not ann.get("keypoints"):
                continue  # OCHuman lists some people with a box and mask but no keypoints
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            if keypoints.shape[0] != num_joints:
                raise DataError(f"annotation {ann.get('id')} of image {image_id} has "
                                f"{keypoints.shape[0]} keypoints; MODEL.NUM_JOINTS is "
                                f"{num_joints}")
            if keypoints.max() == 0:
                continue
            if has_no_extent(ann["bbox"]) or (box[2] <= 0 and box[3] <= 0):
                degenerate.append(ann.get("id"))
                continue
            center, scale = box_to_center_scale(box, aspect_ratio, convention)
            records.append({
                "image": os.path.join(images_dir, image["file_name"]),
                "image_id": image_id,
                "center": center,
                "scale": scale,
                "joints": keypoints[:, :2].copy(),
                # Occluded (1) and visible (2) labels both count as present.
                "joints_vis": np.minimum(keypoints[:, 2], 1.0),
                "score": 1.0,
            })
    if degenerate:
        logger.warning("skipped %d person annotations of '%s' whose box has zero or negative "
                       "width or height (ids %s)", len(degenerate), annotation_path,
                       ids_text(degenerate))
    return records


def read_person_detections(path: str, hint: str) -> list[dict]:
    """The person entries {image_id, bbox [x, y, w, h], score} of a COCO-format detection results
    file, checked entry by entry (score defaults to 1, category_id to person; other categories
    are dropped). hint says where the file should come from when it is missing."""
    entries = read_json(path, "person detection", hint)
    if not isinstance(entries, list):
        raise DataError(f"detection file '{path}' must hold a JSON list of {{image_id, bbox, "
                        f"score, category_id}} entries, not a {type(entries).__name__}")
    people = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            raise DataError(f"detection file '{path}': entry {position} is not an "
                            f"{{image_id, bbox, score, category_id}} object")
        bbox, score = entry["bbox"], entry.get("score", 1.0)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_finite_number, bbox))
                and _finite_number(score) and isinstance(entry["image_id"], int)):
            raise DataError(f"detection file '{path}': entry {position} needs an integer "
                            f"image_id, a bbox of four numbers [x, y, w, h] and a numeric "
                            f"score; got {entry!r}")
        if max(map(abs, bbox)) > MAX_BOX_PIXELS:
            raise DataError(f"detection file '{path}': entry {position} has bbox {bbox}, which "
                            f"reaches beyond {MAX_BOX_PIXELS} pixels; expected [x, y, w, h] "
                            f"in image pixels")
        if entry.get("category_id", PERSON_CATEGORY_ID) == PERSON_CATEGORY_ID:
            people.append({"image_id": entry["image_id"], "bbox": [float(v) for v in bbox],
                           "score": float(score)})
    return people


def detection_records(coco: COCO, images_dir: str, detection_file: str, num_joints: int,
                      aspect_ratio: float, convention: str, score_threshold: float) -> list[dict]:
    """One record per person box of a detector's COCO-format results with score >= threshold."""
    detections = read_person_detections(detection_file,
                                        "set TEST.COCO_BBOX_FILE, or TEST.USE_GT_BBOX True to "
                                        "test on ground-truth boxes")
    known_images = set(coco.getImgIds())
    records, degenerate = [], 0
    for detection in detections:
        if detection["score"] < score_threshold:
            continue
        image_id = detection["image_id"]
        if image_id not in known_images:
            raise DataError(f"detection file '{detection_file}' refers to image id {image_id}, "
                             f"which the annotation file does not have")
        if has_no_extent(detection["bbox"]):
            degenerate += 1
            continue
        center, scale = box_to_center_scale(detection["bbox"], aspect_ratio, convention)
        records.append({
            "image": os.path.join(images_dir, coco.loadImgs(image_id)[0]["file_name"]),
            "image_id": image_id,
            "center": center,
            "scale": scale,
            "joints": np.zeros((num_joints, 2)),
            "joints_vis": np.ones(num_joints),
            "score": float(detection["score"]),
        })
    if degenerate:
        logger.warning("skipped %d person boxes of '%s' with zero or negative width or height",
                       degenerate, detection_file)
    logger.info("%d person boxes with score >= %s from %s", len(records), score_threshold,
                detection_file)
    return records
