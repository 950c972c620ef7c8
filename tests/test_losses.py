"""Joints MSE and OHKM losses against per-joint loops; the config picks the right one."""

import pytest
import torch

from hrpose.config import get_default_config
from hrpose.losses.joints_mse import JointsMSELoss, JointsOHKMMSELoss, build_topdown_loss


def random_batch(seed, batch=4, joints=17, height=16, width=12):
    generator = torch.Generator().manual_seed(seed)
    output = torch.rand(batch, joints, height, width, generator=generator, dtype=torch.float64)
    target = torch.rand(batch, joints, height, width, generator=generator, dtype=torch.float64)
    weight = torch.rand(batch, joints, 1, generator=generator, dtype=torch.float64) * 2
    weight[0, :3] = 0
    return output, target, weight


def joint_loop_mse(output, target, weight, use_target_weight):
    """The reference loss: 0.5 * MSE of weighted maps, joint by joint, averaged over joints."""
    batch, joints = output.shape[:2]
    predictions = output.reshape(batch, joints, -1)
    targets = target.reshape(batch, joints, -1)
    total = 0.0
    for joint in range(joints):
        prediction, truth = predictions[:, joint], targets[:, joint]
        if use_target_weight:
            prediction, truth = prediction * weight[:, joint], truth * weight[:, joint]
        total = total + 0.5 * ((prediction - truth) ** 2).mean()
    return total / joints


def sample_loop_ohkm(output, target, weight, use_target_weight, topk):
    """The reference OHKM: per sample, the topk largest per-joint losses summed / topk."""
    batch, joints = output.shape[:2]
    total = 0.0
    for sample in range(batch):
        per_joint = []
        for joint in range(joints):
            prediction, truth = output[sample, joint], target[sample, joint]
            if use_target_weight:
                prediction = prediction * weight[sample, joint]
                truth = truth * weight[sample, joint]
            per_joint.append(0.5 * ((prediction - truth) ** 2).mean().item())
        total += sum(sorted(per_joint, reverse=True)[:topk]) / topk
    return total / batch


@pytest.mark.parametrize("use_target_weight", [True, False])
def test_mse_equals_joint_loop(use_target_weight):
    output, target, weight = random_batch(0)
    loss = JointsMSELoss(use_target_weight)(output, target, weight)
    expected = joint_loop_mse(output, target, weight, use_target_weight)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)


def test_mse_accepts_two_dimensional_weights_and_float32():
    output, target, weight = (tensor.float() for tensor in random_batch(1))
    loss = JointsMSELoss(True)(output, target, weight)
    torch.testing.assert_close(JointsMSELoss(True)(output, target, weight[..., 0]), loss)
    expected = joint_loop_mse(output.double(), target.double(), weight.double(), True)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=0)


def test_zero_weight_joints_give_no_loss_and_no_gradient():
    output, target, weight = random_batch(2)
    weight.zero_()
    weight[1, 4] = 1.0
    output.requires_grad_(True)
    loss = JointsMSELoss(True)(output, target, weight)
    loss.backward()
    assert output.grad[1, 4].abs().sum() > 0
    output.grad[1, 4] = 0
    assert output.grad.abs().sum() == 0


@pytest.mark.parametrize("use_target_weight", [True, False])
@pytest.mark.parametrize("topk", [1, 8, 17])
def test_ohkm_equals_sample_loop(use_target_weight, topk):
    output, target, weight = random_batch(3)
    loss = JointsOHKMMSELoss(use_target_weight, topk)(output, target, weight)
    expected = sample_loop_ohkm(output, target, weight, use_target_weight, topk)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_ohkm_with_every_joint_kept_is_the_mse():
    output, target, weight = random_batch(4)
    ohkm = JointsOHKMMSELoss(True, topk=17)(output, target, weight)
    torch.testing.assert_close(ohkm, JointsMSELoss(True)(output, target, weight))


def test_ohkm_rejects_bad_topk():
    output, target, weight = random_batch(5, joints=5)
    with pytest.raises(ValueError, match="TOPK"):
        JointsOHKMMSELoss(True, topk=8)(output, target, weight)
    with pytest.raises(ValueError, match="topk"):
        JointsOHKMMSELoss(True, topk=0)


def test_build_topdown_loss_follows_the_config():
    cfg = get_default_config()
    loss = build_topdown_loss(cfg)
    assert type(loss) is JointsMSELoss and loss.use_target_weight is True
    cfg.LOSS.USE_OHKM = True
    cfg.LOSS.TOPK = 6
    cfg.LOSS.USE_TARGET_WEIGHT = False
    loss = build_topdown_loss(cfg)
    assert type(loss) is JointsOHKMMSELoss
    assert loss.topk == 6 and loss.use_target_weight is False
