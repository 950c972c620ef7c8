"""Maps of one forward pass per test scale: merged, flip-averaged heatmaps and keypoint maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...datasets.topdown import normalize_image
from ..bottomup import ModelCallable, get_multi_scale_size, model_device, resize_align_multi_scale
from .params import RegressionMaps, RegressionTestParams

# The reference resizes every test scale relative to scale 1 (its min_scale argument is 1.0).
REFERENCE_MIN_SCALE = 1.0


def up_interpolate(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Maps (N, C, h, w) enlarged to size (H, W) so that pixel j lands on pixel f * j.

    f = int(H / h) (and int(W / w)): bilinear with align_corners=True to (H - f + 1, W - f + 1),
    then the last row and column repeated f - 1 times at the bottom and right. For an integer
    ratio this is the convention "output pixel j sits on input pixel f * j".
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be (N, C, h, w), got {tuple(maps.shape)}")
    height, width = maps.shape[2:]
    out_height, out_width = int(size[0]), int(size[1])
    factor_y, factor_x = int(out_height / height), int(out_width / width)
    if factor_y < 1 or factor_x < 1:
        raise ValueError(f"up_interpolate cannot shrink {height}x{width} maps to "
                         f"{out_height}x{out_width}")
    inner = F.interpolate(maps, size=(out_height - factor_y + 1, out_width - factor_x + 1),
                          mode="bilinear", align_corners=True)
    if factor_y == 1 and factor_x == 1:
        return inner
    return F.pad(inner, (0, factor_x - 1, 0, factor_y - 1), mode="replicate")


def merge_branches(branches: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """One stage's heatmap branches combined by an element-wise maximum (one tensor: itself)."""
    if isinstance(branches, torch.Tensor):
        return branches
    branches = list(branches)
    if not branches:
        raise ValueError("a model stage returned no heatmap branches")
    merged = branches[0]
    for branch in branches[1:]:
        merged = torch.maximum(merged, branch)
    return merged


