"""HigherHRNet losses: masked heatmap loss, AE push/pull ('exp', 'max'), the per-stage wrapper."""

import math

import numpy as np
import pytest
import torch

from hrpose.codecs.associative_embedding import encode_ae_tags
from hrpose.losses.associative_embedding import (
    AELoss,
    HeatmapLoss,
    MultiStageAELoss,
    ae_loss,
    masked_heatmap_loss,
    total_bottomup_loss,
)


def loop_ae_loss(tags, joints, loss_type):
    """The AE loss by hand: plain loops over images, people, joints and pairs of people."""
    pushes, pulls = [], []
    for image_tags, image_joints in zip(tags, joints):
        flat = image_tags.reshape(-1)
        means, pull = [], 0.0
        for person in image_joints:
            values = [flat[int(index)] for index, visible in person.tolist() if visible > 0]
            if not values:
                continue
            mean = sum(values) / len(values)
            means.append(mean)
            pull = pull + sum((value - mean) ** 2 for value in values) / len(values)
        count = len(means)
        if count == 0:
            pushes.append(torch.tensor(0.0))
            pulls.append(torch.tensor(0.0))
            continue
        pulls.append(pull / count)
        if count == 1:
            pushes.append(torch.tensor(0.0))
            continue
        push = 0.0
        for a in range(count):
            for b in range(count):
                if a == b:
                    continue
                difference = means[a] - means[b]
                if loss_type == "exp":
                    push = push + torch.exp(-difference ** 2)
                else:
                    push = push + torch.clamp(1 - torch.abs(difference), min=0)
        pushes.append(push / (count * (count - 1)) * 0.5)
    return torch.stack([torch.as_tensor(p) for p in pushes]), torch.stack(
        [torch.as_tensor(p) for p in pulls])


def tiny_batch():
    """Tag maps (N, J, S, S) and indices (N, M, J, 2) for: image 0 with three people, one without
    a visible joint; image 1 with one person; image 2 with nobody; image 3 with three people, two
    of them with tags closer than 1 (so 'max' pushes them)."""
    generator = torch.Generator().manual_seed(0)
    num_joints, size, slots = 3, 4, 4
    tags = torch.randn(4, num_joints, size, size, generator=generator, dtype=torch.float64)
    tags[3] = tags[3] * 0.3
    joints = np.zeros((4, slots, num_joints, 3))
    joints[0, 0] = [(0, 0, 2), (1.5, 2.5, 2), (3, 3, 1)]
    joints[0, 1] = [(2, 1, 0), (0, 0, 0), (9, 9, 2)]  # nothing usable: outside or unlabelled
    joints[0, 2] = [(3, 0, 2), (0, 0, 0), (2, 2, 2)]
    joints[1, 0] = [(1, 1, 2), (2, 2, 2), (0, 0, 0)]
    joints[3, 0] = [(0, 1, 2), (0, 0, 0), (0, 0, 0)]
    joints[3, 1] = [(1, 1, 2), (1, 2, 2), (2, 3, 2)]
    joints[3, 2] = [(3, 3, 2), (3, 2, 2), (0, 0, 0)]
    indices = np.stack([encode_ae_tags(j, size, slots) for j in joints])
    return tags, torch.from_numpy(indices)


@pytest.mark.parametrize("loss_type", ["exp", "max"])
def test_ae_loss_matches_the_hand_computation(loss_type):
    tags, joints = tiny_batch()
    tags.requires_grad_(True)
    push, pull = ae_loss(tags, joints, loss_type)
    assert push.shape == pull.shape == (4,)
    expected_push, expected_pull = loop_ae_loss(tags, joints, loss_type)
    torch.testing.assert_close(push, expected_push.to(push.dtype), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pull, expected_pull.to(pull.dtype), rtol=1e-12, atol=1e-12)
    # Image 1 has one person (push 0), image 2 nobody (both 0); the others are not trivial.
    assert push[1] == 0 and push[2] == 0 and pull[2] == 0
    assert push[0] > 0 and pull[0] > 0 and push[3] > 0 and pull[1] > 0
    # Gradients agree too (the person mean is not detached, as in the reference).
    gradient, = torch.autograd.grad((push * 3 + pull).sum(), tags)
    tags_copy = tags.detach().clone().requires_grad_(True)
    loop_push, loop_pull = loop_ae_loss(tags_copy, joints, loss_type)
    expected_gradient, = torch.autograd.grad((loop_push * 3 + loop_pull).sum(), tags_copy)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-12)
    # Module form, and the (N, L, 1) layout the reference flattens the tag maps to.
    push_again, pull_again = AELoss(loss_type)(tags.reshape(4, -1, 1), joints)
    torch.testing.assert_close(push_again, push)
    torch.testing.assert_close(pull_again, pull)


def test_ae_loss_small_numbers_by_hand():
    # One image, tag map of 4 values; person A joints at 0 and 1, person B joint at 3.
    tags = torch.tensor([[0.0, 2.0, 7.0, 1.5]])
    joints = torch.tensor([[[[0, 1], [1, 1]], [[3, 1], [0, 0]]]])
    push, pull = ae_loss(tags, joints, "exp")
    # Means 1.0 and 1.5; pull = ((1 + 1) / 2 + 0) / 2; push = 2 exp(-0.25) / 2 * 0.5.
    assert pull.item() == pytest.approx(0.5)
    assert push.item() == pytest.approx(0.5 * math.exp(-0.25))
    push, _ = ae_loss(tags, joints, "max")
    assert push.item() == pytest.approx(0.5 * 0.5)


