"""Test-time settings of heatmap-guided regression decoding and the results between its stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..bottomup import BottomUpPrediction

# TEST.GAUSSIAN_FIT values.
GAUSSIAN_FITS = ("reference", "corrected")


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
        from ...config import ConfigError
        from ...datasets.metadata import get_keypoint_info

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
