"""HigherHRNet's bottom-up losses: masked heatmap loss, associative-embedding push/pull, per stage.

All losses are returned per sample, shape (N,), as the reference returns them; the trainer
averages over the batch (``total_bottomup_loss``). The AE loss is vectorised over the batch and
the people (a gather, then masked means); no host synchronisation, any device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

AE_LOSS_TYPES = ("exp", "max")


def masked_heatmap_loss(pred: torch.Tensor, target: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over (C, H, W) of (pred - target)^2 * mask -> (N,).

    pred, target: (N, C, H, W); mask: (N, H, W) shared by the channels, or (N, C, H, W).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if mask.dim() == 3:
        mask = mask[:, None]
    loss = (pred - target).pow(2) * mask
    return loss.mean(dim=3).mean(dim=2).mean(dim=1)


class HeatmapLoss(nn.Module):
    """Module form of ``masked_heatmap_loss`` (HigherHRNet's HeatmapLoss)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_heatmap_loss(pred, target, mask)


def ae_loss(tags: torch.Tensor, joints: torch.Tensor,
            loss_type: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """Associative-embedding push and pull losses per image -> (push (N,), pull (N,)).

    tags: (N, L) or (N, L, 1) or (N, C, H, W): the tag map of each image, flattened (C, H, W) in
    that order, so that the codec's indices j * H * W + y * W + x address it. joints: (N, M, J, 2)
    int (flat index, visible) from ``encode_ae_tags``.

    Per image, a person with at least one visible joint has the mean tag t of those joints and
    pull_i = mean over them of (tag - t)^2; pull = sum_i pull_i / P over the P such people.
    push = 0.5 * sum over ordered pairs a != b of f(t_a - t_b) / (P (P - 1)), with
    f(d) = exp(-d^2) ('exp') or max(0, 1 - |d|) ('max'). Both are 0 when P = 0, push when P = 1.
    """
    if loss_type not in AE_LOSS_TYPES:
        raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {loss_type!r}")
    batch = tags.shape[0]
    if joints.dim() != 4 or joints.shape[0] != batch or joints.shape[-1] != 2:
        raise ValueError(f"joints must have shape (N={batch}, people, joints, 2); "
                         f"got {tuple(joints.shape)}")
    flat = tags.reshape(batch, -1)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    num_people, num_joints = joints.shape[1:3]
    index = joints[..., 0].long().reshape(batch, -1)
    visible = (joints[..., 1] > 0).to(flat.dtype)  # (N, M, J)
    gathered = flat.gather(1, index).reshape(batch, num_people, num_joints)

    count = visible.sum(dim=2)  # (N, M)
    present = count > 0
    safe_count = count.clamp(min=1)
    mean = (gathered * visible).sum(dim=2) / safe_count  # (N, M)
    spread = ((gathered - mean[..., None]).pow(2) * visible).sum(dim=2) / safe_count
    people = present.sum(dim=1).to(flat.dtype)  # (N,)
    pull = (spread * present).sum(dim=1) / people.clamp(min=1)

    return instance_push(mean, present, loss_type), pull


def instance_push(means: torch.Tensor, present: torch.Tensor, loss_type: str) -> torch.Tensor:
    """AE's push on the person means -> (N,): 0.5 * sum_{a != b} F(m_a - m_b) / (P (P - 1)).

    means: (N, M) mean tag of each slot's person; present: (N, M) bool, the P people that count.
    F(d) = exp(-d^2) ('exp') or max(0, 1 - |d|) ('max'); 0 for P < 2.
    """
    difference = means[:, :, None] - means[:, None, :]  # (N, M, M)
    if loss_type == "exp":
        pair_term = torch.exp(-difference.pow(2))
    else:
        pair_term = torch.clamp(1 - difference.abs(), min=0)
    pairs = present[:, :, None] & present[:, None, :] & _distinct_pairs(means.shape[1],
                                                                         means.device)
    people = present.sum(dim=1).to(means.dtype)
    return (pair_term * pairs).sum(dim=(1, 2)) / (people * (people - 1)).clamp(min=1) * 0.5


@functools.lru_cache(maxsize=None)
def _distinct_pairs(size: int, device: torch.device) -> torch.Tensor:
    """(size, size) bool: True off the diagonal."""
    return ~torch.eye(size, dtype=torch.bool, device=device)


class AELoss(nn.Module):
    """Module form of ``ae_loss`` with a fixed push type ('exp' or 'max')."""

    def __init__(self, loss_type: str = "exp"):
        super().__init__()
        if loss_type not in AE_LOSS_TYPES:
            raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {loss_type!r}")
        self.loss_type = loss_type

    def forward(self, tags: torch.Tensor,
                joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ae_loss(tags, joints, self.loss_type)


def per_stage(name: str, values, num_stages: int) -> list:
    """values (one per loss stage, or a scalar for a single stage) as a list, checked."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) != num_stages:
        raise ValueError(f"{name} has {len(values)} entries; there are {num_stages} loss stages")
    return values


class MultiStageAELoss(nn.Module):
    """HigherHRNet's MultiLossFactory: per output resolution (stage) a heatmap loss and AE loss.

    num_joints: J. with_heatmaps_loss, heatmaps_loss_factor, with_ae_loss, push_loss_factor,
    pull_loss_factor: one entry per stage (LOSS.WITH_HEATMAPS_LOSS ... LOSS.PULL_LOSS_FACTOR);
    ae_loss_type: 'exp' or 'max' (LOSS.AE_LOSS_TYPE). The number of stages is the length of
    with_heatmaps_loss (LOSS.NUM_STAGES).

    forward(outputs, heatmaps, masks, joints): lists with one entry per stage: the model output
    (N, C, S, S), whose first J channels are heatmaps when the stage has a heatmap loss and whose
    remaining channels are the tag maps when it has an AE loss; the target heatmaps (N, J, S, S);
    the masks (N, S, S); the tag indices (N, M, J, 2). Returns (heatmaps_losses, push_losses,
    pull_losses), lists per stage of (N,) tensors already multiplied by their factors, or None
    where the stage has no such loss.
    """

    def __init__(self, num_joints: int, with_heatmaps_loss: Sequence[bool] = (True, True),
                 heatmaps_loss_factor: Sequence[float] = (1.0, 1.0),
                 with_ae_loss: Sequence[bool] = (True, False), ae_loss_type: str = "exp",
                 push_loss_factor: Sequence[float] = (0.001, 0.001),
                 pull_loss_factor: Sequence[float] = (0.001, 0.001),
                 tag_loss: nn.Module | None = None):
        super().__init__()
        if not isinstance(with_heatmaps_loss, (list, tuple)):
            with_heatmaps_loss = [with_heatmaps_loss]
        self.num_stages = len(with_heatmaps_loss)
        self.num_joints = int(num_joints)
        self.with_heatmaps_loss = [bool(v) for v in with_heatmaps_loss]
        self.heatmaps_loss_factor = [float(v) for v in per_stage(
            "heatmaps_loss_factor", heatmaps_loss_factor, self.num_stages)]
        self.with_ae_loss = [bool(v) for v in per_stage("with_ae_loss", with_ae_loss,
                                                         self.num_stages)]
        self.push_loss_factor = [float(v) for v in per_stage(
            "push_loss_factor", push_loss_factor, self.num_stages)]
        self.pull_loss_factor = [float(v) for v in per_stage(
            "pull_loss_factor", pull_loss_factor, self.num_stages)]
        self.ae_loss_type = ae_loss_type
        if any(self.with_ae_loss) and ae_loss_type not in AE_LOSS_TYPES:
            raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {ae_loss_type!r}")
        # forward(tags, joints) -> (push, pull) per image: plain AE, or HAE's hierarchical loss.
        self.tag_loss = tag_loss if tag_loss is not None else AELoss(ae_loss_type)

    def forward(self, outputs: Sequence[torch.Tensor], heatmaps: Sequence[torch.Tensor],
                masks: Sequence[torch.Tensor], joints: Sequence[torch.Tensor]):
        for name, values in (("outputs", outputs), ("heatmaps", heatmaps), ("masks", masks),
                             ("joints", joints)):
            if len(values) != self.num_stages:
                raise ValueError(f"got {len(values)} {name} for {self.num_stages} loss stages")
        heatmaps_losses, push_losses, pull_losses = [], [], []
        for stage, output in enumerate(outputs):
            first_tag_channel = 0
            if self.with_heatmaps_loss[stage]:
                first_tag_channel = self.num_joints
                loss = masked_heatmap_loss(output[:, :self.num_joints], heatmaps[stage],
                                           masks[stage])
                heatmaps_losses.append(loss * self.heatmaps_loss_factor[stage])
            else:
                heatmaps_losses.append(None)
            if self.with_ae_loss[stage]:
                tags = output[:, first_tag_channel:]
                if tags.shape[1] == 0:
                    raise ValueError(f"stage {stage} output has {output.shape[1]} channels: no "
                                     f"tag channels after the {first_tag_channel} heatmaps")
                push, pull = self.tag_loss(tags, joints[stage])
                push_losses.append(push * self.push_loss_factor[stage])
                pull_losses.append(pull * self.pull_loss_factor[stage])
            else:
                push_losses.append(None)
                pull_losses.append(None)
        return heatmaps_losses, push_losses, pull_losses


def total_bottomup_loss(heatmaps_losses: Sequence[torch.Tensor | None],
                        push_losses: Sequence[torch.Tensor | None],
                        pull_losses: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """The training loss: the batch mean of every per-stage loss that exists, summed.

    (The reference trainer adds a stage's push/pull only when that stage also has a heatmap loss;
    every HigherHRNet experiment pairs them, so the sums agree.)
    """
    terms = [loss.mean(dim=0) for group in (heatmaps_losses, push_losses, pull_losses)
             for loss in group if loss is not None]
    if not terms:
        raise ValueError("no stage has a loss")
    return torch.stack(terms).sum()
