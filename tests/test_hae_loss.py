"""HAE's hierarchical AE loss: each pull level, focal pulling, the AE limit, the dataset groups."""

import logging

import numpy as np
import pytest
import torch

from hrpose.codecs.associative_embedding import encode_ae_tags
from hrpose.datasets.metadata import (
    DEFAULT_GROUP_SCHEME,
    KEYPOINT_INFO,
    KeypointInfo,
    get_keypoint_info,
)
from hrpose.losses.associative_embedding import ae_loss
from hrpose.losses.hierarchical_ae import HierarchicalAELoss, group_table, hae_loss, tukey_outliers

NUM_JOINTS, SIZE, SLOTS = 9, 4, 5
# A 6-member group (fences can flag with 5 or more visible members), a pair and a singleton.
GROUPS = ((0, 1, 2, 3, 4, 5), (6, 7), (8,))


def numpy_fences_flag(values, fence):
    """Tukey's fences with the reference's quartiles: NumPy's 'lower' Q1 and 'higher' Q3."""
    values = np.asarray(values, dtype=np.float64)
    first = np.quantile(values, 0.25, method="lower")
    third = np.quantile(values, 0.75, method="higher")
    spread = third - first
    return (values < first - fence * spread) | (values > third + fence * spread)


def loop_hae_loss(tag_maps, people, groups, loss_type, weights, focal=False, fence=1.5,
                  focal_weight=2.0):
    """HAE by hand from the raw keypoints: loops over images, people, groups and keypoints.

    tag_maps: (N, K, S, S); people: per image an array (P, K, 3) of (x, y, v) on the tag map.
    Returns (push (N,), pull (N,), flagged): flagged lists (image, person, keypoint) outliers.
    """
    num_joints, size = tag_maps.shape[1], tag_maps.shape[-1]
    w_instance, w_group, w_level = weights
    pushes, pulls, flagged = [], [], []
    for image, persons in enumerate(people):
        means, total = [], 0.0
        for p, person in enumerate(persons):
            tags = {}
            for k, (x, y, v) in enumerate(person):
                if v > 0 and 0 <= x < size and 0 <= y < size:
                    tags[k] = tag_maps[image, k, int(y), int(x)]
            if not tags:
                continue
            mean = sum(tags.values()) / len(tags)
            means.append(mean)
            instance = num_joints * sum((t - mean) ** 2 for t in tags.values()) / len(tags)
            to_group, group_level = 0.0, 0.0
            for group in groups:
                keys = [k for k in group if k in tags]
                if not keys:
                    continue
                group_mean = sum(tags[k] for k in keys) / len(keys)
                factors = [1.0] * len(keys)
                if focal:
                    outside = numpy_fences_flag([float(tags[k].detach()) for k in keys], fence)
                    factors = [focal_weight if flag else 1.0 for flag in outside]
                    flagged += [(image, p, k) for k, flag in zip(keys, outside) if flag]
                squared = sum(f * (tags[k] - group_mean) ** 2 for f, k in zip(factors, keys))
                to_group = to_group + len(group) * squared / len(keys)
                group_level = group_level + (mean - group_mean) ** 2
            total = total + w_instance * instance + w_group * to_group + w_level * group_level
        count = len(means)
        zero = tag_maps.sum() * 0
        pulls.append(total / (num_joints * count) + zero if count else zero)
        push = zero
        for a in range(count):
            for b in range(count):
                if a != b:
                    difference = means[a] - means[b]
                    if loss_type == "exp":
                        push = push + torch.exp(-difference ** 2)
                    else:
                        push = push + torch.clamp(1 - torch.abs(difference), min=0)
        pushes.append(push / (count * (count - 1)) * 0.5 if count > 1 else zero)
    return torch.stack(pushes), torch.stack(pulls), flagged


def person(visible, row, outside=()):
    """(K, 3) keypoints of one person in tag-map row ``row``: keypoint k at x = k % S if visible;
    the keypoints in ``outside`` are labelled but off the map."""
    keypoints = np.zeros((NUM_JOINTS, 3))
    for k in visible:
        keypoints[k] = (k % SIZE, row, 2)
    for k in outside:
        keypoints[k] = (SIZE + 5, row, 2)
    return keypoints


