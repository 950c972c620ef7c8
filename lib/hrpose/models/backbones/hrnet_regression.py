"""The 2020 bottom-up regression networks ("Bottom-Up Human Pose Estimation by Ranking
Heatmap-Guided Adaptive Keypoint Estimates", the predecessor of DEKR): heatmaps with a person-centre
channel, and pixel-wise keypoint offsets regressed from features guided by those heatmaps.

The trunk is HRNet keeping all four branches of stage 4; branches 2-4 are bilinearly upsampled
(align_corners False) to the 1/4-resolution one and concatenated, 15W channels. On it sit:

- transition_cls: 1x1 conv 15W -> C_h + BN + ReLU;
- multi_level_layers_4x_heatmap: parallel branches of STNBlocks (heads/stn.py), one per dilation
  (1, 2, 3 in the reference), whose convolution weights are one shared set of tensors;
- final_layers[0]: 1x1 conv C_h -> J, applied to every branch;
- transition_reg: 1x1 conv over (15W features, the mean of the branch heatmaps) -> C_r + BN + ReLU,
  the heatmap guidance of the regression;
- multi_level_layers_4x_regression: one branch of STNBlocks; final_layers[1]: 1x1 conv
  C_r -> 2J + 1, the offsets and, last, the person-centre heatmap;
- pose_higher_hrnet_regression only: deconv_layers[0], a stride-2 transposed convolution (+ BN,
  ReLU, BasicBlocks) over (transition_cls output, mean branch heatmap), and final_layers[2], J
  heatmaps at 1/2 resolution.

Output contract (the loss and the decoder are written against it). forward(images (N, 3, H, W))
returns a tuple (heatmaps, offsets); each is a list over output stages, each stage a list of
branch tensors. J = MODEL.NUM_JOINTS (the dataset's keypoints, without the centre).

- pose_hrnet_regression: heatmaps = [[(N, J + 1, H/4, W/4)]], the mean of the heatmap branches'
  J heatmaps with the centre channel concatenated last; offsets = [[(N, 2J, H/4, W/4)]].
- pose_higher_hrnet_regression: heatmaps = [[b_1, ..., b_B], [(N, J, H/2, W/2)]], where b_k
  (N, J + 1, H/4, W/4) is heatmap branch k's J heatmaps with the (shared) centre channel last,
  B = 3 in the reference; offsets = [[(N, 2J, H/4, W/4)]].

Offset channels are (x0, y0, x1, y1, ...) in output pixels, and keypoint j seen from output pixel
(px, py) is at (px - offset[2j], py - offset[2j + 1]) (docs/regression.md, output layout).

Module names are those of the official checkpoints; the tied heatmap-branch weights appear under
every branch's name in a state dict, as in those files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from ...config import ConfigError
from ..blocks import BN_MOMENTUM, conv1x1
from ..heads.heatmap import heatmap_conv
from ..heads.stn import STNBlock, TiedBranches, make_stn_layer
from ..weights import initialize_, load_pretrained_weights, top_level_whitelist
from .higher_hrnet import DeconvSpec, make_deconv_block
from .hrnet import HighResolutionNet, HRNetSpec

# The block names MULTI_LEVEL_OUTPUT_*.BLOCK may take (the reference's name for STNBlock).
HEAD_BLOCKS = ("STNBLOCK",)


@dataclass(frozen=True)
class MultiLevelSpec:
    """One head's parallel branches of STNBlocks (MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP or
    MULTI_LEVEL_OUTPUT_REGRESSION): one branch per dilation, all of the same width and depth."""

    channels: int
    num_blocks: int
    dilations: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.dilations:
            raise ConfigError("a MULTI_LEVEL_OUTPUT head needs at least one branch")
        if self.channels < 1 or self.num_blocks < 1 or min(self.dilations) < 1:
            raise ConfigError(f"a MULTI_LEVEL_OUTPUT head needs positive NUM_CHANNELS, NUM_BLOCKS "
                              f"and DILATION_RATE entries, got {self.channels}, {self.num_blocks} "
                              f"and {list(self.dilations)}")

    @property
    def num_branches(self) -> int:
        return len(self.dilations)

    @classmethod
    def from_cfg(cls, node: CfgNode, key: str) -> MultiLevelSpec:
        """The head a MODEL.EXTRA.MULTI_LEVEL_OUTPUT_* block describes; key names it in errors."""
        lists = {"BLOCK": list(node.BLOCK), "NUM_BLOCKS": list(node.NUM_BLOCKS),
                 "NUM_CHANNELS": list(node.NUM_CHANNELS), "DILATION_RATE": list(node.DILATION_RATE)}
        if len({len(values) for values in lists.values()}) != 1:
            raise ConfigError(f"{key}: BLOCK, NUM_BLOCKS, NUM_CHANNELS and DILATION_RATE need one "
                              f"entry per branch, got {lists}")
        unknown = sorted({block for block in lists["BLOCK"] if block not in HEAD_BLOCKS})
        if unknown:
            raise ConfigError(f"{key}.BLOCK has {unknown}; allowed: "
                              f"{', '.join(repr(name) for name in HEAD_BLOCKS)}")
        # The branches run on one input and (heatmaps) share their weights: one width, one depth.
        for name in ("NUM_BLOCKS", "NUM_CHANNELS"):
            if len(set(lists[name])) > 1:
                raise ConfigError(f"{key}.{name} is {lists[name]}; every branch must have the same "
                                  f"value (the branches differ only in DILATION_RATE)")
        return cls(channels=lists["NUM_CHANNELS"][0], num_blocks=lists["NUM_BLOCKS"][0],
                   dilations=tuple(lists["DILATION_RATE"]))


def _conv1x1_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv, BN, ReLU: keys .0.weight and .1.* as transition_cls / transition_reg."""
    return nn.Sequential(conv1x1(in_channels, out_channels),
                         nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
                         nn.ReLU(inplace=True))


