"""The standard Gaussian heatmap codec: rounded-centre targets, argmax + quarter-offset decoding."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Sequence

import numpy as np
import torch

# The target Gaussian is truncated this many sigmas from its centre.
GAUSSIAN_RADIUS_SIGMAS = 3
# A weight above this marks a joint whose Gaussian is drawn.
DRAW_WEIGHT_THRESHOLD = 0.5
# Standard decoding moves the argmax this far towards the higher neighbour on each axis.
QUARTER_OFFSET = 0.25
# first_argmax reduces blocks of this many values first (a 64 x 48 map is 48 blocks).
ARGMAX_BLOCK = 64
# CPU maps of these dtypes are decoded in NumPy.
HOST_DTYPES = (torch.float32, torch.float64)
# CPU maps of at least this many bytes are decoded on torch's thread count of Python threads,
# CHUNKS_PER_THREAD row chunks each; smaller ones (a cached validation batch) in one.
PARALLEL_DECODE_BYTES = 16 << 20
CHUNKS_PER_THREAD = 2


class HeatmapDecodeResult(NamedTuple):
    """What a heatmap decoder returns; unpacks as (coords, maxvals).

    coords: (B, K, 2) float x, y in heatmap pixels. maxvals: (B, K, 1) confidence per joint.
    Every decoder (standard, DARK) returns this, so callers can swap decoders freely.
    """

    coords: torch.Tensor
    maxvals: torch.Tensor


def gaussian_patch(sigma: float) -> np.ndarray:
    """The references' square float32 Gaussian patch, peak 1 at index size // 2.

    Side ceil(2 * 3 sigma + 1): 13 for sigma 2, 19 for sigma 3, 7 for sigma 1.
    """
    # A Python float keeps the arithmetic in float32 (a NumPy float64 scalar would promote it).
    sigma = float(sigma)
    size = 2 * GAUSSIAN_RADIUS_SIGMAS * sigma + 1
    offsets = np.arange(0, size, 1, dtype=np.float32) - size // 2
    squared = offsets[None, :] ** 2 + offsets[:, None] ** 2
    return np.exp(-squared / (2 * sigma ** 2))


def encode_gaussian_heatmaps(joints: np.ndarray, joints_vis: np.ndarray,
                             image_size: Sequence[int], heatmap_size: Sequence[int], sigma: float,
                             joint_weights: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's standard target: one truncated Gaussian per joint at its rounded heatmap pixel.

    joints: (K, 2 or 3) in input-crop pixels; joints_vis: (K,) or (K, 3) (first column used);
    image_size, heatmap_size: (w, h). Returns target (K, Hh, Wh) float32 and target_weight
    (K, 1) float32. The centre is int(x / stride + 0.5) (truncation toward zero), the Gaussian
    is cut to its 3-sigma window, and a joint whose window misses the map gets weight 0. Optional
    joint_weights (K,) multiply the weights afterwards. Bit-equal to pasting the reference patch
    joint by joint, as the same patch values are copied into the same windows.
    """
    joints = np.asarray(joints, dtype=np.float64)
    joints_vis = np.asarray(joints_vis, dtype=np.float64)
    visibility = joints_vis if joints_vis.ndim == 1 else joints_vis[:, 0]
    heatmap_width, heatmap_height = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.asarray(image_size, dtype=np.float64) / np.asarray(heatmap_size, dtype=np.float64)
    radius = GAUSSIAN_RADIUS_SIGMAS * float(sigma)

    center = np.trunc(joints[:, :2] / stride + 0.5)
    upper_left = np.trunc(center - radius).astype(np.int64)
    bottom_right = np.trunc(center + radius + 1).astype(np.int64)
    misses_map = ((upper_left[:, 0] >= heatmap_width) | (upper_left[:, 1] >= heatmap_height)
                  | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0))
    target_weight = np.where(misses_map, 0.0, visibility).astype(np.float32)[:, None]

    # Scatter every joint's whole patch in one assignment; a patch pixel that falls off the map,
    # outside the [ul, br) window or belongs to an undrawn joint goes to a discarded extra slot.
    patch = gaussian_patch(sigma)
    patch_size = patch.shape[0]
    num_joints = joints.shape[0]
    offsets = np.arange(patch_size)
    columns = upper_left[:, 0:1] + offsets
    rows = upper_left[:, 1:2] + offsets
    column_ok = ((columns >= 0) & (columns < heatmap_width)
                 & (offsets < bottom_right[:, 0:1] - upper_left[:, 0:1]))
    drawn = target_weight[:, 0:1] > DRAW_WEIGHT_THRESHOLD
    row_ok = ((rows >= 0) & (rows < heatmap_height)
              & (offsets < bottom_right[:, 1:2] - upper_left[:, 1:2]) & drawn)
    map_pixels = num_joints * heatmap_height * heatmap_width
    row_starts = (np.arange(num_joints)[:, None] * heatmap_height + rows) * heatmap_width
    flat_index = np.where(row_ok[:, :, None] & column_ok[:, None, :],
                          row_starts[:, :, None] + columns[:, None, :], map_pixels)
    flat_target = np.zeros(map_pixels + 1, dtype=np.float32)
    flat_target[flat_index.ravel()] = np.broadcast_to(patch, flat_index.shape).ravel()
    target = flat_target[:map_pixels].reshape(num_joints, heatmap_height, heatmap_width)

    if joint_weights is not None:
        target_weight = target_weight * np.asarray(joint_weights, dtype=np.float32)[:, None]
    return target, target_weight


