"""The 2020 heatmap-guided regression networks (pose_hrnet_regression,
pose_higher_hrnet_regression), their adaptive (STN) convolution, the P20 complexity convention,
and the rescore network.

Expected key names, shapes and counts are written from the regression repository's
lib/models/pose_hrnet.py, pose_higher_hrnet.py, conv_module.py, predictOKS.py and its README
table, not read back from the models.
"""

import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d

from experiment_models import assert_reloads_exactly
from hrpose.config import ConfigError, load_config
from hrpose.models import build_model
from hrpose.models.complexity import measure_complexity, per_call_params, summarize
from hrpose.models.heads.stn import STNBlock, transform_to_offsets
from hrpose.models.rescore_net import RescoreNet
from hrpose.utils.checkpoint import CheckpointError, load_model_weights, load_state_dict_strict

REPO_ROOT = Path(__file__).resolve().parents[1]
HRNET_REG = "pose_hrnet_regression"
HIGHER_REG = "pose_higher_hrnet_regression"
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STN_KEYS = (["regular_matrix", "transform_matrix_conv1.weight", "transform_matrix_conv1.bias",
             "stn_conv1.weight", "transform_matrix_conv2.weight", "transform_matrix_conv2.bias",
             "stn_conv2.weight"]
            + [f"bn{i}.{key}" for i in (1, 2) for key in BN_KEYS])
TIED = ("transform_matrix_conv1.weight", "stn_conv1.weight", "transform_matrix_conv2.weight",
        "stn_conv2.weight")


