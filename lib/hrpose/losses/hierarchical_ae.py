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
groups with constant tables (``GroupTable``): every term is a weighted sum over slots, where
each slot carries its group's mean; what depends on the visibility alone (counts, weights) is
computed without autograd, and Tukey's fences run only on the slots of groups that can flag,
so the differentiable part is a handful of ops.
"""

from __future__ import annotations

import functools
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
    """``hae_loss``'s constants for one grouping of K keypoint types and one set of pull weights.

    Tables are indexed by slot. Slot k holds keypoint k unless a group that fences can flag (5 or
    more members) is not a run of consecutive keypoints: then ``slot_order`` moves its members
    next to each other, so that focal pulling reads each such group as one slice of the slots.
    """

    slot_order: torch.Tensor | None  # (K,) int64: the keypoint in each slot; None: slot k is k
    # (K, K + 1): 1 where two slots' keypoints share a group (the (K, K) same-group matrix S),
    # then a column of ones, so that one product gives the visible members and the tag sums of
    # each slot's group and of the whole person.
    counting: torch.Tensor
    # (2, K): each slot's keypoint-to-group and group-to-instance weights before its group's
    # count, w_l |G| / K and w_h / K (0 for a keypoint in no group): the loss's 1 / K is here.
    level_scales: torch.Tensor
    quartile_positions: torch.Tensor  # (K + 1, 2) int64: Q1 and Q3 positions for m members
    # (start, stop) slots of each group with 5 or more members, the only ones fences can flag.
    focal_ranges: tuple[tuple[int, int], ...]
    pull_weights: tuple[float, float, float]  # (w_o, w_l, w_h)
    dtype: torch.dtype  # the dtype the weights were rounded to, once

    def to(self, device: torch.device | str | None) -> GroupTable:
        """The same tables on ``device``."""
        return self._replace(**{name: value.to(device) for name, value in self._asdict().items()
                                if isinstance(value, torch.Tensor)})


def group_table(groups: Sequence[Sequence[int]], num_joints: int,
                pull_weights: Sequence[float] = HAE_PULL_WEIGHTS,
                device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> GroupTable:
    """The constants of ``groups`` (checked) and ``pull_weights`` on ``device``, the weights
    rounded once to ``dtype``."""
    groups = check_keypoint_groups(groups, num_joints)
    weights = check_pull_weights(pull_weights)
    # With m <= 4 members Q1 and Q3 are the minimum and the maximum, so no fence can flag one.
    focal_groups = [sorted(group) for group in groups if len(group) >= 5]
    order: list[int] = []
    for keypoint in range(num_joints):
        if keypoint not in order:
            order += next((group for group in focal_groups if keypoint in group), [keypoint])
    slot = {keypoint: position for position, keypoint in enumerate(order)}
    membership = torch.zeros(num_joints, len(groups), dtype=torch.float64)
    group_size = torch.zeros(num_joints, dtype=torch.float64)
    for g, group in enumerate(groups):
        slots = [slot[keypoint] for keypoint in group]
        membership[slots, g] = 1
        group_size[slots] = len(group)
    focal_ranges = tuple((slot[group[0]], slot[group[0]] + len(group)) for group in focal_groups)
    counting = torch.cat([membership @ membership.T, torch.ones(num_joints, 1,
                                                                dtype=torch.float64)], dim=1)
    slot_order = None if order == list(range(num_joints)) else torch.tensor(order)
    constants = (counting, torch.stack([weights[1] / num_joints * group_size,
                                        weights[2] / num_joints * membership.sum(dim=1)]))
    return GroupTable(slot_order, *(tensor.to(dtype) for tensor in constants),
                      quartile_positions(num_joints), focal_ranges, weights, dtype).to(device)


def check_pull_weights(pull_weights: Sequence[float]) -> tuple[float, float, float]:
    """The three pull weights as floats, after checking there are three and none is negative."""
    weights = tuple(float(w) for w in pull_weights)
    if len(weights) != 3 or any(w < 0 for w in weights):
        raise ValueError(f"HAE pull weights must be 3 non-negative numbers [keypoint-to-instance, "
                         f"keypoint-to-group, group-to-instance]; got {list(pull_weights)}")
    return weights


def quartile_positions(size: int) -> torch.Tensor:
    """(size + 1, 2) int64: the sorted positions of Q1 and Q3 among m = 0..size values, NumPy's
    'lower' 25th and 'higher' 75th percentiles: floor((m - 1) / 4) and ceil(3 (m - 1) / 4)."""
    last = (torch.arange(size + 1) - 1).clamp(min=0)  # m - 1
    return torch.stack((last // 4, (3 * last + 3) // 4), dim=1)


def tukey_outliers(values: torch.Tensor, members: torch.Tensor, fence: float,
                   positions: torch.Tensor | None = None,
                   member_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Which members are outside their set's Tukey fences, Q1 - fence IQR and Q3 + fence IQR.

    values: broadcastable to members; members: (..., J) bool, one set over the last axis. Q1 and
    Q3 are ``quartile_positions`` of the members' sorted values. positions: that table for J
    (or more) values; member_counts: (...) int64, the members of each set; both only to skip
    recomputing them. Returns (..., J) bool, False outside the members. No gradient.
    """
    if positions is None:
        positions = quartile_positions(members.shape[-1]).to(members.device)
    with torch.no_grad():
        # Non-members are NaN: they sort last, and every comparison with them is False.
        values = torch.where(members, values, _constant(float("nan"), values.device, values.dtype))
        ordered = values.sort(dim=-1).values
        if member_counts is None:
            member_counts = members.sum(dim=-1)
        quartiles = ordered.gather(-1, positions[member_counts])  # (..., 2): Q1, Q3
        spread = quartiles.diff(dim=-1).mul_(fence)
        # Q1 - spread and Q3 + spread in one op (the products with -1 and 1 are exact).
        fences = torch.addcmul(quartiles, spread,
                               _constant((-1.0, 1.0), values.device, values.dtype))
        return (values < fences[..., :1]) | (values > fences[..., 1:])


