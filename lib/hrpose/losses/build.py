"""The bottom-up loss a config asks for: HigherHRNet's per-stage losses with AE or HAE tags."""

from __future__ import annotations

from ..config import ConfigError
from ..datasets.metadata import get_keypoint_info
from .associative_embedding import MultiStageAELoss
from .hierarchical_ae import HierarchicalAELoss


def build_bottomup_loss(cfg) -> MultiStageAELoss:
    """The per-stage heatmap and tag losses cfg.LOSS asks for (plain AE, or HAE over the
    training dataset's keypoint groups when LOSS.TAG_LOSS is 'hae')."""
    loss_cfg = cfg.LOSS
    tag_loss = None
    if loss_cfg.TAG_LOSS == "hae":
        info = get_keypoint_info(cfg.DATASET.DATASET)
        try:
            groups = info.get_keypoint_groups(cfg.DATASET.KEYPOINT_GROUPS)
        except KeyError as error:
            raise ConfigError(f"DATASET.KEYPOINT_GROUPS {cfg.DATASET.KEYPOINT_GROUPS!r}: "
                              f"{error.args[0]}") from None
        tag_loss = HierarchicalAELoss(cfg.MODEL.NUM_JOINTS, groups, loss_cfg.AE_LOSS_TYPE,
                                      loss_cfg.HAE_PULL_WEIGHTS, loss_cfg.FOCAL_PULL,
                                      loss_cfg.FOCAL_FENCE, loss_cfg.FOCAL_WEIGHT)
    return MultiStageAELoss(cfg.MODEL.NUM_JOINTS, loss_cfg.WITH_HEATMAPS_LOSS,
                            loss_cfg.HEATMAPS_LOSS_FACTOR, loss_cfg.WITH_AE_LOSS,
                            loss_cfg.AE_LOSS_TYPE, loss_cfg.PUSH_LOSS_FACTOR,
                            loss_cfg.PULL_LOSS_FACTOR, tag_loss)
