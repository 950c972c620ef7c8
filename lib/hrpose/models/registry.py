"""MODEL.NAME -> model builder, and build_model, the one way tools and loops create a model."""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn
from yacs.config import CfgNode

from ..config import ConfigError
from .backbones.higher_hrnet import pose_higher_hrnet
from .backbones.hourglass import pose_hourglass
from .backbones.hrnet import pose_hrnet
from .backbones.hrnet_regression import pose_higher_hrnet_regression, pose_hrnet_regression
from .backbones.hrnext import pose_hrnext
from .backbones.resnet import pose_resnet

logger = logging.getLogger(__name__)

ModelBuilder = Callable[[CfgNode], nn.Module]

# Names as in config/model_extras.py; a builder reads only cfg.MODEL and returns an uninitialised
# model.
MODEL_BUILDERS: dict[str, ModelBuilder] = {
    "pose_hrnet": pose_hrnet,
    "pose_resnet": pose_resnet,
    "pose_hourglass": pose_hourglass,
    "pose_hrnext": pose_hrnext,
    "pose_higher_hrnet": pose_higher_hrnet,
    "pose_hrnet_regression": pose_hrnet_regression,
    "pose_higher_hrnet_regression": pose_higher_hrnet_regression,
}


def build_model(cfg: CfgNode, is_train: bool) -> nn.Module:
    """The model registered under cfg.MODEL.NAME.

    When is_train and MODEL.INIT_WEIGHTS, its weights are initialised and MODEL.PRETRAINED (if
    set) is loaded, as the reference get_pose_net does; otherwise the caller loads a checkpoint.
    """
    name = cfg.MODEL.NAME
    try:
        builder = MODEL_BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown MODEL.NAME {name!r}; known models: "
                          f"{', '.join(sorted(MODEL_BUILDERS))}") from None
    model = builder(cfg)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED, cfg.MODEL.INIT_METHOD)
    logger.debug("built %s (%s)", name, type(model).__name__)
    return model
