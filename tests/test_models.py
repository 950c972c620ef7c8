"""Model architectures: checkpoint key grammar, parameter counts, loading, FLOPs and one training
step."""

import logging
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from experiment_models import assert_reloads_exactly, build
from hrpose.config import ConfigError, get_default_config, load_config
from hrpose.models import build_model
from hrpose.models.backbones.hrnet import HighResolutionModule, HighResolutionNet, HRNetSpec
from hrpose.models.backbones.hrnext import DynamicKernelConv
from hrpose.models.blocks import BasicBlock
from hrpose.models.complexity import hrnet_repo_gflops, hrnext_gflops, measure_complexity, summarize
from hrpose.utils.checkpoint import CheckpointError, load_model_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO_ROOT / "experiments"
W32_256 = str(EXPERIMENTS / "coco/hrnet/w32_256x192_adam_lr1e-3.yaml")
W32_384 = str(EXPERIMENTS / "coco/hrnet/w32_384x288_adam_lr1e-3.yaml")
W48_256 = str(EXPERIMENTS / "coco/hrnet/w48_256x192_adam_lr1e-3.yaml")
W48_384 = str(EXPERIMENTS / "coco/hrnet/w48_384x288_adam_lr1e-3.yaml")
R50_256 = str(EXPERIMENTS / "coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml")
R101_256 = str(EXPERIMENTS / "coco/resnet/res101_256x192_d256x3_adam_lr1e-3.yaml")
R152_256 = str(EXPERIMENTS / "coco/resnet/res152_256x192_d256x3_adam_lr1e-3.yaml")
W32_MPII = str(EXPERIMENTS / "mpii/hrnet/w32_256x256_adam_lr1e-3.yaml")
SYNTHETIC = str(EXPERIMENTS / "synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml")
SYNTHETIC_RESNET = str(EXPERIMENTS / "synthetic/resnet/res18_128x96_d64x3_adam_lr2e-3.yaml")

HRNET_WHITELIST = ("['conv1','bn1','conv2','bn2','layer1','transition1','stage2','transition2',"
                   "'stage3','transition3','stage4']")

# HRNet's lib/models/pose_hrnet.py (leoxiaobin/deep-high-resolution-net.pytorch): tensors per
# top-level prefix of pose_hrnet_w32 with 17 joints, in module order.
W32_PREFIX_COUNTS = {
    "conv1": 1, "bn1": 5, "conv2": 1, "bn2": 5, "layer1": 78, "transition1": 12, "stage2": 108,
    "transition2": 6, "stage3": 744, "transition3": 6, "stage4": 786, "final_layer": 2,
}

# The key names of HRNet's lib/models/pose_hrnet.py as regular expressions; every key of an HRNet
# pose checkpoint matches one.
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
HRNET_KEY_GRAMMAR = [re.compile(pattern + "$") for pattern in (
    r"conv[12]\.weight",
    rf"bn[12]\.{_BN}",
    r"layer1\.[0-3]\.conv[123]\.weight",
    rf"layer1\.[0-3]\.bn[123]\.{_BN}",
    r"layer1\.0\.downsample\.0\.weight",
    rf"layer1\.0\.downsample\.1\.{_BN}",
    r"transition1\.0\.0\.weight",
    rf"transition1\.0\.1\.{_BN}",
    r"transition1\.1\.0\.0\.weight",
    rf"transition1\.1\.0\.1\.{_BN}",
    r"transition2\.2\.0\.0\.weight",
    rf"transition2\.2\.0\.1\.{_BN}",
    r"transition3\.3\.0\.0\.weight",
    rf"transition3\.3\.0\.1\.{_BN}",
    r"stage[234]\.\d\.branches\.\d\.[0-3]\.conv[12]\.weight",
    rf"stage[234]\.\d\.branches\.\d\.[0-3]\.bn[12]\.{_BN}",
    r"stage[234]\.\d\.fuse_layers\.\d\.\d\.0\.weight",  # j > i: 1x1 conv
    rf"stage[234]\.\d\.fuse_layers\.\d\.\d\.1\.{_BN}",
    r"stage[234]\.\d\.fuse_layers\.\d\.\d\.\d\.0\.weight",  # j < i: step t conv
    rf"stage[234]\.\d\.fuse_layers\.\d\.\d\.\d\.1\.{_BN}",
    r"final_layer\.(weight|bias)",
)]


