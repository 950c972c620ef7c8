"""Configuration: the one default tree, model-specific EXTRA blocks, merging and validation."""

from .default import _C as cfg
from .default import get_default_config
from .update import ConfigError, load_config, update_config

__all__ = ["cfg", "get_default_config", "update_config", "load_config", "ConfigError"]
