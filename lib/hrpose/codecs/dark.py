"""The DARK codec: unbiased sub-pixel Gaussian targets and distribution-aware decoding."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .heatmap import (
    DRAW_WEIGHT_THRESHOLD,
    GAUSSIAN_RADIUS_SIGMAS,
    HeatmapDecodeResult,
    first_argmax,
    gather_pixels,
    get_max_preds,
    peak_pixels,
)

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
# When the Taylor step is taken at a peak (TEST.DARK_STEP):
# reference: wherever the Hessian's determinant is non-zero, as DarkPose's taylor() does; at a
#   saddle or a minimum of the log map the step then goes to that stationary point, which can
#   be far off the map when the Hessian is nearly singular;
# negative_definite: only where the Hessian is negative definite (a maximum); elsewhere the
#   integer peak stays.
DARK_STEPS = ("reference", "negative_definite")
# decode_dark finds peaks and reads their windows in pieces of this many pixels (16 MB of
# float32, within a server CPU's last-level cache).
DARK_PIECE_ELEMENTS = 1 << 22


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

    drawn = target_weight[:, 0] > DRAW_WEIGHT_THRESHOLD
    target = np.zeros((joints.shape[0], heatmap_height, heatmap_width), dtype=np.float32)
    if drawn.any():
        mu = mu[drawn]
        x = np.arange(heatmap_width, dtype=np.float64)
        y = np.arange(heatmap_height, dtype=np.float64)
        # exp(a + b) = exp(a) exp(b): the 2-D Gaussian is an outer product of two 1-D ones.
        gauss_x = np.exp(-(x[None, :] - mu[:, 0:1]) ** 2 / (2 * sigma ** 2))
        gauss_y = np.exp(-(y[None, :] - mu[:, 1:2]) ** 2 / (2 * sigma ** 2))
        # The float64 products are rounded to float32 once, on assignment.
        target[drawn] = gauss_y[:, :, None] * gauss_x[:, None, :]

    if joint_weights is not None:
        target_weight = target_weight * np.asarray(joint_weights, dtype=np.float32)[:, None]
    return target, target_weight


def opencv_gaussian_kernel(size: int) -> np.ndarray:
    """The 1-D kernel cv2.getGaussianKernel(size, 0) returned for the references
    (float64, sum 1)."""
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


# The Taylor step reads the log map at these offsets from the peak: centre, x +-1, x +-2,
# y +-1, y +-2 and the four diagonals.
STENCIL_X = (0, 1, -1, 2, -2, 0, 0, 0, 0, 1, 1, -1, -1)
STENCIL_Y = (0, 0, 0, 0, 0, 1, -1, 2, -2, 1, -1, 1, -1)
STENCIL_RADIUS = 2
# The stencil weights get 3 zero columns: a product 16 wide is one AVX-512 vector of float32,
# and MKL computes it in about 60 % of the time it takes for 13.
STENCIL_PADDING = 3


def _check_step(step: str) -> None:
    if step not in DARK_STEPS:
        raise ValueError(f"the DARK step must be one of {DARK_STEPS}, got {step!r}")


def _newton_offset(values: torch.Tensor, step: str = "reference"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """-Hess^-1 grad from log values (..., 13) in STENCIL order; returns (offset (..., 2), ok).

    ok says where the step is taken (see DARK_STEPS): where the Hessian is not singular
    ("reference"), or only where it is negative definite ("negative_definite"); the offset is
    zero elsewhere.
    """
    (centre, right, left, right2, left2, below, above, below2, above2,
     below_right, above_right, below_left, above_left) = values.unbind(-1)
    dx = (right - left) / 2
    dy = (below - above) / 2
    dxx = (right2 - 2 * centre + left2) / 4
    dyy = (below2 - 2 * centre + above2) / 4
    dxy = (below_right - above_right - below_left + above_left) / 4
    det = dxx * dyy - dxy ** 2
    ok = (det > 0) & (dxx < 0) if step == "negative_definite" else det != 0
    safe_det = torch.where(ok, det, torch.ones_like(det))
    offset = torch.stack([-(dyy * dx - dxy * dy) / safe_det, -(dxx * dy - dxy * dx) / safe_det],
                         dim=-1)
    return torch.where(ok[..., None], offset, torch.zeros_like(offset)), ok


def _refinable(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Peaks far enough from the border for the stencil: 1 < px < W - 2 and 1 < py < H - 2."""
    pixel = coords.long()
    return ((pixel[..., 0] > 1) & (pixel[..., 0] < width - 2)
            & (pixel[..., 1] > 1) & (pixel[..., 1] < height - 2))


