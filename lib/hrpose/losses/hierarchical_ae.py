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
follows from its type: slot j of a person is keypoint j, as ``encode_ae_tags`` lays the slots out
(the released codec packed the visible keypoints into the first slots while its loss read the
group off the slot, so groups landed on the wrong keypoints whenever an earlier one was missing),
and (c) the groups are the dataset's own. Everything is vectorised over images, people and
groups with constant (keypoint x group) tables: every term is a weighted sum over slots, where
each slot carries its group's mean; what depends on the visibility alone (counts, weights,
Tukey membership) is computed without autograd, so the differentiable part is a handful of ops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .associative_embedding import AE_LOSS_TYPES, ae_loss, instance_push

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
    """``hae_loss``'s constant tables for G groups of K keypoint types (slot k is keypoint k)."""

    # (K, K + 1) float32: 1 where two keypoints share a group (the (K, K) "same group" matrix),
    # then a column of ones, so that one product counts group members and keypoints alike.
    counting: torch.Tensor
    in_group: torch.Tensor  # (K,) float32: 1 for a keypoint in some group
    group_size: torch.Tensor  # (K,) float32: the full size of the keypoint's group (0: none)
    flaggable: torch.Tensor  # (F, K) bool: the members of each group with 5 or more members
    quartile_positions: torch.Tensor  # (K + 1, 2) int64: Q1 and Q3 positions for m members


def group_table(groups: Sequence[Sequence[int]], num_joints: int,
                device: torch.device | str | None = None) -> GroupTable:
    """The lookup tables of ``groups`` (checked) on ``device``."""
    groups = check_keypoint_groups(groups, num_joints)
    membership = torch.zeros(num_joints, len(groups))
    group_size = torch.zeros(num_joints)
    for g, group in enumerate(groups):
        membership[list(group), g] = 1
        group_size[list(group)] = len(group)
    # With m <= 4 members Q1 and Q3 are the minimum and the maximum, so no fence can flag one.
    flaggable = membership.T[membership.sum(dim=0) >= 5] > 0
    counting = torch.cat([membership @ membership.T, torch.ones(num_joints, 1)], dim=1)
    table = GroupTable(counting, membership.sum(dim=1), group_size, flaggable,
                       quartile_positions(num_joints))
    return GroupTable(*(tensor.to(device) for tensor in table))


