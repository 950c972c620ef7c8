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
            images, coords.cpu().numpy() * stride, (maxvals.cpu().numpy()[..., 0] > 0).astype(np.float32)))
    if debug.SAVE_HEATMAPS_GT:
        save_image(f"{prefix}_hm_gt.jpg", batch_heatmaps_grid(images, target))
    if debug.SAVE_HEATMAPS_PRED:
        save_image(f"{prefix}_hm_pred.jpg", batch_heatmaps_grid(images, output))
