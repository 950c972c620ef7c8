"""Debug images written during training and validation when DEBUG.DEBUG is set."""

from __future__ import annotations

import numpy as np
import torch
from yacs.config import CfgNode

from ..codecs.heatmap import get_max_preds
from ..utils.vis import batch_heatmaps_grid, batch_joints_grid, save_image


def save_debug_images(debug: CfgNode, prefix: str, images: torch.Tensor, meta: dict,
                      target: torch.Tensor, output: torch.Tensor) -> None:
    """Write <prefix>_{gt,pred,hm_gt,hm_pred}.jpg as the DEBUG.SAVE_* switches ask."""
    if not debug.DEBUG:
        return
    if debug.SAVE_BATCH_IMAGES_GT:
        save_image(f"{prefix}_gt.jpg", batch_joints_grid(
            images, meta["joints"].numpy(), meta["joints_vis"].numpy()))
    if debug.SAVE_BATCH_IMAGES_PRED:
        coords, maxvals = get_max_preds(output.detach())
        stride = images.shape[-1] / output.shape[-1]
        save_image(f"{prefix}_pred.jpg", batch_joints_grid(
            images, coords.cpu().numpy() * stride,
            (maxvals.cpu().numpy()[..., 0] > 0).astype(np.float32)))
    if debug.SAVE_HEATMAPS_GT:
        save_image(f"{prefix}_hm_gt.jpg", batch_heatmaps_grid(images, target))
    if debug.SAVE_HEATMAPS_PRED:
        save_image(f"{prefix}_hm_pred.jpg", batch_heatmaps_grid(images, output))


def _decode_joints_targets(joints: torch.Tensor, map_size: int,
                           stride: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, M, J, 2) of (flat index j*s*s + y*s + x, visible) -> (N, M*J, 2) input pixels,
    (N, M*J)."""
    joints = joints.detach().cpu().numpy()
    index = joints[..., 0] % (map_size * map_size)
    coords = np.stack([index % map_size, index // map_size], axis=-1).astype(np.float32) * stride
    batch = joints.shape[0]
    return coords.reshape(batch, -1, 2), (joints[..., 1] > 0).reshape(batch, -1).astype(np.float32)


def _heatmap_peaks(heatmaps: torch.Tensor, stride: float, threshold: float = 0.1,
                   max_per_joint: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (3x3 max-pool) above threshold of each joint type, in input pixels.

    Returns (N, J*K, 2) coordinates and (N, J*K) visibility, K the most peaks kept per joint.
    """
    maps = heatmaps.detach().float()
    batch, joints, height, width = maps.shape
    pooled = torch.nn.functional.max_pool2d(maps, 3, stride=1, padding=1)
    maps = torch.where(pooled == maps, maps, torch.zeros_like(maps))
    values, index = maps.view(batch, joints, -1).topk(min(max_per_joint, height * width), dim=-1)
    index = index.cpu().numpy()
    coords = np.stack([index % width, index // width], axis=-1).astype(np.float32) * stride
    visible = (values > threshold).cpu().numpy().astype(np.float32)
    return coords.reshape(batch, -1, 2), visible.reshape(batch, -1)


def save_bottomup_debug_images(debug: CfgNode, prefix: str, images: torch.Tensor,
                               heatmaps_targets, joints_targets, outputs) -> None:
    """Bottom-up <prefix>_{gt,pred,hm_gt,hm_pred}.jpg as the DEBUG.SAVE_* switches ask.

    Uses the first resolution: ground-truth joints decoded from its joints targets, predicted
    peaks (per joint type, above 0.1) of the first J channels of the first output.
    """
    if not debug.DEBUG:
        return
    target = heatmaps_targets[0]
    output = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    num_joints = target.shape[1]
    if debug.SAVE_BATCH_IMAGES_GT:
        coords, visible = _decode_joints_targets(joints_targets[0], target.shape[-1],
                                                 images.shape[-1] / target.shape[-1])
        save_image(f"{prefix}_gt.jpg", batch_joints_grid(images, coords, visible))
    if debug.SAVE_BATCH_IMAGES_PRED:
        coords, visible = _heatmap_peaks(output[:, :num_joints],
                                         images.shape[-1] / output.shape[-1])
        save_image(f"{prefix}_pred.jpg", batch_joints_grid(images, coords, visible))
    if debug.SAVE_HEATMAPS_GT:
        save_image(f"{prefix}_hm_gt.jpg", batch_heatmaps_grid(images, target))
    if debug.SAVE_HEATMAPS_PRED:
        save_image(f"{prefix}_hm_pred.jpg", batch_heatmaps_grid(images, output[:, :num_joints]))