def tiny_batch():
    """Four images: (0) five people, among them one with every keypoint, one with only two
    visible members in the big group and one in the pair, one with nothing usable, one with five
    big-group members and an outlier, one with four; (1) one person; (2) nobody; (3) two people
    with close tags. People missing early keypoints make codec slots differ from keypoint types.
    """
    generator = torch.Generator().manual_seed(3)
    tag_maps = torch.randn(4, NUM_JOINTS, SIZE, SIZE, generator=generator, dtype=torch.float64)
    tag_maps = tag_maps * 0.2
    people = [
        np.stack([person(range(NUM_JOINTS), 0), person((1, 4, 7), 1),
                  person((), 2, outside=(0, 3)), person((1, 2, 3, 4, 5, 7, 8), 2),
                  person((0, 1, 2, 3, 8), 3)]),
        np.stack([person((0, 6, 7, 8), 1)]),
        np.zeros((0, NUM_JOINTS, 3)),
        np.stack([person((0, 1, 2, 3, 4, 5), 0), person((2, 8), 1)]),
    ]
    offsets = {0: [0.0, 0.8, 0.0, -0.6, 1.5], 1: [1.0], 3: [0.0, 0.4]}
    for image, shifts in offsets.items():
        for row, shift in zip((0, 1, 2, 2, 3) if image == 0 else (0, 1), shifts):
            tag_maps[image, :, row] += shift
    # Outliers: person 0 keypoint 2 (all 6 big-group members visible), person 3 keypoint 4 (5
    # visible); and extreme values that the fences cannot flag: person 1's two big-group members,
    # person 4's four.
    tag_maps[0, 2, 0, 2] += 3.0
    tag_maps[0, 4, 2, 0] -= 3.0
    tag_maps[0, 1, 1, 1] -= 4.0
    tag_maps[0, 4, 1, 0] += 4.0
    tag_maps[0, 3, 3, 3] += 5.0
    joints = np.stack([encode_ae_tags(p, SIZE, SLOTS, num_joints=NUM_JOINTS) for p in people])
    return tag_maps, people, torch.from_numpy(joints)


