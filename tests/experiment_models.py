"""Models built from experiment files (with weights, or on the meta device), BatchNorms given
trained-looking statistics and state dicts reloaded through the checkpoint loader, shared by
the model tests."""

import torch
from torch import nn

from hrpose.config import load_config
from hrpose.models import build_model
from hrpose.utils.checkpoint import load_model_weights


def config(cfg_path, *opts):
    """The experiment file's config with opts (KEY, VALUE, ...) applied."""
    return load_config(cfg_path, list(opts))


def build(cfg_path, *opts, is_train=False):
    """The experiment's model (is_train: initialised as for training)."""
    return build_model(config(cfg_path, *opts), is_train=is_train)


def meta_model(cfg_path, *opts):
    """The experiment's model on the meta device: shapes and counts, no memory, no compute."""
    with torch.device("meta"):
        return build(cfg_path, *opts)


def randomize_batchnorms_(module, spread):
    """Give every BatchNorm2d of module non-trivial statistics and affine values in place (means
    and biases within +-spread, variances in [0.5, 2], weights in [0.5, 1.5]), so that
    inference-mode BatchNorm is far from the identity."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-spread, spread)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-spread, spread)


def assert_reloads_exactly(model, fresh, path, prefix=""):
    """Save model's state dict to path with prefix before every key (as wrappers write them),
    load it into fresh through the strict checkpoint loader and check fresh holds every tensor."""
    state = model.state_dict()
    torch.save({prefix + key: value for key, value in state.items()}, path)
    load_model_weights(fresh, str(path))
    loaded = fresh.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
