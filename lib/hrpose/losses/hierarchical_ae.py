"""HAE's hierarchical associative-embedding loss: keypoint, group and instance level, focal pulling.

Hierarchical Associative Encoding (Du et al., IEEE TCSVT 2022) splits the pull of associative
embedding into levels, using prior keypoint groups (``KeypointInfo.keypoint_groups``). For one
image, with N people that have at least one visible keypoint, K keypoint types, person n's visible
keypoints V_n with tags h_k and mean tag m_n, and, for a group G_g, the visible members
V_ng = V_n & G_g with mean tag m_ng (a group counts for a person only when V_ng is not empty):

  keypoint-to-instance  o_n = K * mean_{k in V_n} (h_k - m_n)^2                (plain AE's pull, xK)
  keypoint-to-group     l_n = sum_g |G_g| * mean_{k in V_ng} f_k (h_k - m_ng)^2  (|G_g|: full size)
  group-to-instance     h_n = sum_g (m_n - m_ng)^2

  pull = (w_o * sum_n o_n + w_l * sum_n l_n + w_h * sum_n h_n) / (K * N)
  push = plain AE's instance push on the m_n: 0.5 * sum_{a != b} F(m_a - m_b) / (N (N - 1)),
         F(d) = exp(-d^2) ('exp') or max(0, 1 - |d|) ('max')

(w_o, w_l, w_h) = (0, 1.0, 1.5) in the released training (LOSS.HAE_PULL_WEIGHTS). The
keypoint-to-instance term therefore equals w_o times ``ae_loss``'s pull, and the push is
``ae_loss``'s push. Both terms are 0 without people, push without a second person.

Focal pulling: f_k = FOCAL_WEIGHT (2) for a keypoint whose tag is an outlier among its group's
visible members by Tukey's fences, below Q1 - FENCE * IQR or above Q3 + FENCE * IQR (FENCE 1.5),
and 1 otherwise. Q1 and Q3 are taken as the reference takes them: the 25th percentile with
'lower' and the 75th with 'higher' interpolation (NumPy's methods), on the detached tags. With
m members those are the sorted values at floor((m - 1) / 4) and ceil(3 (m - 1) / 4), which are
the minimum and the maximum while m <= 4: groups with up to four visible members (so every group
of every CrowdPose scheme) can never flag an outlier.

Unlike the released code, (a) focal pulling really applies when it is on, (b) a keypoint's group
follows from its type, read off its tag index (the codec fills a person's slots with the visible
keypoints only, in order, so slot j is keypoint j only when nothing before it is missing), and
(c) the groups are the dataset's own. Everything is vectorised over images, people and groups: a
(keypoint type -> group) table gives a (people x groups x keypoints) membership mask, then masked
sums and means; no host sync, any device; the tags are gathered once for all terms.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .associative_embedding import AE_LOSS_TYPES, ae_loss

logger = logging.getLogger(__name__)

# [keypoint-to-instance, keypoint-to-group, group-to-instance] as HAE's released configs set them.
HAE_PULL_WEIGHTS = (0.0, 1.0, 1.5)
FOCAL_FENCE = 1.5
FOCAL_WEIGHT = 2.0


def check_keypoint_groups(groups: Sequence[Sequence[int]],
                          num_joints: int) -> tuple[tuple[int, ...], ...]:
    """The groups as tuples, after checking they are non-empty, disjoint and inside 0..K-1.

    Keypoints in no group are allowed: they still count for the instance mean and the push.
    """
    checked = tuple(tuple(int(i) for i in group) for group in groups)
    seen: set[int] = set()
    for group in checked:
        if not group:
            raise ValueError(f"keypoint groups {checked}: a group is empty")
        for index in group:
            if not 0 <= index < num_joints:
                raise ValueError(f"keypoint groups {checked}: index {index} is outside "
                                 f"0..{num_joints - 1}")
            if index in seen:
                raise ValueError(f"keypoint groups {checked}: keypoint {index} is in more than "
                                 f"one group")
            seen.add(index)
    return checked


class GroupTable(NamedTuple):
    """``hae_loss``'s lookup tables for G groups of K keypoint types."""

    group_of_type: torch.Tensor  # (K,) int64: the type's group, G for a type in no group
    group_sizes: torch.Tensor  # (G + 1,) float32: full group sizes, 0 for "no group"
    can_flag: torch.Tensor  # (F,) int64: the groups with 5+ members


