"""The inference demo's drawings: skeletons, boxes and track ids on frames; heatmap images."""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..postprocess.tag_maps import render_heatmap, render_tag_map, warp_to_image
from ..utils.vis import draw_poses, save_image
from .predictor import Person

# Joints whose confidence is at or below this are not drawn.
KEYPOINT_DRAW_THRESHOLD = 0.2
MAP_BLEND = 0.6  # weight of the rendered heatmap over the picture in maps/*_heatmap.jpg


def write_map_images(folder: str, name: str, image: np.ndarray, maps) -> None:
    """<name>_heatmap.jpg (the heatmaps blended over the picture) and <name>_tags.jpg in folder."""
    size = (image.shape[1], image.shape[0])
    heat = warp_to_image(render_heatmap(maps.heatmaps), maps.center, maps.scale,
                         maps.heatmap_size, size)
    blended = cv2.addWeighted(heat, MAP_BLEND, image, 1.0 - MAP_BLEND, 0.0)
    tags = warp_to_image(render_tag_map(maps.heatmaps, maps.tags), maps.center, maps.scale,
                         maps.heatmap_size, size)
    save_image(os.path.join(folder, f"{name}_heatmap.jpg"), blended)
    save_image(os.path.join(folder, f"{name}_tags.jpg"), tags)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A BGR colour per track id: hues a golden-ratio turn apart, so that ids close in number
    (tracks started close in time) get clearly different colours."""
    hue = int(round((track_id * 0.6180339887498949) % 1.0 * 180)) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)
    return tuple(int(c) for c in bgr[0, 0])


def _label_anchor(person: Person, draw_boxes: bool) -> tuple[int, int]:
    """Top-left corner of the person box (top-down) or of its drawn joints (bottom-up)."""
    if draw_boxes:
        return int(round(person.box[0])), int(round(person.box[1]))
    shown = person.keypoints[person.keypoints[:, 2] > KEYPOINT_DRAW_THRESHOLD]
    joints = shown if len(shown) else person.keypoints
    return int(round(joints[:, 0].min())), int(round(joints[:, 1].min()))


def _draw_track_label(canvas: np.ndarray, text: str, anchor: tuple[int, int],
                      color: tuple[int, int, int]) -> None:
    """The text in black on a box of the colour, above anchor (inside the picture)."""
    scale = max(0.35, max(canvas.shape[:2]) / 1000)
    thickness = max(1, int(round(scale * 1.5)))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                                thickness)
    x = min(max(anchor[0], 0), max(canvas.shape[1] - width - 2, 0))
    y = min(max(anchor[1], height + baseline + 2), canvas.shape[0] - 1)
    cv2.rectangle(canvas, (x, y - height - baseline - 2), (x + width + 2, y), color, -1)
    cv2.putText(canvas, text, (x + 1, y - baseline - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), thickness, cv2.LINE_AA)


def draw_persons(image: np.ndarray, persons: list[Person], info, draw_boxes: bool,
          track_ids: list[int] | None = None) -> np.ndarray:
    """The picture with the persons' skeletons and, for top-down models, their boxes; with
    track ids, each box in its track's colour and the id written at its top-left corner."""
    if not persons:
        return image.copy()
    poses = np.stack([person.keypoints for person in persons])
    canvas = draw_poses(image, poses, info, KEYPOINT_DRAW_THRESHOLD)
    for n, person in enumerate(persons):
        color = (0, 255, 0) if track_ids is None else track_color(track_ids[n])
        if draw_boxes:
            x, y, w, h = (int(round(v)) for v in person.box)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), color, 1)
        if track_ids is not None:
            _draw_track_label(canvas, str(track_ids[n]), _label_anchor(person, draw_boxes),
                              color)
    return canvas