def host_array(tensor: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a CPU tensor of a dtype NumPy has, else None (the torch path runs).

    Decoding on the CPU goes through NumPy: its argmax is one single-threaded SIMD pass, where
    torch's reductions hand small pieces of work to an intra-op thread pool that waits for busy
    cores when the CPU is shared.
    """
    if tensor.device.type != "cpu" or tensor.dtype not in HOST_DTYPES:
        return None
    return tensor.detach().numpy()


def _first_argmax_host(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.argmax(flat, axis=1)
    return flat.reshape(-1).take(np.arange(0, flat.size, flat.shape[1]) + index), index


def first_argmax(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum and index of its first occurrence along the last axis of (N, L) -> (N,), (N,).

    Equal to ``flat.max(dim=1)``: NaN counts as the maximum (its first occurrence wins), as in
    torch.max and np.argmax. CPU maps go through np.argmax; on other devices the maximum of
    each block of 64 values is a plain vectorised reduction, then only the first block holding
    the overall maximum is searched.
    """
    host = host_array(flat)
    if host is not None:
        maxvals, index = _first_argmax_host(host)
        return torch.from_numpy(maxvals), torch.from_numpy(index)
    rows, length = flat.shape
    block = ARGMAX_BLOCK if length % ARGMAX_BLOCK == 0 and length > ARGMAX_BLOCK else length
    if block == length:
        return flat.max(dim=1)
    blocks_per_row = length // block
    maxvals, which = flat.reshape(rows, blocks_per_row, block).amax(dim=2).max(dim=1)
    first_block = torch.arange(rows, device=flat.device) * blocks_per_row + which
    within = flat.reshape(-1, block).index_select(0, first_block).argmax(dim=1)
    return maxvals, which * block + within


def _check_maps(heatmaps: torch.Tensor) -> None:
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be (B, K, H, W), got shape {tuple(heatmaps.shape)}")


def get_max_preds(heatmaps: torch.Tensor) -> HeatmapDecodeResult:
    """Argmax of every map (B, K, H, W): coords (B, K, 2) as x, y and maxvals (B, K, 1).

    Ties go to the first flat (row-major) index. Coordinates are zero where the maximum is <= 0;
    a map holding NaN has maximum NaN, so its coordinates are zero too. coords are float32
    (float64 for float64 maps); maxvals keep the maps' dtype.
    """
    _check_maps(heatmaps)
    maps = host_array(heatmaps)
    if maps is not None:
        return _decode_host(maps, post_process=False)
    batch, joints, height, width = heatmaps.shape
    maxvals, flat_index = first_argmax(heatmaps.reshape(batch * joints, height * width))
    coords = peak_pixels(flat_index, maxvals, width).view(batch, joints, 2)
    coords = coords.to(torch.promote_types(heatmaps.dtype, torch.float32))
    return HeatmapDecodeResult(coords, maxvals.view(batch, joints, 1))


def peak_pixels(flat_index: torch.Tensor, maxvals: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels (..., 2) int64 as x, y of flat row-major indices (...) into maps of this width;
    (0, 0) where the maximum is not positive, as the reference masks its predictions."""
    pixels = torch.stack([flat_index % width, torch.div(flat_index, width, rounding_mode="floor")],
                         dim=-1)
    return torch.where((maxvals > 0)[..., None], pixels, 0)


def gather_pixels(heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Values of maps (B, K, H, W) at integer pixels x, y (B, K, ...) -> (B, K, ...).

    Indices must lie inside the map; callers clamp them and mask the result.
    """
    batch, joints, _, width = heatmaps.shape
    flat_index = (y * width + x).reshape(batch, joints, math.prod(x.shape[2:]))
    values = heatmaps.flatten(2).gather(2, flat_index)
    return values.reshape(x.shape)


def quarter_offset(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Move integer peaks (B, K, 2) a quarter pixel towards the higher neighbour on each axis.

    Only peaks with 1 < px < W - 1 and 1 < py < H - 1 (px = floor(x + 0.5)) move; an axis with
    equal neighbours stays put, and one whose neighbours are infinities of one sign (a NaN
    difference) becomes NaN, as np.sign makes it in the reference. Returns new coords (B, K, 2).
    """
    height, width = heatmaps.shape[2:]
    if height < 3 or width < 3:
        return coords.clone()
    pixel = torch.floor(coords + 0.5).long()
    px, py = pixel[..., 0], pixel[..., 1]
    movable = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)
    px, py = px.clamp(1, width - 2), py.clamp(1, height - 2)
    # Neighbours stacked on a last axis: right, left, below, above.
    neighbour_x = torch.stack([px + 1, px - 1, px, px], dim=-1)
    neighbour_y = torch.stack([py, py, py + 1, py - 1], dim=-1)
    values = gather_pixels(heatmaps, neighbour_x, neighbour_y)
    diff = torch.stack([values[..., 0] - values[..., 1], values[..., 2] - values[..., 3]], dim=-1)
    # torch.sign(NaN) is 0 where np.sign(NaN) is NaN.
    step = torch.where(torch.isnan(diff), diff, torch.sign(diff)).to(coords.dtype)
    return torch.where(movable[..., None], coords + step * QUARTER_OFFSET, coords)


def _decode_rows(flat: np.ndarray, height: int, width: int, post_process: bool,
                 coords: np.ndarray, maxvals: np.ndarray) -> None:
    """decode_standard of maps flat (N, H * W), written into coords (N, 2) and maxvals (N,).

    The quarter offset reads the four neighbours of each movable peak; the others read a dummy
    pixel (1, 1) of their own map and keep their coordinates.
    """
    rows, length = flat.shape
    storage = flat.reshape(-1)
    first = np.arange(0, rows * length, length)
    index = np.argmax(flat, axis=1)
    maxvals[:] = storage.take(first + index)
    index = np.where(maxvals > 0, index, 0)  # no positive maximum: pixel (0, 0)
    y, x = np.divmod(index, width)
    coords[:, 0] = x
    coords[:, 1] = y
    if not post_process or height < 3 or width < 3:
        return
    movable = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    centre = first + np.where(movable, index, width + 1)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN: the step is NaN, as in the reference
        step_x = np.sign(storage.take(centre + 1) - storage.take(centre - 1))
        step_y = np.sign(storage.take(centre + width) - storage.take(centre - width))
    coords[:, 0] += np.where(movable, step_x * QUARTER_OFFSET, 0)
    coords[:, 1] += np.where(movable, step_y * QUARTER_OFFSET, 0)


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _decode_pool(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="hrpose-decode")
        return _pools[workers]


def _decode_workers() -> int:
    """Python threads for one decode: torch's thread count, at most the cores this process has.

    Plain threads rather than torch's pool: NumPy's argmax releases the GIL, and a thread that
    waits for a busy core only delays its own chunks, where an OpenMP pool spins at a barrier.
    """
    return max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))


def _decode_host(maps: np.ndarray, post_process: bool) -> HeatmapDecodeResult:
    """decode_standard of NumPy maps (B, K, H, W), as torch tensors sharing the results' memory.

    Large batches are decoded chunk by chunk on a few threads; each row is decoded alike.
    """
    batch, joints, height, width = maps.shape
    flat = np.ascontiguousarray(maps.reshape(batch * joints, height * width))
    rows = flat.shape[0]
    coords = np.empty((rows, 2), dtype=np.result_type(maps.dtype, np.float32))
    maxvals = np.empty(rows, dtype=maps.dtype)
    workers = _decode_workers()
    if workers == 1 or flat.nbytes < PARALLEL_DECODE_BYTES:
        _decode_rows(flat, height, width, post_process, coords, maxvals)
    else:
        # Equal chunks, a few per thread: a thread held up by a busy core delays only its own.
        bounds = np.linspace(0, rows, workers * CHUNKS_PER_THREAD + 1).astype(int)
        pool = _decode_pool(workers)
        futures = [pool.submit(_decode_rows, flat[start:stop], height, width, post_process,
                               coords[start:stop], maxvals[start:stop])
                   for start, stop in zip(bounds[:-1], bounds[1:])]
        for future in futures:
            future.result()
    return HeatmapDecodeResult(torch.from_numpy(coords).view(batch, joints, 2),
                               torch.from_numpy(maxvals).view(batch, joints, 1))


def decode_standard(heatmaps: torch.Tensor, post_process: bool = True) -> HeatmapDecodeResult:
    """HRNet decoding of maps (B, K, H, W) on their device: argmax, then the quarter offset.

    Returns heatmap-pixel coords (B, K, 2) and the raw maxima (B, K, 1); with post_process False
    the coords are the integer argmax. Map to image pixels with transform_preds_torch. CPU maps
    are decoded single-threaded in NumPy with the same results.
    """
    _check_maps(heatmaps)
    maps = host_array(heatmaps)
    if maps is not None:
        return _decode_host(maps, post_process)
    coords, maxvals = get_max_preds(heatmaps)
    if post_process:
        coords = quarter_offset(heatmaps, coords)
    return HeatmapDecodeResult(coords, maxvals)


def flip_back(heatmaps: torch.Tensor, flip_index: Sequence[int] | np.ndarray | torch.Tensor
              ) -> torch.Tensor:
    """Heatmaps (B, K, H, W) of a mirrored input, mirrored back: columns reversed, pairs swapped.

    flip_index (K,) sends each joint to its mirror (KeypointInfo.flip_index). An involution.
    """
    if isinstance(flip_index, torch.Tensor):
        index = flip_index.to(device=heatmaps.device, dtype=torch.long)
    else:
        index = torch.as_tensor(np.asarray(flip_index), dtype=torch.long, device=heatmaps.device)
    return heatmaps.flip(-1).index_select(1, index)


def shift_flipped_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Move every column of (..., W) maps right by one; column 0 keeps its own old value.

    HRNet's flip-test fix for its W/S convention, where the flipped maps sit 0.75 px too far left
    (at stride 4). Not used with the DARK convention.
    """
    return torch.cat([heatmaps[..., :1], heatmaps[..., :-1]], dim=-1)
