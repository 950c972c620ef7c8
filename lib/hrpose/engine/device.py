"""Choosing the compute device and the cuDNN switches from the config."""

from __future__ import annotations

import logging

import torch
from torch import nn
from yacs.config import CfgNode

from ..config import ConfigError

logger = logging.getLogger(__name__)

# Channels-last convolutions run about a quarter faster on CPU (oneDNN) and no slower on GPU.
IMAGE_MEMORY_FORMAT = torch.channels_last

def select_device(cfg: CfgNode) -> torch.device:
    """CUDA (the first of GPUS) when asked for or available under 'auto'; otherwise the CPU."""
    if cfg.DEVICE == "cpu" or (cfg.DEVICE == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("DEVICE is 'cuda' but PyTorch sees no CUDA device; use DEVICE cpu or auto")
    index = int(cfg.GPUS[0]) if len(cfg.GPUS) else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"GPUS asks for device {index} but only {torch.cuda.device_count()} "
                          f"CUDA device(s) are visible")
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
    return torch.device("cuda", index)


def world_size() -> int:
    """Processes in the distributed run (1 when torch.distributed is not initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def apply_sync_batchnorm(model: nn.Module, enabled: bool, processes: int) -> nn.Module:
    """model with every BatchNorm synchronised across processes when MODEL.SYNC_BN asks for it
    and the run has more than one process; otherwise model unchanged."""
    if not enabled:
        return model
    if processes < 2:
        logger.info("MODEL.SYNC_BN is set but the run has one process: plain BatchNorm")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
