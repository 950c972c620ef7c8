"""HigherHRNet (pose_higher_hrnet): checkpoint keys, parameter and GFLOPs counts of the paper,
output layout, checkpoint loading, initialisation, one training step, and its config checks."""

import re
import runpy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from experiment_models import assert_reloads_exactly
from hrpose.config import ConfigError, load_config
from hrpose.config.model_extras import is_bottom_up
from hrpose.models import build_model
from hrpose.models.backbones.higher_hrnet import PoseHigherResolutionNet
from hrpose.models.complexity import network_input_size, summarize
from hrpose.utils.checkpoint import CheckpointError, load_model_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO_ROOT / "experiments"
HH_W32_512 = str(EXPERIMENTS / "coco/higher_hrnet/w32_512_adam_lr1e-3.yaml")
HH_W32_640 = str(EXPERIMENTS / "coco/higher_hrnet/w32_640_adam_lr1e-3.yaml")
HH_W48_640 = str(EXPERIMENTS / "coco/higher_hrnet/w48_640_adam_lr1e-3.yaml")
HRNET_BOTTOMUP = str(EXPERIMENTS / "coco/hrnet_bottomup/w32_512_adam_lr1e-3.yaml")
CROWD_FROM_COCO = str(EXPERIMENTS / "crowdpose/higher_hrnet/w32_512_adam_lr1e-3_coco.yaml")
TOPDOWN_W32 = str(EXPERIMENTS / "coco/hrnet/w32_256x192_adam_lr1e-3.yaml")
SYNTHETIC = str(EXPERIMENTS / "synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml")
BOTTOM_UP_EXPERIMENTS = sorted(
    str(path.relative_to(REPO_ROOT))
    for pattern in ("*/higher_hrnet/*.yaml", "*/hrnet_bottomup/*.yaml")
    for path in EXPERIMENTS.glob(pattern))

ONE_STAGE = ["LOSS.NUM_STAGES", "1", "MODEL.EXTRA.DECONV.NUM_DECONVS", "0",
             "MODEL.EXTRA.DECONV.NUM_CHANNELS", "[]", "MODEL.EXTRA.DECONV.KERNEL_SIZE", "[]",
             "MODEL.EXTRA.DECONV.CAT_OUTPUT", "[]", "DATASET.OUTPUT_SIZE", "[64]",
             "DATASET.SIGMA", "[2.0]", "LOSS.WITH_HEATMAPS_LOSS", "[True]",
             "LOSS.HEATMAPS_LOSS_FACTOR", "[1.0]", "LOSS.WITH_AE_LOSS", "[True]",
             "LOSS.PUSH_LOSS_FACTOR", "[0.001]", "LOSS.PULL_LOSS_FACTOR", "[0.001]",
             "TEST.WITH_HEATMAPS", "[True]", "TEST.WITH_AE", "[True]"]

_META_MODELS = {}


def meta_model(cfg_path, *opts):
    """The experiment's model on the meta device (no memory, no compute), shared by experiments
    with the same architecture."""
    cfg = load_config(cfg_path, list(opts))
    extra = cfg.MODEL.EXTRA.clone()
    extra.defrost()
    extra.PRETRAINED_LAYERS = []
    architecture = (cfg.MODEL.NUM_JOINTS, tuple(cfg.LOSS.WITH_AE_LOSS), extra.dump())
    if architecture not in _META_MODELS:
        with torch.device("meta"):
            _META_MODELS[architecture] = build_model(cfg, is_train=False)
    return _META_MODELS[architecture]


