"""Heatmap-guided keypoint regression losses: tradeoff heatmap loss, smooth-L1 offset loss.

docs/regression.md (losses; 2020 paper). Per stage (output resolution) the model gives a
list of heatmap branches (N, C, S, S) and, where the stage has offsets, a list of offset branches
(N, 2J, S, S); the targets come from ``codecs.regression.encode_regression_targets``.

* heatmaps: per sample, the mean over (C, S, S) of (pred - target)^2 * mask, the mask being the
  crowd mask times the background weights (1 near joints, BG_WEIGHT elsewhere); the branches
  of a stage are averaged (the reference concatenates them along the channels, which gives the
  same mean). Returned per sample (N,), as the reference; the trainer takes the batch mean.
* offsets: smooth-L1 with beta = 1/9 times the weight map, summed over everything and divided by
  the number of weight entries > 0 in the whole batch (x and y both counted; 1 if there are none).
  A scalar. Branches are averaged (again the reference's concatenation).

Each stage's loss is multiplied by its own factor (LOSS.HEATMAPS_LOSS_FACTOR[k],
LOSS.OFFSETS_LOSS_FACTOR[k]); the reference multiplies every stage by entry 0, which the published
experiments cannot tell apart (their factors are equal across stages).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .associative_embedding import per_stage

# Smooth-L1's switch from the quadratic to the linear part (the reference's beta).
SMOOTH_L1_BETA = 1.0 / 9.0

TensorOrList = torch.Tensor | Sequence[torch.Tensor]


def _as_list(values: TensorOrList) -> list[torch.Tensor]:
    return [values] if isinstance(values, torch.Tensor) else list(values)


def tradeoff_heatmap_loss(pred: torch.Tensor, target: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over (C, H, W) of (pred - target)^2 * mask -> (N,).

    pred (N, C, H, W); target (N, C', H, W) with C' >= C, of which the first C channels are used
    (the half-resolution output has no centre channel while its target does); mask (N, H, W),
    (N, 1, H, W) or (N, C', H, W).
    """
    channels = pred.shape[1]
    if target.dim() != 4 or target.shape[0] != pred.shape[0] or target.shape[2:] != pred.shape[2:] \
            or target.shape[1] < channels:
        raise ValueError(f"heatmap target {tuple(target.shape)} does not fit the prediction "
                         f"{tuple(pred.shape)} (same N, H, W and at least as many channels)")
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.shape[1] > 1:
        mask = mask[:, :channels]
    loss = (pred - target[:, :channels]).pow(2) * mask
    return loss.mean(dim=3).mean(dim=2).mean(dim=1)


def branch_heatmap_loss(preds: TensorOrList, targets: TensorOrList,
                        masks: TensorOrList) -> torch.Tensor:
    """A stage's heatmap loss (N,): ``tradeoff_heatmap_loss`` averaged over its branches.

    preds: B branch outputs of one shape; targets and masks: B of them (paired with the
    branches) or one shared by all branches.
    """
    preds, targets, masks = _as_list(preds), _as_list(targets), _as_list(masks)
    count = len(preds)
    if count == 0:
        raise ValueError("a stage with a heatmap loss gave no heatmap outputs")
    for name, values in (("targets", targets), ("masks", masks)):
        if len(values) not in (1, count):
            raise ValueError(f"got {len(values)} heatmap {name} for {count} branches; give one "
                             f"per branch or one for all")
    total = 0
    for branch, pred in enumerate(preds):
        target = targets[branch if len(targets) > 1 else 0]
        mask = masks[branch if len(masks) > 1 else 0]
        total = total + tradeoff_heatmap_loss(pred, target, mask)
    return total / count


def smooth_l1(difference: torch.Tensor, beta: float = SMOOTH_L1_BETA) -> torch.Tensor:
    """0.5 d^2 / beta where d = |difference| < beta, else d - 0.5 beta (element-wise)."""
    distance = difference.abs()
    return torch.where(distance < beta, 0.5 * distance.pow(2) / beta, distance - 0.5 * beta)


def offsets_loss(pred: TensorOrList, target: torch.Tensor, weights: torch.Tensor,
                 beta: float = SMOOTH_L1_BETA) -> torch.Tensor:
    """The offset loss (scalar): sum of smooth_l1(pred - target) * weights / #(weights > 0).

    pred (N, 2J, H, W) or a list of branches of that shape (each compared with the same target,
    and the count taken once per branch, as the reference's concatenation does); target and
    weights (N, 2J, H, W). The count covers the whole batch and is 1 when nothing is weighted.
    """
    preds = _as_list(pred)
    if not preds:
        raise ValueError("a stage with an offset loss gave no offset outputs")
    for branch in preds:
        if branch.shape != target.shape or weights.shape != target.shape:
            raise ValueError(f"offset prediction {tuple(branch.shape)}, target "
                             f"{tuple(target.shape)} and weights {tuple(weights.shape)} differ")
    positives = (weights > 0).sum().clamp(min=1)
    total = sum((smooth_l1(branch - target, beta) * weights).sum() for branch in preds)
    return total / (positives * len(preds))


