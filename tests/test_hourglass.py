"""DARK's stacked hourglass (pose_hourglass): DarkPose's state dict key for key and its counts,
any-size forward, parity with DARK's fixed-size upsampling, strict loading and one training step
over the stack list."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from experiment_models import assert_reloads_exactly, build, config, meta_model
from hrpose.config import ConfigError
from hrpose.models import build_model
from hrpose.models.backbones.hourglass import Hourglass, PoseHourglassNet
from hrpose.models.complexity import summarize
from hrpose.utils.checkpoint import CheckpointError, load_model_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
HOURGLASS = REPO_ROOT / "experiments" / "coco" / "hourglass"
HG4 = str(HOURGLASS / "hg4_128x96_d256x3_adam_lr2.5e-4.yaml")
HG8 = str(HOURGLASS / "hg8_128x96_d256x3_adam_lr2.5e-4.yaml")
# A narrow two-stack model with two units per position: cheap, and it covers NUM_BLOCKS > 1.
SMALL = ("MODEL.EXTRA.NUM_FEATURES", "32", "MODEL.EXTRA.NUM_STACKS", "2",
         "MODEL.EXTRA.NUM_BLOCKS", "2")

def summary(cfg_path, height=128, width=96):
    """summarize() of an experiment's model at an input size, measured once per module run."""
    key = (cfg_path, height, width)
    if key not in _SUMMARIES:
        _SUMMARIES[key] = summarize(meta_model(cfg_path), "pose_hourglass", (height, width))
    return _SUMMARIES[key]


_SUMMARIES = {}


@pytest.fixture(scope="module")
def hg4():
    torch.manual_seed(0)
    return build(HG4).eval()


def small_model(seed):
    torch.manual_seed(seed)
    return build(HG4, *SMALL).eval()


# --- DarkPose's state dict, key for key -------------------------------------------------------

# DarkPose's lib/models/hourglass.py (repository ilovepose/DarkPose), HourglassNet.__init__ walked
# by hand for its YAMLs' NUM_FEATURES 256, NUM_BLOCKS 1 and 17 joints, at a 128x96 input.
# HourglassNet._make_residual(block, planes, blocks) reads self.inplanes and then sets it to
# 2 x planes; the stem calls it as
#   self.inplanes = 256 / 4 = 64
#   layer1 = _make_residual(block, self.inplanes, 1) -> planes 64: Bottleneck(64, 64) + 64->128
#                                                       projection
#   layer2 = _make_residual(block, self.inplanes, 1) -> planes 128 (layer1 set inplanes to 128):
#                                                       Bottleneck(128, 128) + 128->256 projection
#   layer3 = _make_residual(block, self.num_feats, 1) -> planes 128: Bottleneck(256, 128), no proj.
# Every other unit (Hourglass._make_residual, res) is Bottleneck(256, 128) without projection.
# Registration order: conv1, bn1, layer1, layer2, layer3, then the ModuleLists hg, res, fc, score,
# fc_, score_ (fc_ and score_ for every stack but the last); fc.i is Sequential(conv, bn, relu).
# Bottleneck registers bn1, conv1, bn2, conv2, bn3, conv3 (all convs biased), then downsample.
DARKPOSE_STEM_UNITS = [  # (key prefix, inplanes, planes, projection, output H x W)
    ("layer1.0", 64, 64, True, (64, 48)),
    ("layer2.0", 128, 128, True, (32, 24)),
    ("layer3.0", 256, 128, False, (32, 24)),
]
DARKPOSE_WIDTH, DARKPOSE_PLANES, DARKPOSE_JOINTS = 256, 128, 17
# Hourglass level n-1 (hg.i.hg.<n-1>) of _hour_glass_forward(n, x): unit 0 at x's size, units 1,
# 2 (and 3 at the innermost level) after F.max_pool2d(x, 2); x is 32x24 at the outermost level.
DARKPOSE_LEVEL_SIZES = {3: ((32, 24), (16, 12)), 2: ((16, 12), (8, 6)), 1: ((8, 6), (4, 3)),
                        0: ((4, 3), (2, 1))}


