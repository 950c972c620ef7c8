"""The last convolution of a heatmap model: features to one heatmap per joint."""

from torch import nn


def heatmap_conv(in_channels: int, num_joints: int, kernel_size: int = 1) -> nn.Conv2d:
    """Conv2d(in_channels -> num_joints) with bias and 'same' padding; no activation follows,
    because the heatmaps are regressed with an MSE loss."""
    if kernel_size % 2 != 1:
        raise ValueError(f"the heatmap convolution needs an odd kernel size (FINAL_CONV_KERNEL), "
                         f"got {kernel_size}")
    return nn.Conv2d(in_channels, num_joints, kernel_size=kernel_size, stride=1,
                     padding=(kernel_size - 1) // 2)
