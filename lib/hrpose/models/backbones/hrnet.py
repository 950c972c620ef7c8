"""HRNet: the multi-resolution backbone and the top-down pose network PoseHighResolutionNet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import (
    BLOCKS_BY_NAME,
    BN_MOMENTUM,
    Bottleneck,
    ResidualBlock,
    conv1x1,
    conv3x3,
    make_layer,
)
from ..heads.heatmap import heatmap_conv
from ..weights import initialize_, load_pretrained_weights, top_level_whitelist

STEM_CHANNELS = 64


@dataclass(frozen=True)
class Layer1Spec:
    """layer1, the residual layer between the stem and stage 2 (MODEL.EXTRA.STAGE1).

    The default, four Bottlenecks of 64 planes (256 channels at 1/4 resolution), is what every
    released pose checkpoint has.
    """

    block: ResidualBlock = Bottleneck
    num_blocks: int = 4
    planes: int = 64

    @property
    def out_channels(self) -> int:
        return self.planes * self.block.expansion

    @classmethod
    def from_cfg(cls, node: CfgNode, key: str) -> Layer1Spec:
        """layer1 as a MODEL.EXTRA.STAGE1 block describes it; key names it in error messages."""
        if len(node.NUM_BLOCKS) != 1 or len(node.NUM_CHANNELS) != 1:
            raise ConfigError(f"{key} describes the single-branch layer1: NUM_BLOCKS and "
                             f"NUM_CHANNELS need one entry each, got {list(node.NUM_BLOCKS)} and "
                             f"{list(node.NUM_CHANNELS)}")
        if node.BLOCK not in BLOCKS_BY_NAME:
            raise ConfigError(f"{key}.BLOCK is {node.BLOCK!r}; allowed: "
                             f"{', '.join(repr(name) for name in BLOCKS_BY_NAME)}")
        return cls(block=BLOCKS_BY_NAME[node.BLOCK], num_blocks=node.NUM_BLOCKS[0],
                   planes=node.NUM_CHANNELS[0])


@dataclass(frozen=True)
class StageSpec:
    """One HRNet stage: NUM_MODULES multi-resolution modules over len(num_channels) branches."""

    num_modules: int
    block: ResidualBlock
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.num_blocks) != len(self.num_channels):
            raise ConfigError(f"an HRNet stage needs one NUM_BLOCKS and one NUM_CHANNELS entry per "
                             f"branch, got {list(self.num_blocks)} and {list(self.num_channels)}")
        if self.num_modules < 1:
            raise ConfigError(f"an HRNet stage needs at least one module, got {self.num_modules}")

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def branch_channels(self) -> list[int]:
        """Channels each branch carries: NUM_CHANNELS times the block's expansion."""
        return [channels * self.block.expansion for channels in self.num_channels]

    @classmethod
    def from_cfg(cls, node: CfgNode, key: str) -> StageSpec:
        """The stage described by a MODEL.EXTRA.STAGEn block; key names it in error messages."""
        if node.FUSE_METHOD != "SUM":
            raise ConfigError(f"{key}.FUSE_METHOD is {node.FUSE_METHOD!r}; HighResolutionModule "
                             f"fuses branches by summing ('SUM') only")
        if node.NUM_BRANCHES != len(node.NUM_BLOCKS) or node.NUM_BRANCHES != len(node.NUM_CHANNELS):
            raise ConfigError(f"{key}.NUM_BRANCHES is {node.NUM_BRANCHES} but NUM_BLOCKS has "
                             f"{len(node.NUM_BLOCKS)} and NUM_CHANNELS {len(node.NUM_CHANNELS)} "
                             f"entries; they must agree")
        return cls(num_modules=node.NUM_MODULES, block=BLOCKS_BY_NAME[node.BLOCK],
                   num_blocks=tuple(node.NUM_BLOCKS), num_channels=tuple(node.NUM_CHANNELS))


