"""HRNeXt: the high-resolution context backbone (S and B) and the top-down pose network PoseHRNeXt.

One file over 500 lines on purpose, as timm's model files: the blocks, the branches, the fusion
and the builders read top to bottom, and the checkpoint key names follow from this one layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import BN_MOMENTUM
from ..heads.heatmap import heatmap_conv
from ..weights import initialize_, load_pretrained_weights
from .hrnet import apply_transition

# The kernel-attention path squeezes the channels by this factor before predicting K weights.
ATTENTION_REDUCTION = 4
# Every residual path starts at 1 % strength, so a deep untrained network begins close to identity.
LAYER_SCALE_INIT = 1e-2
# The branch-end LayerNorm's epsilon, as in the reference (ConvNeXt's value, not PyTorch's 1e-5).
LAYER_NORM_EPS = 1e-6


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole residual path for a random subset of the
    samples and rescale the others by 1 / keep probability (timm is not a dependency)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class KernelAttention(nn.Module):
    """Per-sample mixing weights of the K kernel banks: global average pool, 1x1 squeeze, BN,
    GELU, 1x1 to K, sigmoid. A sigmoid rather than a softmax: the banks are scaled independently."""

    def __init__(self, channels: int, num_kernels: int) -> None:
        super().__init__()
        hidden = max(channels // ATTENTION_REDUCTION, 1)
        # A module rather than F.adaptive_avg_pool2d: the reference's FLOP tool counts it.
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.norm = _bn(hidden)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(hidden, num_kernels, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = self.conv1(self.avg_pool(x))
        if self.training and x.shape[0] == 1:
            # One pooled value per channel has no batch statistics (BatchNorm raises, and the
            # reference fails on a training batch of one, e.g. the last of an epoch): normalise
            # with the running statistics instead, without updating them.
            norm = self.norm
            squeezed = F.batch_norm(squeezed, norm.running_mean, norm.running_var, norm.weight,
                                    norm.bias, training=False, eps=norm.eps)
        else:
            squeezed = self.norm(squeezed)
        logits = self.conv2(self.act(squeezed))
        return torch.sigmoid(logits.flatten(1))  # (N, K)


class KernelAggregation(nn.Module):
    """K kernel banks of one convolution, combined per sample and applied as a single grouped
    convolution whose groups are (sample, group) pairs.

    The banks are raw Parameters, not Conv2d layers, so the N(0, 0.001) initialisation of the
    convolutions leaves them at their Kaiming-uniform start, as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_kernels: int,
                 stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.groups = padding, groups
        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, in_channels // groups,
                                               kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform per bank (each bank is initialised like a conv weight of its own)."""
        for bank in self.weight.data:
            nn.init.kaiming_uniform_(bank)

    def _apply(self, fn, recurse=True):
        """Module.to(memory_format=torch.channels_last), which the training loop applies, converts
        every 4- and 5-D tensor and fails on 5-D ones: the banks pass through it as 3-D views
        (their layout is immaterial; the mixed kernels are computed fresh on every call)."""
        shape = self.weight.shape
        self._reshape_banks(shape[:2] + (-1,))
        try:
            return super()._apply(fn, recurse)
        finally:
            self._reshape_banks(shape)

    def _reshape_banks(self, shape) -> None:
        self.weight.data = self.weight.data.reshape(shape)
        if self.weight.grad is not None:
            self.weight.grad = self.weight.grad.reshape(shape)

    def kernels(self, attention: Tensor) -> Tensor:
        """(N, out, in / groups, k, k): each sample's weighted sum of the banks."""
        mixed = attention @ self.weight.reshape(self.weight.shape[0], -1)
        return mixed.reshape(attention.shape[0], *self.weight.shape[1:])

    def forward(self, x: Tensor, attention: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        weight = self.kernels(attention).reshape(-1, *self.weight.shape[2:])
        out = F.conv2d(x.reshape(1, batch * self.in_channels, height, width), weight,
                       stride=self.stride, padding=self.padding, groups=self.groups * batch)
        return out.reshape(batch, self.out_channels, *out.shape[-2:])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"num_kernels={self.weight.shape[0]}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


class DynamicKernelConv(nn.Module):
    """A convolution whose kernel is chosen per sample: attention (weights) then aggregation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_kernels: int,
                 padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.attention = KernelAttention(in_channels, num_kernels)
        self.aggregation = KernelAggregation(in_channels, out_channels, kernel_size, num_kernels,
                                             padding=padding, groups=groups)

    def kernels(self, x: Tensor) -> Tensor:
        """The per-sample kernels this input would be convolved with (for inspection and export)."""
        return self.aggregation.kernels(self.attention(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.aggregation(x, self.attention(x))


class DConv(nn.Module):
    """A bias-free convolution that is dynamic with num_kernels > 1 and a plain Conv2d with 1
    (one bank mixed by a sigmoid would only rescale the kernel). Held under .conv, the key prefix
    of the reference."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_kernels: int,
                 groups: int = 1) -> None:
        super().__init__()
        padding = kernel_size // 2
        if num_kernels > 1:
            self.conv: nn.Module = DynamicKernelConv(in_channels, out_channels, kernel_size,
                                                     num_kernels, padding=padding, groups=groups)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                                  groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class DynamicLocalPerception(nn.Module):
    """Local detail: dynamic depthwise 3x3, BN, GELU (no pre-norm, the block adds it residually)."""

    def __init__(self, dim: int, num_kernels: int) -> None:
        super().__init__()
        self.dw3x3 = DConv(dim, dim, 3, num_kernels, groups=dim)
        self.norm = _bn(dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.dw3x3(x)))


