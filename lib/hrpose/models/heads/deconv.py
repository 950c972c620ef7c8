"""SimpleBaseline's upsampling head: stride-2 transposed convolutions, each followed by BN and
ReLU."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...config import ConfigError
from ..blocks import BN_MOMENTUM

# (padding, output_padding) that make a stride-2 transposed convolution exactly double the size.
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def deconv_padding(kernel_size: int) -> tuple[int, int]:
    """(padding, output_padding) for a stride-2 transposed convolution with this kernel size."""
    try:
        return _DECONV_PADDING[kernel_size]
    except KeyError:
        raise ConfigError(f"unsupported deconvolution kernel size {kernel_size} "
                         f"(NUM_DECONV_KERNELS entries must be 2, 3 or 4)") from None


def make_deconv_layers(in_channels: int, num_filters: Sequence[int], kernel_sizes: Sequence[int],
                       with_bias: bool) -> nn.Sequential:
    """A flat Sequential of (ConvTranspose2d, BN, ReLU) triples, each doubling the resolution.

    Flat, not nested, so that the keys are deconv_layers.0.weight, deconv_layers.1.* (BN),
    deconv_layers.3.weight, ... as in the released SimpleBaseline checkpoints.
    """
    if len(num_filters) != len(kernel_sizes):
        raise ConfigError(f"NUM_DECONV_FILTERS has {len(num_filters)} entries but "
                         f"NUM_DECONV_KERNELS has {len(kernel_sizes)}; give one per layer")
    layers: list[nn.Module] = []
    for out_channels, kernel_size in zip(num_filters, kernel_sizes, strict=True):
        padding, output_padding = deconv_padding(kernel_size)
        layers += [
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2, padding=padding,
                               output_padding=output_padding, bias=with_bias),
            nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers)