def _darkpose_bn(prefix, channels):
    stats = [(f"{prefix}.{name}", (channels,))
             for name in ("weight", "bias", "running_mean", "running_var")]
    return stats + [(f"{prefix}.num_batches_tracked", ())]


def _darkpose_conv(prefix, out_channels, in_channels, kernel, size, grid):
    grid[f"{prefix}.weight"] = size
    return [(f"{prefix}.weight", (out_channels, in_channels, kernel, kernel)),
            (f"{prefix}.bias", (out_channels,))]


def _darkpose_bottleneck(prefix, inplanes, planes, projection, size, grid):
    keys = [*_darkpose_bn(f"{prefix}.bn1", inplanes),
            *_darkpose_conv(f"{prefix}.conv1", planes, inplanes, 1, size, grid),
            *_darkpose_bn(f"{prefix}.bn2", planes),
            *_darkpose_conv(f"{prefix}.conv2", planes, planes, 3, size, grid),
            *_darkpose_bn(f"{prefix}.bn3", planes),
            *_darkpose_conv(f"{prefix}.conv3", 2 * planes, planes, 1, size, grid)]
    if projection:
        keys += _darkpose_conv(f"{prefix}.downsample.0", 2 * planes, inplanes, 1, size, grid)
    return keys


def darkpose_state_dict(num_stacks):
    """[(key, shape)] in DarkPose's order, and {conv weight key: output (H, W)} at 128x96."""
    grid = {}
    width, planes, joints = DARKPOSE_WIDTH, DARKPOSE_PLANES, DARKPOSE_JOINTS
    keys = [*_darkpose_conv("conv1", 64, 3, 7, (64, 48), grid), *_darkpose_bn("bn1", 64)]
    for prefix, inplanes, unit_planes, projection, size in DARKPOSE_STEM_UNITS:
        keys += _darkpose_bottleneck(prefix, inplanes, unit_planes, projection, size, grid)
    for i in range(num_stacks):
        for level in range(4):
            outer, inner = DARKPOSE_LEVEL_SIZES[level]
            for unit in range(4 if level == 0 else 3):
                keys += _darkpose_bottleneck(f"hg.{i}.hg.{level}.{unit}.0", width, planes, False,
                                             outer if unit == 0 else inner, grid)
    stem_size = (32, 24)
    for i in range(num_stacks):
        keys += _darkpose_bottleneck(f"res.{i}.0", width, planes, False, stem_size, grid)
    for i in range(num_stacks):
        keys += [*_darkpose_conv(f"fc.{i}.0", width, width, 1, stem_size, grid),
                 *_darkpose_bn(f"fc.{i}.1", width)]
    for i in range(num_stacks):
        keys += _darkpose_conv(f"score.{i}", joints, width, 1, stem_size, grid)
    for i in range(num_stacks - 1):
        keys += _darkpose_conv(f"fc_.{i}", width, width, 1, stem_size, grid)
    for i in range(num_stacks - 1):
        keys += _darkpose_conv(f"score_.{i}", width, joints, 1, stem_size, grid)
    return keys, grid


@pytest.mark.parametrize("cfg_path, stacks, num_keys", [
    # Stem 2 + 5 + 23 + 23 + 21; per stack 13 + 1 units of 21 tensors (3 BNs of 5, 3 convs of 2),
    # fc 7, score 2; fc_ and score_ 2 each between stacks.
    (HG4, 4, 74 + 4 * 303 + 3 * 4),
    (HG8, 8, 74 + 8 * 303 + 7 * 4),
])
def test_state_dict_is_darkposes_key_for_key(cfg_path, stacks, num_keys):
    expected, _ = darkpose_state_dict(stacks)
    assert len(expected) == num_keys
    state = meta_model(cfg_path).state_dict()
    assert [(key, tuple(value.shape)) for key, value in state.items()] == expected


# --- parameters and GFLOPs -------------------------------------------------------------------

