"""HRNeXt-S and -B (pose_hrnext): exact parameter counts, GFLOPs with the dynamic convolutions,
forward at any size, per-sample kernels, checkpoint keys and strict loading, initialisation, one
training step, drop path and gradient checkpointing, config errors and the experiment files."""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from experiment_models import (
    assert_reloads_exactly,
    build,
    config,
    meta_model,
    randomize_batchnorms_,
)
from hrpose.codecs.heatmap import decode_standard
from hrpose.config import ConfigError, load_config
from hrpose.models.backbones.hrnext import (
    DynamicKernelConv,
    HRNeXtBlock,
    HRNeXtModule,
    KernelAggregation,
    PoseHRNeXt,
)
from hrpose.models.complexity import hrnet_repo_gflops, measure_complexity, summarize

REPO_ROOT = Path(__file__).resolve().parents[1]
HRNEXT_DIRS = [REPO_ROOT / "experiments" / name / "hrnext"
               for name in ("coco", "crowdpose", "ochuman")]
S_256 = str(HRNEXT_DIRS[0] / "hrnext_small_256x192.yaml")
B_384 = str(HRNEXT_DIRS[0] / "hrnext_base_384x288.yaml")
EXPERIMENTS = sorted(str(p) for d in HRNEXT_DIRS for p in d.glob("*.yaml"))

# HRNeXt-B's kernel banks (8, (8, 4), (8, 4, 2), (8, 4, 2, 1)) on narrow branches and one module per
# stage: every kind of layer of the full model, cheap enough to train a step on the CPU.
NARROW = ("MODEL.EXTRA.STAGE1.NUM_CHANNELS", "[16]",
          "MODEL.EXTRA.STAGE2.NUM_MODULES", "1", "MODEL.EXTRA.STAGE2.NUM_CHANNELS", "[8,16]",
          "MODEL.EXTRA.STAGE3.NUM_MODULES", "1", "MODEL.EXTRA.STAGE3.NUM_CHANNELS", "[8,16,32]",
          "MODEL.EXTRA.STAGE4.NUM_MODULES", "1", "MODEL.EXTRA.STAGE4.NUM_CHANNELS", "[8,16,32,64]")


def narrow_model(seed, *opts, is_train=False):
    torch.manual_seed(seed)
    return build(B_384, *NARROW, *opts, is_train=is_train)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build(S_256).eval()


def backbone_params(model):
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith("final_layer"))


# --- parameters, keys and GFLOPs --------------------------------------------------------------

@pytest.mark.parametrize("cfg_path, backbone, head, split", [
    (S_256, 9_478_688, 32 * 17 + 17, (0.40, 0.79, 3.25, 5.04)),
    (B_384, 31_726_080, 48 * 17 + 17, (0.69, 2.62, 13.91, 14.51)),
])
def test_exact_parameter_counts_and_their_split_over_the_stages(cfg_path, backbone, head, split):
    model = meta_model(cfg_path)
    assert isinstance(model, PoseHRNeXt)
    assert backbone_params(model) == backbone
    assert sum(p.numel() for p in model.final_layer.parameters()) == head
    # Stem + stage 1, then each stage with the transition into it, in millions (reference 2.2).
    stage_of = {"transition1": "stage2", "transition2": "stage3", "transition3": "stage4"}
    counts = dict.fromkeys(("stage1", "stage2", "stage3", "stage4"), 0)
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if top != "final_layer":
            counts[stage_of.get(top, top if top.startswith("stage") else "stage1")] += p.numel()
    assert tuple(round(n / 1e6, 2) for n in counts.values()) == split


