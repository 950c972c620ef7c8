"""DARK's stacked hourglass (pose_hourglass): checkpoint key grammar, counts, any-size forward,
parity with DARK's fixed-size upsampling, strict loading and one training step over the stack list."""

import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hrpose.config import ConfigError, load_config
from hrpose.engine.checkpoint import CheckpointError, load_model_weights
from hrpose.models import build_model
from hrpose.models.backbones.hourglass import Hourglass, PoseHourglassNet
from hrpose.models.complexity import summarize

REPO_ROOT = Path(__file__).resolve().parents[1]
HOURGLASS = REPO_ROOT / "experiments" / "coco" / "hourglass"
HG4 = str(HOURGLASS / "hg4_128x96_d256x3_adam_lr2.5e-4.yaml")
HG8 = str(HOURGLASS / "hg8_128x96_d256x3_adam_lr2.5e-4.yaml")
# A narrow two-stack model with two units per position: cheap, and it covers NUM_BLOCKS > 1.
SMALL = ("MODEL.EXTRA.NUM_FEATURES", "32", "MODEL.EXTRA.NUM_STACKS", "2",
         "MODEL.EXTRA.NUM_BLOCKS", "2")

# DARK's lib/models/hourglass.py as a key grammar: every key of its checkpoints matches one.
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_UNIT = rf"\d+\.(bn[123]\.{_BN}|conv[123]\.(weight|bias))"
HOURGLASS_KEY_GRAMMAR = [re.compile(pattern + "$") for pattern in (
    r"conv1\.(weight|bias)",
    rf"bn1\.{_BN}",
    rf"layer[123]\.{_UNIT}",
    r"layer[13]\.0\.downsample\.0\.(weight|bias)",  # layer2 keeps its width: no projection
    rf"hg\.\d+\.hg\.[0-3]\.[0-2]\.{_UNIT}",
    rf"hg\.\d+\.hg\.0\.3\.{_UNIT}",  # the innermost level's extra unit
    rf"res\.\d+\.{_UNIT}",
    r"fc\.\d+\.0\.(weight|bias)",
    rf"fc\.\d+\.1\.{_BN}",
    r"(score|fc_|score_)\.\d+\.(weight|bias)",
)]


def config(cfg_path, *opts):
    return load_config(cfg_path, list(opts))


def build(cfg_path, *opts, is_train=False):
    return build_model(config(cfg_path, *opts), is_train=is_train)


def meta_model(cfg_path, *opts):
    with torch.device("meta"):
        return build(cfg_path, *opts)


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


# --- key grammar -------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_path, stacks, num_keys", [(HG4, 4, 1298), (HG8, 8, 2526)])
def test_state_dict_follows_darks_key_grammar(cfg_path, stacks, num_keys):
    state = meta_model(cfg_path).state_dict()
    assert len(state) == num_keys
    strays = [key for key in state if not any(p.match(key) for p in HOURGLASS_KEY_GRAMMAR)]
    assert strays == []
    counts = Counter(key.split(".")[0] for key in state)
    # Per stack: 13 units in the hourglass (3 per level + the innermost), 1 in res; 21 tensors
    # per unit (3 BNs of 5, 3 biased convs of 2).
    assert counts == {"conv1": 2, "bn1": 5, "layer1": 23, "layer2": 21, "layer3": 23,
                      "hg": 13 * 21 * stacks, "res": 21 * stacks, "fc": 7 * stacks,
                      "score": 2 * stacks, "fc_": 2 * (stacks - 1), "score_": 2 * (stacks - 1)}
    assert list(dict.fromkeys(key.split(".")[0] for key in state)) == list(counts)
    assert {int(key.split(".")[1]) for key in state if key.startswith("fc_.")} == \
        set(range(stacks - 1))