def concat_branches(branches: Sequence[Tensor]) -> Tensor:
    """Every branch bilinearly resized (align_corners False) to the first one's size, then
    concatenated along the channels, highest resolution first."""
    size = branches[0].shape[-2:]
    resized = [branches[0]] + [F.interpolate(branch, size=size, mode="bilinear",
                                             align_corners=False) for branch in branches[1:]]
    return torch.cat(resized, dim=1)


class RegressionHRNet(HighResolutionNet):
    """The trunk with all four branches and the heads both regression networks share:
    transition_cls, the tied heatmap branches, transition_reg and the regression branch; the
    subclasses add final_layers (and the deconvolution) and define forward."""

    def __init__(self, spec: HRNetSpec, num_joints: int, heatmap_head: MultiLevelSpec,
                 regression_head: MultiLevelSpec,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__(spec, multi_scale_output=True, pretrained_layers=pretrained_layers)
        if regression_head.num_branches != 1:
            raise ConfigError(f"MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION describes "
                              f"{regression_head.num_branches} branches; the regression head has "
                              f"exactly one (one DILATION_RATE entry)")
        self.num_joints = num_joints
        features = sum(self.out_channels)
        self.transition_cls = _conv1x1_bn_relu(features, heatmap_head.channels)
        self.transition_reg = _conv1x1_bn_relu(features + num_joints, regression_head.channels)
        self.multi_level_layers_4x_heatmap = TiedBranches(
            [make_stn_layer(heatmap_head.channels, heatmap_head.num_blocks, dilation)
             for dilation in heatmap_head.dilations])
        self.multi_level_layers_4x_regression = nn.ModuleList(
            [make_stn_layer(regression_head.channels, regression_head.num_blocks, dilation)
             for dilation in regression_head.dilations])

    def regress(self, features: Tensor, mean_heatmap: Tensor) -> tuple[Tensor, Tensor]:
        """Offsets (N, 2J, h, w) and the centre heatmap (N, 1, h, w), from the trunk features
        guided by the mean branch heatmap (N, J, h, w)."""
        guided = self.transition_reg(torch.cat([features, mean_heatmap], dim=1))
        regression = self.final_layers[1](self.multi_level_layers_4x_regression[0](guided))
        return regression[:, :-1], regression[:, -1:]

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """Initialise by method (MODEL.INIT_METHOD), zero every transform convolution (the
        adaptive convolutions start from a fixed sampling grid), then load the pretrained file's
        tensors whose top-level name is in pretrained_layers ('*' first: all of them)."""
        initialize_(self, method, self.output_layers())
        for module in self.modules():
            if isinstance(module, STNBlock):
                module.reset_transforms()
        if pretrained:
            load_pretrained_weights(self, pretrained, top_level_whitelist(self.pretrained_layers))

    def output_layers(self) -> list[nn.Module]:
        return list(self.final_layers)


class PoseHRNetRegression(RegressionHRNet):
    """The 1/4-resolution regression network (pose_hrnet in the reference): one stage, the
    branch heatmaps averaged. forward -> ([[heatmaps (N, J+1, H/4, W/4)]], [[offsets (N, 2J, H/4,
    W/4)]]), the centre heatmap last."""

    def __init__(self, spec: HRNetSpec, num_joints: int, heatmap_head: MultiLevelSpec,
                 regression_head: MultiLevelSpec, final_conv_kernel: int = 1,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__(spec, num_joints, heatmap_head, regression_head, pretrained_layers)
        self.final_layers = nn.ModuleList([
            heatmap_conv(heatmap_head.channels, num_joints, final_conv_kernel),
            heatmap_conv(regression_head.channels, 2 * num_joints + 1, final_conv_kernel),
        ])

    def forward(self, x: Tensor) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        features = concat_branches(self.forward_features(x))
        # transition_cls runs once per branch, as in the reference: the same values each time,
        # but its BatchNorm's running statistics take one update per call in training.
        heatmaps = [self.final_layers[0](branch(self.transition_cls(features)))
                    for branch in self.multi_level_layers_4x_heatmap]
        mean_heatmap = torch.stack(heatmaps).mean(dim=0)
        offsets, centre = self.regress(features, mean_heatmap)
        return [[torch.cat([mean_heatmap, centre], dim=1)]], [[offsets]]


class PoseHigherHRNetRegression(RegressionHRNet):
    """The regression network with a 1/2-resolution heatmap stage (pose_higher_hrnet in the
    reference): forward -> ([[b_1, ..., b_B], [(N, J, H/2, W/2)]], [[offsets (N, 2J, H/4, W/4)]]),
    each b_k (N, J+1, H/4, W/4) one heatmap branch with the centre heatmap last."""

    def __init__(self, spec: HRNetSpec, num_joints: int, heatmap_head: MultiLevelSpec,
                 regression_head: MultiLevelSpec, deconv: DeconvSpec, final_conv_kernel: int = 1,
                 pretrained_layers: Sequence[str] = ("*",)) -> None:
        super().__init__(spec, num_joints, heatmap_head, regression_head, pretrained_layers)
        if deconv.num_deconvs != 1:
            raise ConfigError(f"MODEL.EXTRA.DECONV.NUM_DECONVS is {deconv.num_deconvs}; "
                              f"pose_higher_hrnet_regression has exactly one 1/2-resolution "
                              f"step")
        self.cat_output = deconv.cat_output[0]
        in_channels = heatmap_head.channels + (num_joints if self.cat_output else 0)
        channels = deconv.num_channels[0]
        # deconv_layers before final_layers: the checkpoints list their keys in this order.
        self.deconv_layers = nn.ModuleList([make_deconv_block(
            in_channels, channels, deconv.kernel_sizes[0], deconv.num_basic_blocks)])
        self.final_layers = nn.ModuleList([
            heatmap_conv(heatmap_head.channels, num_joints, final_conv_kernel),
            heatmap_conv(regression_head.channels, 2 * num_joints + 1, final_conv_kernel),
            heatmap_conv(channels, num_joints, final_conv_kernel),
        ])

    def forward(self, x: Tensor) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        features = concat_branches(self.forward_features(x))
        heatmap_features = self.transition_cls(features)
        heatmaps = [self.final_layers[0](branch(heatmap_features))
                    for branch in self.multi_level_layers_4x_heatmap]
        mean_heatmap = torch.stack(heatmaps).mean(dim=0)
        if self.cat_output:
            heatmap_features = torch.cat([heatmap_features, mean_heatmap], dim=1)
        heatmap_2x = self.final_layers[2](self.deconv_layers[0](heatmap_features))
        offsets, centre = self.regress(features, mean_heatmap)
        branches = [torch.cat([heatmap, centre], dim=1) for heatmap in heatmaps]
        return [branches, [heatmap_2x]], [[offsets]]


def _heads_from_cfg(extra: CfgNode) -> tuple[MultiLevelSpec, MultiLevelSpec]:
    return (MultiLevelSpec.from_cfg(extra.MULTI_LEVEL_OUTPUT_HEATMAP,
                                    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP"),
            MultiLevelSpec.from_cfg(extra.MULTI_LEVEL_OUTPUT_REGRESSION,
                                    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION"))


def pose_hrnet_regression(cfg: CfgNode) -> PoseHRNetRegression:
    """MODEL.NAME 'pose_hrnet_regression': PoseHRNetRegression as MODEL.EXTRA describes it."""
    extra = cfg.MODEL.EXTRA
    heatmap_head, regression_head = _heads_from_cfg(extra)
    return PoseHRNetRegression(HRNetSpec.from_cfg(extra), num_joints=cfg.MODEL.NUM_JOINTS,
                               heatmap_head=heatmap_head, regression_head=regression_head,
                               final_conv_kernel=extra.FINAL_CONV_KERNEL,
                               pretrained_layers=extra.PRETRAINED_LAYERS)


def pose_higher_hrnet_regression(cfg: CfgNode) -> PoseHigherHRNetRegression:
    """MODEL.NAME 'pose_higher_hrnet_regression': PoseHigherHRNetRegression as MODEL.EXTRA
    describes it."""
    extra = cfg.MODEL.EXTRA
    heatmap_head, regression_head = _heads_from_cfg(extra)
    return PoseHigherHRNetRegression(HRNetSpec.from_cfg(extra), num_joints=cfg.MODEL.NUM_JOINTS,
                                     heatmap_head=heatmap_head, regression_head=regression_head,
                                     deconv=DeconvSpec.from_cfg(extra.DECONV),
                                     final_conv_kernel=extra.FINAL_CONV_KERNEL,
                                     pretrained_layers=extra.PRETRAINED_LAYERS)