class GlobalSpatialAttention(nn.Module):
    """The large-kernel spatial gate: depthwise 5x5, depthwise 7x7 with dilation 3 (together a
    23-pixel receptive field), 1x1, each with BN; the result multiplies the input element-wise.
    Context from convolutions only: no softmax attention, no tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel_size=5, padding=2, groups=dim, bias=False)
        self.norm1 = _bn(dim)
        self.dwd = nn.Conv2d(dim, dim, kernel_size=7, padding=9, dilation=3, groups=dim, bias=False)
        self.norm2 = _bn(dim)
        self.pw = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.norm3 = _bn(dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.norm1(self.dw(x))
        gate = self.norm2(self.dwd(gate))
        gate = self.norm3(self.pw(gate))
        return x * gate


class GlobalFFN(nn.Module):
    """The global-context path: 1x1, BN, GELU, spatial gate, 1x1, BN, plus its own shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj1 = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.norm1 = _bn(dim)
        self.act = nn.GELU()
        self.spatial_gate = GlobalSpatialAttention(dim)
        self.proj2 = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.norm2 = _bn(dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.spatial_gate(self.act(self.norm1(self.proj1(x))))
        return self.norm2(self.proj2(out)) + x


class DynamicFFN(nn.Module):
    """The dynamic inverted bottleneck: dynamic 1x1 up to hidden, BN, dynamic depthwise 3x3, BN,
    GELU, dynamic 1x1 back down, BN."""

    def __init__(self, dim: int, hidden: int, num_kernels: int) -> None:
        super().__init__()
        self.proj1 = DConv(dim, hidden, 1, num_kernels)
        self.norm1 = _bn(hidden)
        self.dw = DConv(hidden, hidden, 3, num_kernels, groups=hidden)
        self.norm2 = _bn(hidden)
        self.act = nn.GELU()
        self.proj2 = DConv(hidden, dim, 1, num_kernels)
        self.norm3 = _bn(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(self.proj1(x))
        x = self.act(self.norm2(self.dw(x)))
        return self.norm3(self.proj2(x))


class HRNeXtBlock(nn.Module):
    """The HRNeXt block (the reference's HighResolutionContextBlock): x + s1 * dlp(x), then
    + s2 * mlp1(BN(x)), then + s3 * mlp2(BN(x)); the per-channel layer scales s start at 0.01 and
    one DropPath serves all three paths. With with_cp the block's activations are recomputed in
    the backward pass instead of stored (gradient checkpointing), trading time for memory; as in
    the reference, the re-run forward updates the block's BatchNorm statistics a second time."""

    def __init__(self, dim: int, num_kernels: int, mlp_ratio: int = 4, drop_path: float = 0.0,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.dlp = DynamicLocalPerception(dim, num_kernels)
        self.norm1 = _bn(dim)
        self.mlp1 = GlobalFFN(dim)
        self.norm2 = _bn(dim)
        self.mlp2 = DynamicFFN(dim, dim * mlp_ratio, num_kernels)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.layer_scale_3 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))

    def _forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.dlp(x))
        x = x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp1(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_3[:, None, None] * self.mlp2(self.norm2(x)))

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and self.training and x.requires_grad:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class ChannelsLastLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map (eps 1e-6), ending every branch; the parameters
    sit under .norm as in the reference (LayerNormWithReshaping)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def make_branch(channels: int, num_blocks: int, num_kernels: int, mlp_ratio: int,
                drop_paths: Sequence[float], with_cp: bool) -> nn.Sequential:
    """num_blocks HRNeXt blocks then the branch-end LayerNorm (keys .0 ... .num_blocks)."""
    blocks: list[nn.Module] = [HRNeXtBlock(channels, num_kernels, mlp_ratio, drop_paths[b], with_cp)
                               for b in range(num_blocks)]
    blocks.append(ChannelsLastLayerNorm(channels))
    return nn.Sequential(*blocks)


