"""Bottom-up inference that keeps its maps, and colour images of heatmaps and tag maps.

HAE's demo writes three images per input: the poses, a heatmap image and a tag-map image
(docs/hae.md). ``infer_bottom_up_with_maps`` runs the test-time
pipeline of postprocess.bottomup (multi_scale_maps -> grouping -> get_final_preds) with either
grouping and returns the aggregated maps beside the persons; ``render_heatmap`` and
``render_tag_map`` turn those maps into uint8 BGR images (OpenCV's order, ready for cv2.imwrite
and utils.vis.draw_poses), and ``warp_to_image`` brings such an image from heatmap pixels to the
original image's frame so that it can be blended with the photo.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from ..utils.transforms import get_affine_transform
from .ae_grouping import AssignmentSolver, GroupingParams
from .bottomup import (
    BottomUpPrediction,
    BottomUpTestParams,
    ModelCallable,
    MultiScaleMaps,
    get_final_preds,
    multi_scale_maps,
)
from .progressive_grouping import GroupingFunction, get_grouping_function

# render_tag_map: pixels whose heatmap value is at or below this are background (drawn black).
DEFAULT_TAG_MAP_THRESHOLD = 0.1
UINT8_MAX = 255


class BottomUpWithMaps(NamedTuple):
    """The persons of one image (as infer_bottom_up returns them) and the maps they came from:
    maps.heatmaps (1, J, H, W), maps.tags (D maps (1, J or 1, H, W)) on the model's device,
    with the centre, scale and heatmap size that map heatmap pixels to image pixels."""

    prediction: BottomUpPrediction
    maps: MultiScaleMaps


def infer_bottom_up_with_maps(model: ModelCallable, image: np.ndarray,
                              test_params: BottomUpTestParams, grouping_params: GroupingParams,
                              grouping: str | GroupingFunction = "fixed",
                              device: torch.device | str | None = None,
                              transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                              assignment: AssignmentSolver | None = None
                              ) -> BottomUpWithMaps:
    """The bottom-up pipeline for one (H, W, 3) uint8 RGB image, keeping the aggregated maps.

    grouping: a TEST.GROUPING name ('fixed': HigherHRNet's order, 'progressive': HAE) or a
    function with ae_grouping.group_keypoints' signature. With 'fixed' the prediction equals
    bottomup.infer_bottom_up's. The model should be in eval mode.
    """
    group = get_grouping_function(grouping) if isinstance(grouping, str) else grouping
    maps = multi_scale_maps(model, image, test_params, grouping_params.num_joints, device,
                            transform)
    grouped = group(maps.heatmaps, maps.tags, grouping_params, assignment)[0]
    poses = get_final_preds(grouped.poses, maps.center, maps.scale, maps.heatmap_size)
    return BottomUpWithMaps(BottomUpPrediction(poses, grouped.scores), maps)


def _numpy(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        return maps.detach().float().cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


def _strip_batch(maps: np.ndarray, image_dims: int) -> np.ndarray:
    """Drop a leading batch axis of one image (maps with image_dims + 1 axes)."""
    if maps.ndim == image_dims + 1:
        if maps.shape[0] != 1:
            raise ValueError(f"expected the maps of one image, got a batch of {maps.shape[0]}")
        return maps[0]
    return maps


def _heat(heatmaps: np.ndarray, joint: int | None) -> np.ndarray:
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (J, H, W) or (1, J, H, W), got {heatmaps.shape}")
    return heatmaps.max(axis=0) if joint is None else heatmaps[joint]


def render_heatmap(heatmaps: torch.Tensor | np.ndarray, joint: int | None = None,
                   colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of heatmaps (J, H, W) (or (1, J, H, W)).

    joint None: the maximum over joint types; else that joint type's map. Values are clipped to
    [0, 1] and coloured with the OpenCV colormap.
    """
    heat = _heat(_strip_batch(_numpy(heatmaps), 3), joint)
    levels = np.round(np.clip(heat, 0.0, 1.0) * UINT8_MAX).astype(np.uint8)
    return cv2.applyColorMap(levels, colormap)


def render_tag_map(heatmaps: torch.Tensor | np.ndarray,
                   tags: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray],
                   joint: int | None = None, component: int | None = 0,
                   threshold: float = DEFAULT_TAG_MAP_THRESHOLD,
                   colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of a tag map: hue = tag, brightness = heatmap confidence.

    heatmaps (J, H, W) or (1, J, H, W); tags (J or 1, H, W), (J or 1, H, W, D), the same with a
    batch axis of 1, or, as MultiScaleMaps holds them, a sequence of D maps (1, J or 1, H, W)
    (one tag channel may serve all joints).
    joint None: each pixel shows the tag of the joint type whose heatmap is highest there;
    else that joint type's.
    component: which tag column (0 = the unflipped pass; None = their mean). Pixels with heatmap
    above ``threshold`` are confident: their tags are normalised to [0, 1] by the smallest and
    largest confident tag (all 0.5 when those are equal), coloured with the colormap and dimmed
    by heatmap / its confident maximum; the other pixels are black.
    """
    heatmaps = _strip_batch(_numpy(heatmaps), 3)
    if isinstance(tags, (list, tuple)):
        tags = np.stack([_numpy(component) for component in tags], axis=-1)
    tags = _strip_batch(_numpy(tags), 4)
    if tags.ndim == 3:
        tags = tags[..., None]
    if tags.ndim != 4 or tags.shape[1:3] != heatmaps.shape[1:3] \
            or tags.shape[0] not in (1, heatmaps.shape[0]):
        raise ValueError(f"tags {tags.shape} do not fit heatmaps {heatmaps.shape}")
    values = tags.mean(axis=3) if component is None else tags[..., component]
    if joint is None:
        heat = heatmaps.max(axis=0)
        if values.shape[0] == 1:
            tag = values[0]
        else:
            best = heatmaps.argmax(axis=0)
            tag = np.take_along_axis(values, best[None], axis=0)[0]
    else:
        heat = heatmaps[joint]
        tag = values[0 if values.shape[0] == 1 else joint]
    image = np.zeros(heat.shape + (3,), dtype=np.uint8)
    confident = heat > threshold
    if not confident.any():
        return image
    low, high = tag[confident].min(), tag[confident].max()
    if high > low:
        normalised = np.clip((tag - low) / (high - low), 0.0, 1.0)
    else:
        normalised = np.full_like(tag, 0.5)
    colours = cv2.applyColorMap(np.round(normalised * UINT8_MAX).astype(np.uint8), colormap)
    peak = heat[confident].max()
    scaled = np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.ones_like(heat)
    brightness = np.where(confident, scaled, 0.0)
    image[...] = np.round(colours * brightness[..., None]).astype(np.uint8)
    return image


def warp_to_image(rendered: np.ndarray, center: Sequence[float], scale: Sequence[float],
                  heatmap_size: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """A rendered map (heatmap pixels) warped into the original image frame.

    center, scale, heatmap_size (w, h): as in MultiScaleMaps (the inverse of the test-time
    affine, as get_final_preds maps coordinates); image_size (w, h) of the original image.
    Bilinear, black outside the map.
    """
    matrix = get_affine_transform(center, scale, 0.0, heatmap_size, inverse=True)
    return cv2.warpAffine(np.ascontiguousarray(rendered), matrix,
                          (int(image_size[0]), int(image_size[1])), flags=cv2.INTER_LINEAR)