@pytest.mark.parametrize("loss_type", ["exp", "max"])
@pytest.mark.parametrize("weights", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                     (0.0, 1.0, 1.5), (0.3, 1.0, 1.5)])
def test_each_pull_level_and_push_match_the_loops(loss_type, weights):
    tag_maps, people, joints = tiny_batch()
    # Slot k of a person is keypoint k, also when earlier keypoints are missing (the loss reads
    # the keypoint type from the slot).
    assert joints[0, 1, 0, 1] == 0 and joints[0, 1, 1, 0] // SIZE ** 2 == 1
    assert joints[0, 3, 0, 1] == 0 and joints[0, 3, 5, 0] // SIZE ** 2 == 5
    tag_maps.requires_grad_(True)
    push, pull = hae_loss(tag_maps, joints, GROUPS, loss_type, weights)
    expected_push, expected_pull, _ = loop_hae_loss(tag_maps, people, GROUPS, loss_type, weights)
    assert push.shape == pull.shape == (4,)
    torch.testing.assert_close(push, expected_push, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    assert pull[0] > 0 and pull[1] > 0 and pull[3] > 0 and push[0] > 0 and push[3] > 0
    # One person: no push; nobody: nothing at all.
    assert push[1] == 0 and push[2] == 0 and pull[2] == 0
    gradient, = torch.autograd.grad((2 * push + pull).sum(), tag_maps)
    copy = tag_maps.detach().clone().requires_grad_(True)
    loop_push, loop_pull, _ = loop_hae_loss(copy, people, GROUPS, loss_type, weights)
    expected_gradient, = torch.autograd.grad((2 * loop_push + loop_pull).sum(), copy)
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weights", [(0.0, 1.0, 0.0), (0.0, 1.0, 1.5)])
def test_focal_pulling_matches_the_loops(weights):
    tag_maps, people, joints = tiny_batch()
    tag_maps.requires_grad_(True)
    push, pull = hae_loss(tag_maps, joints, GROUPS, "exp", weights, focal_pull=True,
                          focal_fence=1.5, focal_weight=2.0)
    expected_push, expected_pull, flagged = loop_hae_loss(tag_maps, people, GROUPS, "exp", weights,
                                                          focal=True)
    # Only the two planted outliers in groups of 6 and 5 visible members are flagged; the extreme
    # values in groups of 1, 2 and 4 visible members are not.
    assert sorted(flagged) == [(0, 0, 2), (0, 3, 4)]
    torch.testing.assert_close(push, expected_push, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    _, plain = hae_loss(tag_maps, joints, GROUPS, "exp", weights)
    assert pull[0] > plain[0]
    torch.testing.assert_close(pull[1:], plain[1:])
    # Another fence and weight.
    _, pull = hae_loss(tag_maps, joints, GROUPS, "exp", weights, focal_pull=True, focal_fence=0.5,
                       focal_weight=3.0)
    _, expected_pull, flagged = loop_hae_loss(tag_maps, people, GROUPS, "exp", weights,
                                              focal=True, fence=0.5, focal_weight=3.0)
    assert len(flagged) >= 2
    torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    gradient, = torch.autograd.grad(pull.sum(), tag_maps)
    copy = tag_maps.detach().clone().requires_grad_(True)
    _, loop_pull, _ = loop_hae_loss(copy, people, GROUPS, "exp", weights, focal=True, fence=0.5,
                                    focal_weight=3.0)
    expected_gradient, = torch.autograd.grad(loop_pull.sum(), copy)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-12)


def test_a_scattered_focal_group_matches_the_loops():
    # The same problem with the keypoint types relabelled, so that the six-member group is no
    # longer a run of consecutive keypoints: the loss reorders its slots and must not change.
    tag_maps, people, joints = tiny_batch()
    relabel = [3, 7, 0, 5, 1, 8, 2, 6, 4]  # keypoint k is called relabel[k]
    groups = tuple(tuple(relabel[k] for k in group) for group in GROUPS)
    assert group_table(groups, NUM_JOINTS).slot_order is not None
    assert group_table(GROUPS, NUM_JOINTS).slot_order is None
    scattered_maps = torch.empty_like(tag_maps)
    scattered_maps[:, relabel] = tag_maps
    scattered_people = []
    for persons in people:
        relabelled = np.zeros_like(persons)
        relabelled[:, relabel] = persons
        scattered_people.append(relabelled)
    scattered_joints = torch.from_numpy(np.stack([
        encode_ae_tags(p, SIZE, SLOTS, num_joints=NUM_JOINTS) for p in scattered_people]))
    scattered_maps.requires_grad_(True)
    push, pull = hae_loss(scattered_maps, scattered_joints, groups, "exp", (0.3, 1.0, 1.5),
                          focal_pull=True)
    expected_push, expected_pull, flagged = loop_hae_loss(
        scattered_maps, scattered_people, groups, "exp", (0.3, 1.0, 1.5), focal=True)
    assert sorted(flagged) == [(0, 0, relabel[2]), (0, 3, relabel[4])]
    torch.testing.assert_close(push, expected_push, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    gradient, = torch.autograd.grad((push + pull).sum(), scattered_maps)
    original = tag_maps.detach().clone().requires_grad_(True)
    push, pull = hae_loss(original, joints, GROUPS, "exp", (0.3, 1.0, 1.5), focal_pull=True)
    expected_gradient, = torch.autograd.grad((push + pull).sum(), original)
    torch.testing.assert_close(gradient[:, relabel], expected_gradient, rtol=1e-10, atol=1e-12)


def test_tables_are_rebuilt_when_they_do_not_fit():
    tag_maps, people, joints = tiny_batch()
    weights = (0.3, 1.0, 0.7)
    _, expected_pull, _ = loop_hae_loss(tag_maps, people, GROUPS, "exp", weights)
    # A table for other weights, or rounded to float32, is not used for float64 tags.
    for table in (group_table(GROUPS, NUM_JOINTS, (0.0, 1.0, 1.5), dtype=torch.float64),
                  group_table(GROUPS, NUM_JOINTS, weights)):
        _, pull = hae_loss(tag_maps, joints, GROUPS, "exp", weights, table=table)
        torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    # Nor are the module's float32 constants once the module is converted to float64.
    module = HierarchicalAELoss(NUM_JOINTS, GROUPS, "exp", weights).double()
    torch.testing.assert_close(module(tag_maps, joints)[1], expected_pull, rtol=1e-12,
                               atol=1e-12)


def test_tukey_outliers_against_numpy():
    generator = np.random.default_rng(0)
    for count in range(1, 10):
        for _ in range(20):
            values = generator.normal(size=count)
            values[generator.integers(count)] += generator.choice([-6.0, 6.0])
            members = np.ones((1, count), dtype=bool)
            flags = tukey_outliers(torch.from_numpy(values), torch.from_numpy(members), 1.5)
            assert flags[0].tolist() == numpy_fences_flag(values, 1.5).tolist()
            if count <= 4:  # the 'lower' / 'higher' quartiles are the extremes here
                assert not flags.any()
    # Two sets over the same values, with members left out and an empty set.
    values = torch.tensor([0.0, 0.1, 0.2, 0.1, 9.0, -50.0])
    members = torch.tensor([[True, True, True, True, True, False],
                            [False, False, False, False, False, False]])
    assert tukey_outliers(values, members, 1.5).tolist() == [
        [False, False, False, False, True, False], [False] * 6]


def test_small_numbers_by_hand():
    # One person, K = 3, tags 0, 2, 4 at keypoints 0, 1, 2; groups (0, 1) and (2,).
    tags = torch.tensor([[0.0, 2.0, 4.0]]).reshape(1, 3, 1, 1)
    joints = torch.tensor([[[[0, 1], [1, 1], [2, 1]]]])
    # Instance mean 2, group means 1 and 4: o = 3 * 8 / 3 = 8; l = 2 * 1 + 1 * 0 = 2;
    # h = (2 - 1)^2 + (2 - 4)^2 = 5; pull = (w_o o + w_l l + w_h h) / K.
    for weights, expected in (((1, 0, 0), 8 / 3), ((0, 1, 0), 2 / 3), ((0, 0, 1), 5 / 3),
                              ((0, 1, 1.5), 9.5 / 3)):
        push, pull = hae_loss(tags, joints, ((0, 1), (2,)), "exp", weights)
        assert push.item() == 0
        assert pull.item() == pytest.approx(expected)


@pytest.mark.parametrize("loss_type", ["exp", "max"])
def test_singleton_groups_give_plain_ae(loss_type):
    tag_maps, _, joints = tiny_batch()
    singletons = [(k,) for k in range(NUM_JOINTS)]
    expected_push, expected_pull = ae_loss(tag_maps, joints, loss_type)
    # Singletons have no keypoint-to-group spread (focal pulling cannot change it either); the
    # group-to-instance weight 0 leaves the instance term, which is AE's pull.
    for weights in ((1.0, 0.0, 0.0), (1.0, 0.7, 0.0)):
        push, pull = hae_loss(tag_maps, joints, singletons, loss_type, weights, focal_pull=True)
        torch.testing.assert_close(push, expected_push, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)
    module = HierarchicalAELoss(NUM_JOINTS, singletons, loss_type, (1.0, 1.0, 0.0))
    push, pull = module(tag_maps.reshape(4, -1, 1), joints)
    torch.testing.assert_close(pull, expected_pull, rtol=1e-12, atol=1e-12)


def test_no_groups_falls_back_to_plain_ae(caplog):
    tag_maps, _, joints = tiny_batch()
    with caplog.at_level(logging.WARNING, logger="hrpose.losses.hierarchical_ae"):
        module = HierarchicalAELoss(NUM_JOINTS, get_keypoint_info("mpii").get_keypoint_groups())
    assert "plain associative embedding" in caplog.text
    for actual, expected in zip(module(tag_maps, joints), ae_loss(tag_maps, joints, "exp")):
        torch.testing.assert_close(actual, expected)


def test_module_matches_the_function_and_float32_gradients_are_finite():
    tag_maps, _, joints = tiny_batch()
    tag_maps = tag_maps.float().requires_grad_(True)
    module = HierarchicalAELoss(NUM_JOINTS, GROUPS, "max", (0.0, 1.0, 1.5), focal_pull=True)
    push, pull = module(tag_maps, joints)
    expected = hae_loss(tag_maps, joints, GROUPS, "max", (0.0, 1.0, 1.5), focal_pull=True)
    torch.testing.assert_close(push, expected[0])
    torch.testing.assert_close(pull, expected[1])
    assert push.dtype == pull.dtype == torch.float32
    (push + pull).sum().backward()
    assert torch.isfinite(tag_maps.grad).all() and tag_maps.grad.abs().sum() > 0
    # Nobody in the whole batch: zeros, and a zero (finite) gradient.
    empty = torch.zeros_like(joints)
    tag_maps.grad = None
    push, pull = module(tag_maps, empty)
    assert push.abs().sum() == 0 and pull.abs().sum() == 0
    (push + pull).sum().backward()
    assert torch.isfinite(tag_maps.grad).all() and tag_maps.grad.abs().sum() == 0


def test_bad_arguments_name_the_problem():
    tag_maps, _, joints = tiny_batch()
    with pytest.raises(ValueError, match="more than one group"):
        HierarchicalAELoss(NUM_JOINTS, ((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="outside"):
        HierarchicalAELoss(NUM_JOINTS, ((0, 9),))
    with pytest.raises(ValueError, match="pull weights"):
        HierarchicalAELoss(NUM_JOINTS, GROUPS, pull_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="pull weights"):
        hae_loss(tag_maps, joints, GROUPS, pull_weights=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="AE loss type"):
        HierarchicalAELoss(NUM_JOINTS, GROUPS, "square")
    with pytest.raises(ValueError, match="TAG_PER_JOINT"):
        hae_loss(tag_maps[:, :1], joints, GROUPS)


def test_dataset_groups_partition_the_keypoints():
    for name, info in KEYPOINT_INFO.items():
        for scheme in info.keypoint_group_schemes:
            groups = info.get_keypoint_groups(scheme)
            members = sorted(k for group in groups for k in group)
            assert members == list(range(info.num_keypoints)), (name, scheme)
            assert all(groups), (name, scheme)
    names = get_keypoint_info("coco").keypoint_names

    def named(dataset, scheme=DEFAULT_GROUP_SCHEME):
        info = get_keypoint_info(dataset)
        return [{info.keypoint_names[k] for k in group}
                for group in info.get_keypoint_groups(scheme)]

    coco = named("coco")
    assert coco[0] == set(names[:7]) and coco[1] == {"left_hip", "right_hip"}
    assert sorted(len(group) for group in coco) == [1] * 8 + [2, 7]
    for limb in ("elbow", "wrist", "knee", "ankle"):
        for side in ("left", "right"):
            assert {f"{side}_{limb}"} in coco
    assert named("ochuman") == named("synthetic") == coco
    crowdpose = named("crowdpose")
    assert crowdpose[0] == {"left_shoulder", "right_shoulder", "head", "neck"}
    assert crowdpose[1] == {"left_hip", "right_hip"} and len(crowdpose) == 10
    assert {"left_elbow", "left_wrist"} in named("crowdpose", "mutual_information")
    assert {"head", "neck"} in named("crowdpose", "spatial_prior")
    assert get_keypoint_info("crowdpose").keypoint_group_schemes == (
        "default", "spatial_prior", "mutual_information")
    mpii = get_keypoint_info("mpii")
    assert mpii.keypoint_groups == () and mpii.get_keypoint_groups() == ()
    with pytest.raises(KeyError, match="spatial_prior"):
        get_keypoint_info("coco").get_keypoint_groups("spatial_prior")
    fields = {**get_keypoint_info("coco").__dict__, "name": "broken"}
    with pytest.raises(ValueError, match="partition"):
        KeypointInfo(**{**fields, "keypoint_groups": (("default", ((0, 1), (1, 2))),)})
    with pytest.raises(ValueError, match="'default'"):
        KeypointInfo(**{**fields, "keypoint_groups": (("other", (tuple(range(17)),)),)})