# DARK's README prints 13.0M / 2.7 and 25.1M / 4.9 at 128x96. DarkPose's layer shapes give the
# parameters (weights and biases) and, under its get_model_summary hook convention (conv weight
# numel x output H x W, / 2^30), the GFLOPs below: HG4 matches, HG8's parameters are 2 % above.
@pytest.mark.parametrize("cfg_path, stacks, params_m, gflops", [
    (HG4, 4, 13.02, 2.68),
    (HG8, 8, 25.60, 4.90),
])
def test_complexity_is_darkposes(cfg_path, stacks, params_m, gflops):
    keys, grid = darkpose_state_dict(stacks)
    shapes = dict(keys)
    params = sum(math.prod(shape) for key, shape in keys if key.endswith(("weight", "bias")))
    hook_macs = sum(math.prod(shapes[key]) * math.prod(size) for key, size in grid.items())
    assert round(params / 1e6, 2) == params_m
    assert round(hook_macs / 2 ** 30, 2) == gflops
    cfg = config(cfg_path)
    width, height = cfg.MODEL.IMAGE_SIZE
    row = summary(cfg_path, height, width)
    assert row.convention == "hrnet_repo"
    assert row.params == params
    assert row.paper_gflops == pytest.approx(hook_macs / 2 ** 30, rel=1e-12)
    # No transposed convolutions: the hook count is the true multiply-adds.
    assert row.macs == hook_macs


def test_stacks_cost_the_same_and_gflops_grow_with_the_input():
    hg4, hg8 = config(HG4), config(HG8)
    rows = {4: summary(HG4), 8: summary(HG8)}
    assert hg4.MODEL.EXTRA.NUM_STACKS == 4 and hg8.MODEL.EXTRA.NUM_STACKS == 8
    # Each extra stack: 13 + 1 units, fc and score, and the feedback fc_ and score_ of the stack
    # before.
    per_stack = (rows[8].params - rows[4].params) / 4
    assert per_stack == 14 * 214_528 + 66_304 + 4_369 + 65_792 + 4_608
    # Four times the pixels, four times the work, but for the innermost level: 2x1 at 128x96 (3
    # columns pooled to 1) but 4x3 at 256x192.
    big = summary(HG4, 256, 192)
    assert big.macs == pytest.approx(4 * rows[4].macs, rel=0.002)
    assert big.macs != 4 * rows[4].macs


# --- forward -----------------------------------------------------------------------------------

def test_forward_returns_one_heatmap_per_stack_at_128x96(hg4):
    with torch.no_grad():
        heatmaps = hg4(torch.randn(2, 3, 128, 96))
    assert isinstance(heatmaps, list) and len(heatmaps) == 4
    assert all(h.shape == (2, 17, 32, 24) for h in heatmaps)
    assert all(torch.isfinite(h).all() for h in heatmaps)
    # Each stack refines the previous one rather than repeating it.
    assert not torch.allclose(heatmaps[0], heatmaps[-1])


@pytest.mark.parametrize("height, width", [(256, 192), (384, 288), (160, 96), (64, 64)])
def test_forward_works_at_other_input_sizes(height, width):
    # DARK's own model fails at anything but 128x96; sizes that are not multiples of 64 included.
    model = small_model(1)
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, height, width))
    assert [h.shape for h in heatmaps] == [(1, 17, height // 4, width // 4)] * 2


def test_full_model_runs_at_256x192_on_meta():
    cfg = config(HG8, "MODEL.IMAGE_SIZE", "[192,256]", "MODEL.HEATMAP_SIZE", "[48,64]")
    with torch.device("meta"):
        heatmaps = build_model(cfg, is_train=False)(torch.zeros(1, 3, 256, 192))
    assert [tuple(h.shape) for h in heatmaps] == [(1, 17, 64, 48)] * 8


def reference_hourglass_forward(hourglass, x, level=None):
    """The hourglass as DARK computes it at 128x96: F.max_pool2d, 2x nearest upsampling, and the
    innermost upsampling fixed to a 4x3 output."""
    level = hourglass.depth - 1 if level is None else level
    units = hourglass.hg[level]
    up1 = units[0](x)
    low = units[1](F.max_pool2d(x, 2, stride=2))
    low = reference_hourglass_forward(hourglass, low, level - 1) if level > 0 else units[3](low)
    low = units[2](low)
    if level > 0:
        up2 = F.interpolate(low, scale_factor=2, mode="nearest")
    else:
        up2 = F.interpolate(low, size=(4, 3), mode="nearest")
    return up1 + up2


def test_hourglass_matches_darks_fixed_upsampling_at_128x96():
    torch.manual_seed(2)
    hourglass = Hourglass(planes=8, num_blocks=1).eval()
    x = torch.randn(2, 16, 32, 24)  # the stem's output for a 128x96 image
    with torch.no_grad():
        assert torch.allclose(hourglass(x), reference_hourglass_forward(hourglass, x), atol=1e-6)


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("MODEL.EXTRA.NUM_FEATURES", "30", "NUM_FEATURES must be a multiple of 4"),
    ("MODEL.EXTRA.NUM_STACKS", "0", "NUM_STACKS must be a positive integer"),
    ("MODEL.EXTRA.NUM_BLOCKS", "-1", "NUM_BLOCKS must be a positive integer"),
])
def test_bad_extra_values_are_named(key, value, message):
    with torch.device("meta"), pytest.raises(ConfigError, match=message):
        build(HG4, key, value)


