"""Folding BatchNorm into the convolution before it, for faster inference."""

from __future__ import annotations

import logging

from torch import nn
from torch.fx.experimental.optimization import fuse

from ..errors import HrposeError

logger = logging.getLogger(__name__)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """An inference copy of model with every Conv2d -> BatchNorm2d pair folded into one Conv2d.

    Uses torch.fx's conv-BN fusion, so any backbone whose forward traces is covered; BatchNorms
    that follow anything else (a transposed convolution, a pre-activation block's input) stay.
    The copy is in eval mode and gives the same outputs within float rounding; model is untouched.
    """
    batch_norms = sum(isinstance(layer, nn.BatchNorm2d) for layer in model.modules())
    try:
        fused = fuse(model.eval())
    except Exception as error:  # torch.fx raises assorted types for untraceable code
        raise HrposeError(f"cannot fuse Conv-BN pairs of {type(model).__name__}: torch.fx could "
                          f"not trace its forward ({error}); run without --fuse-conv-bn") from error
    left = sum(isinstance(layer, nn.BatchNorm2d) for layer in fused.modules())
    logger.info("folded %d of %d BatchNorm layers into their convolutions", batch_norms - left,
                batch_norms)
    return fused