@functools.lru_cache(maxsize=None)
def _constant(value: float | tuple[float, ...], device: torch.device,
              dtype: torch.dtype) -> torch.Tensor:
    """``value`` as a tensor, made once per device and dtype (a float gives a 0-dim tensor)."""
    return torch.tensor(value, dtype=dtype, device=device)


class _HierarchicalPull(torch.autograd.Function):
    """The pull of ``hae_loss`` and the person means, with a hand-written gradient.

    Per slot k of a person (tag g_k, visible v_k, n_k visible members in its group, n visible
    keypoints; S the (K, K) same-group matrix), with the slot's group mean s_k = sum_l S_kl v_l
    g_l / n_k and the instance mean i = sum_l v_l g_l / n (both given, from one product with the
    counting table [S | 1]), over the P people of an image,

      pull = sum_k [c1_k (g_k - s_k)^2 + c2_k (i - s_k)^2 + c0_k (g_k - i)^2] / P.

    With u = c1 (g - s), w = c2 (i - s), z = c0 (g - i), the gradient is
    2 [u + z - (v / n_k) ((u + w) @ S) + (v / n) (sum w - sum z)] / P (the c's of a group's slots
    share its n_k). It is formed in the forward, from the terms the pull has just computed, and
    the backward only scales it: a few whole-tensor ops instead of autograd's graph of some forty
    small ones, which dominate the cost of the loss at this size.
    """

    @staticmethod
    def forward(ctx, gathered, means, same_group, to_group_weight, to_instance_weight,
                spread_weight, group_weight, instance_weight, people):
        num_joints = gathered.shape[-1]
        group_mean, instance_mean = means[..., :num_joints], means[..., num_joints:]
        to_group = gathered - group_mean
        to_instance = instance_mean - group_mean
        weighted_group = to_group * to_group_weight
        weighted_instance = to_instance * to_instance_weight
        per_slot = to_group.mul_(weighted_group).addcmul_(weighted_instance, to_instance)
        direct = weighted_group
        to_mean = weighted_instance.sum(dim=2, keepdim=True)
        if spread_weight is not None:
            spread = gathered - instance_mean
            weighted_spread = spread * spread_weight
            per_slot.addcmul_(weighted_spread, spread)
            direct = direct + weighted_spread
            to_mean -= weighted_spread.sum(dim=2, keepdim=True)
        if ctx.needs_input_grad[0]:
            through_groups = weighted_instance.add_(weighted_group) @ same_group
            gradient = torch.addcmul(direct, group_weight, through_groups, value=-1)
            ctx.save_for_backward(gradient.addcmul_(to_mean, instance_weight), instance_weight,
                                  people)
        return per_slot.sum(dim=(1, 2)).div_(people), instance_mean[..., 0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pull, grad_mean):
        gradient, instance_weight, people = ctx.saved_tensors
        scale = (grad_pull / people).mul_(2).view(-1, 1, 1)
        grad = (gradient * scale).addcmul_(instance_weight, grad_mean[..., None])
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
    K, pull_weights)`` on the tags' device, to skip rebuilding it; it is rebuilt when its weights
    or dtype do not fit.
    """
    if loss_type not in AE_LOSS_TYPES:
        raise ValueError(f"AE loss type must be one of {AE_LOSS_TYPES}, got {loss_type!r}")
    weights = check_pull_weights(pull_weights)
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
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    if (table is None or table.pull_weights != weights or table.dtype != flat.dtype
            or table.counting.dtype != flat.dtype):
        table = group_table(groups, num_joints, weights, flat.device, flat.dtype)
    if table.slot_order is not None:
        joints = joints.index_select(2, table.slot_order)
    index = joints[..., 0].long().reshape(batch, -1)
    gathered = flat.gather(1, index).reshape(batch, num_people, num_joints)
    # Everything the differentiable part takes as constants: the means, and the weights of
    # every slot's terms.
    with torch.no_grad():
        visible = joints[..., 1] > 0  # (N, M, K)
        # One product gives each slot's group tag sum and count of visible members and, last,
        # the person's. Its two operands are written straight into one buffer, so that no
        # stacking copy is needed.
        tags_and_visible = flat.new_empty((2, batch, num_people, num_joints))
        visible_weight = tags_and_visible[1].copy_(visible)
        torch.mul(gathered, visible_weight, out=tags_and_visible[0])
        sums, counts = tags_and_visible @ table.counting
        present = counts[..., num_joints] > 0  # (N, M)
        inverse_counts = counts.clamp(min=1).reciprocal_()
        means = sums.mul_(inverse_counts)
        # The group-to-instance term (m_n - m_ng)^2 is spread evenly over the group's members.
        group_weight = visible_weight * inverse_counts[..., :num_joints]
        instance_weight = visible_weight * inverse_counts[..., num_joints:]
        level_weights = group_weight[..., None, :] * table.level_scales  # (N, M, 2, K)
        to_group_weight, to_instance_weight = level_weights[..., 0, :], level_weights[..., 1, :]
        if focal_pull:
            for start, stop in table.focal_ranges:
                outliers = tukey_outliers(gathered[..., start:stop], visible[..., start:stop],
                                          focal_fence, table.quartile_positions,
                                          counts[..., start].long())
                # Multiplies the outliers' keypoint-to-group weights by focal_weight.
                focal = to_group_weight[..., start:stop]
                focal.addcmul_(focal, outliers, value=focal_weight - 1)
        spread_weight = None
        if weights[0]:  # keypoint-to-instance: plain AE's pull (times K, over K), times w_o
            spread_weight = weights[0] * instance_weight
        people = present.sum(dim=1, dtype=flat.dtype).clamp_(min=1)
    pull, instance_mean = _HierarchicalPull.apply(
        gathered, means, table.counting[:, :num_joints], to_group_weight, to_instance_weight,
        spread_weight, group_weight, instance_weight, people)
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
        weights = check_pull_weights(pull_weights)
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
        if not self.groups:
            logger.warning("no keypoint groups for this dataset: the hierarchical tag loss falls "
                           "back to plain associative embedding")
            return
        # The table's tensors are buffers, so that they follow the module's device.
        table = group_table(self.groups, self.num_joints, weights)
        self._table_buffers, self._table_fields = [], {}
        for name, value in table._asdict().items():
            if isinstance(value, torch.Tensor) or value is None:
                self.register_buffer(name, value, persistent=False)
                self._table_buffers.append(name)
            else:
                self._table_fields[name] = value

    def forward(self, tags: torch.Tensor,
                joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.groups:
            return ae_loss(tags, joints, self.loss_type)
        table = GroupTable(**{name: getattr(self, name) for name in self._table_buffers},
                           **self._table_fields)
        if table.counting.device != tags.device:
            table = table.to(tags.device)
        return hae_loss(tags, joints, self.groups, self.loss_type, self.pull_weights,
                        self.focal_pull, self.focal_fence, self.focal_weight, table)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, loss_type={self.loss_type!r}, "
                f"pull_weights={self.pull_weights}, focal_pull={self.focal_pull}, "
                f"focal_fence={self.focal_fence}, focal_weight={self.focal_weight}")