def quartile_positions(size: int) -> torch.Tensor:
    """(size + 1, 2) int64: the sorted positions of Q1 and Q3 among m = 0..size values, NumPy's
    'lower' 25th and 'higher' 75th percentiles: floor((m - 1) / 4) and ceil(3 (m - 1) / 4)."""
    last = (torch.arange(size + 1) - 1).clamp(min=0)  # m - 1
    return torch.stack((last // 4, (3 * last + 3) // 4), dim=1)


def tukey_outliers(values: torch.Tensor, members: torch.Tensor, fence: float,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
    """Which members are outside their set's Tukey fences, Q1 - fence IQR and Q3 + fence IQR.

    values: broadcastable to members; members: (..., J) bool, one set over the last axis. Q1 and
    Q3 are ``quartile_positions`` of the members' sorted values. positions: that table for J,
    to skip rebuilding it. Returns (..., J) bool, False outside the members. No gradient.
    """
    if positions is None:
        positions = quartile_positions(members.shape[-1]).to(members.device)
    with torch.no_grad():
        # Non-members are NaN: they sort last, and every comparison with them is False.
        values = torch.where(members, values, float("nan"))
        ordered = values.sort(dim=-1).values
        quartiles = ordered.gather(-1, positions[members.sum(dim=-1)])  # (..., 2): Q1, Q3
        spread = fence * (quartiles[..., 1:] - quartiles[..., :1])
        return (values < quartiles[..., :1] - spread) | (values > quartiles[..., 1:] + spread)


class _HierarchicalPull(torch.autograd.Function):
    """The pull of ``hae_loss`` and the person means, with a hand-written gradient.

    Per slot k of a person (tag g_k, instance mean i = sum_k b_k g_k, the slot's group mean
    s_k = sum_l A_kl g_l over the visible members of its group):

      pull = norm * sum_k [c1_k (g_k - s_k)^2 + c2_k (i - s_k)^2 + c0_k (g_k - i)^2]

    The gradient is 2 norm [u + z - A^T (u + v) + b (sum v - sum z)] with u = c1 (g - s),
    v = c2 (i - s), z = c0 (g - i), and A^T x = grouped * ((x / group count) @ same_group): a
    few whole-tensor ops instead of autograd's graph of some forty small ones, which dominate
    the cost of the loss at this size.
    """

    @staticmethod
    def forward(ctx, gathered, instance_weight, grouped, inverse_group_count, same_group,
                to_group_weight, to_instance_weight, spread_weight, normaliser):
        instance_mean = (gathered * instance_weight).sum(dim=2, keepdim=True)
        slot_group_mean = ((gathered * grouped) @ same_group) * inverse_group_count
        to_group = gathered - slot_group_mean
        to_instance = instance_mean - slot_group_mean
        weighted_group = to_group * to_group_weight
        weighted_instance = to_instance * to_instance_weight
        per_slot = weighted_group * to_group + weighted_instance * to_instance
        weighted_spread = None
        if spread_weight is not None:
            spread = gathered - instance_mean
            weighted_spread = spread * spread_weight
            per_slot = per_slot + weighted_spread * spread
        ctx.save_for_backward(weighted_group, weighted_instance, weighted_spread, instance_weight,
                              grouped, inverse_group_count, same_group, normaliser)
        return per_slot.sum(dim=(1, 2)) * normaliser, instance_mean[..., 0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pull, grad_mean):
        (weighted_group, weighted_instance, weighted_spread, instance_weight, grouped,
         inverse_group_count, same_group, normaliser) = ctx.saved_tensors
        scale = (2 * grad_pull * normaliser)[:, None, None]
        back_to_slots = ((weighted_group + weighted_instance) * inverse_group_count) @ same_group
        direct = weighted_group
        to_mean = weighted_instance.sum(dim=2, keepdim=True)
        if weighted_spread is not None:
            direct = direct + weighted_spread
            to_mean = to_mean - weighted_spread.sum(dim=2, keepdim=True)
        grad = ((direct - grouped * back_to_slots) * scale
                + instance_weight * (to_mean * scale + grad_mean[..., None]))
        return grad, None, None, None, None, None, None, None, None


def hae_loss(tags: torch.Tensor, joints: torch.Tensor, groups: Sequence[Sequence[int]],
             loss_type: str = "exp", pull_weights: Sequence[float] = HAE_PULL_WEIGHTS,
             focal_pull: bool = False, focal_fence: float = FOCAL_FENCE,
             focal_weight: float = FOCAL_WEIGHT, table: GroupTable | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """HAE's push and pull per image -> (push (N,), pull (N,)); the formulas are the module's.

    tags: (N, K, H, W), one tag map per keypoint type (MODEL.TAG_PER_JOINT), or the same
    flattened to (N, K * H * W) or (N, K * H * W, 1). joints: (N, M, K, 2) int (flat index
    k * H * W + y * W + x, visible) from ``encode_ae_tags``: slot k of a person is keypoint k.
    groups: disjoint lists of keypoint types (at least one group). pull_weights:
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

    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    counting, in_group, group_size = table.counting, table.in_group, table.group_size
    if counting.dtype != flat.dtype:
        counting, in_group, group_size = (tensor.to(flat.dtype)
                                          for tensor in (counting, in_group, group_size))
    same_group = counting[:, :num_joints]
    index = joints[..., 0].long().reshape(batch, -1)
    gathered = flat.gather(1, index).reshape(batch, num_people, num_joints)
    # What depends on the visibility alone: the weights of every slot's terms.
    with torch.no_grad():
        visible = joints[..., 1] > 0  # (N, M, K)
        visible_weight = visible.to(flat.dtype)
        present = visible.any(dim=2)  # (N, M)
        # One product gives each slot's count of visible group members and, last, the
        # person's count of visible keypoints.
        inverse_counts = (visible_weight @ counting).clamp_(min=1).reciprocal_()
        inverse_group_count = inverse_counts[..., :num_joints]
        instance_weight = visible_weight * inverse_counts[..., num_joints:]
        grouped = visible_weight * in_group
        # The group-to-instance term (m_n - m_ng)^2 is spread evenly over the group's members.
        pull_weight = grouped * inverse_group_count
        to_group_weight = (weights[1] * group_size) * pull_weight
        if focal_pull and table.flaggable.numel():
            members = visible[..., None, :] & table.flaggable  # (N, M, F, K)
            outliers = tukey_outliers(gathered[..., None, :], members, focal_fence,
                                      table.quartile_positions)
            outliers = outliers[:, :, 0] if outliers.shape[2] == 1 else outliers.any(dim=2)
            to_group_weight = torch.where(outliers, to_group_weight * focal_weight,
                                          to_group_weight)
        spread_weight = (weights[0] * num_joints) * instance_weight if weights[0] else None
        people = present.sum(dim=1, dtype=flat.dtype)
        normaliser = people.clamp_(min=1).mul_(num_joints).reciprocal_()
    pull, instance_mean = _HierarchicalPull.apply(
        gathered, instance_weight, grouped, inverse_group_count, same_group, to_group_weight,
        weights[2] * pull_weight, spread_weight, normaliser)
    return instance_push(instance_mean, present, loss_type), pull


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
            table = GroupTable(*(torch.zeros(0) for _ in GroupTable._fields))
        for name, tensor in table._asdict().items():
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, tags: torch.Tensor,
                joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.groups:
            return ae_loss(tags, joints, self.loss_type)
        table = GroupTable(*(getattr(self, name) for name in GroupTable._fields))
        if table.counting.device != tags.device:
            table = GroupTable(*(tensor.to(tags.device) for tensor in table))
        return hae_loss(tags, joints, self.groups, self.loss_type, self.pull_weights,
                        self.focal_pull, self.focal_fence, self.focal_weight, table)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, loss_type={self.loss_type!r}, "
                f"pull_weights={self.pull_weights}, focal_pull={self.focal_pull}, "
                f"focal_fence={self.focal_fence}, focal_weight={self.focal_weight}")