def test_state_dict_keys_and_shapes_follow_the_reference_backbone():
    s = {key: tuple(value.shape) for key, value in meta_model(S_256).state_dict().items()}
    assert s["conv1.weight"] == (64, 3, 3, 3)
    assert s["conv2.weight"] == s["conv4.weight"] == (64, 1, 3, 3)  # depthwise
    assert s["conv3.weight"] == (64, 64, 1, 1)
    assert s["bn4.running_var"] == (64,)
    block = "layer1.0."
    assert s[block + "dlp.dw3x3.conv.aggregation.weight"] == (4, 64, 1, 3, 3)
    assert s[block + "dlp.dw3x3.conv.attention.conv1.weight"] == (16, 64, 1, 1)
    assert s[block + "dlp.dw3x3.conv.attention.norm.weight"] == (16,)
    assert s[block + "dlp.dw3x3.conv.attention.conv2.bias"] == (4,)
    assert s[block + "mlp1.spatial_gate.dwd.weight"] == (64, 1, 7, 7)
    assert s[block + "mlp1.spatial_gate.dw.weight"] == (64, 1, 5, 5)
    assert s[block + "mlp2.proj1.conv.aggregation.weight"] == (4, 256, 64, 1, 1)
    assert s[block + "mlp2.dw.conv.aggregation.weight"] == (4, 256, 1, 3, 3)
    assert s[block + "mlp2.proj2.conv.aggregation.weight"] == (4, 64, 256, 1, 1)
    assert s[block + "layer_scale_3"] == (64,)
    assert s["layer1.2.norm.weight"] == (64,)  # the channels-last LayerNorm after two blocks
    # One kernel bank: a plain convolution under the same .conv prefix.
    assert s["stage3.0.branches.2.0.dlp.dw3x3.conv.weight"] == (128, 1, 3, 3)
    assert s["stage3.0.branches.2.0.mlp2.proj1.conv.weight"] == (512, 128, 1, 1)
    assert s["transition1.0.0.weight"] == (32, 64, 3, 3)
    assert s["transition1.1.0.0.weight"] == (64, 64, 3, 3)
    assert s["transition3.3.0.0.weight"] == (256, 128, 3, 3)
    assert s["stage2.1.fuse_layers.0.1.0.weight"] == (32, 64, 1, 1)
    assert s["stage3.0.fuse_layers.2.0.0.0.weight"] == (32, 1, 3, 3)
    assert s["stage3.0.fuse_layers.2.0.0.2.weight"] == (32, 32, 1, 1)
    assert s["stage3.0.fuse_layers.2.0.1.2.weight"] == (128, 32, 1, 1)
    assert s["final_layer.weight"] == (17, 32, 1, 1)
    # The last module of stage 4 fuses into the highest resolution only.
    assert {key.split(".")[3] for key in s if key.startswith("stage4.1.fuse_layers.")} == {"0"}
    assert not any(".fuse_layers.0.0." in key or "transition2.0." in key for key in s)


_SUMMARIES = {}


def summary(cfg_path):
    if cfg_path not in _SUMMARIES:
        width, height = config(cfg_path).MODEL.IMAGE_SIZE
        _SUMMARIES[cfg_path] = summarize(meta_model(cfg_path), "pose_hrnext", (height, width))
    return _SUMMARIES[cfg_path]


# HRNeXt's README prints 2.5 and 10.8: the "Flops" of the backbone under the rules of its vendored
# torchstat (tools/torchstat/compute_flops.py), / 2^30, are 2.523 and 10.827. The true
# multiply-adds of the whole network (torch's flop counter) are given for comparison.
@pytest.mark.parametrize("cfg_path, macs, authors_gflops", [
    (S_256, 2_567_950_592, 2.523),
    (B_384, 11_174_858_432, 10.827),
])
def test_gflops_are_the_authors_torchstat_count(cfg_path, macs, authors_gflops):
    row = summary(cfg_path)
    assert row.convention == "hrnext"
    assert row.macs == macs
    assert row.paper_gflops == pytest.approx(authors_gflops, rel=0.01)
    assert row.paper_gflops == pytest.approx(authors_gflops, abs=5e-4)


def test_flop_counter_sees_every_per_sample_convolution():
    """The total is the hooked nn.Conv2d work plus the grouped per-sample convolutions (which no
    module hook sees) plus the mixing of the banks, each computed here from the shapes."""
    model = meta_model(S_256)
    dynamic, mixing = [], []

    def record(module, inputs, output):
        bank = module.aggregation.weight
        dynamic.append(bank[0].numel() * output.shape[-2] * output.shape[-1])
        mixing.append(bank.numel())  # (1 x K) @ (K x numel of one kernel)

    handles = [m.register_forward_hook(record) for m in model.modules()
               if isinstance(m, DynamicKernelConv)]
    try:
        complexity = measure_complexity(model, (256, 192))
    finally:
        for handle in handles:
            handle.remove()
    static = sum(call.weight_numel * call.output_shape[2] * call.output_shape[3]
                 for call in complexity.layer_calls)
    # 2 + 8 + 16 + 8 blocks with dynamic convolutions, 4 each (dlp and the three of mlp2).
    assert len(dynamic) == 4 * (2 + 2 * 2 * 2 + 4 * 2 * 2 + 2 * 2 * 2)
    assert complexity.macs == static + sum(dynamic) + sum(mixing)
    # A hook-only count (the HRNet repos' convention) would miss 44 % of the work.
    assert sum(dynamic) / complexity.macs == pytest.approx(0.44, abs=0.01)
    assert hrnet_repo_gflops(complexity) < 0.6 * complexity.macs / 1e9