def test_shapes_of_the_hg4_checkpoint():
    s = {key: tuple(value.shape) for key, value in meta_model(HG4).state_dict().items()}
    assert s["conv1.weight"] == (64, 3, 7, 7)
    assert s["conv1.bias"] == (64,)
    assert s["layer1.0.bn1.weight"] == (64,)
    assert s["layer1.0.conv3.weight"] == (128, 64, 1, 1)
    assert s["layer1.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert s["layer2.0.conv1.weight"] == (64, 128, 1, 1)
    assert s["layer3.0.conv2.weight"] == (128, 128, 3, 3)
    assert s["layer3.0.downsample.0.weight"] == (256, 128, 1, 1)
    assert s["hg.3.hg.3.2.0.bn1.running_var"] == (256,)
    assert s["hg.3.hg.0.3.0.conv1.weight"] == (128, 256, 1, 1)
    assert s["hg.0.hg.2.1.0.conv3.bias"] == (256,)
    assert s["res.3.0.conv2.weight"] == (128, 128, 3, 3)
    assert s["fc.0.0.weight"] == (256, 256, 1, 1)
    assert s["fc.0.1.weight"] == (256,)
    assert s["score.3.weight"] == (17, 256, 1, 1)
    assert s["fc_.2.weight"] == (256, 256, 1, 1)
    assert s["score_.2.weight"] == (256, 17, 1, 1)
    assert s["score_.2.bias"] == (256,)
    assert not any(".downsample." in key for key in s if not key.startswith("layer"))
    assert "hg.0.hg.1.3.0.conv1.weight" not in s


# --- parameters and GFLOPs -------------------------------------------------------------------

# Exact counts of DARK's architecture (recomputed from its layer shapes). DARK's README prints
# 13.0M / 2.7 and 25.1M / 4.9, which no single architecture gives (HG4 is 1.1 % above and HG8
# 1.3 % below these parameters; the figures look carried over, as the ResNet ones are, see
# topdown.md 2.6). The hrnet_repo convention (DARK's own get_model_summary) gives these:
@pytest.mark.parametrize("cfg_path, params, paper_gflops, published_params, published_gflops", [
    (HG4, 12_860_100, 2.566, 13.0e6, 2.7),
    (HG8, 25_437_960, 4.790, 25.1e6, 4.9),
])
def test_complexity_against_the_published_table(cfg_path, params, paper_gflops,
                                                published_params, published_gflops):
    cfg = config(cfg_path)
    width, height = cfg.MODEL.IMAGE_SIZE
    row = summary(cfg_path, height, width)
    assert row.convention == "hrnet_repo"
    assert row.params == params
    # No transposed convolutions: the convention is the true multiply-adds over 2^30.
    assert row.paper_gflops == pytest.approx(row.macs / 2 ** 30)
    assert row.paper_gflops == pytest.approx(paper_gflops, abs=5e-4)
    assert row.params == pytest.approx(published_params, rel=0.015)
    assert row.paper_gflops == pytest.approx(published_gflops, rel=0.05)


def test_stacks_cost_the_same_and_gflops_grow_with_the_input():
    hg4, hg8 = config(HG4), config(HG8)
    rows = {4: summary(HG4), 8: summary(HG8)}
    assert hg4.MODEL.EXTRA.NUM_STACKS == 4 and hg8.MODEL.EXTRA.NUM_STACKS == 8
    # Each extra stack: 13 + 1 units, fc and score, and the feedback fc_ and score_ of the stack before.
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
        assert (cfg.TRAIN.LR, cfg.TRAIN.END_EPOCH, list(cfg.TRAIN.LR_STEP)) == (2.5e-4, 140, [90, 120])
        assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 8
    assert (hg4.MODEL.SIGMA, hg8.MODEL.SIGMA) == (1, 2)


# --- checkpoints and initialisation -----------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "module."])
def test_saved_state_dict_loads_strictly(prefix, hg4, tmp_path):
    path = tmp_path / "hg4_128x96.pth"
    torch.save({prefix + key: value for key, value in hg4.state_dict().items()}, path)
    torch.manual_seed(3)
    fresh = build(HG4)
    load_model_weights(fresh, str(path))
    loaded = fresh.state_dict()
    assert all(torch.equal(value, loaded[key]) for key, value in hg4.state_dict().items())


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
