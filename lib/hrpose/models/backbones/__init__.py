"""Backbones (HRNet, ResNet) and the top-down pose networks that add a heatmap head to
them, plus the stacked hourglass, a whole top-down pose network of its own."""

from .hourglass import Hourglass, PoseHourglassNet, PreActBottleneck, pose_hourglass
from .hrnet import (HighResolutionModule, HighResolutionNet, HRNetSpec, Layer1Spec, PoseHighResolutionNet,
                    StageSpec, pose_hrnet)
from .resnet import PoseResNet, ResNet, pose_resnet

__all__ = ["Hourglass", "PoseHourglassNet", "PreActBottleneck", "pose_hourglass",
           "HighResolutionModule", "HighResolutionNet", "HRNetSpec", "Layer1Spec",
           "PoseHighResolutionNet", "StageSpec",
           "pose_hrnet", "PoseResNet", "ResNet", "pose_resnet"]
