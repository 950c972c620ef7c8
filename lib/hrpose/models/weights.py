"""Weight initialisation and partial loading of ImageNet-pretrained backbones."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from ..utils.checkpoint import (
    CheckpointError,
    compare_state_dicts,
    extract_state_dict,
    load_checkpoint_file,
    strip_wrapper_prefixes,
)

logger = logging.getLogger(__name__)

# The reference models start every convolution from N(0, 0.001) before any pretrained weights load.
INIT_STD = 0.001


def normal_init_(module: nn.Module, std: float = INIT_STD) -> None:
    """Convolutions and transposed convolutions ~ N(0, std) with zero bias; BatchNorm 1 and 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def kaiming_init_(module: nn.Module, output_layers: Sequence[nn.Module] = ()) -> None:
    """He-normal (fan-out) convolutions with zero bias and unit BatchNorms; the output_layers (the
    heatmap convolutions) start at N(0, 0.001) instead, so the first heatmaps are flat, as the
    originals' are.

    With BatchNorm after the hidden convolutions, Adam's steps of about LR are relative changes of
    LR / weight scale: at N(0, 0.001) that is a full rewrite per step, which pretrained weights
    hide but training from scratch does not.
    """
    outputs = {id(layer) for layer in output_layers}
    for layer in module.modules():
        if id(layer) in outputs:
            normal_init_(layer)
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


INIT_METHODS = ("normal", "kaiming")


def initialize_(module: nn.Module, method: str = "normal",
                output_layers: Sequence[nn.Module] = ()) -> None:
    """Initialise module in place by MODEL.INIT_METHOD: 'normal' N(0, 0.001) everywhere, as the
    originals; 'kaiming' He-normal but for the output_layers."""
    if method not in INIT_METHODS:
        raise ValueError(f"unknown initialisation {method!r}; known: {', '.join(INIT_METHODS)}")
    if method == "kaiming":
        kaiming_init_(module, output_layers)
    else:
        normal_init_(module)


def top_level_whitelist(layer_names: Iterable[str]) -> Callable[[str], bool]:
    """A key filter: keep keys whose first dotted component is listed; '*' first keeps
    everything."""
    names = list(layer_names)
    if names and names[0] == "*":
        return lambda key: True
    allowed = set(names)
    return lambda key: key.split(".", 1)[0] in allowed


def load_pretrained_weights(model: nn.Module, path: str, keep: Callable[[str], bool]) -> int:
    """Copy the tensors of an ImageNet (or other) checkpoint into model where names and shapes
    agree.

    Only keys accepted by keep are considered. Keys the model lacks are skipped quietly (a
    classifier head, for instance); keys whose shape differs are skipped with a warning naming
    them. Returns the number of tensors loaded.
    """
    if not os.path.isfile(path):
        raise CheckpointError(
            f"MODEL.PRETRAINED file not found: '{path}' (expected an ImageNet checkpoint, e.g. "
            f"models/pytorch/imagenet/hrnet_w32-36af842e.pth or resnet50-19c8e357.pth, or for "
            f"the synthetic bottom-up experiments the top-down model that `make demo` trains; "
            f"set MODEL.PRETRAINED '' to train from the random initialisation)")
    source = f"pretrained file '{path}'"
    state_dict = strip_wrapper_prefixes(extract_state_dict(load_checkpoint_file(path), source))
    own_state = model.state_dict()

    selected = {key: value for key, value in state_dict.items() if keep(key)}
    _, unexpected, mismatched = compare_state_dicts(own_state, selected)
    mismatched_keys = {entry.split(":", 1)[0] for entry in mismatched}
    if mismatched:
        logger.warning("%s: %d tensors have a shape that does not fit the model and were "
                       "skipped: %s", source, len(mismatched), "; ".join(mismatched))
    if unexpected:
        logger.info("%s: %d tensors have no counterpart in the model and were skipped",
                    source, len(unexpected))
    loadable = {key: value for key, value in selected.items()
                if key in own_state and key not in mismatched_keys}
    model.load_state_dict(loadable, strict=False)
    logger.info("loaded %d of the model's %d tensors from %s (%d in the file, %d not selected)",
                len(loadable), len(own_state), source, len(state_dict),
                len(state_dict) - len(selected))
    return len(loadable)