def test_summary_tool_prints_params_and_gflops():
    result = subprocess.run([sys.executable, "tools/summary_network.py", "--cfg", B_384],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[2].split() == ["hrnext_base_384x288", "pose_hrnext", "384x288", "31.727", "11.17",
                                "10.83", "hrnext"]
    assert any(line.startswith("hrnext: ") for line in lines)


# --- forward and the dynamic convolution ------------------------------------------------------

@pytest.mark.parametrize("height, width", [(64, 64), (96, 72)])
def test_small_forward_gives_quarter_resolution_heatmaps(small, height, width):
    # 96x72 leaves odd sizes at the low resolutions (9 -> 5 -> 3): fusion resizes to fit.
    with torch.no_grad():
        heatmaps = small(torch.randn(2, 3, height, width))
    assert heatmaps.shape == (2, 17, height // 4, width // 4)
    assert torch.isfinite(heatmaps).all()


def test_base_forward_gives_quarter_resolution_heatmaps():
    torch.manual_seed(1)
    model = build(B_384).eval()
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, 64, 64))
    assert heatmaps.shape == (1, 17, 16, 16)
    assert torch.isfinite(heatmaps).all()


def test_output_decodes_with_the_standard_decoder(small):
    with torch.no_grad():
        heatmaps = small(torch.randn(2, 3, 64, 48))
    coords, maxvals = decode_standard(heatmaps)
    assert coords.shape == (2, 17, 2) and maxvals.shape == (2, 17, 1)
    peaks = heatmaps.flatten(2).argmax(-1)
    assert torch.all((coords[..., 0] - peaks % 12).abs() <= 0.25)
    assert torch.all((coords[..., 1] - peaks // 12).abs() <= 0.25)
    assert torch.equal(maxvals[..., 0], heatmaps.flatten(2).amax(-1))


def reference_upsampling(features, scale, size):
    """HRNeXt's fusion of a coarser branch after its 1x1 conv and BN: the fuse layer's
    nn.Upsample(scale_factor=2^(j-i), bilinear, align_corners=False), then mmpose's resize of the
    result to the finer branch's size (bilinear, align_corners=False), in
    HighResolutionContextModule.forward (models/backbones/hrnext.py)."""
    upsampled = F.interpolate(features, scale_factor=scale, mode="bilinear", align_corners=False)
    return F.interpolate(upsampled, size=size, mode="bilinear", align_corners=False)


def conv_bn(conv, bn, x):
    return F.batch_norm(F.conv2d(x, conv.weight), bn.running_mean, bn.running_var, bn.weight,
                        bn.bias, training=False, eps=bn.eps)


def test_fusion_upsamples_then_resizes_as_the_reference_at_96x72():
    torch.manual_seed(15)
    module = HRNeXtModule([8, 12, 16, 20], [1, 1, 1, 1], [2, 2, 1, 1], mlp_ratio=2,
                          drop_paths=[0.0]).eval()
    randomize_batchnorms_(module, 0.5)
    # The branches of a 96x72 crop: strides 4, 8, 16 and 32 (9 and 5 are odd: 2x overshoots).
    sizes = [(24, 18), (12, 9), (6, 5), (3, 3)]
    inputs = [torch.randn(2, c, h, w) for c, (h, w) in zip([8, 12, 16, 20], sizes)]
    with torch.no_grad():
        outputs = module([x.clone() for x in inputs])
        branches = [branch(x) for branch, x in zip(module.branches, inputs)]
        for i, output in enumerate(outputs):
            total = 0
            for j, features in enumerate(branches):
                if j > i:
                    layer = module.fuse_layers[i][j]
                    features = reference_upsampling(conv_bn(layer[0], layer[1], features),
                                                     2 ** (j - i), sizes[i])
                elif j < i:
                    features = module.fuse_layers[i][j](features)
                total = total + features
            torch.testing.assert_close(output, F.gelu(total), rtol=0, atol=1e-6)
        # Not what one resize straight to the finer size gives.
        layer = module.fuse_layers[0][2]
        coarse = conv_bn(layer[0], layer[1], branches[2])
        one_step = F.interpolate(coarse, size=sizes[0], mode="bilinear", align_corners=False)
        assert (one_step - reference_upsampling(coarse, 4, sizes[0])).abs().max() > 0.05


def test_dynamic_convolution_gives_each_sample_its_own_kernel():
    torch.manual_seed(2)
    conv = DynamicKernelConv(16, 16, kernel_size=3, num_kernels=4, padding=1, groups=16).eval()
    x = torch.stack([torch.randn(16, 12, 10), 3 * torch.rand(16, 12, 10)])
    with torch.no_grad():
        kernels = conv.kernels(x)
        batched = conv(x)
    assert kernels.shape == (2, 16, 1, 3, 3)
    assert not torch.allclose(kernels[0], kernels[1], rtol=0.01, atol=0)
    for i in range(2):
        expected = F.conv2d(x[i:i + 1], kernels[i], padding=1, groups=16)
        assert torch.allclose(batched[i:i + 1], expected, atol=1e-6)


def test_batched_result_equals_one_by_one(small):
    torch.manual_seed(3)
    images = torch.stack([torch.randn(3, 64, 64), torch.rand(3, 64, 64)])
    first_dynamic = small.dynamic_convolutions()[0]
    with torch.no_grad():
        stem = small.forward_stem(images)
        kernels = first_dynamic.kernels(stem)
        batched = small(images)
        one_by_one = torch.cat([small(images[i:i + 1]) for i in range(2)])
    assert not torch.allclose(kernels[0], kernels[1], rtol=1e-3, atol=0)
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_a_training_batch_of_one_runs():
    # The kernel attention's BatchNorm sees one value per channel: running statistics stand in.
    model = narrow_model(13).train()
    attention = model.layer1[0].dlp.dw3x3.conv.attention
    before = attention.norm.running_mean.clone()
    heatmaps = model(torch.randn(1, 3, 64, 64))
    heatmaps.sum().backward()
    assert heatmaps.shape == (1, 17, 16, 16)
    assert torch.equal(attention.norm.running_mean, before)
    assert attention.conv1.weight.grad is not None


def test_channels_last_conversion_keeps_the_output():
    # The training loop moves every model to channels_last, which 5-D tensors do not support.
    model = narrow_model(4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        converted = model(x.contiguous(memory_format=torch.channels_last))
    assert all(m.weight.dim() == 5 for m in model.modules() if isinstance(m, KernelAggregation))
    assert torch.allclose(converted, expected, atol=1e-5)
    # Also with gradients present (a conversion after a backward pass).
    model(x).sum().backward()
    model.to(memory_format=torch.channels_last)
    bank = model.layer1[0].dlp.dw3x3.conv.aggregation.weight
    assert bank.grad is not None and bank.grad.shape == bank.shape == (8, 16, 1, 3, 3)


# --- initialisation and checkpoints -----------------------------------------------------------

def test_init_weights_follows_the_reference():
    torch.manual_seed(5)
    model = build(S_256, is_train=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([conv.weight.flatten() for conv in convs])
    assert weights.std().item() == pytest.approx(0.001, rel=0.02)
    assert all(conv.bias is None or torch.count_nonzero(conv.bias) == 0 for conv in convs)
    # The kernel banks keep Kaiming-uniform: bound sqrt(6 / fan_in) per bank.
    bank = model.layer1[0].mlp2.proj1.conv.aggregation.weight  # (4, 256, 64, 1, 1), fan_in 64
    bound = (6 / 64) ** 0.5
    assert bank.abs().max().item() <= bound
    assert bank.abs().max().item() > 0.95 * bound
    assert torch.equal(model.stage2[0].branches[1][0].layer_scale_2, torch.full((64,), 0.01))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_saved_state_dict_loads_strictly(prefix, small, tmp_path):
    torch.manual_seed(6)
    assert_reloads_exactly(small, build(S_256), tmp_path / "hrnext_small.pth", prefix)


# --- training ----------------------------------------------------------------------------------

def training_step(model, optimizer=None):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    target = torch.rand(2, 17, 16, 16, generator=torch.Generator().manual_seed(8))
    loss = F.mse_loss(model(images), target)
    if optimizer is not None:
        optimizer.zero_grad()
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return loss


def test_one_training_step_changes_every_parameter():
    # Drop path off: a path dropped for both samples would leave its weights without a gradient.
    model = narrow_model(9, "MODEL.EXTRA.DROP_PATH_RATE", "0.0", is_train=True).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = training_step(model, torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.01))
    assert torch.isfinite(loss)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for with_cp in ("False", "True"):
        model = narrow_model(10, "MODEL.EXTRA.WITH_CP", with_cp).train()
        training_step(model)
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-9) for k in grads[0])


@pytest.mark.parametrize("with_cp", [False, True])
def test_checkpointed_blocks_update_batchnorm_statistics_twice_as_the_reference(with_cp):
    """The reference wraps each HighResolutionContextBlock in torch.utils.checkpoint when with_cp,
    which runs the block's forward again, in training mode, during the backward pass. So every
    BatchNorm inside a block updates its running statistics twice per step with the same batch
    statistics s: r -> (1 - m) r + m s -> (1 - m)^2 r + (1 - (1 - m)^2) s, with m = 0.1 that is
    0.81 r + 0.19 s. The BatchNorms outside the blocks (stem, transitions, fusion) update once."""
    model = narrow_model(14, "MODEL.EXTRA.WITH_CP", str(with_cp)).train()
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    in_blocks = {f"{name}.{sub}" for name, block in model.named_modules()
                 if isinstance(block, HRNeXtBlock)
                 for sub, m in block.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert in_blocks and set(norms) - in_blocks
    for m in norms.values():
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2.0)
    before = {name: (m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
              for name, m in norms.items()}
    batch_statistics = defaultdict(list)

    def record(name):
        def hook(module, inputs):
            x = inputs[0].detach()
            batch_statistics[name].append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)))
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in norms.items()]
    try:
        training_step(model)
    finally:
        for handle in handles:
            handle.remove()
    for name, m in norms.items():
        updates = 2 if with_cp and name in in_blocks else 1
        calls = batch_statistics[name]
        assert len(calls) == updates, name
        mean, var = calls[0]
        for again in calls[1:]:
            torch.testing.assert_close(again, calls[0], rtol=0, atol=0)
        keep = (1 - m.momentum) ** updates
        mean_before, var_before, tracked_before = before[name]
        torch.testing.assert_close(m.running_mean, keep * mean_before + (1 - keep) * mean,
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.running_var, keep * var_before + (1 - keep) * var,
                                   rtol=1e-5, atol=1e-6)
        assert int(m.num_batches_tracked) == tracked_before + updates


