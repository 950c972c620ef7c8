"""Decoding of heatmap-guided keypoint regression (2020 paper): offsets to poses, pose NMS, scores.

The test-time pipeline of "Bottom-Up Human Pose Estimation by Ranking Heatmap-Guided Adaptive
Keypoint Estimates" (reference/bottomup.md sections 5.1, 5.3, 5.5) for one image:

1. per test scale (largest first; sizes as ``bottomup.get_multi_scale_size`` with min scale 1):
   forward; each stage's heatmap branches merged by an element-wise maximum; stages brought to
   the last stage's size with ``up_interpolate`` and averaged (the centre channel comes from the
   stages that have one); keypoint maps = pixel grid - offsets. With flip, the mirrored input is
   shifted left by stride - 1 pixels (3 for the 1/4 outputs, 1 for the 1/2 one; one forward pass
   per shift) so that output pixel j of the flipped pass lands on output pixel j of the normal
   pass; its maps are mirrored back and re-indexed. Heatmaps and keypoint maps are averaged with
   the flipped ones; keypoint maps are resized (nearest) to the heatmap size, in its pixels;
2. ``candidate_poses``: on each scale's centre map, normalised to the scale-1 maximum (other
   scales times SCALE_DECREASE), max-pool NMS with a 3/5/7 kernel by map size, the top
   MAX_NUM_PEOPLE peaks above KEYPOINT_THRESHOLD; the pose is the keypoint map at the peak in
   base pixels (the input size at scale 1);
3. ``pose_nms`` drops poses with more than OVERLAP_THRESHOLD joints within DIST_THRESHOLD pixels
   of a higher-scoring one; at most MAX_NUM_PEOPLE are kept;
4. the "regression" result scores each joint by centre score x the bilinear heat value of the
   scale-fused heatmap; the "final" result snaps joints to heatmap peaks (``absorb_heat``), then
   refines them with a Gaussian fit (``gaussian_fit_adjust``); person score = mean joint score;
5. back-projection with ``bottomup.get_final_preds``; optionally a rescore net (``rescore``).

``infer_regression`` runs it all and mirrors ``bottomup.infer_bottom_up``. Defaults reproduce the
reference, defects included; the ``fix_*`` fields and ``gaussian_fit`` 'corrected' switch fixes
on. The Gaussian fit of the reference is scipy's curve_fit per joint on a grid that is transposed
for non-square windows, with joints off the map fitted through negative-index wrap-around
(``reference_gaussian_fit_adjust``, the default); the corrected one is a batched
Levenberg-Marquardt in NumPy with correct window coordinates (``fit_gaussian_windows``,
``corrected_gaussian_fit_adjust``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import OptimizeWarning, curve_fit

from ..datasets.topdown import normalize_image
from .ae_grouping import heatmap_nms
from .bottomup import (BottomUpPrediction, ModelCallable, get_final_preds, get_multi_scale_size,
                       model_device, resize_align_multi_scale)

# The reference resizes every test scale relative to scale 1 (its min_scale argument is 1.0).
REFERENCE_MIN_SCALE = 1.0
# Centre-peak NMS kernel by map size (h + w) / 2: 7 above POOL_THRESHOLD1, 5 above
# POOL_THRESHOLD2, 3 otherwise.
POOL_KERNELS = (3, 5, 7)
# absorb_heat finds heatmap peaks with this max-pool window.
ABSORB_NMS_KERNEL = 5
# Gaussian fit: iteration budget and relative tolerances (MINPACK's default ftol = xtol).
FIT_MAX_ITERATIONS = 100
FIT_TOLERANCE = 1.49012e-8
# Levenberg-Marquardt damping: start, factor per accepted / rejected step, give-up level.
FIT_INITIAL_DAMPING = 1e-3
FIT_DAMPING_FACTOR = 10.0
FIT_MAX_DAMPING = 1e10
# The reference's curve_fit budget (function evaluations).
REFERENCE_FIT_MAX_EVALUATIONS = 300
# What curve_fit raises when a fit fails (no convergence, fewer pixels than parameters, ...);
# the reference then leaves the joint as it is.
FIT_FAILURES = (RuntimeError, ValueError, TypeError, np.linalg.LinAlgError)
# TEST.GAUSSIAN_FIT values.
GAUSSIAN_FITS = ("reference", "corrected")

Rescorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RegressionTestParams:
    """Test-time settings; each field names the config key it stands for.

    num_joints: J, keypoints without the centre (the dataset's). input_size:
    DATASET.INPUT_SIZE. scale_factors: TEST.SCALE_FACTOR (must include 1). flip_test:
    TEST.FLIP_TEST. flip_index: the joint permutation of a mirrored image (J,), without the
    centre. use_stages: per model stage, whether its heatmaps are averaged in
    (LOSS.WITH_HEATMAPS_LOSS[k] and TEST.WITH_HEATMAPS[k]); None = all. max_num_people:
    DATASET.MAX_NUM_PEOPLE. keypoint_threshold: TEST.KEYPOINT_THRESHOLD. pool_threshold1/2:
    TEST.POOL_THRESHOLD1/2. scale_decrease: TEST.SCALE_DECREASE. dist_threshold,
    overlap_threshold: TEST.DIST_THRESHOLD, TEST.OVERLAP_THRESHOLD. max_absorb_distance:
    TEST.MAX_ABSORB_DISTANCE. adjust_threshold: TEST.ADJUST_THRESHOLD. gaussian_kernel,
    gaussian_sigma: TEST.GUASSIAN_KERNEL (window half-size), TEST.GUASSIAN_SIGMA (the fit's
    starting sigma; the reference's spelling of the keys is kept so its YAMLs load).

    Reference defects, reproduced by default:
    fix_absorb_index (TEST.FIX_ABSORB_INDEX): a joint farther than max_absorb_distance from
    every peak has its score multiplied by the heatmap at [int(x), int(y)] (row x, column y,
    each clamped to the other axis' size); True reads [int(y), int(x)].
    fix_flip_upsample (TEST.FIX_FLIP_UPSAMPLE): with flip, the reference up-interpolates an
    earlier stage of the flipped pass in the mirrored frame and mirrors afterwards, which puts
    it one pixel right of the normal pass (the 1/4 maps of the 2x model); True mirrors first.
    backproject_with_base_scale: the reference maps results back with the centre and scale of
    the last (smallest) test scale; True uses scale 1's (they differ only when size rounding
    changes the aspect ratio).
    gaussian_fit (TEST.GAUSSIAN_FIT): 'reference', the reference's per-joint curve_fit with its
    transposed grid and wrap-around (``reference_gaussian_fit_adjust``); 'corrected', every
    window in its own coordinates (``corrected_gaussian_fit_adjust``).
    """

    num_joints: int
    input_size: int = 512
    scale_factors: tuple[float, ...] = (1.0,)
    flip_test: bool = True
    flip_index: tuple[int, ...] | None = None
    use_stages: tuple[bool, ...] | None = None
    max_num_people: int = 30
    keypoint_threshold: float = 0.01
    pool_threshold1: float = 300.0
    pool_threshold2: float = 200.0
    scale_decrease: float = 0.001
    dist_threshold: float = 10.0
    overlap_threshold: int = 10
    max_absorb_distance: float = 75.0
    adjust_threshold: float = 0.05
    gaussian_kernel: int = 6
    gaussian_sigma: float = 2.0
    fix_absorb_index: bool = False
    fix_flip_upsample: bool = False
    backproject_with_base_scale: bool = False
    gaussian_fit: str = "reference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_factors", tuple(float(s) for s in self.scale_factors))
        if self.flip_index is not None:
            object.__setattr__(self, "flip_index", tuple(int(j) for j in self.flip_index))
        if self.use_stages is not None:
            object.__setattr__(self, "use_stages", tuple(bool(v) for v in self.use_stages))
            if not any(self.use_stages):
                raise ValueError("use_stages leaves no stage whose heatmaps are used")
        if self.num_joints < 1 or self.input_size < 1 or self.max_num_people < 1:
            raise ValueError(f"num_joints, input_size and max_num_people must be positive, got "
                             f"{self.num_joints}, {self.input_size}, {self.max_num_people}")
        if not self.scale_factors or min(self.scale_factors) <= 0 \
                or 1.0 not in self.scale_factors:
            raise ValueError(f"scale_factors must be positive and include 1.0 (the centre scores "
                             f"of the other scales are normalised to scale 1), got "
                             f"{self.scale_factors}")
        if self.flip_test and self.flip_index is None:
            raise ValueError("flip_test needs flip_index (the joint permutation of a mirror image)")
        if self.flip_index is not None and sorted(self.flip_index) != list(range(self.num_joints)):
            raise ValueError(f"flip_index {self.flip_index} is not a permutation of the "
                             f"{self.num_joints} joints")
        if self.gaussian_kernel < 1 or self.gaussian_sigma == 0:
            raise ValueError(f"gaussian_kernel must be >= 1 and gaussian_sigma non-zero, got "
                             f"{self.gaussian_kernel} and {self.gaussian_sigma}")
        if self.gaussian_fit not in GAUSSIAN_FITS:
            raise ValueError(f"gaussian_fit {self.gaussian_fit!r} is not one of {GAUSSIAN_FITS}")

    @classmethod
    def from_config(cls, cfg, keypoint_info=None, **overrides) -> "RegressionTestParams":
        """The settings of a config tree; keypoint_info defaults to the test dataset's metadata."""
        from ..config import ConfigError
        from ..datasets.metadata import get_keypoint_info

        info = keypoint_info or get_keypoint_info(cfg.DATASET.TEST_DATASET or
                                                  cfg.DATASET.DATASET)
        test = cfg.TEST
        if len(test.WITH_HEATMAPS) != len(cfg.LOSS.WITH_HEATMAPS_LOSS):
            raise ConfigError(f"TEST.WITH_HEATMAPS {list(test.WITH_HEATMAPS)} and "
                              f"LOSS.WITH_HEATMAPS_LOSS {list(cfg.LOSS.WITH_HEATMAPS_LOSS)} need "
                              f"one entry per stage each")
        values = dict(
            num_joints=info.num_keypoints, input_size=cfg.DATASET.INPUT_SIZE,
            scale_factors=tuple(test.SCALE_FACTOR), flip_test=test.FLIP_TEST,
            flip_index=tuple(int(j) for j in info.flip_index),
            use_stages=tuple(bool(a and b) for a, b in zip(cfg.LOSS.WITH_HEATMAPS_LOSS,
                                                           test.WITH_HEATMAPS)),
            max_num_people=cfg.DATASET.MAX_NUM_PEOPLE,
            keypoint_threshold=test.KEYPOINT_THRESHOLD,
            pool_threshold1=test.POOL_THRESHOLD1, pool_threshold2=test.POOL_THRESHOLD2,
            scale_decrease=test.SCALE_DECREASE, dist_threshold=test.DIST_THRESHOLD,
            overlap_threshold=test.OVERLAP_THRESHOLD,
            max_absorb_distance=test.MAX_ABSORB_DISTANCE,
            adjust_threshold=test.ADJUST_THRESHOLD, gaussian_kernel=test.GUASSIAN_KERNEL,
            gaussian_sigma=test.GUASSIAN_SIGMA, fix_absorb_index=test.FIX_ABSORB_INDEX,
            fix_flip_upsample=test.FIX_FLIP_UPSAMPLE, gaussian_fit=test.GAUSSIAN_FIT)
        values.update(overrides)
        try:
            return cls(**values)
        except ValueError as error:
            raise ConfigError(f"regression test settings: {error}") from None

    def stage_used(self, stage: int) -> bool:
        return self.use_stages is None or (stage < len(self.use_stages)
                                           and self.use_stages[stage])


class RegressionMaps(NamedTuple):
    """What the network part of the pipeline gives the decoder (tensors on the model's device).

    heatmaps: per scale (in ``scales`` order, largest first) (1, J + 1, h, w), centre last.
    keypoints: per scale (1, 2J, h, w): joint positions (x0, y0, x1, y1, ...) in that map's pixels.
    scales: the scale of each entry. fused: (J + 1, H, W) the heatmaps of all scales brought to
    the base size (H, W) by ``up_interpolate`` and averaged. center (2,), scale (2,), base_size
    (W, H): what ``get_final_preds`` needs to map base pixels back to the image.
    """

    heatmaps: list[torch.Tensor]
    keypoints: list[torch.Tensor]
    scales: tuple[float, ...]
    fused: torch.Tensor
    center: np.ndarray
    scale: np.ndarray
    base_size: tuple[int, int]


class DecodedPoses(NamedTuple):
    """One image's persons: poses (P, J, 3) float32 as (x, y, joint score) in base pixels (or,
    after back-projection, image pixels); scores (P,) float32, the mean joint score."""

    poses: np.ndarray
    scores: np.ndarray


class RegressionPrediction(NamedTuple):
    """The two results valid.py evaluates, in image pixels: "regression" (joint score = centre x
    heat value) and "final" (absorbed and Gaussian-fitted)."""

    regression: BottomUpPrediction
    final: BottomUpPrediction


# ------------------------------------------------------------------------------------------------
# Maps of one forward pass


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


# ------------------------------------------------------------------------------------------------
# Candidates and pose NMS


def pool_kernel(height: int, width: int, params: RegressionTestParams) -> int:
    """The centre-NMS kernel of a map: 7, 5 or 3 by (h + w) / 2 against POOL_THRESHOLD1/2."""
    map_size = (height + width) / 2.0
    if map_size > params.pool_threshold1:
        return POOL_KERNELS[2]
    if map_size > params.pool_threshold2:
        return POOL_KERNELS[1]
    return POOL_KERNELS[0]


def center_peaks(center_map: torch.Tensor, params: RegressionTestParams,
                 factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices and values of the centre peaks of a (h, w) map, strongest first.

    Max-pool NMS (kernel by ``pool_kernel``, plateaus kept), the top max_num_people values,
    those above keypoint_threshold * factor.
    """
    height, width = center_map.shape
    kernel = pool_kernel(height, width, params)
    suppressed = heatmap_nms(center_map[None, None], kernel, kernel // 2).reshape(-1)
    values, index = suppressed.topk(min(params.max_num_people, suppressed.numel()))
    keep = values > params.keypoint_threshold * factor
    return index[keep], values[keep]


def candidate_poses(heatmaps: Sequence[torch.Tensor], keypoints: Sequence[torch.Tensor],
                    scales: Sequence[float], base_width: int,
                    params: RegressionTestParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate poses (n, J, 2) float32 in base pixels and their centre scores (n,) float32.

    Per scale: the centre map (last channel) times factor / its maximum x scale 1's maximum
    (factor 1 at scale 1, scale_decrease elsewhere), ``center_peaks``, and the keypoint map at
    each peak times base_width / map width. Scales in the given order, peaks strongest first.
    """
    reference_max = None
    for current_scale, maps in zip(scales, heatmaps):
        if current_scale == 1.0:
            reference_max = maps[0, -1].max()
    if reference_max is None:
        raise ValueError(f"the test scales {tuple(scales)} do not include 1.0")
    num_joints = keypoints[0].shape[1] // 2
    poses, scores = [], []
    for current_scale, maps, points in zip(scales, heatmaps, keypoints):
        ratio = base_width / maps.shape[-1]
        factor = 1.0 if current_scale == 1.0 else params.scale_decrease
        center_map = maps[0, -1].float()
        # The reference's arithmetic and order: factor * map / max(map) * max(scale-1 map).
        center_map = factor * center_map / center_map.max() * reference_max
        index, values = center_peaks(center_map, params, factor)
        flat = points[0].permute(1, 2, 0).reshape(-1, num_joints, 2)
        poses.append((ratio * flat[index]).cpu().numpy())
        scores.append(values.cpu().numpy())
    return (np.concatenate(poses).astype(np.float32),
            np.concatenate(scores).astype(np.float32))


def pose_nms(poses: np.ndarray, scores: np.ndarray, dist_threshold: float,
             overlap_threshold: int) -> np.ndarray:
    """Indices of the poses (P, J, >=2) kept by the reference's joint-distance NMS, in keep order.

    Two poses are duplicates when more than overlap_threshold of their joints are closer than
    dist_threshold (Euclidean); a pose is always its own duplicate. Visiting the poses in order,
    a pose not yet suppressed keeps the highest-scoring member of its duplicate group (the first
    of equal scores) unless that one is already suppressed, and suppresses the group.
    """
    poses = np.asarray(poses, dtype=np.float32)[..., :2]
    scores = np.asarray(scores)
    count = poses.shape[0]
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    distance = np.sqrt(((poses[:, None] - poses[None]) ** 2).sum(axis=3))
    duplicate = (distance < dist_threshold).sum(axis=2) > overlap_threshold
    # The reference relies on J > overlap_threshold to put a pose in its own group.
    duplicate |= np.eye(count, dtype=bool)
    suppressed = np.zeros(count, dtype=bool)
    keep = []
    for pose in range(count):
        if suppressed[pose]:
            continue
        group = np.flatnonzero(duplicate[pose])
        best = group[np.argmax(scores[group])]
        if suppressed[best]:
            continue
        keep.append(best)
        suppressed[group] = True
    return np.asarray(keep, dtype=np.int64)


def strongest(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` highest scores, descending (earlier first among equals); all
    indices in their order when there are no more than ``limit``."""
    if len(scores) <= limit:
        return np.arange(len(scores))
    return np.argsort(-np.asarray(scores), kind="stable")[:limit]


# ------------------------------------------------------------------------------------------------
# Joint scores


def heat_values(heatmaps: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Bilinear heatmap values (P, J) float32 at poses (P, J, >=2) on maps (J, H, W), 0 outside.

    As the reference: k = int(x) (truncated toward zero), u = x - k; a joint is read when
    0 <= int(x) and int(x) + 1 < W (rows likewise), so points in the last row or column read 0
    and points in (-1, 0) extrapolate from pixels 0 and 1.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    poses = np.asarray(poses, dtype=np.float32)
    num_joints, height, width = heatmaps.shape
    x, y = poses[..., 0], poses[..., 1]
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(finite, x, np.float32(0)), np.where(finite, y, np.float32(0))
    left, top = np.trunc(x).astype(np.int64), np.trunc(y).astype(np.int64)
    u, v = x - left.astype(np.float32), y - top.astype(np.float32)
    inside = finite & (left >= 0) & (left + 1 < width) & (top >= 0) & (top + 1 < height)
    left, top = np.clip(left, 0, max(width - 2, 0)), np.clip(top, 0, max(height - 2, 0))
    right, bottom = np.minimum(left + 1, width - 1), np.minimum(top + 1, height - 1)
    joint = np.broadcast_to(np.arange(num_joints), x.shape)
    one = np.float32(1)
    value = (heatmaps[joint, top, left] * (one - v) * (one - u)
             + heatmaps[joint, bottom, left] * (one - u) * v
             + heatmaps[joint, top, right] * u * (one - v)
             + heatmaps[joint, bottom, right] * u * v)
    return np.where(inside, value, np.float32(0)).astype(np.float32)


def absorb_heat(heatmaps: torch.Tensor, poses: np.ndarray,
                params: RegressionTestParams) -> np.ndarray:
    """Snap joints to heatmap peaks; returns new poses (P, J, 3) float32 (x, y, score).

    heatmaps (J, H, W) (any device); poses (P, J, 3) in the maps' pixels. Per joint type the
    top max_num_people peaks of a 5 x 5 max-pool NMS (values <= keypoint_threshold count as 0,
    but their positions still attract); a joint closer than max_absorb_distance to its nearest
    peak moves there and its score is multiplied by the peak value, otherwise its score is
    multiplied by the heatmap at its truncated position (see fix_absorb_index).
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    if len(poses) == 0:
        return poses
    maps = heatmaps.detach().float()
    num_joints, height, width = maps.shape
    suppressed = heatmap_nms(maps[None], ABSORB_NMS_KERNEL, ABSORB_NMS_KERNEL // 2)[0]
    values, index = suppressed.reshape(num_joints, -1).topk(
        min(params.max_num_people, height * width), dim=1)
    values = values * (values > params.keypoint_threshold).float()
    peaks = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=2)
    peaks = peaks.cpu().numpy().astype(np.float32)  # (J, K, 2)
    values = values.cpu().numpy()
    maps_cpu = maps.cpu().numpy()
    distance = np.sqrt(((poses[:, :, None, :2] - peaks[None]) ** 2).sum(axis=3))  # (P, J, K)
    nearest = np.argmin(distance, axis=2)
    nearest_distance = np.take_along_axis(distance, nearest[..., None], axis=2)[..., 0]
    joint = np.broadcast_to(np.arange(num_joints), nearest.shape)
    snap = nearest_distance < params.max_absorb_distance
    x, y = poses[..., 0], poses[..., 1]
    finite = np.isfinite(x) & np.isfinite(y)
    column = np.trunc(np.where(finite, x, 0)).astype(np.int64)
    row = np.trunc(np.where(finite, y, 0)).astype(np.int64)
    if params.fix_absorb_index:
        fallback = maps_cpu[joint, np.clip(row, 0, height - 1), np.clip(column, 0, width - 1)]
    else:
        # The reference reads det[j, int(x), int(y)], clamping int(x) to H - 1, int(y) to W - 1.
        fallback = maps_cpu[joint, np.clip(column, 0, height - 1), np.clip(row, 0, width - 1)]
    poses[..., :2] = np.where(snap[..., None], peaks[joint, nearest], poses[..., :2])
    poses[..., 2] *= np.where(snap, values[joint, nearest], fallback)
    return poses


def fit_gaussian_windows(windows: np.ndarray, valid: np.ndarray, initial: np.ndarray,
                         max_iterations: int = FIT_MAX_ITERATIONS,
                         tolerance: float = FIT_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fits of A exp(-((c - x0)^2 + (r - y0)^2) / (2 s^2)), many at once.

    windows (B, h, w) heatmap values, valid (B, h, w) the pixels that take part (a window cut by
    the map border is padded and masked), initial (B, 4) starting (A, y0, x0, s) with y0 the row
    and x0 the column in window pixels. Returns the parameters (B, 4) float64 and whether each
    fit converged (B,).

    The same model, objective (sum of squared residuals over the valid pixels) and starting
    point as the reference's scipy curve_fit, solved by a batched Levenberg-Marquardt with the
    analytic Jacobian and multiplicative damping (x0.1 after a step that lowers the cost, x10
    after one that does not). A fit has converged when an accepted step lowers the cost by at
    most ``tolerance`` relatively, moves the parameters by at most ``tolerance`` relatively, the
    cost is zero, or no step lowers the cost any more (the damping passed 1e10); it has failed
    when none of that happened within max_iterations or a parameter is not finite. curve_fit
    (MINPACK lmdif) differs in its finite-difference Jacobian, trust-region scaling and budget
    (300 function evaluations): on a well-posed peak both reach the same minimum (to ~1e-6
    pixels), on a flat or noisy window either may give up where the other returns a fit. The
    sign of s is irrelevant (only s^2 enters).
    """
    windows = np.asarray(windows, dtype=np.float64)
    batch, height, width = windows.shape
    if batch == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=bool)
    mask = np.asarray(valid, dtype=np.float64).reshape(batch, -1)
    data = windows.reshape(batch, -1) * mask
    rows = np.repeat(np.arange(height, dtype=np.float64), width)[None]
    columns = np.tile(np.arange(width, dtype=np.float64), height)[None]

    def residuals_and_jacobian(theta: np.ndarray, with_jacobian: bool,
                               subset: np.ndarray | slice = slice(None)):
        mask_part, data_part = mask[subset], data[subset]
        amplitude, row0, column0, sigma = (theta[:, k:k + 1] for k in range(4))
        d_row, d_column = rows - row0, columns - column0
        squared = d_row ** 2 + d_column ** 2
        sigma2 = sigma ** 2
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            gauss = np.exp(-squared / (2 * sigma2))
            residual = (amplitude * gauss) * mask_part - data_part
            if not with_jacobian:
                return residual, None
            scaled = amplitude * gauss * mask_part
            jacobian = np.stack([gauss * mask_part, scaled * d_row / sigma2,
                                 scaled * d_column / sigma2, scaled * squared / (sigma2 * sigma)],
                                axis=2)
        return residual, jacobian

    theta = np.asarray(initial, dtype=np.float64).reshape(batch, 4).copy()
    damping = np.full(batch, FIT_INITIAL_DAMPING)
    done = np.zeros(batch, dtype=bool)
    failed = np.zeros(batch, dtype=bool)
    residual, jacobian = residuals_and_jacobian(theta, True)
    cost = (residual ** 2).sum(axis=1)
    done |= cost == 0
    for _ in range(max_iterations):
        active = ~done & np.isfinite(cost)
        if not active.any():
            break
        gradient = np.einsum("bmk,bm->bk", jacobian, residual)
        normal = np.einsum("bmk,bml->bkl", jacobian, jacobian)
        diagonal = np.diagonal(normal, axis1=1, axis2=2)
        floor = np.maximum(diagonal.max(axis=1, keepdims=True) * 1e-12, 1e-300)
        system = normal + (damping[:, None] * np.maximum(diagonal, floor))[:, :, None] \
            * np.eye(4)[None]
        good = active & np.all(np.isfinite(system), axis=(1, 2)) \
            & np.all(np.isfinite(gradient), axis=1)
        step = np.zeros_like(theta)
        if good.any():
            step[good] = np.linalg.solve(system[good], -gradient[good][..., None])[..., 0]
        trial = theta + step
        trial_residual, _ = residuals_and_jacobian(trial, False)
        trial_cost = (trial_residual ** 2).sum(axis=1)
        improved = good & np.isfinite(trial_cost) & (trial_cost < cost)
        relative_drop = (cost - trial_cost) / np.maximum(cost, 1e-300)
        small_step = np.linalg.norm(step, axis=1) <= tolerance * (
            np.linalg.norm(theta, axis=1) + tolerance)
        converged = improved & ((relative_drop <= tolerance) | small_step | (trial_cost == 0))
        theta = np.where(improved[:, None], trial, theta)
        damping = np.where(improved, damping / FIT_DAMPING_FACTOR, damping * FIT_DAMPING_FACTOR)
        stalled = active & ~improved & (damping > FIT_MAX_DAMPING)
        failed |= active & ~good
        done |= converged | stalled | failed
        if improved.any():
            new_residual, new_jacobian = residuals_and_jacobian(theta[improved], True, improved)
            residual[improved], jacobian[improved] = new_residual, new_jacobian
            cost[improved] = trial_cost[improved]
    converged = done & ~failed & np.all(np.isfinite(theta), axis=1) & np.isfinite(cost)
    return theta, converged


def gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray, center_scores: np.ndarray,
                        params: RegressionTestParams) -> np.ndarray:
    """Refine joints by a Gaussian fit on the heatmaps (the fit params.gaussian_fit names);
    returns new poses (P, J, 3) float32. Arguments as corrected_gaussian_fit_adjust."""
    if params.gaussian_fit == "reference":
        return reference_gaussian_fit_adjust(poses, heatmaps, center_scores, params)
    return corrected_gaussian_fit_adjust(poses, heatmaps, center_scores, params)


def _gaussian_surface(samples: np.ndarray, amplitude: float, first_center: float,
                      second_center: float, sigma: float) -> np.ndarray:
    """A exp(-((a - a0)^2 + (b - b0)^2) / (2 s^2)) at samples (2, n) of coordinates (a, b)."""
    first, second = samples
    return amplitude * np.exp(-((second - second_center) ** 2 + (first - first_center) ** 2)
                              / (2 * sigma ** 2))


def reference_fit_samples(window_shape: tuple[int, int]) -> np.ndarray:
    """The reference's sample coordinates (2, h * w) for a window's row-major pixels.

    It pairs pixel k with (k // h, k % h) (a grid built for (w, h) and flattened against an
    (h, w) window): the true (row, column) = (k // w, k % w) only when the window is square.
    """
    height, width = window_shape
    return np.stack(np.divmod(np.arange(height * width, dtype=np.float64), height))


def _reference_fit(window: np.ndarray, start: tuple[float, float, float, float]
                   ) -> np.ndarray | None:
    """curve_fit of the reference's model on one window; (A, row, column, s) or None on failure."""
    samples = reference_fit_samples(window.shape)
    try:
        with warnings.catch_warnings():
            # curve_fit warns when it cannot estimate the covariance, which is not used.
            warnings.simplefilter("ignore", OptimizeWarning)
            fitted, _ = curve_fit(_gaussian_surface, samples, window.ravel(), p0=start,
                                  maxfev=REFERENCE_FIT_MAX_EVALUATIONS)
    except FIT_FAILURES:
        return None
    return fitted


def reference_gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray,
                                  center_scores: np.ndarray,
                                  params: RegressionTestParams) -> np.ndarray:
    """The reference's Gaussian fit, quirks included; returns new poses (P, J, 3) float32.

    poses (P, J, 3) (x, y, score) in the maps' pixels; heatmaps (J, H, W); center_scores (P,).
    For each joint with score > adjust_threshold: r = int(y + 0.5), c = int(x + 0.5) (in
    float64, truncated); joints with r in {0, H - 1} or c in {0, W - 1} are skipped, but joints
    off the map are not: Python indexing wraps negative r, c around (the starting amplitude is
    heatmap[r, c]) and a window slice whose end is negative wraps too; indices beyond the map
    fail and leave the joint. The window is heatmap[max(0, r - k):min(H - 1, r + k) + 1,
    max(0, c - k):min(W - 1, c + k) + 1] (k = gaussian_kernel), fitted by scipy's curve_fit
    (300 evaluations) on ``reference_fit_samples``' grid, transposed for windows that are not
    square; start: that amplitude, (r, c) in window pixels, s = gaussian_sigma. A fit moves the
    joint to the window origin + the fitted centre and scores it float32(A) x the centre score
    in float32 (the reference multiplies by a float32 tensor); a failed fit leaves it. Fits are
    cached per joint type and (r, c), as the reference's. Joints at non-finite positions (the
    reference would crash on them) are left.
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    center_scores = np.asarray(center_scores, dtype=np.float32)
    _, height, width = heatmaps.shape
    half = int(params.gaussian_kernel)
    # The reference's float32 scalars met Python floats, which NumPy then computed in float64.
    values = poses.astype(np.float64)
    finite = np.isfinite(values[..., 0]) & np.isfinite(values[..., 1])
    selected = finite & (values[..., 2] > params.adjust_threshold)
    rounded = np.where(finite[..., None], values[..., :2], 0.0) + 0.5
    columns = np.trunc(rounded[..., 0]).astype(np.int64)
    rows = np.trunc(rounded[..., 1]).astype(np.int64)
    fits: dict[tuple[int, int, int], np.ndarray | None] = {}
    for person, joint in zip(*np.nonzero(selected)):
        row, column = int(rows[person, joint]), int(columns[person, joint])
        if row in (0, height - 1) or column in (0, width - 1):
            continue
        key = (int(joint), row, column)
        if key not in fits:
            fits[key] = _reference_window_fit(heatmaps[joint], row, column, half,
                                              float(params.gaussian_sigma))
        fit = fits[key]
        if fit is None:
            continue
        top, left, amplitude, fitted_row, fitted_column = fit
        poses[person, joint, 0] = left + fitted_column
        poses[person, joint, 1] = top + fitted_row
        poses[person, joint, 2] = np.float32(amplitude) * center_scores[person]
    return poses


def _reference_window_fit(heatmap: np.ndarray, row: int, column: int, half: int,
                          sigma: float) -> np.ndarray | None:
    """(top, left, A, row, column) of the reference's fit around (row, column), or None."""
    height, width = heatmap.shape
    if not (-height <= row < height and -width <= column < width):
        return None    # the reference's heatmap[row][column] raises IndexError
    top, left = max(0, row - half), max(0, column - half)
    bottom, right = min(height - 1, row + half), min(width - 1, column + half)
    # Plain Python slices, so negative ends wrap around as in the reference.
    window = heatmap[top:bottom + 1, left:right + 1]
    start = (float(heatmap[row, column]), float(row - top), float(column - left), sigma)
    fitted = _reference_fit(window, start)
    if fitted is None:
        return None
    return np.array([top, left, fitted[0], fitted[1], fitted[2]])


def corrected_gaussian_fit_adjust(poses: np.ndarray, heatmaps: np.ndarray,
                                  center_scores: np.ndarray,
                                  params: RegressionTestParams) -> np.ndarray:
    """Refine joints by a Gaussian fit on the heatmaps; returns new poses (P, J, 3) float32.

    poses (P, J, 3) (x, y, score) in the maps' pixels; heatmaps (J, H, W); center_scores (P,).
    Each joint with score > adjust_threshold whose rounded pixel (int(x + 0.5), int(y + 0.5))
    lies inside the map but not on its outermost rows or columns (the reference skips those)
    is fitted on the window of +-gaussian_kernel pixels around that pixel, cut at the map
    border, from A = the heatmap there, the pixel as centre and s = gaussian_sigma; a converged
    fit moves the joint to the fitted centre and sets its score to A x the person's centre
    score. Joints sharing a joint type and rounded pixel are fitted once (the reference's cache
    gives them the same result). Unlike the reference, whose window coordinates are transposed
    for windows that are not square (so fits next to the border are scrambled), every window is
    fitted in its own row and column coordinates.
    """
    poses = np.array(poses, dtype=np.float32, copy=True)
    if len(poses) == 0:
        return poses
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    num_joints, height, width = heatmaps.shape
    x, y = poses[..., 0].astype(np.float64), poses[..., 1].astype(np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    column = np.trunc(np.where(finite, x, -1) + 0.5).astype(np.int64)
    row = np.trunc(np.where(finite, y, -1) + 0.5).astype(np.int64)
    selected = (finite & (poses[..., 2] > params.adjust_threshold) & (row >= 1)
                & (row <= height - 2) & (column >= 1) & (column <= width - 2))
    person, joint = np.nonzero(selected)
    if person.size == 0:
        return poses
    keys = np.stack([joint, row[person, joint], column[person, joint]], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    fit_joint, fit_row, fit_column = unique.T
    half = int(params.gaussian_kernel)
    top, left = np.maximum(fit_row - half, 0), np.maximum(fit_column - half, 0)
    bottom, right = np.minimum(fit_row + half, height - 1), np.minimum(fit_column + half, width - 1)
    span = np.arange(2 * half + 1)
    window_rows, window_columns = top[:, None] + span, left[:, None] + span
    valid = (window_rows <= bottom[:, None])[:, :, None] \
        & (window_columns <= right[:, None])[:, None, :]
    windows = heatmaps[fit_joint[:, None, None], np.minimum(window_rows, height - 1)[:, :, None],
                       np.minimum(window_columns, width - 1)[:, None, :]]
    initial = np.stack([heatmaps[fit_joint, fit_row, fit_column].astype(np.float64),
                        (fit_row - top).astype(np.float64), (fit_column - left).astype(np.float64),
                        np.full(len(unique), float(params.gaussian_sigma))], axis=1)
    fitted, converged = fit_gaussian_windows(windows, valid, initial)
    ok = converged[inverse]
    person, joint, pair = person[ok], joint[ok], inverse[ok]
    poses[person, joint, 0] = left[pair] + fitted[pair, 2]
    poses[person, joint, 1] = top[pair] + fitted[pair, 1]
    poses[person, joint, 2] = fitted[pair, 0] * np.asarray(center_scores, dtype=np.float64)[person]
    return poses


# ------------------------------------------------------------------------------------------------
# The whole decoder


def _person_scores(poses: np.ndarray) -> np.ndarray:
    if len(poses) == 0:
        return np.zeros(0, dtype=np.float32)
    return poses[..., 2].mean(axis=1).astype(np.float32)


def decode_regression(maps: RegressionMaps,
                      params: RegressionTestParams) -> tuple[DecodedPoses, DecodedPoses]:
    """The "regression" and "final" results of one image in base pixels (see the module doc)."""
    num_joints = params.num_joints
    fused = maps.fused.detach().float()
    keypoint_maps = fused[:num_joints]
    candidates, center_scores = candidate_poses(maps.heatmaps, maps.keypoints, maps.scales,
                                                fused.shape[-1], params)
    keep = pose_nms(candidates, center_scores, params.dist_threshold, params.overlap_threshold)
    poses, center_scores = candidates[keep], center_scores[keep]
    top = strongest(center_scores, params.max_num_people)
    poses, center_scores = poses[top], center_scores[top]
    if len(poses) == 0:
        empty = DecodedPoses(np.zeros((0, num_joints, 3), dtype=np.float32),
                             np.zeros(0, dtype=np.float32))
        return empty, empty
    heatmaps_cpu = keypoint_maps.cpu().numpy()
    joint_scores = center_scores[:, None] * heat_values(heatmaps_cpu, poses)
    regression = np.concatenate([poses, joint_scores[..., None]], axis=2).astype(np.float32)
    final = np.concatenate([poses, np.broadcast_to(center_scores[:, None, None],
                                                   poses.shape[:2] + (1,))], axis=2)
    final = absorb_heat(keypoint_maps, final, params)
    final = gaussian_fit_adjust(final, heatmaps_cpu, center_scores, params)
    return (DecodedPoses(regression, _person_scores(regression)),
            DecodedPoses(final, _person_scores(final)))


def infer_regression(model: ModelCallable, image: np.ndarray, params: RegressionTestParams,
                     device: torch.device | str | None = None,
                     transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                     rescorer: Rescorer | None = None) -> RegressionPrediction:
    """The whole test-time pipeline for one (H, W, 3) uint8 RGB image (model in eval mode).

    Returns both results in image pixels (poses (P, J, 3) float64 rows x, y, joint score; scores
    (P,) float32). rescorer(poses in image pixels, scores) -> new scores (e.g.
    postprocess.rescore.Rescorer, loaded once) is applied to both, as the reference does.
    """
    maps = regression_multi_scale_maps(model, image, params, device, transform)
    results = []
    for decoded in decode_regression(maps, params):
        poses = get_final_preds(decoded.poses, maps.center, maps.scale, maps.base_size)
        scores = decoded.scores
        if rescorer is not None and len(poses):
            scores = np.asarray(rescorer(poses, scores), dtype=np.float32)
        results.append(BottomUpPrediction(poses, scores))
    return RegressionPrediction(*results)