def meta_model(cfg_path, *opts):
    """The experiment's model on the meta device (no memory, no compute), for counts and FLOPs;
    experiments that differ only in input size share one."""
    cfg = load_config(cfg_path, list(opts))
    architecture = (cfg.MODEL.NAME, cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA.dump())
    if architecture not in _META_MODELS:
        with torch.device("meta"):
            _META_MODELS[architecture] = build_model(cfg, is_train=False)
    return _META_MODELS[architecture]


_META_MODELS = {}


@pytest.fixture(scope="module")
def w32():
    torch.manual_seed(0)
    return build(W32_256).eval()


@pytest.fixture(scope="module")
def w48():
    torch.manual_seed(1)
    return build(W48_256).eval()


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(2)
    return build(R50_256).eval()


@pytest.fixture
def fresh_w32():
    torch.manual_seed(3)
    return build(W32_256).eval()


def shapes(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def num_params(model):
    return sum(p.numel() for p in model.parameters())


# --- key grammar -------------------------------------------------------------------------------

def test_w32_state_dict_counts_per_prefix(w32):
    state = w32.state_dict()
    assert len(state) == 1754
    assert sum(not key.endswith("num_batches_tracked") for key in state) == 1462
    counts = Counter(key.split(".")[0] for key in state)
    assert counts == W32_PREFIX_COUNTS
    first_seen = list(dict.fromkeys(key.split(".")[0] for key in state))
    assert first_seen == list(W32_PREFIX_COUNTS)


def test_w32_keys_follow_the_grammar(w32):
    keys = list(w32.state_dict())
    strays = [key for key in keys if not any(p.match(key) for p in HRNET_KEY_GRAMMAR)]
    assert strays == []
    assert not any(key.startswith(("transition2.0.", "transition2.1.", "transition3.0.",
                                   "transition3.1.", "transition3.2.")) for key in keys)
    assert not any(".downsample." in key for key in keys if key.startswith("stage"))
    outputs = {prefix: {int(key.split(".")[3]) for key in keys
                        if key.startswith(prefix + ".fuse_layers.")}
               for prefix in ("stage4.0", "stage4.1", "stage4.2", "stage3.3")}
    assert outputs == {"stage4.0": {0, 1, 2, 3}, "stage4.1": {0, 1, 2, 3}, "stage4.2": {0},
                       "stage3.3": {0, 1, 2}}


def test_w32_shapes(w32):
    s = shapes(w32)
    assert s["conv1.weight"] == (64, 3, 3, 3)
    assert s["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert s["layer1.3.conv3.weight"] == (256, 64, 1, 1)
    assert s["transition1.0.0.weight"] == (32, 256, 3, 3)
    assert s["transition1.1.0.0.weight"] == (64, 256, 3, 3)
    assert s["transition2.2.0.0.weight"] == (128, 64, 3, 3)
    assert s["transition3.3.0.0.weight"] == (256, 128, 3, 3)
    assert s["stage2.0.fuse_layers.0.1.0.weight"] == (32, 64, 1, 1)
    assert s["stage2.0.fuse_layers.1.0.0.0.weight"] == (64, 32, 3, 3)
    assert s["stage4.0.fuse_layers.3.0.0.0.weight"] == (32, 32, 3, 3)
    assert s["stage4.0.fuse_layers.3.0.2.0.weight"] == (256, 32, 3, 3)
    assert s["stage4.0.fuse_layers.3.0.2.1.running_var"] == (256,)
    assert s["stage4.2.fuse_layers.0.3.0.weight"] == (32, 256, 1, 1)
    assert s["stage4.2.branches.3.3.conv2.weight"] == (256, 256, 3, 3)
    assert s["final_layer.weight"] == (17, 32, 1, 1)
    assert s["final_layer.bias"] == (17,)


def test_w48_has_the_w32_keys_with_wider_shapes(w32, w48):
    s = shapes(w48)
    assert list(s) == list(w32.state_dict())
    assert s["transition1.0.0.weight"] == (48, 256, 3, 3)
    assert s["transition1.1.0.0.weight"] == (96, 256, 3, 3)
    assert s["transition2.2.0.0.weight"] == (192, 96, 3, 3)
    assert s["transition3.3.0.0.weight"] == (384, 192, 3, 3)
    assert s["stage4.0.branches.3.0.conv1.weight"] == (384, 384, 3, 3)
    assert s["stage4.2.fuse_layers.0.3.0.weight"] == (48, 384, 1, 1)
    assert s["final_layer.weight"] == (17, 48, 1, 1)


def test_resnet50_keys(r50):
    s = shapes(r50)
    assert len(s) == 338
    head = {key: shape for key, shape in s.items()
            if key.startswith(("deconv_layers", "final_layer"))}
    expected_head = {"deconv_layers.0.weight": (2048, 256, 4, 4),
                     "deconv_layers.3.weight": (256, 256, 4, 4),
                     "deconv_layers.6.weight": (256, 256, 4, 4),
                     "final_layer.weight": (17, 256, 1, 1), "final_layer.bias": (17,)}
    for bn in ("1", "4", "7"):
        expected_head.update({f"deconv_layers.{bn}.{name}": (256,) for name in
                              ("weight", "bias", "running_mean", "running_var")})
        expected_head[f"deconv_layers.{bn}.num_batches_tracked"] = ()
    assert head == expected_head
    # torchvision's ResNet-50 without its classifier has exactly the backbone's keys and shapes,
    # so ImageNet weights load as they are.
    with torch.device("meta"):
        reference = torchvision.models.resnet50()
    backbone = {key: shape for key, shape in s.items() if key not in head}
    assert backbone == {key: tuple(v.shape) for key, v in reference.state_dict().items()
                        if not key.startswith("fc.")}


# --- parameter counts and shapes --------------------------------------------------------------

def test_parameter_counts_of_built_models(w32, w48, r50):
    assert num_params(w32) == 28_536_113
    assert num_params(w48) == 63_595_745
    assert num_params(r50) == 33_999_697


@pytest.mark.parametrize("cfg_path, expected", [
    (R101_256, 52_991_825),
    (R152_256, 68_635_473),
    (W32_MPII, 28_536_080),
])
def test_parameter_counts_on_meta(cfg_path, expected):
    assert num_params(meta_model(cfg_path)) == expected


@pytest.mark.parametrize("model_fixture", ["w32", "w48", "r50"])
def test_forward_gives_quarter_resolution_heatmaps(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, 256, 192))
    assert heatmaps.shape == (1, 17, 64, 48)
    assert torch.isfinite(heatmaps).all()


def test_multi_scale_backbone_keeps_every_branch():
    # The trunk as the bottom-up regression models use it: stage 4 keeps all four branches.
    spec = HRNetSpec.from_cfg(load_config(W32_256).MODEL.EXTRA)
    with torch.device("meta"):
        backbone = HighResolutionNet(spec, multi_scale_output=True)
        features = backbone(torch.zeros(1, 3, 256, 192))
    assert [tuple(f.shape) for f in features] == [(1, 32, 64, 48), (1, 64, 32, 24),
                                                 (1, 128, 16, 12), (1, 256, 8, 6)]
    assert backbone.out_channels == [32, 64, 128, 256]
    assert {key.split(".")[3] for key in backbone.state_dict()
            if key.startswith("stage4.2.fuse_layers.")} == {"0", "1", "2", "3"}


def test_bottleneck_stages_expand_the_branch_widths():
    cfg = load_config(SYNTHETIC, ["MODEL.EXTRA.STAGE3.BLOCK", "BOTTLENECK"])
    with torch.device("meta"):
        model = build_model(cfg, is_train=False)
        heatmaps = model(torch.zeros(1, 3, 128, 96))
    assert heatmaps.shape == (1, 17, 32, 24)
    s = shapes(model)
    # The transitions already widen to 4x NUM_CHANNELS, so the blocks need no downsample.
    assert s["transition2.0.0.weight"] == (64, 16, 3, 3)
    assert s["transition2.2.0.0.weight"] == (256, 32, 3, 3)
    assert s["stage3.0.branches.0.0.conv3.weight"] == (64, 16, 1, 1)
    assert not any(".downsample." in key for key in s if key.startswith("stage"))
    # An existing branch whose width changes gets a 3x3 conv applied to that same branch.
    assert s["transition3.0.0.weight"] == (16, 64, 3, 3)
    assert s["transition3.1.0.weight"] == (32, 128, 3, 3)


def test_stage1_sets_a_lighter_layer1():
    s = shapes(meta_model(SYNTHETIC))
    assert s["layer1.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert s["layer1.0.conv3.weight"] == (128, 32, 1, 1)
    assert not any(key.startswith("layer1.1.") for key in s)
    assert s["transition1.0.0.weight"] == (16, 128, 3, 3)
    assert s["transition1.1.0.0.weight"] == (32, 128, 3, 3)
    with pytest.raises(ValueError, match="MODEL.EXTRA.STAGE1 describes the single-branch layer1"):
        build(SYNTHETIC, "MODEL.EXTRA.STAGE1.NUM_BLOCKS", "[1,1]")


def test_high_resolution_module_leaves_the_channel_list_alone():
    in_channels = [32, 64]
    module = HighResolutionModule(in_channels, BasicBlock, [1, 1], [16, 32])
    assert in_channels == [32, 64]
    assert module.out_channels == [16, 32]
    assert shapes(module)["branches.0.0.downsample.0.weight"] == (16, 32, 1, 1)


# --- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "module.", "1."])
def test_saved_state_dict_loads_strictly_with_wrapper_prefixes(prefix, w32, fresh_w32, tmp_path):
    assert_reloads_exactly(w32, fresh_w32, tmp_path / "pose_hrnet_w32_256x192.pth", prefix)


def test_w48_checkpoint_into_w32_reports_mis_shaped_keys(w48, fresh_w32, tmp_path):
    path = tmp_path / "pose_hrnet_w48_256x192.pth"
    torch.save(w48.state_dict(), path)
    before = fresh_w32.conv1.weight.clone()
    with pytest.raises(CheckpointError,
                       match=r"mis-shaped keys \(\d+\): transition1\.0\.0\.weight"):
        load_model_weights(fresh_w32, str(path))
    assert torch.equal(fresh_w32.conv1.weight, before)


def fake_imagenet_hrnet(path, num_joints=17):
    """A state dict shaped like an HRNet ImageNet file for the synthetic model: the trunk, plus a
    classification head whose names the pose model lacks, plus a pose final_layer of the given
    number of joints."""
    torch.manual_seed(10)
    source = build(SYNTHETIC, "MODEL.NUM_JOINTS", str(num_joints))
    state = dict(source.state_dict())
    state.update({
        "incre_modules.0.0.conv1.weight": torch.randn(32, 16, 1, 1),
        "final_layer.0.weight": torch.randn(2048, 1024, 1, 1),
        "final_layer.1.running_mean": torch.randn(2048),
        "classifier.weight": torch.randn(1000, 2048),
        "classifier.bias": torch.randn(1000),
    })
    torch.save(state, path)
    return state


def test_pretrained_whitelist_loads_the_trunk_only(tmp_path, caplog):
    path = tmp_path / "hrnet_imagenet.pth"
    state = fake_imagenet_hrnet(path)
    with caplog.at_level(logging.INFO, logger="hrpose"):
        model = build(SYNTHETIC, "MODEL.PRETRAINED", str(path),
                      "MODEL.EXTRA.PRETRAINED_LAYERS", HRNET_WHITELIST, is_train=True)
    loaded = model.state_dict()
    trunk = [key for key in loaded if not key.startswith("final_layer")]
    assert all(torch.equal(loaded[key], state[key]) for key in trunk)
    # final_layer is not whitelisted: it keeps the N(0, 0.001) init.
    assert 0 < model.final_layer.weight.std().item() < 0.002
    assert torch.count_nonzero(model.final_layer.bias) == 0
    assert f"loaded {len(trunk)} of the model's {len(loaded)} tensors" in caplog.text


@pytest.mark.parametrize("cfg_path", [SYNTHETIC, R50_256])
def test_init_methods_scale_hidden_convolutions_and_keep_outputs_small(cfg_path):
    # No ImageNet file: the initialisation alone.
    normal = build(cfg_path, "MODEL.PRETRAINED", "", "MODEL.INIT_METHOD", "normal", is_train=True)
    kaiming = build(cfg_path, "MODEL.PRETRAINED", "", "MODEL.INIT_METHOD", "kaiming",
                    is_train=True)
    hidden = "conv1.weight"
    fan_out = normal.conv1.weight[0, 0].numel() * normal.conv1.weight.shape[0]
    assert normal.state_dict()[hidden].std().item() == pytest.approx(0.001, rel=0.1)
    assert kaiming.state_dict()[hidden].std().item() == pytest.approx((2 / fan_out) ** 0.5,
                                                                     rel=0.1)
    for model in (normal, kaiming):
        assert 0 < model.final_layer.weight.std().item() < 0.002
        assert torch.count_nonzero(model.final_layer.bias) == 0
    with pytest.raises(ConfigError, match="MODEL.INIT_METHOD"):
        build(cfg_path, "MODEL.INIT_METHOD", "xavier", is_train=True)


def test_pretrained_star_skips_mis_shaped_tensors_with_a_warning(tmp_path, caplog):
    # E.g. initialising a 16-joint MPII model from a 17-joint COCO model with PRETRAINED_LAYERS '*'.
    path = tmp_path / "pose_coco.pth"
    state = fake_imagenet_hrnet(path, num_joints=17)
    with caplog.at_level(logging.INFO, logger="hrpose"):
        model = build(SYNTHETIC, "MODEL.NUM_JOINTS", "16", "MODEL.PRETRAINED", str(path),
                      "MODEL.EXTRA.PRETRAINED_LAYERS", "['*']", is_train=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert ("final_layer.weight: (17, 16, 1, 1) in file vs (16, 16, 1, 1) in model"
            in warnings[0].message)
    assert "final_layer.bias" in warnings[0].message
    assert torch.equal(model.stage4[0].branches[3][1].conv2.weight,
                       state["stage4.0.branches.3.1.conv2.weight"])
    assert torch.count_nonzero(model.final_layer.bias) == 0


def test_resnet_pretrained_loads_torchvision_weights_and_ignores_fc(tmp_path, caplog):
    torch.manual_seed(11)
    imagenet = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet, path)
    with caplog.at_level(logging.INFO, logger="hrpose"):
        model = build(R50_256, "MODEL.EXTRA.NUM_LAYERS", "18", "MODEL.PRETRAINED", str(path),
                      is_train=True)
    loaded = model.state_dict()
    backbone = [key for key in imagenet if not key.startswith("fc.")]
    assert all(torch.equal(loaded[key], imagenet[key]) for key in backbone)
    assert 0 < model.deconv_layers[0].weight.std().item() < 0.002
    assert torch.count_nonzero(model.final_layer.bias) == 0
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert f"loaded {len(backbone)} of the model's" in caplog.text


@pytest.mark.parametrize("cfg_path", [SYNTHETIC, R50_256])
def test_missing_pretrained_file_raises(cfg_path, tmp_path):
    missing = str(tmp_path / "no_such_imagenet.pth")
    with torch.device("meta"), pytest.raises(CheckpointError,
                                             match="MODEL.PRETRAINED file not found"):
        build(cfg_path, "MODEL.PRETRAINED", missing, is_train=True)


def test_eval_build_ignores_pretrained_and_unknown_name_is_named():
    # is_train False: no init and no loading, so a missing ImageNet file does not matter.
    with torch.device("meta"):
        build(W32_256, "MODEL.PRETRAINED", "missing.pth")
    cfg = get_default_config()
    cfg.MODEL.NAME = "pose_unknown"
    known = "pose_hourglass, pose_hrnet, pose_hrnet_regression, pose_hrnext, pose_resnet"
    with pytest.raises(ConfigError, match=f"pose_unknown.*{known}"):
        build_model(cfg, is_train=False)


# --- complexity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_path, params, true_gmacs, paper_gflops, tolerance", [
    # The papers' tables (HRNet README "Main Results"); HRNet within 1 %, SimpleBaseline within 2 %.
    (W32_256, 28.5e6, 7.65, 7.1, 0.01),
    (W32_384, 28.5e6, None, 16.0, 0.01),
    (W48_256, 63.6e6, None, 14.6, 0.01),
    (W48_384, 63.6e6, None, 32.9, 0.01),
    (R50_256, 34.0e6, 5.43, 8.9, 0.02),
    (R101_256, 53.0e6, None, 12.4, 0.02),
    (R152_256, 68.6e6, None, 15.7, 0.02),
    # DARK's 128x96 rows (HRNet: the exact count of HRNet's lib/utils/utils.py get_model_summary
    # hooks; its README rounds).
    (str(EXPERIMENTS / "coco/hrnet/w32_128x96_adam_lr1e-3.yaml"), 28.5e6, None, 1.78, 0.01),
    (str(EXPERIMENTS / "coco/hrnet/w48_128x96_adam_lr1e-3.yaml"), 63.6e6, None, 3.65, 0.01),
    (str(EXPERIMENTS / "coco/resnet/res50_128x96_d256x3_adam_lr1e-3.yaml"), 34.0e6, None, 2.3,
     0.025),
    (str(EXPERIMENTS / "coco/resnet/res101_128x96_d256x3_adam_lr1e-3.yaml"), 53.0e6, None, 3.1,
     0.02),
    (str(EXPERIMENTS / "coco/resnet/res152_128x96_d256x3_adam_lr1e-3.yaml"), 68.6e6, None, 3.9,
     0.02),
])
def test_complexity_matches_the_published_table(cfg_path, params, true_gmacs, paper_gflops,
                                                tolerance):
    cfg = load_config(cfg_path)
    width, height = cfg.MODEL.IMAGE_SIZE
    row = summarize(meta_model(cfg_path), cfg.MODEL.NAME, (height, width))
    assert row.params == pytest.approx(params, rel=0.002)
    if true_gmacs is not None:
        assert row.macs / 1e9 == pytest.approx(true_gmacs, rel=0.002)
    assert row.paper_gflops == pytest.approx(paper_gflops, rel=tolerance)
    assert row.convention == "hrnet_repo"


