"""Drawing poses and heatmaps: skeletons the caller passes, debug grids of batches."""

from __future__ import annotations

import math
import os
from typing import Protocol

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class PoseSkeleton(Protocol):
    """What drawing needs of a dataset's keypoints. Callers pass a datasets.metadata.KEYPOINT_INFO
    value; utils sit below datasets, so the type is only described here."""

    @property
    def num_keypoints(self) -> int: ...

    skeleton: tuple[tuple[int, int], ...]


def limb_colors(num_limbs: int) -> list[tuple[int, int, int]]:
    """Distinct BGR colours spread around the hue circle, one per limb."""
    hues = np.linspace(0, 179, num_limbs, endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 230), np.full_like(hues, 255)], axis=1)[None]
    return [tuple(int(c) for c in bgr) for bgr in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]]


def draw_poses(image: np.ndarray, poses: np.ndarray, keypoint_info: PoseSkeleton,
               score_threshold: float = 0.2) -> np.ndarray:
    """A copy of a BGR image with each pose (K, 3: x, y, score) drawn as joints and limbs.

    Line thickness and joint radius follow the image size so that drawings stay legible.
    """
    canvas = image.copy()
    size = max(canvas.shape[:2])
    thickness = max(1, int(round(size / 250)))
    radius = max(2, int(round(size / 170)))
    colors = limb_colors(len(keypoint_info.skeleton))
    for pose in np.asarray(poses, dtype=np.float64).reshape(-1, keypoint_info.num_keypoints, 3):
        shown = pose[:, 2] > score_threshold
        for (a, b), color in zip(keypoint_info.skeleton, colors):
            if shown[a] and shown[b]:
                cv2.line(canvas, (int(round(pose[a, 0])), int(round(pose[a, 1]))),
                         (int(round(pose[b, 0])), int(round(pose[b, 1]))), color, thickness,
                         cv2.LINE_AA)
        for x, y in pose[shown, :2]:
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1,
                       cv2.LINE_AA)
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def denormalize_batch(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) normalised tensors -> (B, H, W, 3) uint8 images in the loader's colour order."""
    array = images.detach().cpu().float().numpy().transpose(0, 2, 3, 1)
    array = (array * IMAGENET_STD + IMAGENET_MEAN) * 255.0
    return np.clip(array, 0, 255).astype(np.uint8)


def batch_joints_grid(images: torch.Tensor, joints: np.ndarray, joints_vis: np.ndarray,
                      columns: int = 8) -> np.ndarray:
    """A grid of the batch's crops with joints (B, K, 2) in crop pixels drawn where visible."""
    crops = denormalize_batch(images)
    batch, height, width = crops.shape[:3]
    rows = math.ceil(batch / columns)
    grid = np.zeros((rows * height, min(batch, columns) * width, 3), dtype=np.uint8)
    for index in range(batch):
        tile = np.ascontiguousarray(crops[index])
        for (x, y), visible in zip(joints[index], joints_vis[index]):
            if visible > 0:
                cv2.circle(tile, (int(x), int(y)), 2, (255, 0, 0), 2)
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile
    return grid


def batch_heatmaps_grid(images: torch.Tensor, heatmaps: torch.Tensor) -> np.ndarray:
    """One row per sample: the resized crop, then each joint's heatmap blended over it."""
    crops = denormalize_batch(images)
    maps = heatmaps.detach().cpu().float().clamp(0, 1).numpy()
    batch, joints, height, width = maps.shape
    grid = np.zeros((batch * height, (joints + 1) * width, 3), dtype=np.uint8)
    for index in range(batch):
        small = cv2.resize(crops[index], (width, height))
        grid[index * height:(index + 1) * height, :width] = small
        colored = cv2.applyColorMap((maps[index] * 255).astype(np.uint8).reshape(-1, width),
                                    cv2.COLORMAP_JET).reshape(joints, height, width, 3)
        for joint in range(joints):
            blended = (colored[joint] * 0.7 + small * 0.3).astype(np.uint8)
            y, x = np.unravel_index(np.argmax(maps[index, joint]), (height, width))
            cv2.circle(blended, (int(x), int(y)), 1, (0, 0, 255), 1)
            rows = slice(index * height, (index + 1) * height)
            grid[rows, (joint + 1) * width:(joint + 2) * width] = blended
    return grid


def save_image(path: str, image: np.ndarray) -> None:
    """Write an image, creating its folder; raises if OpenCV cannot encode it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f"could not write image '{path}'")