def regression_opts(name, width, input_size, num_joints=17, tiny=False):
    """Overrides that configure a regression model of width W at an input size, with the
    per-stage lists a bottom-up experiment of its stage count needs."""
    higher = name == HIGHER_REG
    stages = 2 if higher else 1
    w = width
    opts = ["MODEL.NAME", name, "MODEL.NUM_JOINTS", str(num_joints),
            "DATASET.INPUT_SIZE", str(input_size),
            "DATASET.OUTPUT_SIZE", str([input_size // 4 * 2 ** k for k in range(stages)]),
            "LOSS.NUM_STAGES", str(stages),
            "MODEL.EXTRA.STAGE2.NUM_CHANNELS", f"[{w},{2 * w}]",
            "MODEL.EXTRA.STAGE3.NUM_CHANNELS", f"[{w},{2 * w},{4 * w}]",
            "MODEL.EXTRA.STAGE4.NUM_CHANNELS", f"[{w},{2 * w},{4 * w},{8 * w}]",
            "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.NUM_CHANNELS", f"[{w},{w},{w}]"]
    if higher:
        opts += ["MODEL.EXTRA.DECONV.NUM_CHANNELS", f"[{w}]"]
    for key, value in (("DATASET.SIGMA", "2.0"), ("LOSS.WITH_HEATMAPS_LOSS", "True"),
                       ("LOSS.HEATMAPS_LOSS_FACTOR", "1.0"), ("LOSS.WITH_AE_LOSS", "False"),
                       ("LOSS.PUSH_LOSS_FACTOR", "0.001"), ("LOSS.PULL_LOSS_FACTOR", "0.001"),
                       ("TEST.WITH_HEATMAPS", "True"), ("TEST.WITH_AE", "False")):
        opts += [key, "[" + ",".join([value] * stages) + "]"]
    # Offsets are regressed at 1/4 resolution only.
    opts += ["DATASET.BG_WEIGHT", "[" + ",".join(["0.1"] * stages) + "]",
             "LOSS.WITH_OFFSETS_LOSS", str([True] + [False] * (stages - 1)),
             "LOSS.OFFSETS_LOSS_FACTOR", "[" + ",".join(["0.01"] * stages) + "]"]
    if tiny:  # one module of one block per stage, a light layer1, a narrow regression head
        opts += ["MODEL.EXTRA.STAGE1.NUM_BLOCKS", "[1]", "MODEL.EXTRA.STAGE1.NUM_CHANNELS", "[8]",
                 "MODEL.EXTRA.STAGE2.NUM_BLOCKS", "[1,1]", "MODEL.EXTRA.STAGE3.NUM_MODULES", "1",
                 "MODEL.EXTRA.STAGE3.NUM_BLOCKS", "[1,1,1]", "MODEL.EXTRA.STAGE4.NUM_MODULES", "1",
                 "MODEL.EXTRA.STAGE4.NUM_BLOCKS", "[1,1,1,1]",
                 "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.NUM_CHANNELS", "[16]"]
    return opts


def tiny_model(name, num_joints=5, is_train=False, seed=0):
    torch.manual_seed(seed)
    cfg = load_config("", regression_opts(name, 8, 64, num_joints, tiny=True))
    return build_model(cfg, is_train=is_train)


_FULL = {}


def full_model(name, width, input_size):
    """A published-size model on the meta device (no memory, no compute), built once."""
    key = (name, width)
    if key not in _FULL:
        cfg = load_config("", regression_opts(name, width, input_size))
        with torch.device("meta"):
            _FULL[key] = build_model(cfg, is_train=False)
    return _FULL[key]


def randomize_(model):
    """Give every parameter and BN statistic random values (the transforms included)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and "regular_matrix" not in name:
                tensor.copy_(torch.rand_like(tensor) * 0.2 + 0.05 if "running_var" in name
                             else torch.randn_like(tensor) * 0.1)


# --- output contract ----------------------------------------------------------------------------

def capture_outputs(module):
    outputs = []
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    return outputs, handle


def test_pose_hrnet_regression_output_contract():
    model = tiny_model(HRNET_REG, num_joints=5).eval()
    randomize_(model)
    heatmap_calls, h1 = capture_outputs(model.final_layers[0])
    regression_calls, h2 = capture_outputs(model.final_layers[1])
    with torch.no_grad():
        heatmaps, offsets = model(torch.randn(2, 3, 64, 96))
    h1.remove(), h2.remove()
    assert isinstance(heatmaps, list) and isinstance(offsets, list)
    assert len(heatmaps) == 1 and len(heatmaps[0]) == 1
    assert len(offsets) == 1 and len(offsets[0]) == 1
    assert heatmaps[0][0].shape == (2, 6, 16, 24)
    assert offsets[0][0].shape == (2, 10, 16, 24)
    # Three heatmap branches, averaged; the regression output is 2J offsets then the centre.
    assert len(heatmap_calls) == 3 and len(regression_calls) == 1
    mean = (heatmap_calls[0] + heatmap_calls[1] + heatmap_calls[2]) / 3
    torch.testing.assert_close(heatmaps[0][0][:, :5], mean)
    torch.testing.assert_close(heatmaps[0][0][:, 5:], regression_calls[0][:, 10:])
    torch.testing.assert_close(offsets[0][0], regression_calls[0][:, :10])


def test_pose_higher_hrnet_regression_output_contract():
    model = tiny_model(HIGHER_REG, num_joints=4).eval()
    randomize_(model)
    heatmap_calls, h1 = capture_outputs(model.final_layers[0])
    regression_calls, h2 = capture_outputs(model.final_layers[1])
    with torch.no_grad():
        heatmaps, offsets = model(torch.randn(1, 3, 64, 64))
    h1.remove(), h2.remove()
    assert len(heatmaps) == 2 and len(heatmaps[0]) == 3 and len(heatmaps[1]) == 1
    assert heatmaps[1][0].shape == (1, 4, 32, 32)
    assert len(offsets) == 1 and len(offsets[0]) == 1
    assert offsets[0][0].shape == (1, 8, 16, 16)
    for branch, heatmap in zip(heatmaps[0], heatmap_calls, strict=True):
        assert branch.shape == (1, 5, 16, 16)
        torch.testing.assert_close(branch[:, :4], heatmap)  # this branch's own heatmaps
        torch.testing.assert_close(branch[:, 4:], regression_calls[0][:, 8:])  # the centre
    torch.testing.assert_close(offsets[0][0], regression_calls[0][:, :8])
    # The dilations differ, so the branches do not all give the same heatmaps.
    assert not torch.allclose(heatmaps[0][0], heatmaps[0][2])


# --- adaptive convolution -----------------------------------------------------------------------

def adaptive_conv(block, x, transform):
    """stn_conv1 of block with the per-pixel 2x2 transform given as 4 numbers (a00 a01 a10 a11)."""
    n, _, h, w = x.shape
    transform_map = torch.tensor(transform, dtype=x.dtype).view(1, 4, 1, 1).expand(n, 4, h, w)
    return block.stn_conv1(x, transform_to_offsets(transform_map, block.regular_matrix))


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_identity_transform_gives_a_plain_dilated_convolution(dilation):
    torch.manual_seed(dilation)
    block = STNBlock(6, dilation)
    x = torch.randn(2, 6, 11, 9)
    plain = F.conv2d(x, block.stn_conv1.weight, padding=dilation, dilation=dilation)
    torch.testing.assert_close(adaptive_conv(block, x, (1.0, 0.0, 0.0, 1.0)), plain)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_block_with_identity_transforms_is_a_residual_block_of_plain_convolutions(dilation):
    torch.manual_seed(10 + dilation)
    block = STNBlock(4, dilation)
    randomize_(block)
    with torch.no_grad():
        for conv in (block.transform_matrix_conv1, block.transform_matrix_conv2):
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    block.eval()
    x = torch.randn(2, 4, 10, 12)

    def bn(layer, t):
        scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
        return ((t - layer.running_mean[:, None, None]) * scale[:, None, None]
                + layer.bias[:, None, None])

    with torch.no_grad():
        hidden = torch.relu(bn(block.bn1, F.conv2d(x, block.stn_conv1.weight, padding=dilation,
                                                   dilation=dilation)))
        expected = torch.relu(bn(block.bn2, F.conv2d(hidden, block.stn_conv2.weight,
                                                     padding=dilation, dilation=dilation)) + x)
        torch.testing.assert_close(block(x), expected)


def test_zero_transform_samples_the_centre_at_dilation_1_and_a_3x3_grid_at_dilation_2():
    # A = 0 (the zero-initialised start): every tap k moves by -R_k, undilated.
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 10)
    block1, block2 = STNBlock(3, 1), STNBlock(3, 2)
    weight = block1.stn_conv1.weight
    centre_only = F.conv2d(x, weight.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(adaptive_conv(block1, x, (0.0, 0.0, 0.0, 0.0)), centre_only)
    undilated = F.conv2d(x, block2.stn_conv1.weight, padding=1)
    torch.testing.assert_close(adaptive_conv(block2, x, (0.0, 0.0, 0.0, 0.0)), undilated)


@pytest.mark.parametrize("transform, expected_kernel", [
    ((1.0, 0.0, 0.0, -1.0), lambda w: w.flip(-1)),  # x mirrored: the (dy, dx) order and a11
    ((-1.0, 0.0, 0.0, 1.0), lambda w: w.flip(-2)),  # y mirrored: a00
])
def test_mirroring_transforms_mirror_the_kernel(transform, expected_kernel):
    torch.manual_seed(1)
    block = STNBlock(3, 1)
    x = torch.randn(2, 3, 7, 9)
    plain = F.conv2d(x, expected_kernel(block.stn_conv1.weight), padding=1)
    torch.testing.assert_close(adaptive_conv(block, x, transform), plain)


def test_a_shear_reads_a01_as_the_x_to_y_coupling():
    # A = [[1, 1], [0, 1]]: tap (ry, rx) samples (y + ry + rx, x + rx), a 5x3 kernel.
    torch.manual_seed(2)
    block = STNBlock(2, 1)
    weight = block.stn_conv1.weight.detach()
    kernel = torch.zeros(2, 2, 5, 3)
    for ry in (-1, 0, 1):
        for rx in (-1, 0, 1):
            kernel[:, :, ry + rx + 2, rx + 1] += weight[:, :, ry + 1, rx + 1]
    x = torch.randn(1, 2, 9, 8)
    plain = F.conv2d(x, kernel, padding=(2, 1))
    torch.testing.assert_close(adaptive_conv(block, x, (1.0, 1.0, 0.0, 1.0)), plain)


def test_offsets_layout_is_dy_dx_per_tap():
    grid = torch.tensor([[-1.0, -1, -1, 0, 0, 0, 1, 1, 1], [-1.0, 0, 1, -1, 0, 1, -1, 0, 1]])
    transform = torch.tensor([2.0, 0.0, 0.0, 3.0]).view(1, 4, 1, 1)  # y x2, x x3
    offsets = transform_to_offsets(transform, grid).view(9, 2)
    torch.testing.assert_close(offsets[:, 0], grid[0])  # dy = 2 ry - ry
    torch.testing.assert_close(offsets[:, 1], 2 * grid[1])  # dx = 3 rx - rx


# --- tied heatmap branches ----------------------------------------------------------------------

def test_heatmap_branches_share_conv_weights_but_not_biases_or_norms():
    model = tiny_model(HRNET_REG)
    branches = [branch[0] for branch in model.multi_level_layers_4x_heatmap]
    assert [block.dilation for block in branches] == [1, 2, 3]
    for name in TIED:
        tensors = [block.get_parameter(name) for block in branches]
        assert tensors[1] is tensors[0] and tensors[2] is tensors[0]
    for name in ("transform_matrix_conv1.bias", "transform_matrix_conv2.bias", "bn1.weight",
                 "bn2.bias"):
        tensors = [block.get_parameter(name) for block in branches]
        assert tensors[1] is not tensors[0] and tensors[2] is not tensors[1]
    # The state dict lists the shared tensors under every branch, as the official files do.
    state = model.state_dict()
    for index in range(3):
        assert f"multi_level_layers_4x_heatmap.{index}.0.stn_conv1.weight" in state


def test_a_training_step_changes_the_three_branches_identically():
    model = tiny_model(HRNET_REG, is_train=True).train()
    branches = [branch[0] for branch in model.multi_level_layers_4x_heatmap]
    before = {name: branches[0].get_parameter(name).detach().clone() for name in TIED}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    heatmaps, offsets = model(torch.randn(2, 3, 64, 64))
    loss = heatmaps[0][0].pow(2).mean() + offsets[0][0].abs().mean()
    loss.backward()
    optimizer.step()
    for name in TIED:
        after = [block.get_parameter(name).detach() for block in branches]
        assert not torch.equal(after[0], before[name]), name
        assert torch.equal(after[1], after[0]) and torch.equal(after[2], after[0])


def test_state_dict_with_differing_copies_of_a_shared_weight_is_refused():
    model = tiny_model(HRNET_REG)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    state["multi_level_layers_4x_heatmap.2.0.stn_conv2.weight"] += 1.0
    with pytest.raises(RuntimeError, match=r"multi_level_layers_4x_heatmap\.2\.0\.stn_conv2"
                                           r"\.weight differ"):
        load_state_dict_strict(tiny_model(HRNET_REG, seed=1), state)


# --- initialisation and training ----------------------------------------------------------------

@pytest.mark.parametrize("method", ["normal", "kaiming"])
def test_training_build_zeroes_the_transforms_and_a_step_gives_them_gradients(method):
    torch.manual_seed(0)
    cfg = load_config("", regression_opts(HIGHER_REG, 8, 64, 5, tiny=True)
                      + ["MODEL.INIT_METHOD", method])
    model = build_model(cfg, is_train=True).train()
    transforms = [(name, module) for name, module in model.named_modules()
                  if name.rsplit(".", 1)[-1].startswith("transform_matrix_conv")]
    assert len(transforms) == 2 * 4  # two per block, three heatmap blocks and one regression
    for _, conv in transforms:
        assert not conv.weight.any() and not conv.bias.any()
    assert all(m.weight.abs().sum() > 0 for m in model.modules() if isinstance(m, DeformConv2d))

    heatmaps, offsets = model(torch.randn(2, 3, 64, 64))
    target = torch.rand_like(heatmaps[0][0])
    loss = (sum(F.mse_loss(b, target) for b in heatmaps[0]) + heatmaps[1][0].pow(2).mean()
            + F.smooth_l1_loss(offsets[0][0], torch.randn_like(offsets[0][0])))
    loss.backward()
    for name, conv in transforms:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, name
        assert conv.bias.grad.abs().sum() > 0, name


# --- checkpoint layout ----------------------------------------------------------------------------

def head_keys(higher):
    """Every key outside the HRNet trunk, from the regression repository's lib/models/pose_hrnet.py
    and conv_module.py."""
    keys = [f"transition_{kind}.0.weight" for kind in ("cls", "reg")]
    keys += [f"transition_{kind}.1.{key}" for kind in ("cls", "reg") for key in BN_KEYS]
    keys += [f"multi_level_layers_4x_heatmap.{i}.0.{key}" for i in range(3) for key in STN_KEYS]
    keys += [f"multi_level_layers_4x_regression.0.0.{key}" for key in STN_KEYS]
    keys += [f"final_layers.{i}.{key}" for i in range(3 if higher else 2)
             for key in ("weight", "bias")]
    if higher:
        keys += ["deconv_layers.0.0.0.weight"]
        keys += [f"deconv_layers.0.0.1.{key}" for key in BN_KEYS]
        keys += [f"deconv_layers.0.1.0.conv{i}.weight" for i in (1, 2)]
        keys += [f"deconv_layers.0.1.0.bn{i}.{key}" for i in (1, 2) for key in BN_KEYS]
    return keys


TRUNK_PREFIXES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2",
                  "transition2", "stage3", "transition3", "stage4")
# Tensors per trunk prefix of HRNet-W32 (HRNet's lib/models/pose_hrnet.py), with stage 4's last
# module fusing into all four outputs: 786 + (3 + 4 + 6 conv/BN pairs of six tensors) = 864.
TRUNK_COUNTS = {"conv1": 1, "bn1": 5, "conv2": 1, "bn2": 5, "layer1": 78, "transition1": 12,
                "stage2": 108, "transition2": 6, "stage3": 744, "transition3": 6, "stage4": 864}


@pytest.mark.parametrize("name, width, higher", [(HRNET_REG, 32, False), (HRNET_REG, 48, False),
                                                 (HIGHER_REG, 48, True)])
def test_state_dict_keys_are_the_official_layout(name, width, higher):
    state = full_model(name, width, 640).state_dict()
    trunk = [key for key in state if key.split(".", 1)[0] in TRUNK_PREFIXES]
    assert sorted(set(state) - set(trunk)) == sorted(head_keys(higher))
    counts = {prefix: sum(1 for key in trunk if key.split(".", 1)[0] == prefix)
              for prefix in TRUNK_PREFIXES}
    assert counts == TRUNK_COUNTS
    w, j = width, 17
    expected_shapes = {
        "stage4.2.fuse_layers.3.0.2.0.weight": (8 * w, w, 3, 3),
        "stage4.2.fuse_layers.1.3.0.weight": (2 * w, 8 * w, 1, 1),
        "transition_cls.0.weight": (w, 15 * w, 1, 1),
        "transition_reg.0.weight": (256, 15 * w + j, 1, 1),
        "multi_level_layers_4x_heatmap.1.0.stn_conv1.weight": (w, w, 3, 3),
        "multi_level_layers_4x_heatmap.2.0.transform_matrix_conv2.weight": (4, w, 3, 3),
        "multi_level_layers_4x_heatmap.0.0.regular_matrix": (2, 9),
        "multi_level_layers_4x_regression.0.0.stn_conv2.weight": (256, 256, 3, 3),
        "final_layers.0.weight": (j, w, 1, 1),
        "final_layers.1.weight": (2 * j + 1, 256, 1, 1),
        "final_layers.1.bias": (2 * j + 1,),
    }
    if higher:
        expected_shapes |= {"deconv_layers.0.0.0.weight": (w + j, w, 4, 4),
                            "final_layers.2.weight": (j, w, 1, 1)}
    assert {key: tuple(state[key].shape) for key in expected_shapes} == expected_shapes


def test_regular_matrix_is_a_persistent_buffer_with_the_reference_values():
    block = STNBlock(2)
    assert "regular_matrix" in block.state_dict()
    assert block.regular_matrix.tolist() == [[-1, -1, -1, 0, 0, 0, 1, 1, 1],
                                             [-1, 0, 1, -1, 0, 1, -1, 0, 1]]


@pytest.mark.parametrize("name", [HRNET_REG, HIGHER_REG])
@pytest.mark.parametrize("prefix", ["", "module.", "1."])
def test_official_layout_loads_strictly_through_the_checkpoint_loader(name, prefix, tmp_path):
    source = tiny_model(name, seed=1)
    randomize_(source)
    state = source.state_dict()
    assert set(state) - {key for key in state if key.split(".", 1)[0] in TRUNK_PREFIXES} \
        == set(head_keys(name == HIGHER_REG))
    target = tiny_model(name, seed=2)
    assert_reloads_exactly(source, target, tmp_path / "model.pth", prefix)
    heatmap = target.multi_level_layers_4x_heatmap
    assert heatmap[2][0].stn_conv1.weight is heatmap[0][0].stn_conv1.weight  # still tied


def test_a_missing_branch_key_is_reported_by_name(tmp_path):
    state = tiny_model(HRNET_REG).state_dict()
    del state["multi_level_layers_4x_heatmap.1.0.stn_conv1.weight"]
    path = tmp_path / "model.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): "
                                              r"multi_level_layers_4x_heatmap\.1\.0\.stn_conv1"):
        load_model_weights(tiny_model(HRNET_REG), str(path))


# --- parameters and GFLOPs ----------------------------------------------------------------------

@pytest.mark.parametrize("name, width, input_size, unique, per_call, gflops", [
    # The regression repository's README table and its get_model_summary count (unique; with
    # repeats).
    (HRNET_REG, 32, 512, 30.68e6, 30.75e6, 64.9),
    (HRNET_REG, 48, 640, 66.80e6, 66.96e6, 174.3),
    (HIGHER_REG, 48, 640, 66.90e6, 66.99e6, 181.9),
])
def test_parameters_and_gflops_match_the_paper(name, width, input_size, unique, per_call, gflops):
    row = summarize(full_model(name, width, input_size), name, (input_size, input_size))
    assert row.convention == "hrnet_bottom_up"
    assert row.params == pytest.approx(unique, rel=0.005)
    assert row.paper_params == pytest.approx(per_call, rel=0.005)
    assert round(row.paper_params / 1e6, 1) == {32: 30.8, 48: 67.0}[width]
    assert row.paper_gflops == pytest.approx(gflops, rel=0.005)


def test_true_macs_count_deformable_convolutions_and_the_paper_params_count_calls():
    class Twice(nn.Module):
        """One convolution and one BatchNorm run twice, then a deformable convolution."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.deform = DeformConv2d(3, 5, 3, padding=1, bias=False)

        def forward(self, x):
            x = self.bn(self.conv(self.bn(self.conv(x))))
            return self.deform(x, torch.zeros(x.shape[0], 18, *x.shape[2:]))

    model = Twice()
    complexity = measure_complexity(model, (6, 7))
    conv, deform = 3 * 3 * 9 * 42, 5 * 3 * 9 * 42
    assert complexity.macs == 2 * conv + deform
    assert complexity.params == 3 * 3 * 9 + 3 + 2 * 3 + 5 * 3 * 9
    assert per_call_params(complexity) == 2 * (3 * 3 * 9 + 3) + 2 * (2 * 3) + 5 * 3 * 9


def test_summary_tool_prints_both_parameter_counts(tmp_path, monkeypatch, capsys):
    # In-process (a subprocess would spend seconds importing torch again); the experiment's
    # settings arrive as command-line overrides of a minimal YAML.
    config = tmp_path / "w32_4x_reg_512.yaml"
    config.write_text(f"MODEL:\n  NAME: {HRNET_REG}\n")
    opts = regression_opts(HRNET_REG, 32, 512)
    monkeypatch.setattr(sys, "argv", ["summary_network.py", "--cfg", str(config), *opts])
    runpy.run_path(str(REPO_ROOT / "tools/summary_network.py"), run_name="__main__")
    output = capsys.readouterr().out.splitlines()
    assert output[0].split() == ["experiment", "model", "input", "(HxW)", "params", "(M)", "true",
                                 "GMACs", "paper", "params", "(M)", "paper", "GFLOPs",
                                 "convention"]
    assert output[2].split() == ["w32_4x_reg_512", HRNET_REG, "512x512", "30.679", "64.89",
                                 "30.752", "64.89", "hrnet_bottom_up"]


# --- config errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    (["MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.NUM_CHANNELS", "[8,8,16]"],
     r"MULTI_LEVEL_OUTPUT_HEATMAP\.NUM_CHANNELS is \[8, 8, 16\]"),
    (["MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.BLOCK", "['STNBLOCK','BASIC','STNBLOCK']"],
     r"MULTI_LEVEL_OUTPUT_HEATMAP\.BLOCK has \['BASIC'\]"),
    (["MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.DILATION_RATE", "[1,2]"],
     r"one entry per branch"),
    (["MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.BLOCK", "['STNBLOCK','STNBLOCK']",
      "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.NUM_BLOCKS", "[1,1]",
      "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.NUM_CHANNELS", "[16,16]",
      "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.DILATION_RATE", "[1,2]"],
     r"exactly one"),
])
def test_bad_head_configs_name_the_key(override, message):
    cfg = load_config("", regression_opts(HRNET_REG, 8, 64, tiny=True) + override)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg, is_train=False)