def test_hrnet_convention_counts_transposed_convolutions_on_their_output_grid():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 4, 4, 2, 1),
                          nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    complexity = measure_complexity(model, (5, 5))
    conv, deconv, linear = 8 * 3 * 9 * 25, 8 * 4 * 16 * 25, 400 * 5
    assert complexity.macs == conv + deconv + linear
    assert hrnet_repo_gflops(complexity) * 2 ** 30 == pytest.approx(conv + 4 * deconv + linear)
    assert complexity.params == num_params(model)


def test_hrnext_convention_counts_as_the_authors_torchstat():
    """The rules of HRNeXt's tools/torchstat/compute_flops.py, worked by hand on a 6x4 input."""
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Upsample(scale_factor=2),
                         DynamicKernelConv(8, 4, kernel_size=1, num_kernels=3))
    model = nn.Sequential()
    model.add_module("body", body)
    model.add_module("final_layer", nn.Conv2d(4, 2, 1))
    complexity = measure_complexity(model, (6, 4))
    expected = {
        "body.0": 3 * 3 * 3 * 8 * 24 + 8 * 24,  # taps x in x out per position, plus the bias
        "body.1": 2 * 8 * 24,  # BatchNorm: 2 per element
        "body.2": 8 * 24,  # ReLU: 1 per element; GELU is not counted
        "body.4": 8 * (6 + 1) * (4 + 1),  # adaptive pooling: (rows + 1) x (columns + 1)
        "body.5": 8 * 2 * 2,  # upsampling: 1 per output element
        "body.6.attention.avg_pool": 8 * (2 + 1) * (2 + 1),
        "body.6.attention.conv1": 8 * 2,  # 8 -> 2 channels, no bias, on 1x1
        "body.6.attention.norm": 2 * 2,
        "body.6.attention.conv2": 2 * 3 + 3,  # 2 -> 3 kernel weights, with bias
        "body.6.aggregation": 8 * 4 * 2 * 2,  # one sample's mixed 1x1 kernel; mixing uncounted
        "final_layer": 4 * 2 * 2 * 2 + 2 * 2 * 2,  # 4 -> 2 with bias, on 2x2
    }
    assert dict(complexity.torchstat_calls) == expected
    # The authors measured the backbone: the heatmap convolution is left out.
    assert hrnext_gflops(complexity) * 2 ** 30 == sum(expected.values()) - expected["final_layer"]


