"""Bottom-up inference as a config sets it up: test and grouping parameters, the grouping
function, one image's persons; the validation loop and apis.PosePredictor both run through here."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from .ae_grouping import GroupingParams
from .bottomup import BottomUpTestParams, infer_bottom_up
from .progressive_grouping import GroupingFunction, get_grouping_function
from .tag_maps import BottomUpWithMaps, infer_bottom_up_with_maps


def test_params(cfg: CfgNode, flip_index) -> tuple[BottomUpTestParams, GroupingParams]:
    """The test-time pipeline and grouping settings of cfg (TEST, LOSS and DATASET keys)."""
    pipeline = BottomUpTestParams(
        input_size=cfg.DATASET.INPUT_SIZE, scale_factors=tuple(cfg.TEST.SCALE_FACTOR),
        flip_test=cfg.TEST.FLIP_TEST,
        flip_index=tuple(int(j) for j in flip_index) if cfg.TEST.FLIP_TEST else None,
        project2image=cfg.TEST.PROJECT2IMAGE, heatmaps_loss=tuple(cfg.LOSS.WITH_HEATMAPS_LOSS),
        ae_loss=tuple(cfg.LOSS.WITH_AE_LOSS), with_heatmaps=tuple(cfg.TEST.WITH_HEATMAPS),
        with_ae=tuple(cfg.TEST.WITH_AE))
    grouping = GroupingParams(
        num_joints=cfg.MODEL.NUM_JOINTS, max_num_people=cfg.DATASET.MAX_NUM_PEOPLE,
        detection_threshold=cfg.TEST.DETECTION_THRESHOLD, tag_threshold=cfg.TEST.TAG_THRESHOLD,
        use_detection_val=cfg.TEST.USE_DETECTION_VAL, ignore_too_much=cfg.TEST.IGNORE_TOO_MUCH,
        nms_kernel=cfg.TEST.NMS_KERNEL, nms_padding=cfg.TEST.NMS_PADDING,
        adjust=cfg.TEST.ADJUST, refine=cfg.TEST.REFINE,
        assignment_solver=cfg.TEST.ASSIGNMENT_SOLVER)
    return pipeline, grouping


def grouping_function(cfg: CfgNode) -> GroupingFunction:
    """The grouping TEST.GROUPING names: fixed-order AE ('fixed') or HAE ('progressive').

    infer_image sends 'fixed' through postprocess.bottomup.infer_bottom_up and any other
    grouping through postprocess.tag_maps.infer_bottom_up_with_maps (the same pipeline with the
    grouping function passed in).
    """
    return get_grouping_function(cfg.TEST.GROUPING)


def infer_image(cfg: CfgNode, model: nn.Module, image: np.ndarray, pipeline: BottomUpTestParams,
                grouping: GroupingParams, group: GroupingFunction, device: torch.device,
                keep_maps: bool = False) -> BottomUpWithMaps:
    """The persons of one whole image (H, W, 3 uint8, in DATASET.COLOR_RGB's channel order).

    TEST.GROUPING 'fixed' without keep_maps goes through postprocess.bottomup.infer_bottom_up,
    anything else through postprocess.tag_maps.infer_bottom_up_with_maps (the same persons for
    'fixed'); maps is None unless kept. The validation loop and apis.PosePredictor both call this.
    """
    if cfg.TEST.GROUPING == "fixed" and not keep_maps:
        return BottomUpWithMaps(infer_bottom_up(model, image, pipeline, grouping, device), None)
    return infer_bottom_up_with_maps(model, image, pipeline, grouping, group, device)
