"""Drawing a COCO keypoint results file over the images of a COCO-format dataset, optionally with
the ground truth beside the predictions, one image per image id (tools/plot_coco.py).

Predictions are drawn as utils.vis.draw_poses draws them (one colour per limb, white joints); the
ground truth, under them, in one colour (green) with hollow joints, so both can be told apart
where they overlap.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import cv2
import numpy as np
from tqdm import tqdm

from ..datasets.coco_format import load_coco_file
from ..datasets.metadata import KEYPOINT_INFO, KeypointInfo
from ..errors import DataError, DataFileNotFoundError
from ..utils.io import read_json
from ..utils.vis import draw_poses, save_image

logger = logging.getLogger(__name__)

GT_COLOR = (0, 200, 0)  # BGR
SCORE_COLOR = (255, 255, 255)
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_KEYPOINT_THRESHOLD = 0.2


def load_results(path: str) -> list[dict]:
    """A COCO keypoint results file: a JSON list of entries with image_id, keypoints, score."""
    results = read_json(path, "keypoint results", "a COCO results list as tools/valid.py writes")
    if not isinstance(results, list):
        raise DataError(f"keypoint results file '{path}' must hold a JSON list of results, "
                        f"found a {type(results).__name__}")
    for index, entry in enumerate(results):
        if not (isinstance(entry, dict) and all(key in entry for key in
                                                ("image_id", "keypoints", "score"))):
            raise DataError(f"keypoint results file '{path}': entry {index} is not a result "
                            f"with 'image_id', 'keypoints' and 'score'")
        if len(entry["keypoints"]) % 3:
            raise DataError(f"keypoint results file '{path}': entry {index} has "
                            f"{len(entry['keypoints'])} keypoint values, not x, y, score triples")
    return results


def check_keypoint_count(num_keypoints: int, keypoint_info: KeypointInfo, source: str) -> None:
    """A clear error when poses of source do not have the dataset's number of keypoints."""
    if num_keypoints == keypoint_info.num_keypoints:
        return
    fitting = sorted(name for name, info in KEYPOINT_INFO.items()
                     if info.num_keypoints == num_keypoints)
    hint = f" (--dataset {' or '.join(fitting)})" if fitting else ""
    raise DataError(f"{source} has {num_keypoints} keypoints per person but dataset "
                    f"'{keypoint_info.name}' has {keypoint_info.num_keypoints}: choose the "
                    f"dataset the results belong to{hint}")


def draw_ground_truth(image: np.ndarray, poses: np.ndarray, keypoint_info: KeypointInfo,
                      color: tuple[int, int, int] = GT_COLOR) -> np.ndarray:
    """A copy of a BGR image with annotated poses (K, 3: x, y, visibility) drawn in one colour:
    limbs between labelled keypoints (visibility > 0) and hollow circles on the keypoints."""
    canvas = image.copy()
    size = max(canvas.shape[:2])
    thickness = max(1, int(round(size / 250)))
    radius = max(3, int(round(size / 120)))
    for pose in np.asarray(poses, dtype=np.float64).reshape(-1, keypoint_info.num_keypoints, 3):
        labelled = pose[:, 2] > 0
        points = np.round(pose[:, :2]).astype(int)
        for a, b in keypoint_info.skeleton:
            if labelled[a] and labelled[b]:
                cv2.line(canvas, tuple(points[a]), tuple(points[b]), color, thickness, cv2.LINE_AA)
        for point in points[labelled]:
            cv2.circle(canvas, tuple(point), radius, color, thickness, cv2.LINE_AA)
    return canvas


def _draw_scores(image: np.ndarray, poses: list[np.ndarray], scores: list[float],
                 keypoint_threshold: float) -> None:
    """The person score above the topmost shown keypoint of each pose, in place."""
    scale = max(0.3, max(image.shape[:2]) / 1000)
    for pose, score in zip(poses, scores):
        shown = pose[pose[:, 2] > keypoint_threshold]
        if len(shown) == 0:
            continue
        top = shown[np.argmin(shown[:, 1])]
        origin = (int(round(top[0])), max(int(round(top[1] - 6 * scale)), 8))
        cv2.putText(image, f"{score:.2f}", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(image, f"{score:.2f}", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, SCORE_COLOR, 1,
                    cv2.LINE_AA)


def plot_coco_results(results: list[dict], annotation_file: str, images_dir: str,
                      output_dir: str, keypoint_info: KeypointInfo,
                      score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                      keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD,
                      max_images: int = 0, with_gt: bool = False, show_scores: bool = True,
                      show_progress: bool = False) -> list[str]:
    """Draw results (COCO keypoint entries) on their images; returns the files written.

    One image per image id of the results (with with_gt also per image with annotated keypoints),
    in id order, the first max_images of them (0: all), written as <output_dir>/<id:012d>.jpg.
    Persons scoring below score_threshold are left out (the image is still written); keypoints
    whose confidence is not above keypoint_threshold are not drawn. annotation_file is the
    dataset's COCO JSON, which names each image's file under images_dir.
    """
    coco = load_coco_file(annotation_file)
    by_image: dict[int, list[dict]] = defaultdict(list)
    for index, entry in enumerate(results):
        check_keypoint_count(len(entry["keypoints"]) // 3, keypoint_info,
                             f"result {index} of the results file")
        by_image[int(entry["image_id"])].append(entry)
    gt_by_image: dict[int, list[np.ndarray]] = defaultdict(list)
    if with_gt:
        for annotation in coco.dataset.get("annotations", []):
            if annotation.get("num_keypoints", 0) > 0 and not annotation.get("iscrowd", 0):
                pose = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
                check_keypoint_count(len(pose), keypoint_info, f"annotation file "
                                                               f"'{annotation_file}'")
                gt_by_image[int(annotation["image_id"])].append(pose)

    image_ids = sorted(set(by_image) | set(gt_by_image))
    unknown = [image_id for image_id in image_ids if image_id not in coco.imgs]
    if unknown:
        raise DataError(f"{len(unknown)} image ids of the results are not in the annotation file "
                        f"'{annotation_file}' (e.g. {unknown[:5]}): results and annotations must "
                        f"belong to the same split")
    if max_images > 0:
        image_ids = image_ids[:max_images]

    written = []
    for image_id in tqdm(image_ids, desc="drawing", unit="image", disable=not show_progress):
        path = os.path.join(images_dir, coco.imgs[image_id]["file_name"])
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            if not os.path.isfile(path):
                raise DataFileNotFoundError(f"image of id {image_id} not found: '{path}' "
                                            f"(--images should be the folder the annotation "
                                            f"file's file names are relative to)")
            raise DataError(f"cannot decode image '{path}' (corrupt or not an image)")
        if gt_by_image[image_id]:
            image = draw_ground_truth(image, np.stack(gt_by_image[image_id]), keypoint_info)
        kept = [entry for entry in by_image[image_id] if entry["score"] >= score_threshold]
        poses = [np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3) for entry in kept]
        if poses:
            image = draw_poses(image, np.stack(poses), keypoint_info, keypoint_threshold)
            if show_scores:
                _draw_scores(image, poses, [float(entry["score"]) for entry in kept],
                             keypoint_threshold)
        output = os.path.join(output_dir, f"{image_id:012d}.jpg")
        save_image(output, image)
        written.append(output)
    logger.info("drew %d images into %s", len(written), output_dir)
    return written