def build(cfg_path, *opts, is_train=False, seed=0):
    torch.manual_seed(seed)
    return build_model(load_config(cfg_path, list(opts)), is_train=is_train)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def shapes(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


# --- parameters, GFLOPs, keys -------------------------------------------------------------------

@pytest.mark.parametrize("cfg_path, exact, printed", [
    # HigherHRNet's model: 28.65M / 63.83M by a shape-only count, its README 28.6M / 63.8M.
    (HH_W32_512, 28_645_331, 28.6),
    (HH_W48_640, 63_827_139, 63.8),
    # The plain bottom-up HRNet: the top-down trunk (28,535,552) and the 1x1 conv to 2 x 17 maps.
    (HRNET_BOTTOMUP, 28_535_552 + 32 * 34 + 34, 28.5),
])
def test_parameter_counts(cfg_path, exact, printed):
    count = num_params(meta_model(cfg_path))
    assert count == exact
    assert round(count / 1e6, 1) == printed


@pytest.mark.parametrize("cfg_path, input_size, true_gmacs, printed", [
    # HigherHRNet's get_model_summary hooks: W32 512 = 46.20e9 true MACs, 47.86 by its convention
    # (README 47.9).
    (HH_W32_512, 512, 46.20, 47.9),
    (HH_W32_640, 640, 72.19, 74.8),
    (HH_W48_640, 640, 149.47, 154.3),
])
def test_gflops_by_the_higher_hrnet_convention(cfg_path, input_size, true_gmacs, printed):
    cfg = load_config(cfg_path)
    assert network_input_size(cfg) == (input_size, input_size)
    row = summarize(meta_model(cfg_path), cfg.MODEL.NAME, network_input_size(cfg))
    assert row.convention == "higher_hrnet"
    assert round(row.macs / 1e9, 2) == true_gmacs
    assert round(row.paper_gflops, 1) == printed
    # The gap is the 1/2-resolution transposed convolution, counted on its output grid (4x):
    # (W + 2J) x W x 4 x 4 multiply-adds per input pixel at 1/4 resolution, three more times.
    width = cfg.MODEL.EXTRA.DECONV.NUM_CHANNELS[0]
    deconv_macs = (width + 34) * width * 16 * (input_size // 4) ** 2
    assert row.paper_gflops * 1e9 - row.macs == pytest.approx(3 * deconv_macs, abs=1)
    if input_size == 512 and width == 32:
        assert round(row.paper_gflops, 2) == 47.86


def test_w32_keys_are_the_top_down_trunk_and_the_official_head():
    hh = shapes(meta_model(HH_W32_512))
    with torch.device("meta"):
        top_down = shapes(build(TOPDOWN_W32))
    trunk = {key: shape for key, shape in top_down.items() if not key.startswith("final_layer.")}
    head = {key: shape for key, shape in hh.items() if key not in trunk}
    assert {key: hh[key] for key in trunk} == trunk
    # The key order of the official checkpoints: trunk, final_layers, deconv_layers.
    assert list(hh)[:len(trunk)] == list(trunk)
    assert list(head)[:4] == ["final_layers.0.weight", "final_layers.0.bias",
                              "final_layers.1.weight", "final_layers.1.bias"]
    assert head["final_layers.0.weight"] == (34, 32, 1, 1)
    assert head["final_layers.1.weight"] == (17, 32, 1, 1)
    assert head["deconv_layers.0.0.0.weight"] == (66, 32, 4, 4)  # ConvTranspose2d (in, out, k, k)
    assert head["deconv_layers.0.0.1.running_var"] == (32,)
    assert head["deconv_layers.0.4.0.conv2.weight"] == (32, 32, 3, 3)
    bn = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
    grammar = [re.compile(p + "$") for p in (
        r"final_layers\.[01]\.(weight|bias)", r"deconv_layers\.0\.0\.0\.weight",
        rf"deconv_layers\.0\.0\.1\.{bn}", r"deconv_layers\.0\.[1-4]\.0\.conv[12]\.weight",
        rf"deconv_layers\.0\.[1-4]\.0\.bn[12]\.{bn}")]
    assert [key for key in head if not any(p.match(key) for p in grammar)] == []
    assert len(head) == 4 + (1 + 5) + 4 * (2 + 2 * 5)  # final, deconv + BN, 4 BasicBlocks


def test_w48_head_shapes():
    s = shapes(meta_model(HH_W48_640))
    assert s["final_layers.0.weight"] == (34, 48, 1, 1)
    assert s["deconv_layers.0.0.0.weight"] == (82, 48, 4, 4)
    assert s["final_layers.1.weight"] == (17, 48, 1, 1)


# --- forward -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_model():
    return build(SYNTHETIC, seed=1).eval()


def test_two_stage_outputs_low_resolution_first(synthetic_model):
    assert isinstance(synthetic_model, PoseHigherResolutionNet)
    assert synthetic_model.output_channels == [34, 17]
    with torch.no_grad():
        outputs = synthetic_model(torch.randn(2, 3, 128, 128))
    assert [tuple(o.shape) for o in outputs] == [(2, 34, 32, 32), (2, 17, 64, 64)]
    assert all(torch.isfinite(o).all() for o in outputs)


def test_one_stage_is_the_plain_bottom_up_hrnet():
    model = build(SYNTHETIC, *ONE_STAGE, "DATASET.INPUT_SIZE", "256").eval()
    assert len(model.deconv_layers) == 0 and len(model.final_layers) == 1
    assert not any(key.startswith("deconv_layers") for key in model.state_dict())
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 128, 96))
    assert [tuple(o.shape) for o in outputs] == [(1, 34, 32, 24)]


def test_shared_tag_map_and_no_concatenation():
    # One tag channel for all joints; the deconvolution sees only the features.
    with torch.device("meta"):
        model = build(SYNTHETIC, "MODEL.TAG_PER_JOINT", "False",
                      "MODEL.EXTRA.DECONV.CAT_OUTPUT", "[False]", "MODEL.NUM_JOINTS", "14")
        outputs = model(torch.zeros(1, 3, 128, 128))
    assert [tuple(o.shape) for o in outputs] == [(1, 15, 32, 32), (1, 14, 64, 64)]
    assert tuple(model.deconv_layers[0][0][0].weight.shape) == (16, 16, 4, 4)


