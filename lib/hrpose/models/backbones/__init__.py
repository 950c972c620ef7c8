"""Backbones (HRNet, HRNeXt, ResNet) and the top-down pose networks that add a heatmap head to
them, plus the stacked hourglass, a whole top-down pose network of its own."""

from .hourglass import Hourglass, PoseHourglassNet, PreActBottleneck, pose_hourglass
from .hrnet import (
    HighResolutionModule,
    HighResolutionNet,
    HRNetSpec,
    Layer1Spec,
    PoseHighResolutionNet,
    StageSpec,
    pose_hrnet,
)
from .hrnext import (
    HRNeXt,
    HRNeXtBlock,
    HRNeXtModule,
    HRNeXtSpec,
    HRNeXtStageSpec,
    PoseHRNeXt,
    pose_hrnext,
)
from .resnet import PoseResNet, ResNet, pose_resnet

__all__ = ["Hourglass", "PoseHourglassNet", "PreActBottleneck", "pose_hourglass",
           "HighResolutionModule", "HighResolutionNet", "HRNetSpec", "Layer1Spec",
           "PoseHighResolutionNet", "StageSpec",
           "pose_hrnet", "HRNeXt", "HRNeXtBlock", "HRNeXtModule", "HRNeXtSpec", "HRNeXtStageSpec",
           "PoseHRNeXt", "pose_hrnext", "PoseResNet", "ResNet", "pose_resnet"]
