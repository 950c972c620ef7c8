"""The DARK codec: unbiased sub-pixel Gaussian targets and distribution-aware decoding."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .heatmap import (DRAW_WEIGHT_THRESHOLD, GAUSSIAN_RADIUS_SIGMAS, HeatmapDecodeResult,
                      gather_pixels, get_max_preds)

# OpenCV's getGaussianKernel uses these fixed tables for sigma <= 0 and sizes up to 7. (OpenCV 4.x
# and later also tabulate size 9; the references ran OpenCV 3, which sampled sigma 1.7 there.)
OPENCV_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}
# The log map is clamped here before the Taylor step, as the reference does.
LOG_FLOOR = 1e-10


def encode_unbiased_heatmaps(joints: np.ndarray, joints_vis: np.ndarray,
                             heatmap_size: Sequence[int], sigma: float,
                             joint_weights: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """DARK's target: a Gaussian at each joint's sub-pixel heatmap position, over the whole map.

    joints: (K, 2 or 3) already in heatmap pixels (mapped by the affine to HEATMAP_SIZE);
    joints_vis: (K,) or (K, 3). Returns target (K, Hh, Wh) and target_weight (K, 1), float32.
    A joint whose 3-sigma window, int(mu -/+ ...) as the reference bounds it, misses the map
    gets weight 0 and an empty map; the peak is below 1 unless mu is on a pixel.
    """
    joints = np.asarray(joints, dtype=np.float64)
    joints_vis = np.asarray(joints_vis, dtype=np.float64)
    visibility = joints_vis if joints_vis.ndim == 1 else joints_vis[:, 0]
    heatmap_width, heatmap_height = int(heatmap_size[0]), int(heatmap_size[1])
    radius = GAUSSIAN_RADIUS_SIGMAS * float(sigma)

    mu = joints[:, :2]
    upper_left = np.trunc(mu - radius)
    bottom_right = np.trunc(mu + radius + 1)
    misses_map = ((upper_left[:, 0] >= heatmap_width) | (upper_left[:, 1] >= heatmap_height)
                  | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0))
    target_weight = np.where(misses_map, 0.0, visibility).astype(np.float32)[:, None]

    x = np.arange(heatmap_width, dtype=np.float64)
    y = np.arange(heatmap_height, dtype=np.float64)
    # exp(a + b) = exp(a) exp(b): the 2-D Gaussian is an outer product of two 1-D ones.
    gauss_x = np.exp(-(x[None, :] - mu[:, 0:1]) ** 2 / (2 * sigma ** 2))
    gauss_y = np.exp(-(y[None, :] - mu[:, 1:2]) ** 2 / (2 * sigma ** 2))
    target = gauss_y[:, :, None] * gauss_x[:, None, :]
    drawn = target_weight[:, 0] > DRAW_WEIGHT_THRESHOLD
    target = np.where(drawn[:, None, None], target, 0.0).astype(np.float32)

    if joint_weights is not None:
        target_weight = target_weight * np.asarray(joint_weights, dtype=np.float32)[:, None]
    return target, target_weight


def opencv_gaussian_kernel(size: int) -> np.ndarray:
    """The 1-D kernel cv2.getGaussianKernel(size, 0) returned for the references (float64, sum 1)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the blur kernel size must be a positive odd number, got {size}")
    if size in OPENCV_SMALL_KERNELS:
        return np.array(OPENCV_SMALL_KERNELS[size], dtype=np.float64)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def gaussian_blur(heatmaps: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur maps (B, K, H, W) as the reference does: zero-padded separable OpenCV Gaussian, then
    each map rescaled to its original maximum (a map whose blur has no positive maximum keeps the
    unscaled blur instead of the reference's inf / NaN)."""
    batch, joints, height, width = heatmaps.shape
    kernel_1d = torch.as_tensor(opencv_gaussian_kernel(kernel_size), dtype=heatmaps.dtype,
                                device=heatmaps.device)
    radius = kernel_size // 2
    maps = heatmaps.reshape(batch * joints, 1, height, width)
    blurred = F.conv2d(maps, kernel_1d.view(1, 1, 1, -1), padding=(0, radius))
    blurred = F.conv2d(blurred, kernel_1d.view(1, 1, -1, 1), padding=(radius, 0))
    blurred = blurred.reshape(batch, joints, height, width)
    original_max = heatmaps.flatten(2).amax(dim=2)[..., None, None]
    blurred_max = blurred.flatten(2).amax(dim=2)[..., None, None]
    scale = torch.where(blurred_max > 0, original_max / blurred_max.clamp_min(1e-300),
                        torch.ones_like(blurred_max))
    return blurred * scale


def taylor_refine(log_maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """One Newton step on log maps (B, K, H, W) from integer peaks coords (B, K, 2).

    As the reference: central differences at (px, py) = int(coords), only where
    1 < px < W - 2 and 1 < py < H - 2; the offset -H^-1 g is not clipped. A peak whose Hessian is
    singular or not negative definite (not a maximum) stays where it is.
    """
    height, width = log_maps.shape[2:]
    if height < 5 or width < 5:
        return coords.clone()
    pixel = coords.long()
    px, py = pixel[..., 0], pixel[..., 1]
    inside = (px > 1) & (px < width - 2) & (py > 1) & (py < height - 2)
    px, py = px.clamp(2, width - 3), py.clamp(2, height - 3)
    # The 5-point stencil: centre, x +-1, x +-2, y +-1, y +-2, and the four diagonals.
    offsets_x = torch.tensor([0, 1, -1, 2, -2, 0, 0, 0, 0, 1, 1, -1, -1], device=coords.device)
    offsets_y = torch.tensor([0, 0, 0, 0, 0, 1, -1, 2, -2, 1, -1, 1, -1], device=coords.device)
    values = gather_pixels(log_maps, px[..., None] + offsets_x, py[..., None] + offsets_y)
    (centre, right, left, right2, left2, below, above, below2, above2,
     below_right, above_right, below_left, above_left) = values.unbind(-1)
    dx = (right - left) / 2
    dy = (below - above) / 2
    dxx = (right2 - 2 * centre + left2) / 4
    dyy = (below2 - 2 * centre + above2) / 4
    dxy = (below_right - above_right - below_left + above_left) / 4
    det = dxx * dyy - dxy ** 2
    is_maximum = inside & (det > 0) & (dxx < 0)
    safe_det = torch.where(is_maximum, det, torch.ones_like(det))
    offset_x = -(dyy * dx - dxy * dy) / safe_det
    offset_y = -(dxx * dy - dxy * dx) / safe_det
    offset = torch.stack([offset_x, offset_y], dim=-1).to(coords.dtype)
    return coords + torch.where(is_maximum[..., None], offset, torch.zeros_like(offset))


def decode_dark(heatmaps: torch.Tensor, blur_kernel: int) -> HeatmapDecodeResult:
    """DARK decoding of maps (B, K, H, W) on their device: argmax and confidence on the raw
    maps, then blur, log and one Taylor step. Works in float64, as the reference's blur does."""
    coords, maxvals = get_max_preds(heatmaps)
    maps = heatmaps.double()
    log_maps = torch.log(gaussian_blur(maps, blur_kernel).clamp_min(LOG_FLOOR))
    refined = taylor_refine(log_maps, coords.double())
    return HeatmapDecodeResult(refined.to(coords.dtype), maxvals)
