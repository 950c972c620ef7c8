"""ResNet trunk with torchvision's key names, and PoseResNet (SimpleBaseline) built on it."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import BN_MOMENTUM, BasicBlock, Bottleneck, ResidualBlock, make_layer
from ..heads.deconv import make_deconv_layers
from ..heads.heatmap import heatmap_conv
from ..weights import initialize_, load_pretrained_weights

# MODEL.EXTRA.NUM_LAYERS -> (block, blocks per stage), as in He et al. 2016.
RESNET_SPECS: dict[int, tuple[ResidualBlock, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

STEM_CHANNELS = 64
STAGE_PLANES = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)

# ImageNet files hold the classifier; the pose model has none.
CLASSIFIER_PREFIX = "fc."


class ResNet(nn.Module):
    """ResNet without its classifier: conv1, bn1, maxpool and layer1..4 (output stride 32).

    The names match torchvision's ResNet, so torchvision's ImageNet state dicts load as they are.
    """

    def __init__(self, block: ResidualBlock, layers: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = STEM_CHANNELS
        stages = []
        for planes, num_blocks, stride in zip(STAGE_PLANES, layers, STAGE_STRIDES, strict=True):
            stages.append(make_layer(block, channels, planes, num_blocks, stride))
            channels = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = channels

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


class PoseResNet(ResNet):
    """SimpleBaseline: ResNet, stride-2 deconvolutions back to 1/4 resolution, heatmap conv."""

    def __init__(self, depth: int, num_joints: int, deconv_filters: Sequence[int] = (256, 256, 256),
                 deconv_kernels: Sequence[int] = (4, 4, 4), deconv_with_bias: bool = False,
                 final_conv_kernel: int = 1) -> None:
        if depth not in RESNET_SPECS:
            raise ConfigError(f"no ResNet of depth {depth}; MODEL.EXTRA.NUM_LAYERS must be one of "
                             f"{', '.join(str(d) for d in RESNET_SPECS)}")
        block, layers = RESNET_SPECS[depth]
        super().__init__(block, layers)
        self.deconv_layers = make_deconv_layers(self.out_channels, deconv_filters, deconv_kernels,
                                                deconv_with_bias)
        self.final_layer = heatmap_conv(deconv_filters[-1], num_joints, final_conv_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(self.forward_features(x)))

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """Initialise by method (MODEL.INIT_METHOD), then, if a path is given, load the tensors of
        that (ImageNet) file except the classifier fc.*, so only the head keeps its
        initialisation."""
        initialize_(self, method, [self.final_layer])
        if pretrained:
            load_pretrained_weights(self, pretrained,
                                    keep=lambda key: not key.startswith(CLASSIFIER_PREFIX))


def pose_resnet(cfg: CfgNode) -> PoseResNet:
    """MODEL.NAME 'pose_resnet': PoseResNet as MODEL.EXTRA describes it."""
    extra = cfg.MODEL.EXTRA
    if extra.NUM_DECONV_LAYERS != len(extra.NUM_DECONV_FILTERS) or \
            extra.NUM_DECONV_LAYERS != len(extra.NUM_DECONV_KERNELS):
        raise ConfigError(f"MODEL.EXTRA.NUM_DECONV_LAYERS is {extra.NUM_DECONV_LAYERS} but "
                         f"NUM_DECONV_FILTERS has {len(extra.NUM_DECONV_FILTERS)} and "
                         f"NUM_DECONV_KERNELS {len(extra.NUM_DECONV_KERNELS)} entries; "
                         f"they must agree")
    return PoseResNet(extra.NUM_LAYERS, num_joints=cfg.MODEL.NUM_JOINTS,
                      deconv_filters=extra.NUM_DECONV_FILTERS,
                      deconv_kernels=extra.NUM_DECONV_KERNELS,
                      deconv_with_bias=extra.DECONV_WITH_BIAS,
                      final_conv_kernel=extra.FINAL_CONV_KERNEL)
