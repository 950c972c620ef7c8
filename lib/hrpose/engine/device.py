"""Choosing the compute device, memory format, autocast precision and cuDNN switches from the
config."""

from __future__ import annotations

import logging

import torch
from torch import nn
from yacs.config import CfgNode

from ..config import ConfigError
from .distributed import launched_by_torchrun, local_rank

logger = logging.getLogger(__name__)

# Inference (apis.PosePredictor) always runs channels-last, the layout oneDNN's CPU convolutions
# are fastest in (GPUs are no slower in it). Training and validation follow CHANNELS_LAST.
IMAGE_MEMORY_FORMAT = torch.channels_last


def select_device(cfg: CfgNode) -> torch.device:
    """CUDA when asked for or available under 'auto', otherwise the CPU.

    The CUDA device is the first of GPUS in a plain run, and LOCAL_RANK under torchrun (choose
    the GPUs with CUDA_VISIBLE_DEVICES there); it becomes the current device.
    """
    if cfg.DEVICE == "cpu" or (cfg.DEVICE == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("DEVICE is 'cuda' but PyTorch sees no CUDA device; "
                          "use DEVICE cpu or auto")
    visible = torch.cuda.device_count()
    if launched_by_torchrun():
        index = local_rank()
        if index >= visible:
            raise ConfigError(f"torchrun started local process {index} but only {visible} CUDA "
                              f"device(s) are visible: start at most {visible} processes per "
                              f"node (--nproc_per_node)")
    else:
        index = int(cfg.GPUS[0]) if len(cfg.GPUS) else 0
        if index >= visible:
            raise ConfigError(f"GPUS asks for device {index} but only {visible} CUDA "
                              f"device(s) are visible")
    torch.cuda.set_device(index)
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK and not cfg.DETERMINISTIC
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC or cfg.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
    return torch.device("cuda", index)


def memory_format(cfg: CfgNode, device: torch.device) -> torch.memory_format:
    """channels_last when CHANNELS_LAST is 'on', or 'auto' on CUDA (tensor cores want NHWC,
    above all under mixed precision); contiguous otherwise."""
    use = cfg.CHANNELS_LAST == "on" or (cfg.CHANNELS_LAST == "auto" and device.type == "cuda")
    return torch.channels_last if use else torch.contiguous_format


def autocast_dtype(cfg: CfgNode, device: torch.device) -> torch.dtype | None:
    """The dtype TRAIN.AMP runs the forward pass in (None: float32 throughout).

    'auto' is bfloat16 on a CUDA device that supports it (fp32's range, so no loss scaling and
    no overflow in tag maps) and float32 elsewhere: float16 needs a loss scaler and a CPU
    without bf16 units gains nothing, so both are explicit choices.
    """
    choice = cfg.TRAIN.AMP
    # Emulated bf16 (pre-Ampere GPUs) is slower than float32: it does not count as support.
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if choice == "off":
        return None
    if choice == "auto":
        return torch.bfloat16 if cuda_bf16 else None
    if choice == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise ConfigError(f"TRAIN.AMP is 'bf16' but {torch.cuda.get_device_name(device)} has "
                              f"no bfloat16 support; use TRAIN.AMP fp16 (with loss scaling) or off")
        return torch.bfloat16
    return torch.float16


def apply_sync_batchnorm(model: nn.Module, enabled: bool, processes: int) -> nn.Module:
    """model with every BatchNorm synchronised across processes when MODEL.SYNC_BN asks for it
    and the run has more than one process; otherwise model unchanged."""
    if not enabled:
        return model
    if processes < 2:
        logger.info("MODEL.SYNC_BN is set but the run has one process: plain BatchNorm")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def check_sync_batchnorm(enabled: bool, processes: int, device: torch.device) -> None:
    """Stop before training when SyncBN cannot run: PyTorch's SyncBatchNorm is GPU-only."""
    if enabled and processes > 1 and device.type == "cpu":
        raise ConfigError(f"MODEL.SYNC_BN is True in a {processes}-process CPU run, but PyTorch's "
                          f"SyncBatchNorm runs on GPUs only: set MODEL.SYNC_BN False (each process "
                          f"then normalises with its own batch statistics)")