def test_deconvolution_kernels_3_and_2_double_the_size():
    for kernel in (3, 2):
        with torch.device("meta"):
            model = build(SYNTHETIC, "MODEL.EXTRA.DECONV.KERNEL_SIZE", f"[{kernel}]")
            outputs = model(torch.zeros(1, 3, 64, 96))
        assert tuple(outputs[1].shape) == (1, 17, 32, 48)


# --- checkpoints and initialisation ---------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["1.", "module.", "module.1."])
def test_official_style_prefixed_state_dict_loads_strictly(prefix, synthetic_model, tmp_path):
    assert_reloads_exactly(synthetic_model, build(SYNTHETIC, seed=2),
                           tmp_path / "pose_higher_hrnet_w16_256.pth", prefix)


def test_checkpoint_missing_a_key_is_named(synthetic_model, tmp_path):
    state = {"1." + key: value for key, value in synthetic_model.state_dict().items()
             if key != "deconv_layers.0.0.0.weight"}
    path = tmp_path / "truncated.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError,
                       match=r"missing keys \(1\): deconv_layers\.0\.0\.0\.weight"):
        load_model_weights(build(SYNTHETIC, seed=3), str(path))


def test_one_stage_checkpoint_into_two_stage_model_is_refused(tmp_path):
    path = tmp_path / "hrnet_bottomup.pth"
    torch.save(build(SYNTHETIC, *ONE_STAGE).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): final_layers\.1\.weight"):
        load_model_weights(build(SYNTHETIC), str(path))


def test_initialisation_and_backbone_only_pretrained_loading(synthetic_model, tmp_path):
    # As the CrowdPose-from-COCO experiment: the trunk from a pose checkpoint, the heads fresh.
    path = tmp_path / "pose_higher_hrnet_coco.pth"
    torch.manual_seed(4)
    source = {key: value + torch.rand_like(value) if value.is_floating_point() else value
              for key, value in synthetic_model.state_dict().items()}
    torch.save(source, path)
    backbone = load_config(CROWD_FROM_COCO).MODEL.EXTRA.PRETRAINED_LAYERS
    model = build(SYNTHETIC, "MODEL.PRETRAINED", str(path), "MODEL.EXTRA.PRETRAINED_LAYERS",
                  str(list(backbone)), "MODEL.INIT_METHOD", "normal", is_train=True)
    loaded = model.state_dict()
    for key, value in loaded.items():
        if key.startswith(("final_layers.", "deconv_layers.")):
            assert not torch.equal(value, source[key]) or key.endswith("num_batches_tracked")
        else:
            assert torch.equal(value, source[key]), key
    # 'normal': every convolution, the transposed one included, N(0, 0.001) with zero bias.
    assert model.deconv_layers[0][0][0].weight.std().item() == pytest.approx(0.001, rel=0.1)
    for layer in model.final_layers:
        assert 0 < layer.weight.std().item() < 0.002
        assert torch.count_nonzero(layer.bias) == 0


def test_kaiming_keeps_the_output_layers_small():
    # the synthetic experiment's INIT_METHOD kaiming, without its top-down trunk weights
    model = build(SYNTHETIC, "MODEL.PRETRAINED", "", is_train=True)
    assert model.deconv_layers[0][1][0].conv1.weight.std().item() > 0.05
    for layer in model.final_layers:
        assert 0 < layer.weight.std().item() < 0.002


def test_one_training_step_changes_every_weight():
    cfg = load_config(SYNTHETIC, ["MODEL.PRETRAINED", ""])
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)
    outputs = model(torch.randn(2, 3, 128, 128))
    loss = sum(nn.functional.mse_loss(o, torch.rand_like(o)) for o in outputs)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert [name for name, p in model.named_parameters() if torch.equal(p, before[name])] == []


# --- experiments and config ----------------------------------------------------------------------

@pytest.mark.parametrize("cfg_path", BOTTOM_UP_EXPERIMENTS)
def test_every_bottom_up_experiment_loads_and_builds(cfg_path):
    cfg = load_config(str(REPO_ROOT / cfg_path))
    assert cfg.is_frozen() and is_bottom_up(cfg.MODEL.NAME)
    model = meta_model(str(REPO_ROOT / cfg_path))
    size = cfg.DATASET.INPUT_SIZE
    with torch.device("meta"):
        outputs = model(torch.zeros(1, 3, size, size))
    joints = cfg.MODEL.NUM_JOINTS
    expected = [(1, joints * (2 if with_tags else 1), side, side)
                for with_tags, side in zip(cfg.LOSS.WITH_AE_LOSS, cfg.DATASET.OUTPUT_SIZE)]
    assert [tuple(o.shape) for o in outputs] == expected


