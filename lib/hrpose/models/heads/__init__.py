"""Prediction heads that sit on a backbone's features."""

from .deconv import deconv_padding, make_deconv_layers
from .heatmap import heatmap_conv

__all__ = ["deconv_padding", "make_deconv_layers", "heatmap_conv"]
