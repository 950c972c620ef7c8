"""HigherHRNet (Cheng et al., CVPR 2020): the bottom-up HRNet with associative-embedding tags and a
higher-resolution head.

The trunk is the top-down HRNet's (HighResolutionNet with only the 1/4-resolution branch leaving
stage 4). On it sit:

- final_layers[0]: a 1x1 (or 3x3) convolution giving J heatmaps at 1/4 resolution, followed by the
  tag channels (J with MODEL.TAG_PER_JOINT, else 1) when LOSS.WITH_AE_LOSS[0];
- for each of MODEL.EXTRA.DECONV.NUM_DECONVS steps: deconv_layers[i], a stride-2 transposed
  convolution (+ BN + ReLU) and NUM_BASIC_BLOCKS BasicBlocks, whose input is the previous features,
  concatenated with the previous stage's output when CAT_OUTPUT[i]; then final_layers[i + 1],
  J heatmaps (+ tags when LOSS.WITH_AE_LOSS[i + 1]) at twice the previous resolution.

With NUM_DECONVS 0 (and LOSS.NUM_STAGES 1) this is the plain HRNet bottom-up baseline with only the
1/4-resolution head. Module names follow the official pose_higher_hrnet_*.pth checkpoints:
final_layers.{0,1}.{weight,bias}, deconv_layers.0.0.0.weight (transposed convolution),
deconv_layers.0.0.1.* (its BN), deconv_layers.0.{1..4}.0.{conv1,bn1,conv2,bn2}.* (each BasicBlock
wrapped in a one-element Sequential).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import BN_MOMENTUM, BasicBlock
from ..heads.deconv import deconv_padding
from ..heads.heatmap import heatmap_conv
from .hrnet import HighResolutionNet, HRNetSpec

DECONV_KERNEL_SIZES = (2, 3, 4)


@dataclass(frozen=True)
class DeconvSpec:
    """The upsampling steps of the higher-resolution head (MODEL.EXTRA.DECONV)."""

    num_deconvs: int = 1
    num_channels: tuple[int, ...] = (32,)
    kernel_sizes: tuple[int, ...] = (4,)
    num_basic_blocks: int = 4
    cat_output: tuple[bool, ...] = (True,)

    def __post_init__(self) -> None:
        key = "MODEL.EXTRA.DECONV"
        if self.num_deconvs < 0:
            raise ConfigError(f"{key}.NUM_DECONVS must be 0 or more, got {self.num_deconvs}")
        for name, values in (("NUM_CHANNELS", self.num_channels),
                             ("KERNEL_SIZE", self.kernel_sizes), ("CAT_OUTPUT", self.cat_output)):
            if len(values) != self.num_deconvs:
                raise ConfigError(f"{key}.{name} has {len(values)} entries {list(values)} but "
                                  f"{key}.NUM_DECONVS is {self.num_deconvs}; give one per "
                                  f"deconvolution step")
        bad_kernels = [k for k in self.kernel_sizes if k not in DECONV_KERNEL_SIZES]
        if bad_kernels:
            raise ConfigError(f"{key}.KERNEL_SIZE {list(self.kernel_sizes)}: every entry must be "
                              f"one of {', '.join(map(str, DECONV_KERNEL_SIZES))}")
        if any(channels < 1 for channels in self.num_channels):
            raise ConfigError(f"{key}.NUM_CHANNELS {list(self.num_channels)} must be positive")
        if self.num_basic_blocks < 0:
            raise ConfigError(f"{key}.NUM_BASIC_BLOCKS must be 0 or more, got "
                              f"{self.num_basic_blocks}")

    @classmethod
    def from_cfg(cls, node: CfgNode) -> DeconvSpec:
        return cls(num_deconvs=node.NUM_DECONVS, num_channels=tuple(node.NUM_CHANNELS),
                   kernel_sizes=tuple(node.KERNEL_SIZE), num_basic_blocks=node.NUM_BASIC_BLOCKS,
                   cat_output=tuple(bool(flag) for flag in node.CAT_OUTPUT))


def make_deconv_block(in_channels: int, out_channels: int, kernel_size: int,
                      num_basic_blocks: int) -> nn.Sequential:
    """One 2x upsampling step: Sequential(Sequential(ConvTranspose2d, BN, ReLU),
    Sequential(BasicBlock, ...), so that the keys are .0.0.weight, .0.1.*, .1.0.conv1.weight, ...
    as in the checkpoints."""
    padding, output_padding = deconv_padding(kernel_size)
    layers: list[nn.Module] = [nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2, padding=padding,
                           output_padding=output_padding, bias=False),
        nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
    )]
    layers += [nn.Sequential(BasicBlock(out_channels, out_channels))
               for _ in range(num_basic_blocks)]
    return nn.Sequential(*layers)


class PoseHigherResolutionNet(HighResolutionNet):
    """HigherHRNet. forward(images (N, 3, H, W)) returns one tensor per output resolution, lowest
    first: outputs[k] has shape (N, C_k, H/4 * 2^k, W/4 * 2^k) where the first J channels are the
    heatmaps (joint order of the dataset) and, when the stage has tags (with_tags[k]), the next J
    channels (tag_per_joint) or the next 1 channel are the associative-embedding tags;
    C_k = output_channels[k]. The official models: [(N, 2J, H/4, W/4), (N, J, H/2, W/2)].
    """

    def __init__(self, spec: HRNetSpec, num_joints: int, deconv: DeconvSpec,
                 with_tags: Sequence[bool], tag_per_joint: bool = True, final_conv_kernel: int = 1,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__(spec, multi_scale_output=False, pretrained_layers=pretrained_layers)
        if len(with_tags) != deconv.num_deconvs + 1:
            raise ConfigError(f"LOSS.WITH_AE_LOSS has {len(with_tags)} entries {list(with_tags)} "
                              f"but the model has {deconv.num_deconvs + 1} output stages "
                              f"(MODEL.EXTRA.DECONV.NUM_DECONVS {deconv.num_deconvs} + 1)")
        self.num_joints = num_joints
        self.tag_channels = num_joints if tag_per_joint else 1
        self.with_tags = [bool(flag) for flag in with_tags]
        self.output_channels = [num_joints + (self.tag_channels if flag else 0)
                                for flag in self.with_tags]
        self.cat_output = list(deconv.cat_output)

        channels = self.out_channels[0]
        final_layers = [heatmap_conv(channels, self.output_channels[0], final_conv_kernel)]
        deconv_layers = []
        for step in range(deconv.num_deconvs):
            in_channels = channels + (self.output_channels[step] if self.cat_output[step] else 0)
            channels = deconv.num_channels[step]
            deconv_layers.append(make_deconv_block(in_channels, channels,
                                                   deconv.kernel_sizes[step],
                                                   deconv.num_basic_blocks))
            final_layers.append(heatmap_conv(channels, self.output_channels[step + 1],
                                             final_conv_kernel))
        # final_layers before deconv_layers: the checkpoints list their keys in this order.
        self.final_layers = nn.ModuleList(final_layers)
        self.deconv_layers = nn.ModuleList(deconv_layers)

    @property
    def num_stages(self) -> int:
        return len(self.final_layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.forward_features(x)[0]
        outputs = [self.final_layers[0](features)]
        for step, deconv in enumerate(self.deconv_layers):
            if self.cat_output[step]:
                features = torch.cat((features, outputs[-1]), dim=1)
            features = deconv(features)
            outputs.append(self.final_layers[step + 1](features))
        return outputs

    def output_layers(self) -> list[nn.Module]:
        return list(self.final_layers)


def pose_higher_hrnet(cfg: CfgNode) -> PoseHigherResolutionNet:
    """MODEL.NAME 'pose_higher_hrnet': HigherHRNet as MODEL.EXTRA describes it; the tag channels of
    each stage follow LOSS.WITH_AE_LOSS and MODEL.TAG_PER_JOINT, as in the reference."""
    extra = cfg.MODEL.EXTRA
    return PoseHigherResolutionNet(HRNetSpec.from_cfg(extra), num_joints=cfg.MODEL.NUM_JOINTS,
                                   deconv=DeconvSpec.from_cfg(extra.DECONV),
                                   with_tags=list(cfg.LOSS.WITH_AE_LOSS),
                                   tag_per_joint=cfg.MODEL.TAG_PER_JOINT,
                                   final_conv_kernel=extra.FINAL_CONV_KERNEL,
                                   pretrained_layers=extra.PRETRAINED_LAYERS)