class RegressionLoss(nn.Module):
    """The 2020 regression network's MultiLossFactory: per stage a heatmap and an offset loss.

    with_heatmaps_loss, heatmaps_loss_factor, with_offsets_loss, offsets_loss_factor: one entry
    per stage (LOSS.WITH_HEATMAPS_LOSS, LOSS.HEATMAPS_LOSS_FACTOR, LOSS.WITH_OFFSETS_LOSS,
    LOSS.OFFSETS_LOSS_FACTOR); stage k's losses are multiplied by entry k (the reference uses
    entry 0 for every stage).

    forward(heatmaps, offsets, heatmap_targets, heatmap_masks, offset_targets, offset_weights):
    heatmaps[k] the model's branch list of stage k (N, C, S, S) and offsets[k] its offset branch
    list (only stages with an offset loss need one; the list may be shorter);
    heatmap_targets[k] / heatmap_masks[k] one tensor or a list (per branch or shared),
    offset_targets[k] / offset_weights[k] tensors (N, 2J, S, S) (or None where unused).
    Returns (heatmaps_losses, offsets_losses): per stage a (N,) tensor / a scalar, already
    multiplied by their factors, or None where the stage has no such loss.
    """

    def __init__(self, with_heatmaps_loss: Sequence[bool] = (True,),
                 heatmaps_loss_factor: Sequence[float] = (1.0,),
                 with_offsets_loss: Sequence[bool] = (True,),
                 offsets_loss_factor: Sequence[float] = (0.01,),
                 beta: float = SMOOTH_L1_BETA):
        super().__init__()
        if not isinstance(with_heatmaps_loss, (list, tuple)):
            with_heatmaps_loss = [with_heatmaps_loss]
        self.num_stages = len(with_heatmaps_loss)
        self.with_heatmaps_loss = [bool(v) for v in with_heatmaps_loss]
        self.heatmaps_loss_factor = [float(v) for v in per_stage(
            "heatmaps_loss_factor", heatmaps_loss_factor, self.num_stages)]
        self.with_offsets_loss = [bool(v) for v in per_stage(
            "with_offsets_loss", with_offsets_loss, self.num_stages)]
        self.offsets_loss_factor = [float(v) for v in per_stage(
            "offsets_loss_factor", offsets_loss_factor, self.num_stages)]
        self.beta = float(beta)

    def forward(self, heatmaps: Sequence[TensorOrList], offsets: Sequence[TensorOrList],
                heatmap_targets: Sequence[TensorOrList], heatmap_masks: Sequence[TensorOrList],
                offset_targets: Sequence[torch.Tensor | None],
                offset_weights: Sequence[torch.Tensor | None]):
        for name, values in (("heatmap outputs", heatmaps), ("heatmap targets", heatmap_targets),
                             ("heatmap masks", heatmap_masks)):
            if len(values) != self.num_stages:
                raise ValueError(f"got {len(values)} {name} for {self.num_stages} loss stages")
        heatmaps_losses, offsets_losses = [], []
        for stage in range(self.num_stages):
            if self.with_heatmaps_loss[stage]:
                loss = branch_heatmap_loss(heatmaps[stage], heatmap_targets[stage],
                                           heatmap_masks[stage])
                heatmaps_losses.append(loss * self.heatmaps_loss_factor[stage])
            else:
                heatmaps_losses.append(None)
            if self.with_offsets_loss[stage]:
                if stage >= len(offsets) or offset_targets[stage] is None \
                        or offset_weights[stage] is None:
                    raise ValueError(f"stage {stage} has an offset loss but no offset output, "
                                     f"target or weights")
                loss = offsets_loss(offsets[stage], offset_targets[stage], offset_weights[stage],
                                    self.beta)
                offsets_losses.append(loss * self.offsets_loss_factor[stage])
            else:
                offsets_losses.append(None)
        return heatmaps_losses, offsets_losses

    @classmethod
    def from_config(cls, cfg) -> "RegressionLoss":
        """The losses cfg.LOSS asks for; a list of the wrong length names its key."""
        from ..config import ConfigError

        loss = cfg.LOSS
        num_stages = int(loss.NUM_STAGES)
        for key in ("WITH_HEATMAPS_LOSS", "HEATMAPS_LOSS_FACTOR", "WITH_OFFSETS_LOSS",
                    "OFFSETS_LOSS_FACTOR"):
            if len(loss[key]) != num_stages:
                raise ConfigError(f"config key 'LOSS.{key}' has {len(loss[key])} entries "
                                  f"{list(loss[key])} but LOSS.NUM_STAGES is {num_stages}")
        return cls(loss.WITH_HEATMAPS_LOSS, loss.HEATMAPS_LOSS_FACTOR, loss.WITH_OFFSETS_LOSS,
                   loss.OFFSETS_LOSS_FACTOR)


def total_regression_loss(heatmaps_losses: Sequence[torch.Tensor | None],
                          offsets_losses: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """The training loss: batch means of the per-stage heatmap losses plus the offset losses."""
    terms = [loss.mean(dim=0) for loss in heatmaps_losses if loss is not None]
    terms += [loss for loss in offsets_losses if loss is not None]
    if not terms:
        raise ValueError("no stage has a loss")
    return torch.stack(terms).sum()