def test_bottom_up_experiment_set():
    # Nine HigherHRNet / plain bottom-up experiments and four HAE ones.
    assert len(BOTTOM_UP_EXPERIMENTS) == 13
    assert sum(path.endswith("_hae.yaml") for path in BOTTOM_UP_EXPERIMENTS) == 4
    crowd = load_config(CROWD_FROM_COCO)
    assert crowd.MODEL.NUM_JOINTS == 14
    assert list(crowd.MODEL.EXTRA.PRETRAINED_LAYERS) == [
        "conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2",
        "stage3", "transition3", "stage4"]


@pytest.mark.parametrize("opts, fragments", [
    (["LOSS.AE_LOSS_TYPE", "'hinge'"], ["LOSS.AE_LOSS_TYPE", "'exp', 'max'"]),
    (["LOSS.PUSH_LOSS_FACTOR", "[0.001]"], ["LOSS.PUSH_LOSS_FACTOR", "1 entries",
                                            "LOSS.NUM_STAGES is 2"]),
    (["TEST.WITH_AE", "[True, False, False]"], ["TEST.WITH_AE", "3 entries"]),
    (["LOSS.WITH_AE_LOSS", "[1, 0]"], ["LOSS.WITH_AE_LOSS", "booleans"]),
    (["MODEL.EXTRA.DECONV.NUM_DECONVS", "2"], ["LOSS.NUM_STAGES", "NUM_DECONVS 2"]),
    (["DATASET.OUTPUT_SIZE", "[64, 64]"], ["DATASET.OUTPUT_SIZE", "[64, 128]"]),
    (["DATASET.INPUT_SIZE", "250"], ["DATASET.INPUT_SIZE", "multiple of 32"]),
    (["TEST.WITH_AE", "[True, True]"], ["TEST.WITH_AE", "stage(s) [1]", "LOSS.WITH_AE_LOSS"]),
    (["TEST.SCALE_FACTOR", "[0.5, 2]"], ["TEST.SCALE_FACTOR", "includes 1"]),
    (["TEST.NMS_PADDING", "1"], ["TEST.NMS_PADDING", "(TEST.NMS_KERNEL - 1) / 2 = 2"]),
    (["DATASET.SIGMA", "[2.0, 0]"], ["DATASET.SIGMA", "non-zero"]),
    (["DATASET.SCALE_TYPE", "'diagonal'"], ["DATASET.SCALE_TYPE", "'short', 'long'"]),
    (["DATASET.MIN_SCALE", "2.0"], ["DATASET.MIN_SCALE", "DATASET.MAX_SCALE"]),
    (["DATASET.FLIP", "0.5"], ["DATASET.FLIP", "bool"]),
])
def test_bad_bottom_up_values_name_the_key(opts, fragments):
    with pytest.raises(ConfigError) as error:
        load_config(SYNTHETIC, opts)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize("opts, fragments", [
    (["MODEL.EXTRA.DECONV.KERNEL_SIZE", "[5]"], ["MODEL.EXTRA.DECONV.KERNEL_SIZE", "2, 3, 4"]),
    (["MODEL.EXTRA.DECONV.CAT_OUTPUT", "[]"],
     ["MODEL.EXTRA.DECONV.CAT_OUTPUT", "NUM_DECONVS is 1"]),
])
def test_bad_deconv_values_are_named_when_the_model_is_built(opts, fragments):
    cfg = load_config(SYNTHETIC, opts)
    with torch.device("meta"), pytest.raises(ConfigError) as error:
        build_model(cfg, is_train=False)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_top_down_experiments_skip_the_bottom_up_cross_checks():
    # A top-down model does not read the per-stage lists, so their lengths are not enforced.
    cfg = load_config(TOPDOWN_W32, ["LOSS.NUM_STAGES", "3"])
    assert not is_bottom_up(cfg.MODEL.NAME)


def test_summary_tool_prints_the_higher_hrnet_row(monkeypatch, capsys):
    # In-process (a subprocess would spend seconds importing torch again).
    monkeypatch.setattr(sys, "argv", ["summary_network.py", "--cfg", HH_W32_512])
    runpy.run_path(str(REPO_ROOT / "tools/summary_network.py"), run_name="__main__")
    output = capsys.readouterr().out
    row = output.splitlines()[2]
    assert row.split() == ["w32_512_adam_lr1e-3", "pose_higher_hrnet", "512x512", "28.645",
                           "46.20", "47.86", "higher_hrnet"]
    assert "higher_hrnet: forward hooks on conv/deconv/linear, deconv on its output grid, / 1e9" \
        in output