def _conv_bn(in_channels: int, out_channels: int, stride: int, relu: bool) -> nn.Sequential:
    """3x3 conv, BN and optionally ReLU: keys .0.weight and .1.* as in the released checkpoints."""
    layers: list[nn.Module] = [conv3x3(in_channels, out_channels, stride),
                               nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then every output resolution sums all branches.

    With multi_scale_output False only the highest-resolution output is built and returned.
    """

    def __init__(self, in_channels: Sequence[int], block: ResidualBlock, num_blocks: Sequence[int],
                 num_channels: Sequence[int], multi_scale_output: bool = True) -> None:
        super().__init__()
        if not len(in_channels) == len(num_blocks) == len(num_channels):
            raise ConfigError(f"HighResolutionModule: in_channels {list(in_channels)}, num_blocks "
                             f"{list(num_blocks)} and num_channels {list(num_channels)} must have "
                             f"one entry per branch")
        self.num_branches = len(num_channels)
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(
            make_layer(block, in_channels[b], num_channels[b], num_blocks[b])
            for b in range(self.num_branches))
        self.out_channels = [channels * block.expansion for channels in num_channels]
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self) -> nn.ModuleList:
        """fuse_layers[i][j] brings branch j to the resolution and width of output i."""
        if self.num_branches == 1:
            return nn.ModuleList()
        channels = self.out_channels
        num_outputs = self.num_branches if self.multi_scale_output else 1
        fuse_layers = nn.ModuleList()
        for i in range(num_outputs):
            to_output = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    to_output.append(nn.Sequential(
                        conv1x1(channels[j], channels[i]),
                        nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                    ))
                elif j == i:
                    # A stateless placeholder keeps the indices j, and so the checkpoint keys,
                    # intact.
                    to_output.append(nn.Identity())
                else:
                    # i - j stride-2 steps; only the last changes the width, and it has no ReLU
                    # because the sum over branches is rectified as a whole.
                    steps = [_conv_bn(channels[j], channels[j], stride=2, relu=True)
                             for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], stride=2, relu=False))
                    to_output.append(nn.Sequential(*steps))
            fuse_layers.append(to_output)
        return fuse_layers

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [branch(features) for branch, features in zip(self.branches, x, strict=True)]
        if self.num_branches == 1:
            return x
        outputs = []
        for to_output in self.fuse_layers:
            fused = to_output[0](x[0])
            for layer, features in zip(to_output[1:], x[1:], strict=True):
                fused = fused + layer(features)
            outputs.append(self.relu(fused))
        return outputs


def make_transition(prev_channels: Sequence[int], next_channels: Sequence[int]) -> nn.ModuleList:
    """Layers that turn one stage's outputs into the next stage's inputs, one entry per branch.

    An existing branch passes through (Identity, no keys) or gets a 3x3 conv when its width
    changes; a new branch is derived from the lowest-resolution previous output by a chain of
    stride-2 3x3 convs (keys transitionN.i.k.0/1).
    """
    transition = nn.ModuleList()
    for i, out_channels in enumerate(next_channels):
        if i < len(prev_channels):
            if prev_channels[i] == out_channels:
                transition.append(nn.Identity())
            else:
                transition.append(_conv_bn(prev_channels[i], out_channels, stride=1, relu=True))
        else:
            num_steps = i + 1 - len(prev_channels)
            in_channels = prev_channels[-1]
            steps = [_conv_bn(in_channels, in_channels, stride=2, relu=True)
                     for _ in range(num_steps - 1)]
            steps.append(_conv_bn(in_channels, out_channels, stride=2, relu=True))
            transition.append(nn.Sequential(*steps))
    return transition


def apply_transition(transition: nn.ModuleList, features: list[Tensor]) -> list[Tensor]:
    """Existing branches read their own previous output; new ones read the lowest resolution."""
    return [layer(features[i] if i < len(features) else features[-1])
            for i, layer in enumerate(transition)]


def make_stage(spec: StageSpec, in_channels: Sequence[int],
               multi_scale_output: bool = True) -> tuple[nn.Sequential, list[int]]:
    """spec.num_modules HighResolutionModules in a Sequential, and the channels it outputs.

    multi_scale_output applies to the last module only; earlier ones always keep every branch.
    """
    modules = []
    channels = list(in_channels)
    for index in range(spec.num_modules):
        is_last = index == spec.num_modules - 1
        module = HighResolutionModule(channels, spec.block, spec.num_blocks, spec.num_channels,
                                      multi_scale_output=multi_scale_output or not is_last)
        modules.append(module)
        channels = list(module.out_channels)
    if not multi_scale_output:
        channels = channels[:1]
    return nn.Sequential(*modules), channels


@dataclass(frozen=True)
class HRNetSpec:
    """The whole trunk: layer1 and stages 2-4."""

    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec
    layer1: Layer1Spec = Layer1Spec()

    @classmethod
    def from_cfg(cls, extra: CfgNode) -> HRNetSpec:
        """The trunk a MODEL.EXTRA block describes (STAGE1 ... STAGE4)."""
        return cls(stage2=StageSpec.from_cfg(extra.STAGE2, "MODEL.EXTRA.STAGE2"),
                   stage3=StageSpec.from_cfg(extra.STAGE3, "MODEL.EXTRA.STAGE3"),
                   stage4=StageSpec.from_cfg(extra.STAGE4, "MODEL.EXTRA.STAGE4"),
                   layer1=Layer1Spec.from_cfg(extra.STAGE1, "MODEL.EXTRA.STAGE1"))


class HighResolutionNet(nn.Module):
    """The HRNet trunk: stem, layer1, then stages 2-4 with transitions between them.

    Pose models subclass it and add their heads, so the trunk's keys (conv1, bn1, conv2, bn2,
    layer1, transition1..3, stage2..4) stay at the top level as in every released checkpoint.
    forward_features returns one tensor per output branch, highest resolution (1/4) first;
    with multi_scale_output False the last module of stage 4 keeps only that branch.
    """

    def __init__(self, spec: HRNetSpec, multi_scale_output: bool = True,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__()
        self.pretrained_layers = list(pretrained_layers)

        self.conv1 = conv3x3(3, STEM_CHANNELS, stride=2)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(STEM_CHANNELS, STEM_CHANNELS, stride=2)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(spec.layer1.block, STEM_CHANNELS, spec.layer1.planes,
                                 spec.layer1.num_blocks)
        channels = [spec.layer1.out_channels]

        stage2, stage3, stage4 = spec.stage2, spec.stage3, spec.stage4
        self.transition1 = make_transition(channels, stage2.branch_channels)
        self.stage2, channels = make_stage(stage2, stage2.branch_channels)
        self.transition2 = make_transition(channels, stage3.branch_channels)
        self.stage3, channels = make_stage(stage3, stage3.branch_channels)
        self.transition3 = make_transition(channels, stage4.branch_channels)
        self.stage4, channels = make_stage(stage4, stage4.branch_channels, multi_scale_output)
        self.out_channels = channels

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        features = self.stage2(apply_transition(self.transition1, features))
        features = self.stage3(apply_transition(self.transition2, features))
        return self.stage4(apply_transition(self.transition3, features))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """Initialise by method (MODEL.INIT_METHOD), then, if a path is given, load the tensors of
        that file whose top-level name is in pretrained_layers ('*' first: all of them)."""
        initialize_(self, method, self.output_layers())
        if pretrained:
            load_pretrained_weights(self, pretrained, top_level_whitelist(self.pretrained_layers))

    def output_layers(self) -> list[nn.Module]:
        """The layers that produce the model's outputs (none for the bare backbone)."""
        return []


class PoseHighResolutionNet(HighResolutionNet):
    """Top-down HRNet: the 1/4-resolution branch of stage 4 to one heatmap per joint."""

    def __init__(self, spec: HRNetSpec, num_joints: int, final_conv_kernel: int = 1,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__(spec, multi_scale_output=False, pretrained_layers=pretrained_layers)
        self.final_layer = heatmap_conv(self.out_channels[0], num_joints, final_conv_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.forward_features(x)[0])

    def output_layers(self) -> list[nn.Module]:
        return [self.final_layer]


def pose_hrnet(cfg: CfgNode) -> PoseHighResolutionNet:
    """MODEL.NAME 'pose_hrnet': PoseHighResolutionNet as MODEL.EXTRA describes it."""
    extra = cfg.MODEL.EXTRA
    return PoseHighResolutionNet(HRNetSpec.from_cfg(extra), num_joints=cfg.MODEL.NUM_JOINTS,
                                 final_conv_kernel=extra.FINAL_CONV_KERNEL,
                                 pretrained_layers=extra.PRETRAINED_LAYERS)