def group_table(groups: Sequence[Sequence[int]], num_joints: int,
                device: torch.device | str | None = None) -> GroupTable:
    """The lookup tables of ``groups`` (checked) on ``device``."""
    groups = check_keypoint_groups(groups, num_joints)
    group_of_type = torch.full((num_joints,), len(groups), dtype=torch.long)
    for g, group in enumerate(groups):
        group_of_type[list(group)] = g
    sizes = torch.tensor([len(group) for group in groups] + [0], dtype=torch.float32)
    # With m <= 4 members Q1 and Q3 are the minimum and the maximum, so no fence can flag one.
    can_flag = torch.nonzero(sizes >= 5).flatten()
    return GroupTable(group_of_type.to(device), sizes.to(device), can_flag.to(device))


def tukey_outliers(values: torch.Tensor, members: torch.Tensor, fence: float) -> torch.Tensor:
    """Which members are outside their set's Tukey fences, Q1 - fence IQR and Q3 + fence IQR.

    values: (..., J); members: (..., S, J) bool, S sets over the same J values. Q1 and Q3 are the
    members' sorted values at floor((m - 1) / 4) and ceil(3 (m - 1) / 4) (NumPy's 'lower' and
    'higher' quartiles) for m members. Returns (..., S, J) bool, False outside the members.
    Computed without gradient.
    """
    with torch.no_grad():
        values = values.detach()[..., None, :].expand(members.shape)
        ordered = values.masked_fill(~members, float("inf")).sort(dim=-1).values
        positions = _quartile_positions(members.shape[-1], members.device)
        quartiles = ordered.gather(-1, positions[members.sum(dim=-1)])  # (..., S, 2): Q1, Q3
        spread = quartiles[..., 1:] - quartiles[..., :1]
        fences = quartiles + spread * torch.tensor([-fence, fence], dtype=values.dtype,
                                                   device=values.device)
        # Empty sets sort to +inf; inf - inf is NaN, and NaN comparisons are False.
        outside = (values < fences[..., :1]) | (values > fences[..., 1:])
        return outside & members


