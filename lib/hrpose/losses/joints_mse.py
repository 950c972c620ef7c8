"""Top-down heatmap losses: joints MSE and its online-hard-keypoint-mining (OHKM) variant."""

from __future__ import annotations

import torch
from torch import nn


def per_joint_mse(output: torch.Tensor, target: torch.Tensor,
                  target_weight: torch.Tensor | None) -> torch.Tensor:
    """0.5 * mean over pixels of (w * (P - T))^2 for every sample and joint -> (B, K).

    output, target: (B, K, H, W); target_weight: (B, K, 1) or (B, K), or None for weight 1.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    batch, joints = output.shape[:2]
    residual = (output - target).reshape(batch, joints, -1)
    if target_weight is not None:
        residual = residual * target_weight.reshape(batch, joints, 1)
    return 0.5 * residual.pow(2).mean(dim=2)


class JointsMSELoss(nn.Module):
    """0.5 * mean over B, K, H, W of w^2 (P - T)^2, the references' JointsMSELoss in closed form.

    With use_target_weight False every weight is 1. forward(output (B, K, H, W), target
    (B, K, H, W), target_weight (B, K, 1)) -> scalar.
    """

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor) -> torch.Tensor:
        weight = target_weight if self.use_target_weight else None
        # Every joint has the same pixel count, so the mean of per-joint means is the full mean.
        return per_joint_mse(output, target, weight).mean()


class JointsOHKMMSELoss(nn.Module):
    """Joints MSE over each sample's ``topk`` hardest joints: sum of those / topk, batch mean.

    forward(output (B, K, H, W), target (B, K, H, W), target_weight (B, K, 1)) -> scalar.
    """

    def __init__(self, use_target_weight: bool = True, topk: int = 8):
        super().__init__()
        if topk < 1:
            raise ValueError(f"OHKM topk must be >= 1, got {topk}")
        self.use_target_weight = use_target_weight
        self.topk = topk

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: torch.Tensor) -> torch.Tensor:
        weight = target_weight if self.use_target_weight else None
        losses = per_joint_mse(output, target, weight)
        if self.topk > losses.shape[1]:
            raise ValueError(f"OHKM topk ({self.topk}, LOSS.TOPK) exceeds the number of joints "
                             f"({losses.shape[1]})")
        hardest = losses.topk(self.topk, dim=1, sorted=False).values
        return (hardest.sum(dim=1) / self.topk).mean()


def build_topdown_loss(cfg) -> nn.Module:
    """The loss cfg.LOSS asks for: OHKM over TOPK joints when USE_OHKM, else the joints MSE."""
    loss_cfg = cfg.LOSS
    if loss_cfg.USE_OHKM:
        return JointsOHKMMSELoss(loss_cfg.USE_TARGET_WEIGHT, loss_cfg.TOPK)
    return JointsMSELoss(loss_cfg.USE_TARGET_WEIGHT)
