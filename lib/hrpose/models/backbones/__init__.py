"""Backbones (HRNet, ResNet) and the top-down pose networks that add a heatmap head to them."""

from .hrnet import (HighResolutionModule, HighResolutionNet, HRNetSpec, Layer1Spec, PoseHighResolutionNet,
                    StageSpec, pose_hrnet)
from .resnet import PoseResNet, ResNet, pose_resnet

__all__ = ["HighResolutionModule", "HighResolutionNet", "HRNetSpec", "Layer1Spec",
           "PoseHighResolutionNet", "StageSpec",
           "pose_hrnet", "PoseResNet", "ResNet", "pose_resnet"]
