"""Learning-rate schedules as pure functions of the iteration: multi-step or cosine, with warm-up."""

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
