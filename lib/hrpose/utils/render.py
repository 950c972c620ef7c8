"""Rendering a COCO-format results file over its images, one annotated image per image id."""

from __future__ import annotations

import os
from collections import defaultdict

import cv2
import numpy as np

from .vis import PoseSkeleton, draw_poses, save_image


def render_results(results: list[dict], image_paths: dict[int, str], keypoint_info: PoseSkeleton,
                   output_dir: str, max_images: int = 8, person_threshold: float = 0.3,
                   keypoint_threshold: float = 0.2) -> list[str]:
    """Draw the poses of results (COCO keypoint entries) on their images; returns written paths.

    image_paths maps image ids to files; the first max_images ids (sorted) with a pose whose
    score reaches person_threshold are drawn.
    """
    by_image: dict[int, list[np.ndarray]] = defaultdict(list)
    for result in results:
        if result["score"] >= person_threshold:
            by_image[result["image_id"]].append(np.asarray(result["keypoints"]).reshape(-1, 3))
    written = []
    for image_id in sorted(by_image)[:max_images]:
        image = cv2.imread(image_paths[image_id], cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image '{image_paths[image_id]}'")
        drawn = draw_poses(image, np.stack(by_image[image_id]), keypoint_info, keypoint_threshold)
        path = os.path.join(output_dir, f"{image_id:012d}.jpg")
        save_image(path, drawn)
        written.append(path)
    return written
