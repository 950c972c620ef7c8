"""The adaptive convolution of the 2020 regression network ("Bottom-Up Human Pose Estimation by
Ranking Heatmap-Guided Adaptive Keypoint Estimates"): a per-pixel spatial transform turned into the
offsets of a deformable 3x3 convolution (torchvision.ops.deform_conv2d, no compiled extension).

A 3x3 convolution with bias predicts four numbers per pixel, read row-major as a 2x2 matrix A. The
kernel's regular grid R (2 x 9: row 0 the y, row 1 the x displacement of each tap, taps in
row-major order) becomes A.R, and the deformable convolution's offsets are A.R - R, laid out as
(dy0, dx0, dy1, dx1, ...) over 18 channels, the layout torchvision shares with the reference's
DCN. The dilation is not applied to R: tap k samples p + d.R_k + (A.R_k - R_k). So A = I gives a
plain (dilated) 3x3 convolution, and A = 0, the zero-initialised start of training, moves every
tap to p + (d - 1).R_k (all onto the centre pixel when d = 1).

Module names follow the official checkpoints (STNBLOCK in the reference): regular_matrix (a
persistent buffer), transform_matrix_conv1, stn_conv1, bn1, transform_matrix_conv2, stn_conv2, bn2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from ..blocks import BN_MOMENTUM

# Rows: the y (row) and x (column) displacement of each tap of a 3x3 kernel, taps row-major.
REGULAR_GRID = ((-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0),
                (-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0))

# Four numbers per pixel: the 2x2 transform, row-major.
TRANSFORM_CHANNELS = 4


def transform_to_offsets(transform: Tensor, regular_matrix: Tensor) -> Tensor:
    """Deformable-convolution offsets (N, 18, H, W), (dy, dx) per tap, from per-pixel 2x2
    transforms (N, 4, H, W) (channels a00, a01, a10, a11) and the regular grid R (2, 9)."""
    n, _, height, width = transform.shape
    matrix = transform.reshape(n, 2, 2, 1, height, width)  # A[i, j] at [:, i, j]
    grid = regular_matrix.view(1, 1, 2, 9, 1, 1)  # R[j, k] at [:, :, j, k]
    # (A.R)[i, k] summed out elementwise: R is tiny, and a matmul here would be counted as a
    # linear layer's work by the FLOP counter.
    transformed = (matrix * grid).sum(dim=2)  # (N, 2, 9, H, W)
    offsets = transformed - regular_matrix.view(1, 2, 9, 1, 1)
    # Tap-major with (dy, dx) pairs: channel 2k + i holds row i of tap k.
    return offsets.transpose(1, 2).reshape(n, 18, height, width)


class STNBlock(nn.Module):
    """Residual block of two adaptive 3x3 convolutions (each + BN), both transforms predicted
    from the block input, as in the reference's STNBLOCK."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.register_buffer("regular_matrix", torch.tensor(REGULAR_GRID), persistent=True)
        self.transform_matrix_conv1 = nn.Conv2d(channels, TRANSFORM_CHANNELS, 3, padding=1)
        self.stn_conv1 = DeformConv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                                      bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.transform_matrix_conv2 = nn.Conv2d(channels, TRANSFORM_CHANNELS, 3, padding=1)
        self.stn_conv2 = DeformConv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                                      bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.dilation = dilation
        self.reset_transforms()

    def reset_transforms(self) -> None:
        """Zero both transform convolutions (weights and biases), the reference's start."""
        for conv in (self.transform_matrix_conv1, self.transform_matrix_conv2):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        offsets1 = transform_to_offsets(self.transform_matrix_conv1(x), self.regular_matrix)
        out = self.relu(self.bn1(self.stn_conv1(x, offsets1)))
        # The second transform also reads the block input, not the first convolution's output.
        offsets2 = transform_to_offsets(self.transform_matrix_conv2(x), self.regular_matrix)
        out = self.bn2(self.stn_conv2(out, offsets2))
        return self.relu(out + x)


def make_stn_layer(channels: int, num_blocks: int, dilation: int) -> nn.Sequential:
    """num_blocks STNBlocks in a Sequential (keys .0.*, .1.*, ...), all with one dilation."""
    return nn.Sequential(*(STNBlock(channels, dilation) for _ in range(num_blocks)))


def tie_conv_weights(source: nn.Module, targets: Sequence[nn.Module]) -> list[str]:
    """Make every target's convolution weights the source's tensors, as the reference ties its
    heatmap branches: each submodule whose name contains 'conv' shares its .weight (biases and
    BatchNorms stay separate). Returns the tied parameter names, relative to a branch."""
    tied = []
    for name, module in source.named_modules():
        if "conv" not in name:
            continue
        for target in targets:
            target.get_submodule(name).weight = module.weight
        tied.append(f"{name}.weight")
    return tied


class TiedBranches(nn.ModuleList):
    """Parallel branches that differ only in dilation and share the first branch's convolution
    weights; a state dict lists each shared tensor under every branch's name, and the copies
    must agree when loaded."""

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        branches = list(branches)
        super().__init__(branches)
        # Slicing a ModuleList builds a new one of its class: a slice of one (or no) branch
        # simply has nothing to tie.
        self.tied_names = tie_conv_weights(branches[0], branches[1:]) if branches else []
        self.register_load_state_dict_pre_hook(self._check_tied_copies)

    def _check_tied_copies(self, module, state_dict, prefix, local_metadata, strict,
                           missing_keys, unexpected_keys, error_msgs) -> None:
        """Refuse a state dict whose copies of one shared weight differ: loading it would keep
        whichever copy came last."""
        for name in self.tied_names:
            keys = [f"{prefix}{index}.{name}" for index in range(len(self))]
            copies = [(key, state_dict[key]) for key in keys if key in state_dict]
            if len(copies) < 2 or any(tensor.is_meta for _, tensor in copies):
                continue
            first_key, first = copies[0]
            differing = [key for key, tensor in copies[1:]
                         if tensor.shape != first.shape or not torch.equal(tensor, first)]
            if differing:
                error_msgs.append(f"{', '.join(differing)} differ from {first_key}, but the "
                                  f"branches share this weight (one tensor in the model); a state "
                                  f"dict must hold the same values under every branch's name")