def test_drop_path_rates_rise_linearly_and_act_in_training_only():
    model = narrow_model(11, "MODEL.EXTRA.DROP_PATH_RATE", "0.5")
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for block in
             [model.layer1[0], model.layer1[1], model.stage4[0].branches[3][1]]]
    # 2 + 2 + 2 + 2 slots with one module per stage: 0, 0.5/7, ..., 0.5.
    assert rates == pytest.approx([0.0, 0.5 / 7, 0.5])
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(12)
        first = model(x)
        assert not torch.allclose(first, model(x))


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("MODEL.EXTRA.DROP_PATH_RATE", "1.0", r"MODEL\.EXTRA\.DROP_PATH_RATE must be in \[0, 1\)"),
    ("MODEL.EXTRA.MLP_RATIO", "0", r"MODEL\.EXTRA\.MLP_RATIO must be a positive integer"),
    ("MODEL.EXTRA.STAGE3.NUM_MODULES", "0",
     r"MODEL\.EXTRA\.STAGE3\.NUM_MODULES must be a positive"),
    ("MODEL.EXTRA.STAGE4.NUM_CHANNELS", "[48,96,192,0]",
     r"MODEL\.EXTRA\.STAGE4\.NUM_CHANNELS must be a non-empty list of positive integers"),
    ("MODEL.EXTRA.STAGE1.NUM_KERNELS", "[0]", r"MODEL\.EXTRA\.STAGE1\.NUM_KERNELS must be"),
    ("MODEL.EXTRA.STAGE2.NUM_KERNELS", "[8]", r"MODEL\.EXTRA\.STAGE2\.NUM_BLOCKS, NUM_CHANNELS and "
                                              r"NUM_KERNELS need one entry per branch"),
    ("MODEL.EXTRA.STAGE1.NUM_CHANNELS", "[2]", r"MODEL\.EXTRA\.STAGE1\.NUM_CHANNELS: a branch with "
                                               r"dynamic convolutions"),
])
def test_bad_extra_values_are_named(key, value, message):
    with torch.device("meta"), pytest.raises(ConfigError, match=message):
        build(B_384, key, value)


