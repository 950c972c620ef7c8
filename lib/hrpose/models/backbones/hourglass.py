"""Stacked hourglass (Newell et al. 2016) as DARK trains it on COCO: PoseHourglassNet.

The layout and the attribute names follow the widely used PyTorch port that DARK's
lib/models/hourglass.py is, so its checkpoints load strictly:

- stem: conv1 (7x7, stride 2) -> bn1 -> ReLU -> layer1 -> maxpool (2x2) -> layer2 -> layer3,
  from 3 channels to NUM_FEATURES (F) at a quarter of the input resolution: conv1 to F/4, layer1
  to F/2 and layer2 to F (each through a 1x1 projection), layer3 F to F;
- NUM_STACKS stacks, stack i being hg.i (a 4-level hourglass) -> res.i -> fc.i (1x1 conv, BN,
  ReLU) -> score.i (1x1 conv to the joints); between stacks the features and the heatmaps are
  mapped back by fc_.i and score_.i and added to the stack's input;
- forward returns the list of every stack's heatmaps (intermediate supervision); the last one is
  the prediction.

Every residual unit is the pre-activation Bottleneck (BN, ReLU, conv, three times; biased convs;
expansion 2). Unlike DARK, whose innermost upsampling is fixed to 4x3 (so only 128x96 inputs run),
each upsampling here is nearest-neighbour to the size of its skip branch: identical to DARK at
128x96, and any input of at least 64 pixels a side works.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import BN_MOMENTUM
from ..weights import initialize_, load_pretrained_weights

# Resolution levels of each hourglass (the feature map is halved DEPTH times inside it).
HOURGLASS_DEPTH = 4

# Residual sequences per hourglass level: 0 the skip branch, 1 after pooling, 2 before
# upsampling, and at the innermost level a fourth (3) in place of a deeper hourglass.
SKIP, DOWN, UP, INNERMOST = range(4)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (BN, ReLU, conv) x3 as 1x1 reduce, 3x3, 1x1 expand (x2), with
    biased convolutions, plus the input or its 1x1 projection (downsample.0). No ReLU after the
    sum."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=True)
        self.bn3 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


def residual_sequence(in_channels: int, planes: int, num_blocks: int) -> nn.Sequential:
    """num_blocks PreActBottlenecks to planes x 2 channels; the first projects its input through
    downsample = Sequential(biased 1x1 conv) when the channel count changes."""
    out_channels = planes * PreActBottleneck.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True))
    blocks = [PreActBottleneck(in_channels, planes, downsample)]
    blocks += [PreActBottleneck(out_channels, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


class Hourglass(nn.Module):
    """One hourglass of `depth` levels on `planes` x 2 channels, shape-preserving.

    hg[level] holds the residual sequences of one level (SKIP, DOWN, UP); level 0 is the
    innermost, the lowest resolution, and has a 4th (INNERMOST). A level's output is
    SKIP(x) + upsample(UP(inner(DOWN(maxpool(x))))), inner being the level below.
    """

    def __init__(self, planes: int, num_blocks: int, depth: int = HOURGLASS_DEPTH) -> None:
        super().__init__()
        channels = planes * PreActBottleneck.expansion
        self.depth = depth
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.hg = nn.ModuleList(
            nn.ModuleList(residual_sequence(channels, planes, num_blocks)
                          for _ in range(4 if level == 0 else 3))
            for level in range(depth))

    def _level(self, level: int, x: Tensor) -> Tensor:
        units = self.hg[level]
        skip = units[SKIP](x)
        low = units[DOWN](self.pool(x))
        low = self._level(level - 1, low) if level > 0 else units[INNERMOST](low)
        low = units[UP](low)
        # Nearest to the skip's size: 2x where the size was even, and an odd size (e.g. 3 -> 1)
        # is restored by repetition, as DARK's fixed-size upsampling does at 128x96.
        return skip + F.interpolate(low, size=skip.shape[-2:], mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth - 1, x)


def feature_head(channels: int) -> nn.Sequential:
    """fc: biased 1x1 conv, BN, ReLU (keys fc.i.0 and fc.i.1)."""
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1, bias=True),
                         nn.BatchNorm2d(channels, momentum=BN_MOMENTUM),
                         nn.ReLU(inplace=True))


class PoseHourglassNet(nn.Module):
    """Stacked hourglass with intermediate supervision; forward returns one heatmap tensor
    (N, num_joints, H/4, W/4) per stack, in order, the last being the final prediction.

    num_features is the width of the hourglasses (NUM_FEATURES; 256 in every published model);
    the stem widens to it in three steps (F/4, F/2, F), as DARK's does.
    """

    def __init__(self, num_joints: int, num_features: int = 256, num_stacks: int = 4,
                 num_blocks: int = 1) -> None:
        super().__init__()
        for key, value in (("NUM_FEATURES", num_features), ("NUM_STACKS", num_stacks),
                           ("NUM_BLOCKS", num_blocks)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"MODEL.EXTRA.{key} must be a positive integer, got {value!r}")
        if num_features % 4:
            raise ConfigError(f"MODEL.EXTRA.NUM_FEATURES must be a multiple of 4 (the stem runs at "
                             f"NUM_FEATURES / 4 channels), got {num_features}")
        expansion = PreActBottleneck.expansion
        stem_channels, planes = num_features // 4, num_features // 2
        self.num_stacks = num_stacks

        self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(stem_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        # DarkPose sizes layer2 from its running input width, which layer1 has just doubled:
        # layer2 projects 2 x stem to 4 x stem (= NUM_FEATURES), layer3 keeps NUM_FEATURES.
        self.layer1 = residual_sequence(stem_channels, stem_channels, 1)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer2 = residual_sequence(stem_channels * expansion, stem_channels * expansion, 1)
        self.layer3 = residual_sequence(stem_channels * expansion ** 2, planes, 1)

        channels = planes * expansion
        self.hg = nn.ModuleList(Hourglass(planes, num_blocks) for _ in range(num_stacks))
        self.res = nn.ModuleList(residual_sequence(channels, planes, num_blocks)
                                 for _ in range(num_stacks))
        self.fc = nn.ModuleList(feature_head(channels) for _ in range(num_stacks))
        self.score = nn.ModuleList(nn.Conv2d(channels, num_joints, kernel_size=1, bias=True)
                                   for _ in range(num_stacks))
        # Between stacks only: the last stack feeds nothing back.
        self.fc_ = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size=1, bias=True)
                                 for _ in range(num_stacks - 1))
        self.score_ = nn.ModuleList(nn.Conv2d(num_joints, channels, kernel_size=1, bias=True)
                                    for _ in range(num_stacks - 1))

    def forward_stem(self, x: Tensor) -> Tensor:
        """The image to NUM_FEATURES channels at a quarter of its resolution."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.layer1(x))
        return self.layer3(self.layer2(x))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.forward_stem(x)
        heatmaps = []
        for i in range(self.num_stacks):
            features = self.fc[i](self.res[i](self.hg[i](x)))
            score = self.score[i](features)
            heatmaps.append(score)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](features) + self.score_[i](score)
        return heatmaps

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """Initialise by method (MODEL.INIT_METHOD), then, if a path is given, load every tensor of
        that file whose name and shape fit (e.g. a COCO hourglass to start an MPII one).

        DARK's experiments set INIT_WEIGHTS false and train from PyTorch's default initialisation.
        """
        initialize_(self, method, list(self.score))
        if pretrained:
            load_pretrained_weights(self, pretrained, keep=lambda key: True)


def pose_hourglass(cfg: CfgNode) -> PoseHourglassNet:
    """MODEL.NAME 'pose_hourglass': PoseHourglassNet as MODEL.EXTRA describes it."""
    extra = cfg.MODEL.EXTRA
    return PoseHourglassNet(cfg.MODEL.NUM_JOINTS, num_features=extra.NUM_FEATURES,
                            num_stacks=extra.NUM_STACKS, num_blocks=extra.NUM_BLOCKS)