def _downsample_step(in_channels: int, out_channels: int, gelu: bool) -> nn.Sequential:
    """Depthwise 3x3 stride 2, BN, 1x1, BN (keys .0 to .3), with GELU between chained steps."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1, groups=in_channels,
                  bias=False),
        _bn(in_channels),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        _bn(out_channels)]
    if gelu:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class HRNeXtModule(nn.Module):
    """Parallel branches of HRNeXt blocks, then every output resolution sums all branches and
    applies GELU. With multi_scale_output False only the highest-resolution output is built.

    The branches of one module share their drop-path rates: block b of every branch gets
    drop_paths[b].
    """

    def __init__(self, channels: Sequence[int], num_blocks: Sequence[int],
                 num_kernels: Sequence[int], mlp_ratio: int, drop_paths: Sequence[float],
                 multi_scale_output: bool = True, with_cp: bool = False) -> None:
        super().__init__()
        self.channels = list(channels)
        self.num_branches = len(self.channels)
        self.branches = nn.ModuleList(
            make_branch(self.channels[b], num_blocks[b], num_kernels[b], mlp_ratio, drop_paths,
                        with_cp)
            for b in range(self.num_branches))
        num_outputs = self.num_branches if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(self._fuse_to(i) for i in range(num_outputs)) \
            if self.num_branches > 1 else nn.ModuleList()
        self.act = nn.GELU()

    def _fuse_to(self, i: int) -> nn.ModuleList:
        """fuse_layers[i][j] brings branch j to the width and resolution of output i: a coarser
        branch by 1x1 conv, BN and bilinear upsampling by 2^(j-i) (forward then resizes the
        result to output i's size where an odd size made them differ), a finer one by strided
        depthwise-separable steps."""
        channels = self.channels
        layers = nn.ModuleList()
        for j in range(self.num_branches):
            if j > i:
                layers.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], kernel_size=1,
                                                      bias=False),
                                            _bn(channels[i]),
                                            nn.Upsample(scale_factor=2 ** (j - i), mode="bilinear",
                                                        align_corners=False)))
            elif j == i:
                # Stateless, so the indices j and with them the checkpoint keys stay as they are.
                layers.append(nn.Identity())
            else:
                steps = [_downsample_step(channels[j], channels[j], gelu=True)
                         for _ in range(i - j - 1)]
                steps.append(_downsample_step(channels[j], channels[i], gelu=False))
                layers.append(nn.Sequential(*steps))
        return layers

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [branch(features) for branch, features in zip(self.branches, x, strict=True)]
        if self.num_branches == 1:
            return x
        outputs = []
        for i, to_output in enumerate(self.fuse_layers):
            size = x[i].shape[-2:]
            fused = None
            # Summed from branch 0 up, in the reference's order.
            for j, (layer, features) in enumerate(zip(to_output, x, strict=True)):
                if j != i:
                    features = layer(features)
                if j > i and features.shape[-2:] != size:
                    # Where a size was odd, 2^(j-i) x the coarse size overshoots: the reference
                    # then resizes the upsampled map (two interpolations, not one).
                    features = F.interpolate(features, size=size, mode="bilinear",
                                             align_corners=False)
                fused = features if fused is None else fused + features
            outputs.append(self.act(fused))
        return outputs


def _conv_bn_gelu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride,
                                   padding=1, bias=False),
                         _bn(out_channels), nn.GELU())


def make_transition(prev_channels: Sequence[int], next_channels: Sequence[int]) -> nn.ModuleList:
    """HRNet's transition with GELU: an existing branch passes through (Identity) or gets a 3x3
    conv when its width changes; a new branch comes from the lowest-resolution output by stride-2
    3x3 convs (keys transitionN.i.k.0/1)."""
    transition = nn.ModuleList()
    for i, out_channels in enumerate(next_channels):
        if i < len(prev_channels):
            transition.append(nn.Identity() if prev_channels[i] == out_channels
                              else _conv_bn_gelu(prev_channels[i], out_channels, stride=1))
        else:
            in_channels = prev_channels[-1]
            num_steps = i + 1 - len(prev_channels)
            steps = [_conv_bn_gelu(in_channels, in_channels, stride=2)
                     for _ in range(num_steps - 1)]
            steps.append(_conv_bn_gelu(in_channels, out_channels, stride=2))
            transition.append(nn.Sequential(*steps))
    return transition


def _positive_ints(values, key: str) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                             for v in values):
        raise ConfigError(f"{key} must be a non-empty list of positive integers, "
                          f"got {list(values)}")
    return values


@dataclass(frozen=True)
class HRNeXtStageSpec:
    """One stage: num_modules modules over len(num_channels) branches; branch b has num_blocks[b]
    blocks of num_channels[b] channels whose dynamic convolutions have num_kernels[b] banks."""

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    num_kernels: tuple[int, ...]

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def depth(self) -> int:
        """Drop-path slots: one per block position of each module (the branches share them)."""
        return self.num_modules * max(self.num_blocks)

    @classmethod
    def from_cfg(cls, node: CfgNode, key: str, num_modules: int = 1) -> HRNeXtStageSpec:
        """A MODEL.EXTRA.STAGEn block; key names it in error messages. STAGE1 has no NUM_MODULES
        (stage 1 is one layer), so num_modules is its fixed 1."""
        if "NUM_MODULES" in node:
            num_modules = node.NUM_MODULES
            if not isinstance(num_modules, int) or num_modules < 1:
                raise ConfigError(f"{key}.NUM_MODULES must be a positive integer, "
                                  f"got {num_modules!r}")
        lists = {name: _positive_ints(node[name], f"{key}.{name}")
                 for name in ("NUM_BLOCKS", "NUM_CHANNELS", "NUM_KERNELS")}
        lengths = {name: len(values) for name, values in lists.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"{key}.NUM_BLOCKS, NUM_CHANNELS and NUM_KERNELS need one entry per "
                              f"branch each; they have {lengths['NUM_BLOCKS']}, "
                              f"{lengths['NUM_CHANNELS']} and {lengths['NUM_KERNELS']}")
        for channels, kernels in zip(node.NUM_CHANNELS, node.NUM_KERNELS):
            if kernels > 1 and channels < ATTENTION_REDUCTION:
                raise ConfigError(f"{key}.NUM_CHANNELS: a branch with dynamic convolutions "
                                  f"(NUM_KERNELS > 1) needs at least {ATTENTION_REDUCTION} "
                                  f"channels, got {channels}")
        return cls(num_modules=num_modules, num_blocks=lists["NUM_BLOCKS"],
                   num_channels=lists["NUM_CHANNELS"], num_kernels=lists["NUM_KERNELS"])


@dataclass(frozen=True)
class HRNeXtSpec:
    """The whole backbone: the stem and stage 1 (STAGE1, one branch), stages 2-4, and the
    block-wide settings."""

    stage1: HRNeXtStageSpec
    stage2: HRNeXtStageSpec
    stage3: HRNeXtStageSpec
    stage4: HRNeXtStageSpec
    mlp_ratio: int = 4
    drop_path_rate: float = 0.1
    with_cp: bool = False

    @property
    def stages(self) -> tuple[HRNeXtStageSpec, ...]:
        return (self.stage1, self.stage2, self.stage3, self.stage4)

    @classmethod
    def from_cfg(cls, extra: CfgNode) -> HRNeXtSpec:
        """The backbone a MODEL.EXTRA block describes."""
        stage1 = HRNeXtStageSpec.from_cfg(extra.STAGE1, "MODEL.EXTRA.STAGE1")
        if stage1.num_branches != 1:
            raise ConfigError(f"MODEL.EXTRA.STAGE1 describes the single-branch stage 1: "
                              f"NUM_BLOCKS, NUM_CHANNELS and NUM_KERNELS need one entry each, got "
                              f"{stage1.num_branches}")
        stages = [HRNeXtStageSpec.from_cfg(extra[f"STAGE{n}"], f"MODEL.EXTRA.STAGE{n}")
                  for n in (2, 3, 4)]
        for n, (before, stage) in enumerate(zip([stage1] + stages, stages), start=2):
            if stage.num_branches <= before.num_branches:
                raise ConfigError(f"MODEL.EXTRA.STAGE{n} must have more branches than the stage "
                                  f"before it ({before.num_branches}), got {stage.num_branches}")
        rate = extra.DROP_PATH_RATE
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"MODEL.EXTRA.DROP_PATH_RATE must be in [0, 1), got {rate}")
        if not isinstance(extra.MLP_RATIO, int) or extra.MLP_RATIO < 1:
            raise ConfigError(f"MODEL.EXTRA.MLP_RATIO must be a positive integer, got "
                              f"{extra.MLP_RATIO!r}")
        return cls(stage1, *stages, mlp_ratio=extra.MLP_RATIO, drop_path_rate=float(rate),
                   with_cp=bool(extra.WITH_CP))

    def drop_path_rates(self) -> list[list[float]]:
        """Per stage, the rates of its slots: linear from 0 to drop_path_rate over all slots of
        the network (18 for HRNeXt-S and -B: 2 + 4 + 8 + 4)."""
        depths = [stage.depth for stage in self.stages]
        total = sum(depths)
        rates = [self.drop_path_rate * k / (total - 1) if total > 1 else 0.0 for k in range(total)]
        starts = [sum(depths[:n]) for n in range(len(depths))]
        return [rates[start:start + depth] for start, depth in zip(starts, depths, strict=True)]


def make_stage(spec: HRNeXtStageSpec, rates: Sequence[float], mlp_ratio: int, with_cp: bool,
               multi_scale_output: bool = True) -> nn.Sequential:
    """spec.num_modules HRNeXtModules; multi_scale_output applies to the last module only."""
    per_module = max(spec.num_blocks)
    modules = []
    for index in range(spec.num_modules):
        keep_all = multi_scale_output or index < spec.num_modules - 1
        modules.append(HRNeXtModule(spec.num_channels, spec.num_blocks, spec.num_kernels,
                                    mlp_ratio, rates[index * per_module:(index + 1) * per_module],
                                    multi_scale_output=keep_all, with_cp=with_cp))
    return nn.Sequential(*modules)


class HRNeXt(nn.Module):
    """The HRNeXt backbone: HRNet's macro-structure (a stride-4 stem, then stages of 1, 2, 3 and
    4 parallel branches at strides 4 to 32 that exchange information after every module) with
    other blocks:

    - stem: 3x3 stride-2 conv, depthwise 3x3, 1x1, depthwise 3x3 stride 2, each with BN and GELU;
    - stage 1 (layer1): a few HRNeXt blocks at the stem width and a LayerNorm, no bottlenecks;
    - HRNeXt blocks with dynamic convolutions in every branch, each branch ending in a
      channels-last LayerNorm; fusion is GELU(sum), with bilinear upsampling and
      depthwise-separable stride-2 downsampling.

    Attribute names follow the official backbone (conv1..conv4, bn1..bn4, layer1, transitionN,
    stageN, branches, fuse_layers, dlp.dw3x3.conv.attention / .aggregation, ...), so a released
    backbone's keys are ours once mmpose's 'backbone.' and 'keypoint_head.' prefixes are removed.

    forward_features returns one tensor per output branch, highest resolution (1/4) first; with
    multi_scale_output False stage 4's last module keeps only that one.
    """

    def __init__(self, spec: HRNeXtSpec, multi_scale_output: bool = True) -> None:
        super().__init__()
        width = spec.stage1.num_channels[0]
        self.act = nn.GELU()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, groups=width, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, width, kernel_size=1, bias=False)
        self.bn3 = _bn(width)
        self.conv4 = nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1, groups=width,
                               bias=False)
        self.bn4 = _bn(width)

        rates = spec.drop_path_rates()
        self.layer1 = make_branch(width, spec.stage1.num_blocks[0], spec.stage1.num_kernels[0],
                                  spec.mlp_ratio, rates[0], spec.with_cp)
        channels = [width]
        self.transition1 = make_transition(channels, spec.stage2.num_channels)
        self.stage2 = make_stage(spec.stage2, rates[1], spec.mlp_ratio, spec.with_cp)
        self.transition2 = make_transition(spec.stage2.num_channels, spec.stage3.num_channels)
        self.stage3 = make_stage(spec.stage3, rates[2], spec.mlp_ratio, spec.with_cp)
        self.transition3 = make_transition(spec.stage3.num_channels, spec.stage4.num_channels)
        self.stage4 = make_stage(spec.stage4, rates[3], spec.mlp_ratio, spec.with_cp,
                                 multi_scale_output)
        channels = list(spec.stage4.num_channels)
        self.out_channels = channels if multi_scale_output else channels[:1]

    def forward_stem(self, x: Tensor) -> Tensor:
        """The image to the stage-1 width at a quarter of its resolution."""
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        x = self.act(self.bn3(self.conv3(x)))
        return self.act(self.bn4(self.conv4(x)))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        features = [self.layer1(self.forward_stem(x))]
        features = self.stage2(apply_transition(self.transition1, features))
        features = self.stage3(apply_transition(self.transition2, features))
        return self.stage4(apply_transition(self.transition3, features))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """Initialise by method (MODEL.INIT_METHOD; 'normal' is the reference's N(0, 0.001) for
        every Conv2d, BN 1 and 0), then, if a path is given, load every tensor of that file whose
        name and shape fit. Kernel banks keep Kaiming-uniform, layer scales 0.01, LayerNorms 1/0.

        The published models are trained from scratch (PRETRAINED '').
        """
        initialize_(self, method, self.output_layers())
        if pretrained:
            load_pretrained_weights(self, pretrained, keep=lambda key: True)

    def output_layers(self) -> list[nn.Module]:
        """The layers that produce the model's outputs (none for the bare backbone)."""
        return []

    def dynamic_convolutions(self) -> list[DynamicKernelConv]:
        """Every dynamic convolution, in module order."""
        return [m for m in self.modules() if isinstance(m, DynamicKernelConv)]


class PoseHRNeXt(HRNeXt):
    """Top-down HRNeXt: the 1/4-resolution branch to one heatmap per joint through final_layer
    (the reference's head without deconvolutions is this single 1x1 convolution)."""

    def __init__(self, spec: HRNeXtSpec, num_joints: int, final_conv_kernel: int = 1) -> None:
        super().__init__(spec, multi_scale_output=False)
        self.final_layer = heatmap_conv(self.out_channels[0], num_joints, final_conv_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.forward_features(x)[0])

    def output_layers(self) -> list[nn.Module]:
        return [self.final_layer]


def pose_hrnext(cfg: CfgNode) -> PoseHRNeXt:
    """MODEL.NAME 'pose_hrnext': PoseHRNeXt as MODEL.EXTRA describes it (defaults: HRNeXt-S)."""
    extra = cfg.MODEL.EXTRA
    return PoseHRNeXt(HRNeXtSpec.from_cfg(extra), num_joints=cfg.MODEL.NUM_JOINTS,
                      final_conv_kernel=extra.FINAL_CONV_KERNEL)