def test_higher_variant_needs_exactly_one_deconvolution():
    cfg = load_config("", regression_opts(HIGHER_REG, 8, 64, tiny=True)
                      + ["MODEL.EXTRA.DECONV.NUM_DECONVS", "2",
                         "MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8,8]",
                         "MODEL.EXTRA.DECONV.KERNEL_SIZE", "[4,4]",
                         "MODEL.EXTRA.DECONV.CAT_OUTPUT", "[True,True]"])
    with pytest.raises(ConfigError, match="NUM_DECONVS is 2"):
        build_model(cfg, is_train=False)


# --- rescore network ----------------------------------------------------------------------------

@pytest.mark.parametrize("in_features", [74, 59])
def test_rescore_net_layout_and_initialisation(in_features):
    torch.manual_seed(0)
    net = RescoreNet(in_features)
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert shapes == {"l1.weight": (256, in_features), "l1.bias": (256,),
                      "l2.weight": (256, 256), "l2.bias": (256,),
                      "l3.weight": (1, 256), "l3.bias": (1,)}
    for layer, fan_in in ((net.l1, in_features), (net.l2, 256)):
        # Kaiming-uniform with a = 1: U(-b, b), b = sqrt(6 / ((1 + a^2) fan_in)) = sqrt(3 / fan_in).
        bound = math.sqrt(3 / fan_in)
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.95 * bound
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert not layer.bias.any()
    assert not net.l3.bias.any()


def test_rescore_net_forward_is_three_linear_layers_with_relu():
    torch.manual_seed(1)
    net = RescoreNet(74)
    features = torch.randn(5, 74)
    hidden = torch.clamp(features @ net.l1.weight.T + net.l1.bias, min=0)
    hidden = torch.clamp(hidden @ net.l2.weight.T + net.l2.bias, min=0)
    expected = hidden @ net.l3.weight.T + net.l3.bias
    with torch.no_grad():
        torch.testing.assert_close(net(features), expected)
    assert net(features).shape == (5, 1)