def taylor_refine(log_maps: torch.Tensor, coords: torch.Tensor, step: str = "reference"
                  ) -> torch.Tensor:
    """One Newton step on log maps (B, K, H, W) from integer peaks coords (B, K, 2).

    As the reference: central differences at (px, py) = int(coords), only where
    1 < px < W - 2 and 1 < py < H - 2; the offset -H^-1 g is not clipped. A peak whose Hessian is
    singular, or with step "negative_definite" not negative definite, stays where it is.
    """
    _check_step(step)
    height, width = log_maps.shape[2:]
    if height < 5 or width < 5:
        return coords.clone()
    inside = _refinable(coords, height, width)
    pixel = coords.long()
    px = pixel[..., 0].clamp(2, width - 3)
    py = pixel[..., 1].clamp(2, height - 3)
    stencil_x = torch.tensor(STENCIL_X, device=coords.device)
    stencil_y = torch.tensor(STENCIL_Y, device=coords.device)
    values = gather_pixels(log_maps, px[..., None] + stencil_x, py[..., None] + stencil_y)
    offset, _ = _newton_offset(values, step)
    # where, not a product with the mask: a NaN offset (a NaN in the stencil) must not reach a
    # peak outside the band, which the reference leaves alone.
    return coords + torch.where(inside[..., None], offset, 0).to(coords.dtype)