def test_tags_built_from_the_codec_indices_pull_to_zero():
    size, num_joints = 6, 3
    joints = np.zeros((2, num_joints, 3))
    joints[0] = [(1, 1, 2), (4.5, 2, 2), (5, 5, 1)]
    joints[1] = [(0, 5, 2), (3, 3, 2), (0, 0, 0)]
    indices = torch.from_numpy(encode_ae_tags(joints, size, 5))[None]
    tag_map = torch.zeros(1, num_joints, size, size)
    for person, value in ((0, -2.0), (1, 3.0)):
        for j, (x, y, v) in enumerate(joints[person]):
            if v > 0:
                tag_map[0, j, int(y), int(x)] = value
    push, pull = ae_loss(tag_map, indices, "exp")
    assert pull.item() == 0.0
    assert push.item() == pytest.approx(math.exp(-25.0) * 0.5)


def test_masked_heatmap_loss():
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2)
    pred[0, 0, 0, 0] = 1.0  # masked out below
    pred[0, 1, 1, 1] = 2.0
    pred[1, 0, 0, 1] = 3.0
    mask = torch.ones(2, 2, 2)
    mask[0, 0, 0] = 0
    loss = masked_heatmap_loss(pred, target, mask)
    # Per sample: sum of masked squared errors over C * H * W = 8 values.
    torch.testing.assert_close(loss, torch.tensor([4.0 / 8, 9.0 / 8]))
    torch.testing.assert_close(HeatmapLoss()(pred, target, mask), loss)
    per_channel = mask[:, None].repeat(1, 2, 1, 1)
    torch.testing.assert_close(masked_heatmap_loss(pred, target, per_channel), loss)
    with pytest.raises(ValueError, match="differ"):
        masked_heatmap_loss(pred, target[:, :1], mask)


def test_multi_stage_loss_uses_per_stage_flags_and_factors():
    tags, joints = tiny_batch()
    tags = tags.float()
    batch, num_joints, size = tags.shape[0], tags.shape[1], tags.shape[2]
    generator = torch.Generator().manual_seed(1)
    heatmaps = [torch.rand(batch, num_joints, size, size, generator=generator),
                torch.rand(batch, num_joints, 2 * size, 2 * size, generator=generator)]
    masks = [torch.ones(batch, size, size), torch.ones(batch, 2 * size, 2 * size)]
    masks[0][:, 0] = 0
    outputs = [torch.cat([torch.rand(batch, num_joints, size, size, generator=generator), tags],
                         dim=1),
               torch.rand(batch, num_joints, 2 * size, 2 * size, generator=generator)]
    criterion = MultiStageAELoss(num_joints, with_heatmaps_loss=(True, True),
                                 heatmaps_loss_factor=(1.0, 0.5), with_ae_loss=(True, False),
                                 ae_loss_type="max", push_loss_factor=(0.001, 0.001),
                                 pull_loss_factor=(0.002, 0.001))
    heatmap_losses, push_losses, pull_losses = criterion(outputs, heatmaps, masks,
                                                         [joints, joints])
    torch.testing.assert_close(heatmap_losses[0], masked_heatmap_loss(
        outputs[0][:, :num_joints], heatmaps[0], masks[0]))
    torch.testing.assert_close(heatmap_losses[1], 0.5 * masked_heatmap_loss(
        outputs[1], heatmaps[1], masks[1]))
    push, pull = ae_loss(tags, joints, "max")
    torch.testing.assert_close(push_losses[0], 0.001 * push)
    torch.testing.assert_close(pull_losses[0], 0.002 * pull)
    assert push_losses[1] is None and pull_losses[1] is None
    total = total_bottomup_loss(heatmap_losses, push_losses, pull_losses)
    expected = (heatmap_losses[0].mean() + heatmap_losses[1].mean() + push_losses[0].mean()
                + pull_losses[0].mean())
    torch.testing.assert_close(total, expected)

    # Without a heatmap loss the tags start at channel 0.
    tags_only = MultiStageAELoss(num_joints, with_heatmaps_loss=[False],
                                 heatmaps_loss_factor=[1.0], with_ae_loss=[True],
                                 push_loss_factor=[1.0], pull_loss_factor=[1.0])
    heatmap_losses, push_losses, _ = tags_only([tags], [heatmaps[0]], [masks[0]], [joints])
    assert heatmap_losses == [None]
    torch.testing.assert_close(push_losses[0], ae_loss(tags, joints, "exp")[0])


def test_bad_loss_settings_are_rejected():
    with pytest.raises(ValueError, match="AE loss type"):
        AELoss("square")
    with pytest.raises(ValueError, match="3 entries; there are 2"):
        MultiStageAELoss(17, heatmaps_loss_factor=(1.0, 1.0, 1.0))
    criterion = MultiStageAELoss(2)
    with pytest.raises(ValueError, match="got 1 outputs for 2"):
        criterion([torch.zeros(1, 4, 2, 2)], [None, None], [None, None], [None, None])
    with pytest.raises(ValueError, match="no tag channels"):
        criterion([torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)],
                  [torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)],
                  [torch.ones(1, 2, 2), torch.ones(1, 4, 4)],
                  [torch.zeros(1, 3, 2, 2, dtype=torch.long)] * 2)
