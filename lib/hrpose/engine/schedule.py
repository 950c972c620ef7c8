"""Learning-rate schedules as pure functions of the iteration, and their scaling to the batch."""

from __future__ import annotations

import bisect
import math

from yacs.config import CfgNode


def learning_rate_factor(train_cfg: CfgNode, iteration: int, iterations_per_epoch: int) -> float:
    """The factor on TRAIN.LR at a global iteration (0-based) of training.

    multistep: TRAIN.LR_FACTOR per milestone of TRAIN.LR_STEP reached by the current epoch (the
    decay applies from epoch LR_STEP[i] on). cosine: by epoch from 1 down to TRAIN.MIN_LR_RATIO
    at TRAIN.END_EPOCH, as MMCV's epoch-based cosine annealing. Either way, during the first
    TRAIN.WARMUP_ITERS iterations the factor ramps linearly up from TRAIN.WARMUP_RATIO of itself.
    """
    epoch = iteration // max(iterations_per_epoch, 1)
    if train_cfg.LR_SCHEDULER == "cosine":
        progress = min(epoch / train_cfg.END_EPOCH, 1.0)
        floor = train_cfg.MIN_LR_RATIO
        factor = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = train_cfg.LR_FACTOR ** bisect.bisect_right(list(train_cfg.LR_STEP), epoch)
    if iteration < train_cfg.WARMUP_ITERS:
        remaining = 1.0 - iteration / train_cfg.WARMUP_ITERS
        factor *= 1.0 - remaining * (1.0 - train_cfg.WARMUP_RATIO)
    return factor


def recipe_batch_size(cfg: CfgNode) -> int:
    """The total batch TRAIN.LR was tuned for: TRAIN.BASE_BATCH_SIZE, or when that is 0
    BATCH_SIZE_PER_GPU x len(GPUS), the recipe as the originals' YAMLs write it."""
    return cfg.TRAIN.BASE_BATCH_SIZE or cfg.TRAIN.BATCH_SIZE_PER_GPU * max(len(cfg.GPUS), 1)


def base_learning_rate(cfg: CfgNode, total_batch_size: int) -> float:
    """TRAIN.LR, or with TRAIN.AUTO_SCALE_LR the linear scaling rule (Goyal et al. 2017):
    TRAIN.LR x this run's total batch / the recipe's total batch."""
    if not cfg.TRAIN.AUTO_SCALE_LR:
        return cfg.TRAIN.LR
    return cfg.TRAIN.LR * total_batch_size / recipe_batch_size(cfg)