@functools.lru_cache(maxsize=None)
def _quartile_positions(size: int, device: torch.device) -> torch.Tensor:
    """(size + 1, 2) int64: the sorted positions of Q1 and Q3 for 0..size members."""
    last = (torch.arange(size + 1) - 1).clamp(min=0)  # m - 1
    return torch.stack((last // 4, (3 * last + 3) // 4), dim=1).to(device)


def hae_loss(tags: torch.Tensor, joints: torch.Tensor, groups: Sequence[Sequence[int]],
             loss_type: str = "exp", pull_weights: Sequence[float] = HAE_PULL_WEIGHTS,
             focal_pull: bool = False, focal_fence: float = FOCAL_FENCE,
             focal_weight: float = FOCAL_WEIGHT,
             table: tuple[torch.Tensor, torch.Tensor] | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """HAE's push and pull per image -> (push (N,), pull (N,)); the formulas are the module's.

    tags: (N, K, H, W), one tag map per keypoint type (MODEL.TAG_PER_JOINT), or the same
    flattened to (N, K * H * W) or (N, K * H * W, 1). joints: (N, M, K, 2) int (flat index
    k * H * W + y * W + x, visible) from ``encode_ae_tags``; a keypoint's type is its index
    // (H * W). groups: disjoint lists of keypoint types (at least one group). pull_weights:
    [keypoint-to-instance, keypoint-to-group, group-to-instance]. table: ``group_table(groups,
    K)`` on the tags' device, to skip rebuilding it.
    """
    if loss_type not in AE_LOSS_TYPES:
        raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {loss_type!r}")
    weights = [float(w) for w in pull_weights]
    if len(weights) != 3 or any(w < 0 for w in weights):
        raise ValueError(f"HAE pull weights must be 3 non-negative numbers [keypoint-to-instance, "
                         f"keypoint-to-group, group-to-instance]; got {list(pull_weights)}")
    batch = tags.shape[0]
    if joints.dim() != 4 or joints.shape[0] != batch or joints.shape[-1] != 2:
        raise ValueError(f"joints must have shape (N={batch}, people, joints, 2); "
                         f"got {tuple(joints.shape)}")
    num_people, num_joints = joints.shape[1:3]
    if tags.dim() == 4 and tags.shape[1] != num_joints:
        raise ValueError(f"HAE needs one tag map per keypoint (MODEL.TAG_PER_JOINT true): got "
                         f"{tags.shape[1]} tag channels for {num_joints} keypoints")
    flat = tags.reshape(batch, -1)
    if flat.shape[1] % num_joints:
        raise ValueError(f"HAE needs one tag map per keypoint (MODEL.TAG_PER_JOINT true): "
                         f"{flat.shape[1]} tag values per image are not {num_joints} maps")
    if not groups:
        raise ValueError("HAE needs at least one keypoint group (use ae_loss without groups)")
    if table is None:
        table = group_table(groups, num_joints, flat.device)
    num_groups = table.group_sizes.shape[0] - 1

    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    index = joints[..., 0].long()
    gathered = flat.gather(1, index.reshape(batch, -1)).reshape(batch, num_people, num_joints)
    visible = joints[..., 1] > 0  # (N, M, J): slot j of a person, not keypoint type j
    keypoint_type = torch.div(index, flat.shape[1] // num_joints, rounding_mode="floor")
    keypoint_type = keypoint_type.clamp(0, num_joints - 1)
    slot_group = torch.take(table.group_of_type, keypoint_type)  # (N, M, J), G = no group
    grouped_weight = (visible & (slot_group < num_groups)).to(flat.dtype)
    visible_weight = visible.to(flat.dtype)

    count = visible_weight.sum(dim=2)  # (N, M)
    present = count > 0
    instance_mean = (gathered * visible_weight).sum(dim=2) / count.clamp(min=1)
    # Every term is a sum over slots, so each slot carries its own group's mean and visible
    # count (gathered back from per-group sums) instead of a (N, M, G, J) membership tensor.
    group_sum = gathered.new_zeros(batch, num_people, num_groups + 1).scatter_add(
        2, slot_group, gathered * grouped_weight)
    with torch.no_grad():
        group_count = torch.zeros_like(group_sum).scatter_add_(2, slot_group, grouped_weight)
        slot_count = group_count.gather(2, slot_group).clamp(min=1)  # (N, M, J)
    slot_group_mean = group_sum.gather(2, slot_group) / slot_count

    pull_weight = grouped_weight / slot_count
    to_group = (gathered - slot_group_mean).pow(2) * torch.take(
        table.group_sizes.to(flat.dtype), slot_group)
    if focal_pull and table.can_flag.numel():
        members = (slot_group[:, :, None, :] == table.can_flag[:, None]) & visible[:, :, None, :]
        outliers = tukey_outliers(gathered, members, focal_fence).any(dim=2)
        to_group = torch.where(outliers, to_group * focal_weight, to_group)
    # keypoint-to-group and group-to-instance are both sums over a person's grouped slots; the
    # latter's (m_n - m_ng)^2 is spread evenly over the group's visible members.
    group_terms = (weights[1] * to_group
                   + weights[2] * (instance_mean[..., None] - slot_group_mean).pow(2))
    per_person = (group_terms * pull_weight).sum(dim=2)  # (N, M), 0 for empty slots
    if weights[0]:
        spread = ((gathered - instance_mean[..., None]).pow(2) * visible_weight).sum(dim=2)
        per_person = per_person + weights[0] * num_joints * spread / count.clamp(min=1)
    people = present.sum(dim=1).to(flat.dtype)
    pull = per_person.sum(dim=1) / (num_joints * people.clamp(min=1))
    return instance_push(instance_mean, present, loss_type), pull


def instance_push(means: torch.Tensor, present: torch.Tensor, loss_type: str) -> torch.Tensor:
    """AE's push on the person means -> (N,): 0.5 * sum_{a != b} F(m_a - m_b) / (P (P - 1)).

    means: (N, M) mean tag of each slot's person; present: (N, M) bool, the P people that count.
    F(d) = exp(-d^2) ('exp') or max(0, 1 - |d|) ('max'); 0 for P < 2. ``ae_loss``'s push.
    """
    difference = means[:, :, None] - means[:, None, :]
    if loss_type == "exp":
        term = torch.exp(-difference.pow(2))
    else:
        term = (1 - difference.abs()).clamp(min=0)
    distinct = ~torch.eye(means.shape[1], dtype=torch.bool, device=means.device)
    pairs = present[:, :, None] & present[:, None, :] & distinct
    people = present.sum(dim=1).to(means.dtype)
    return 0.5 * (term * pairs).sum(dim=(1, 2)) / (people * (people - 1)).clamp(min=1)


class HierarchicalAELoss(nn.Module):
    """Module form of ``hae_loss`` for one dataset's groups; plain AE when there are none.

    num_joints: K; groups: ``KeypointInfo.get_keypoint_groups(DATASET.KEYPOINT_GROUPS)``;
    loss_type: LOSS.AE_LOSS_TYPE; pull_weights: LOSS.HAE_PULL_WEIGHTS; focal_pull, focal_fence,
    focal_weight: LOSS.FOCAL_PULL, LOSS.FOCAL_FENCE, LOSS.FOCAL_WEIGHT. forward(tags, joints) ->
    (push (N,), pull (N,)), as ``ae_loss``.
    """

    def __init__(self, num_joints: int, groups: Sequence[Sequence[int]], loss_type: str = "exp",
                 pull_weights: Sequence[float] = HAE_PULL_WEIGHTS, focal_pull: bool = False,
                 focal_fence: float = FOCAL_FENCE, focal_weight: float = FOCAL_WEIGHT):
        super().__init__()
        if loss_type not in AE_LOSS_TYPES:
            raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {loss_type!r}")
        weights = tuple(float(w) for w in pull_weights)
        if len(weights) != 3 or any(w < 0 for w in weights):
            raise ValueError(f"HAE pull weights must be 3 non-negative numbers [keypoint-to-"
                             f"instance, keypoint-to-group, group-to-instance]; got "
                             f"{list(pull_weights)}")
        if focal_fence < 0 or focal_weight < 0:
            raise ValueError(f"focal pulling needs a non-negative fence multiplier and weight; got "
                             f"{focal_fence} and {focal_weight}")
        self.num_joints = int(num_joints)
        self.groups = check_keypoint_groups(groups, self.num_joints)
        self.loss_type = loss_type
        self.pull_weights = weights
        self.focal_pull = bool(focal_pull)
        self.focal_fence = float(focal_fence)
        self.focal_weight = float(focal_weight)
        if self.groups:
            table = group_table(self.groups, self.num_joints)
        else:
            logger.warning("no keypoint groups for this dataset: the hierarchical tag loss falls "
                           "back to plain associative embedding")
            table = GroupTable(*(torch.zeros(0, dtype=torch.long) for _ in GroupTable._fields))
        for name, tensor in table._asdict().items():
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, tags: torch.Tensor,
                joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.groups:
            return ae_loss(tags, joints, self.loss_type)
        table = GroupTable(*(getattr(self, name).to(tags.device) for name in GroupTable._fields))
        return hae_loss(tags, joints, self.groups, self.loss_type, self.pull_weights,
                        self.focal_pull, self.focal_fence, self.focal_weight, table)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, loss_type={self.loss_type!r}, "
                f"pull_weights={self.pull_weights}, focal_pull={self.focal_pull}, "
                f"focal_fence={self.focal_fence}, focal_weight={self.focal_weight}")