def test_stages_must_add_branches():
    opts = ("MODEL.EXTRA.STAGE3.NUM_BLOCKS", "[2,2]", "MODEL.EXTRA.STAGE3.NUM_CHANNELS", "[48,96]",
            "MODEL.EXTRA.STAGE3.NUM_KERNELS", "[8,4]")
    with torch.device("meta"), pytest.raises(ConfigError, match=r"MODEL\.EXTRA\.STAGE3 must have "
                                                                 r"more branches"):
        build(B_384, *opts)


def test_defaults_are_hrnext_small():
    # The architecture; gradient checkpointing is a training switch, off by default.
    defaults = load_config("", ["MODEL.NAME", "pose_hrnext", "MODEL.EXTRA.WITH_CP", "True"])
    assert defaults.MODEL.EXTRA == config(S_256).MODEL.EXTRA


@pytest.mark.parametrize("cfg_path", EXPERIMENTS)
def test_experiment_files_follow_the_reference_recipe(cfg_path):
    cfg = config(cfg_path)
    name = Path(cfg_path).stem
    dataset = Path(cfg_path).parents[1].name
    assert cfg.MODEL.NAME == "pose_hrnext"
    assert cfg.MODEL.INIT_WEIGHTS and cfg.MODEL.PRETRAINED == ""
    extra = cfg.MODEL.EXTRA
    # The released configs train with gradient checkpointing (with_cp=True).
    assert (extra.DROP_PATH_RATE, extra.MLP_RATIO, extra.WITH_CP) == (0.1, 4, True)
    assert [extra[f"STAGE{n}"].get("NUM_MODULES", 1) for n in (1, 2, 3, 4)] == [1, 2, 4, 2]
    base = "_base_" in name
    assert list(extra.STAGE4.NUM_CHANNELS) == ([48, 96, 192, 384] if base else [32, 64, 128, 256])
    assert list(extra.STAGE4.NUM_KERNELS) == ([8, 4, 2, 1] if base else [4, 2, 1, 1])
    big = name.endswith("384x288")
    assert list(cfg.MODEL.IMAGE_SIZE) == ([288, 384] if big else [192, 256])
    assert cfg.MODEL.SIGMA == (3 if big else 2)
    train = cfg.TRAIN
    assert (train.OPTIMIZER, train.LR, train.WD, train.LR_SCHEDULER, train.END_EPOCH) == \
        ("adamw", 0.004, 0.01, "cosine", 300)
    assert (train.WARMUP_ITERS, train.WARMUP_RATIO, train.MIN_LR_RATIO) == (500, 0.001, 0.01)
    assert train.BATCH_SIZE_PER_GPU == (64 if dataset == "crowdpose" else 32)
    data = cfg.DATASET
    assert (data.ROT_FACTOR, data.SCALE_FACTOR, data.PROB_HALF_BODY) == (40, 0.5, 0.3)
    test = cfg.TEST
    assert test.FLIP_TEST and test.SHIFT_HEATMAP and test.POST_PROCESS
    assert (test.OKS_THRE, test.IN_VIS_THRE, test.IMAGE_THRE) == (0.9, 0.2, 0.0)
    if dataset == "crowdpose":
        assert (cfg.MODEL.NUM_JOINTS, data.NUM_JOINTS_HALF_BODY, data.TRAIN_SET, data.TEST_SET) == \
            (14, 6, "trainval", "test")
        assert test.COCO_BBOX_FILE.endswith("det_for_crowd_test_0.1_0.5.json")
    elif dataset == "ochuman":
        assert (data.DATASET, data.TRAIN_SET, data.TEST_DATASET, data.TEST_SET) == \
            ("coco", "train2017", "ochuman", "val")
        assert test.USE_GT_BBOX
    else:
        assert (data.TRAIN_SET, data.TEST_SET, data.TEST_DATASET) == ("train2017", "val2017", "")
        assert not test.USE_GT_BBOX
        assert test.COCO_BBOX_FILE.endswith("COCO_val2017_detections_AP_H_56_person.json")


def test_sync_batchnorm_replaces_every_batchnorm_only_in_a_multiprocess_run():
    from hrpose.engine.device import apply_sync_batchnorm

    def model():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.LayerNorm(4),
                             nn.Sequential(nn.BatchNorm2d(8)))

    single = apply_sync_batchnorm(model(), enabled=True, processes=1)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in single.modules())
    off = apply_sync_batchnorm(model(), enabled=False, processes=4)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in off.modules())
    synced = apply_sync_batchnorm(model(), enabled=True, processes=2)
    kinds = [type(m) for m in synced.modules()]
    assert kinds.count(nn.SyncBatchNorm) == 2 and nn.BatchNorm2d not in kinds
    assert nn.LayerNorm in kinds