# --- training and experiment files --------------------------------------------------------------

@pytest.mark.parametrize("cfg_path", [SYNTHETIC, SYNTHETIC_RESNET])
def test_one_training_step_changes_the_weights(cfg_path):
    torch.manual_seed(0)
    cfg = load_config(cfg_path)
    model = build_model(cfg, is_train=True).train()
    width, height = cfg.MODEL.HEATMAP_SIZE
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)
    images = torch.randn(2, 3, *reversed(cfg.MODEL.IMAGE_SIZE))
    target = torch.rand(2, cfg.MODEL.NUM_JOINTS, height, width)
    loss = nn.functional.mse_loss(model(images), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []


@pytest.mark.parametrize("cfg_path", sorted(str(p.relative_to(REPO_ROOT))
                                            for p in EXPERIMENTS.rglob("*.yaml")))
def test_every_experiment_file_loads(cfg_path):
    cfg = load_config(str(REPO_ROOT / cfg_path))
    assert cfg.is_frozen()
    if cfg.MODEL.NAME in ("pose_hrnet", "pose_resnet", "pose_hourglass", "pose_hrnext"):
        width, height = cfg.MODEL.IMAGE_SIZE
        with torch.device("meta"):
            heatmaps = meta_model(str(REPO_ROOT / cfg_path))(torch.zeros(1, 3, height, width))
        if cfg.MODEL.NAME == "pose_hourglass":  # one heatmap tensor per stack, the last one final
            assert len(heatmaps) == cfg.MODEL.EXTRA.NUM_STACKS
            heatmaps = heatmaps[-1]
        assert heatmaps.shape == (1, cfg.MODEL.NUM_JOINTS, *reversed(cfg.MODEL.HEATMAP_SIZE))


def test_summary_tool_prints_the_table_from_the_repository_root():
    result = subprocess.run([sys.executable, "tools/summary_network.py", "--cfg", W32_256,
                             "MODEL.IMAGE_SIZE", "[288,384]", "MODEL.HEATMAP_SIZE", "[72,96]"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    header, _, row = result.stdout.splitlines()[:3]
    assert header.split()[:3] == ["experiment", "model", "input"]
    assert row.split() == ["w32_256x192_adam_lr1e-3", "pose_hrnet", "384x288", "28.536", "17.20",
                           "16.02", "hrnet_repo"]