def offsets_to_keypoints(offsets: torch.Tensor) -> torch.Tensor:
    """Keypoint maps (N, 2J, h, w) from offsets (N, 2J, h, w): (column - dx, row - dy) per joint."""
    batch, channels, height, width = offsets.shape
    if channels % 2:
        raise ValueError(f"offsets need two channels (x, y) per joint, got {channels}")
    columns = torch.arange(width, dtype=offsets.dtype, device=offsets.device)
    rows = torch.arange(height, dtype=offsets.dtype, device=offsets.device)
    grid = torch.stack(torch.broadcast_tensors(columns[None, :], rows[:, None]))  # (2, h, w)
    pairs = offsets.reshape(batch, channels // 2, 2, height, width)
    return (grid - pairs).reshape(batch, channels, height, width)


def flipped_input(image: torch.Tensor, shift: int) -> torch.Tensor:
    """The mirrored image (N, C, H, W) moved left by ``shift`` columns, the last ones zero.

    With shift = stride - 1, pixel j of a stride-s output of this input corresponds to pixel
    w - 1 - j of the normal pass (input column s * j there), so mirroring the output back lines
    the two passes up exactly. Built out of place.
    """
    mirrored = torch.flip(image, [3])
    if shift <= 0:
        return mirrored
    shifted = torch.zeros_like(mirrored)
    shifted[..., :-shift] = mirrored[..., shift:]
    return shifted


def _heatmap_flip_index(num_channels: int, flip_index: Sequence[int]) -> list[int]:
    num_joints = len(flip_index)
    if num_channels == num_joints:
        return list(flip_index)
    if num_channels == num_joints + 1:
        return list(flip_index) + [num_joints]
    raise ValueError(f"heatmaps have {num_channels} channels; expected {num_joints} keypoints, "
                     f"optionally followed by the centre")


def unflip_heatmaps(maps: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
    """Heatmaps (N, J[+1], h, w) of a mirrored input mirrored back and re-indexed (centre kept)."""
    return torch.flip(maps, [3])[:, _heatmap_flip_index(maps.shape[1], flip_index)]


def unflip_keypoint_maps(keypoints: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
    """Keypoint maps (N, 2J, h, w) of a mirrored input in the normal frame.

    Joints re-indexed with flip_index, x <- w - 1 - x, then the maps mirrored spatially.
    """
    batch, channels, height, width = keypoints.shape
    pairs = keypoints.reshape(batch, channels // 2, 2, height, width)[:, list(flip_index)]
    pairs = torch.stack([width - 1 - pairs[:, :, 0], pairs[:, :, 1]], dim=2)
    return torch.flip(pairs.reshape(batch, channels, height, width), [3])


def stage_heatmaps(stage_maps: Sequence[torch.Tensor], params: RegressionTestParams,
                   flip_index: Sequence[int] | None = None) -> torch.Tensor:
    """The used stages' merged heatmaps at the last stage's size, averaged per channel.

    stage_maps: one (N, C_k, h_k, w_k) tensor per stage (``merge_branches``), the first used
    stage having the most channels (J + 1 with the centre). Earlier stages go through
    ``up_interpolate``; channel c is averaged over the used stages that have it (the centre only
    over those with a centre). flip_index: the maps are of a mirrored pass; they are mirrored
    back after (reference) or before (params.fix_flip_upsample) the up-interpolation.
    """
    last = len(stage_maps) - 1
    last_size = stage_maps[-1].shape[2:]
    total: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    for stage, maps in enumerate(stage_maps):
        if not params.stage_used(stage):
            continue
        maps = maps.float()
        mirror_first = flip_index is not None and params.fix_flip_upsample
        if mirror_first:
            maps = unflip_heatmaps(maps, flip_index)
        if stage != last:
            maps = up_interpolate(maps, last_size)
        if flip_index is not None and not mirror_first:
            maps = unflip_heatmaps(maps, flip_index)
        channels = maps.shape[1]
        if total is None:
            total = maps.clone()
            counts = torch.ones(channels, device=maps.device)
        else:
            if channels > total.shape[1]:
                raise ValueError(f"stage {stage} has {channels} heatmap channels, more than the "
                                 f"first used stage ({total.shape[1]})")
            total[:, :channels] += maps
            counts[:channels] += 1
    if total is None:
        raise ValueError("no model stage provided heatmaps")
    return total / counts[None, :, None, None]


def _split_outputs(outputs: Any) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """(heatmaps, offsets) of a regression model as lists (stages) of lists (branches)."""
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        raise ValueError("a regression model must return (heatmaps, offsets), each a list over "
                         "stages of lists of branch tensors")

    def stages(values) -> list[list[torch.Tensor]]:
        values = [values] if isinstance(values, torch.Tensor) else list(values)
        return [[stage] if isinstance(stage, torch.Tensor) else list(stage) for stage in values]

    heatmaps, offsets = stages(outputs[0]), stages(outputs[1])
    if not heatmaps or not offsets or not offsets[0]:
        raise ValueError("the model returned no heatmaps or no offsets")
    return heatmaps, offsets


def _flip_shift(input_width: int, map_width: int) -> int:
    stride = input_width // map_width
    if stride * map_width != input_width:
        raise ValueError(f"input width {input_width} is not a multiple of the output width "
                         f"{map_width}; the flip shift needs an integer stride")
    return stride - 1


def scale_maps(model: ModelCallable, image: torch.Tensor,
               params: RegressionTestParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps (1, J + 1, h, w) and keypoint maps (1, 2J, h, w) of one resized image (1, 3, H, W).

    Both at the last stage's size, keypoints in its pixels; with flip test, averaged with the
    mirrored passes (one per distinct stride, see ``flipped_input``). The keypoints come from the
    last branch of the first offset stage, as the reference.
    """
    heatmap_stages, offset_stages = _split_outputs(model(image))
    merged = [merge_branches(stage) for stage in heatmap_stages]
    heatmaps = stage_heatmaps(merged, params)
    keypoints = offsets_to_keypoints(offset_stages[0][-1].float())
    num_joints = keypoints.shape[1] // 2
    if num_joints != params.num_joints:
        raise ValueError(f"the model predicts offsets for {num_joints} joints, the test settings "
                         f"have {params.num_joints}")
    if params.flip_test:
        width = image.shape[3]
        passes: dict[int, tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]] = {}

        def flipped_pass(shift: int):
            if shift not in passes:
                passes[shift] = _split_outputs(model(flipped_input(image, shift)))
            return passes[shift]

        flipped_merged = []
        for stage, maps in enumerate(merged):
            if params.stage_used(stage):
                outputs = flipped_pass(_flip_shift(width, maps.shape[3]))[0]
                flipped_merged.append(merge_branches(outputs[stage]))
            else:
                flipped_merged.append(maps)    # not read: the stage is unused
        flipped_heatmaps = stage_heatmaps(flipped_merged, params, params.flip_index)
        offset = offset_stages[0][-1]
        flipped_offset = flipped_pass(_flip_shift(width, offset.shape[3]))[1][0][-1].float()
        flipped_keypoints = unflip_keypoint_maps(offsets_to_keypoints(flipped_offset),
                                                 params.flip_index)
        heatmaps = (heatmaps + flipped_heatmaps) / 2.0
        keypoints = (keypoints + flipped_keypoints) / 2.0
    ratio = heatmaps.shape[2] / keypoints.shape[2]
    keypoints = F.interpolate(keypoints * ratio, size=tuple(heatmaps.shape[2:]), mode="nearest")
    return heatmaps, keypoints


def regression_multi_scale_maps(model: ModelCallable, image: np.ndarray,
                                params: RegressionTestParams,
                                device: torch.device | str | None = None,
                                transform: Callable[[np.ndarray], torch.Tensor] | None = None
                                ) -> RegressionMaps:
    """Run the model over the test scales of one (H, W, 3) uint8 RGB image; see RegressionMaps.

    transform: resized image -> (3, h, w) tensor (default ImageNet normalisation); device: where
    the input goes (default: the model's). Scales are visited largest first.
    """
    transform = normalize_image if transform is None else transform
    device = model_device(model) if device is None else torch.device(device)
    image_size = (image.shape[1], image.shape[0])
    base_size, base_center, base_scale = get_multi_scale_size(
        image_size, params.input_size, 1.0, REFERENCE_MIN_SCALE)
    heatmaps, keypoints, scales = [], [], []
    center, scale = base_center, base_scale
    with torch.no_grad():
        for current_scale in sorted(params.scale_factors, reverse=True):
            resized, center, scale = resize_align_multi_scale(
                image, params.input_size, current_scale, REFERENCE_MIN_SCALE)
            tensor = transform(resized).unsqueeze(0).to(device)
            scale_heatmaps, scale_keypoints = scale_maps(model, tensor, params)
            heatmaps.append(scale_heatmaps)
            keypoints.append(scale_keypoints)
            scales.append(current_scale)
        base_height_width = (int(base_size[1]), int(base_size[0]))
        fused = sum(up_interpolate(maps, base_height_width) for maps in heatmaps) / float(
            len(heatmaps))
    if params.backproject_with_base_scale:
        center, scale = base_center, base_scale
    return RegressionMaps(heatmaps, keypoints, tuple(scales), fused[0], center, scale,
                          (int(base_size[0]), int(base_size[1])))