@functools.lru_cache(maxsize=16)
def _stencil_blur_weights(kernel_size: int, dtype: torch.dtype, device: torch.device
                          ) -> torch.Tensor:
    """(S * S, 16) weights that turn a raw window of side S = 2 (r + 2) + 1 around a peak into
    the blurred values at the 13 stencil points (separable kernel, r = kernel_size // 2),
    followed by STENCIL_PADDING zero columns."""
    kernel = opencv_gaussian_kernel(kernel_size)
    radius = kernel_size // 2
    side = 2 * (radius + STENCIL_RADIUS) + 1
    weights = np.zeros((side, side, len(STENCIL_X) + STENCIL_PADDING))
    centre = radius + STENCIL_RADIUS
    for point, (dx, dy) in enumerate(zip(STENCIL_X, STENCIL_Y)):
        top, left = centre + dy - radius, centre + dx - radius
        weights[top:top + kernel_size, left:left + kernel_size, point] = np.outer(kernel, kernel)
    return torch.as_tensor(weights.reshape(side * side, -1), dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _window_outside_map(height: int, width: int, half: int, device: torch.device
                        ) -> torch.Tensor:
    """(H * W, S * S) bool: which pixels of the window of side S = 2 half + 1 centred on each
    pixel of an H x W map lie outside the map."""
    side = 2 * half + 1
    steps = torch.arange(-half, half + 1, device=device)
    window_rows = torch.arange(height, device=device)[:, None] + steps
    window_columns = torch.arange(width, device=device)[:, None] + steps
    rows_in = (window_rows >= 0) & (window_rows < height)
    columns_in = (window_columns >= 0) & (window_columns < width)
    inside = rows_in[:, None, :, None] & columns_in[None, :, None, :]
    return ~inside.reshape(height * width, side * side)


def _peak_stencils(flat: torch.Tensor, height: int, width: int, kernel_size: int,
                   dtype: torch.dtype
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of maps (n, H * W) (contiguous) and the zero-padded blur around them -> maxvals
    (n,), first-occurrence argmax index (n,), the blurred values at the 13 stencil points
    (n, 13) in dtype, and (n,) True where the window would leave the maps' storage (its values
    are then not to be used).

    The blur at a pixel reads the raw map only within the kernel radius, so the window of side
    S = 5 + 2r around the peak, zero outside the map, gives every stencil value. The window's
    rows are read with index_select from overlapping row-long segments of the storage; the
    pixels outside the map (a neighbour map's rows, the wrap to the next row) are zeroed after.
    The maps go in pieces of DARK_PIECE_ELEMENTS pixels, so that each piece's windows are read
    and blurred while its argmax pass has left it in the CPU's cache.
    """
    rows = flat.shape[0]
    half = kernel_size // 2 + STENCIL_RADIUS
    side = 2 * half + 1
    storage = flat.reshape(-1)
    last_segment = storage.numel() - side
    if last_segment < 0:  # all the maps together hold fewer pixels than one window row
        maxvals, index = first_argmax(flat)
        return (maxvals, index, flat.new_zeros(rows, len(STENCIL_X), dtype=dtype),
                torch.ones(rows, dtype=torch.bool, device=flat.device))
    segments = storage.as_strided((last_segment + 1, side), (1, 1))
    outside_map = _window_outside_map(height, width, half, flat.device)
    weights = _stencil_blur_weights(kernel_size, dtype, flat.device)
    map_pixels = height * width
    row_offsets = torch.arange(side, device=flat.device) * width - (half * width + half)
    maxvals = flat.new_empty(rows)
    index = torch.empty(rows, dtype=torch.long, device=flat.device)
    stencils = flat.new_empty(rows, weights.shape[1], dtype=dtype)
    piece = max(1, DARK_PIECE_ELEMENTS // map_pixels)
    for start in range(0, rows, piece):
        stop = min(rows, start + piece)
        piece_max, piece_index = first_argmax(flat[start:stop])
        maxvals[start:stop], index[start:stop] = piece_max, piece_index
        map_starts = torch.arange(start * map_pixels, stop * map_pixels, map_pixels,
                                  device=flat.device)
        row_starts = (map_starts + piece_index)[:, None] + row_offsets
        windows = segments.index_select(0, row_starts.clamp_(0, last_segment).view(-1))
        windows = windows.view(stop - start, side * side)
        windows.masked_fill_(outside_map[piece_index], 0)
        torch.mm(windows.to(dtype), weights, out=stencils[start:stop])
    first_row = torch.arange(rows, device=flat.device) * map_pixels + index + row_offsets[0]
    leaves_storage = (first_row < 0) | (first_row + row_offsets[-1] - row_offsets[0]
                                        > last_segment)
    return maxvals, index, stencils[:, :len(STENCIL_X)], leaves_storage


def decode_dark(heatmaps: torch.Tensor, blur_kernel: int, step: str = "reference"
                ) -> HeatmapDecodeResult:
    """DARK decoding of maps (B, K, H, W) on their device: argmax and confidence on the raw
    maps, then blur, rescale, log and one Taylor step, taken where ``step`` (DARK_STEPS) says.

    The rescale to the original maximum only shifts the log map by a constant, which the
    derivatives do not see, unless the 1e-10 floor cuts a stencil value. So the blur is
    evaluated on the stencil's window alone, and only maps where the floor could act (a stencil
    value under it) go through the whole-map blur, in float64. The windowed blur, the log and
    the Taylor step run in the maps' precision, at least float32: the reference blurs in
    float64 but writes the blur back into its float32 maps and takes the log and the step
    there (coordinates agree with a float64 decoding to about 1e-5 px).
    """
    _check_step(step)
    batch, joints, height, width = heatmaps.shape
    if height < 5 or width < 5:
        return get_max_preds(heatmaps)
    dtype = torch.promote_types(heatmaps.dtype, torch.float32)
    flat = heatmaps.reshape(batch * joints, height * width).contiguous()
    maxvals, index, stencils, leaves_storage = _peak_stencils(flat, height, width, blur_kernel,
                                                              dtype)

    pixels = peak_pixels(index, maxvals, width)
    peaks = pixels.to(dtype)
    inside = _refinable(pixels, height, width)
    # The blur of values <= m0 with weights summing to <= 1 stays <= m0, so the rescale factor
    # is >= 1 and cannot lift a stencil value that was under the floor above it.
    exact = inside & ((stencils < LOG_FLOOR).any(dim=1) | leaves_storage)
    offset, _ = _newton_offset(torch.log(stencils.clamp_min(LOG_FLOOR)), step)
    refined = peaks + torch.where((inside & ~exact)[:, None], offset, 0)
    if exact.any():
        chosen = torch.nonzero(exact).flatten()
        maps = flat[chosen].reshape(-1, 1, height, width).double()
        log_maps = torch.log(gaussian_blur(maps, blur_kernel).clamp_min(LOG_FLOOR))
        refined[chosen] = taylor_refine(log_maps, peaks[chosen][:, None].double(),
                                        step)[:, 0].to(dtype)
    return HeatmapDecodeResult(refined.view(batch, joints, 2), maxvals.view(batch, joints, 1))