def test_experiment_files_follow_darks_recipe():
    hg4, hg8 = config(HG4), config(HG8)
    for cfg in (hg4, hg8):
        assert cfg.MODEL.NAME == "pose_hourglass"
        assert not cfg.MODEL.INIT_WEIGHTS
        assert list(cfg.MODEL.IMAGE_SIZE) == [96, 128] and list(cfg.MODEL.HEATMAP_SIZE) == [24, 32]
        assert (cfg.MODEL.EXTRA.NUM_FEATURES, cfg.MODEL.EXTRA.NUM_BLOCKS) == (256, 1)
        assert (cfg.DATASET.ROT_FACTOR, cfg.DATASET.SCALE_FACTOR, cfg.DATASET.COLOR_RGB) == \
            (40, 0.3, False)
        assert ((cfg.TRAIN.LR, cfg.TRAIN.END_EPOCH, list(cfg.TRAIN.LR_STEP))
                == (2.5e-4, 140, [90, 120]))
        assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 8
    assert (hg4.MODEL.SIGMA, hg8.MODEL.SIGMA) == (1, 2)


# --- checkpoints and initialisation -----------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "module."])
def test_saved_state_dict_loads_strictly(prefix, hg4, tmp_path):
    torch.manual_seed(3)
    assert_reloads_exactly(hg4, build(HG4), tmp_path / "hg4_128x96.pth", prefix)


def test_checkpoint_with_more_stacks_is_refused_with_its_extra_keys(tmp_path):
    path = tmp_path / "hg3_small.pth"
    torch.save(build(HG4, *SMALL[:2], "MODEL.EXTRA.NUM_STACKS", "3").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"hg\.2\."):
        load_model_weights(small_model(4), str(path))


@pytest.mark.parametrize("method", ["normal", "kaiming"])
def test_init_methods(method):
    model = build(HG4, *SMALL, "MODEL.INIT_WEIGHTS", "True", "MODEL.INIT_METHOD", method,
                  is_train=True)
    hidden = model.hg[1].hg[2][0][0].conv2
    fan_out = hidden.weight[0, 0].numel() * hidden.weight.shape[0]
    expected = 0.001 if method == "normal" else (2 / fan_out) ** 0.5
    assert hidden.weight.std().item() == pytest.approx(expected, rel=0.15)
    for score in model.score:
        assert 0 < score.weight.std().item() < 0.002
        assert torch.count_nonzero(score.bias) == 0
    assert all(torch.count_nonzero(conv.bias) == 0 for conv in model.modules()
               if isinstance(conv, nn.Conv2d))


# --- training ----------------------------------------------------------------------------------

def test_one_training_step_over_the_stack_list_changes_every_parameter():
    torch.manual_seed(0)
    model = small_model(5).train()
    assert isinstance(model, PoseHourglassNet)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=2.5e-4)
    images = torch.randn(2, 3, 128, 96)
    target = torch.rand(2, 17, 32, 24)
    loss = sum(F.mse_loss(heatmaps, target) for heatmaps in model(images))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
