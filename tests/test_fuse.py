"""Conv-BN folding for inference: same outputs as the unfused model, for every backbone family."""

import pytest
import torch
from torch import nn

from experiment_models import randomize_batchnorms_
from hrpose.config import load_config
from hrpose.models import build_model
from hrpose.models.fuse import fuse_conv_bn

CASES = {
    "hrnet": ("experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml", ()),
    "simplebaseline": ("experiments/synthetic/resnet/res18_128x96_d64x3_adam_lr2e-3.yaml", ()),
    "hourglass": ("experiments/coco/hourglass/hg4_128x96_d256x3_adam_lr2.5e-4.yaml",
                  ("MODEL.EXTRA.NUM_FEATURES", "32", "MODEL.EXTRA.NUM_STACKS", "2")),
}


def trained_looking_model(repo_root, cfg_file, opts):
    """A model whose BatchNorms hold non-trivial statistics, so that folding has work to do."""
    torch.manual_seed(0)
    cfg = load_config(str(repo_root / cfg_file), ["MODEL.INIT_METHOD", "kaiming", *opts])
    model = build_model(cfg, is_train=True)
    randomize_batchnorms_(model, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_fused_outputs_equal_the_unfused(repo_root, name):
    model = trained_looking_model(repo_root, *CASES[name])
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        expected = model(images)
        fused = fuse_conv_bn(model)
        got = fused(images)
    if isinstance(expected, list):
        assert len(got) == len(expected)
        expected, got = torch.cat(expected), torch.cat(got)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    folded = sum(isinstance(layer, nn.BatchNorm2d) for layer in model.modules()) - \
        sum(isinstance(layer, nn.BatchNorm2d) for layer in fused.modules())
    assert folded > 0
    # The model itself is left as it was.
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_hrnet_keeps_no_batch_norm_after_folding(repo_root):
    fused = fuse_conv_bn(trained_looking_model(repo_root, *CASES["hrnet"]))
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in fused.modules())
