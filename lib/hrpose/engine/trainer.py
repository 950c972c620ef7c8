"""Whole runs: build everything from the config, train with checkpoints and resume, validate."""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from ..config.model_extras import is_bottom_up
from ..datasets.build import build_bottomup_dataset, build_topdown_dataset
from ..evaluation.table import log_name_value_table
from ..losses.associative_embedding import build_bottomup_loss
from ..losses.joints_mse import build_topdown_loss
from ..models import build_model
from ..models.fuse import fuse_conv_bn
from .checkpoint import (CheckpointError, load_checkpoint_file, load_model_weights,
                         load_state_dict_strict, save_checkpoint_atomic)
from .device import IMAGE_MEMORY_FORMAT, apply_sync_batchnorm, select_device, world_size
from .schedule import learning_rate_factor
from .run_dir import RunPaths
from . import bottomup, topdown

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pth"
BEST_MODEL_NAME = "model_best.pth"
FINAL_MODEL_NAME = "final_state.pth"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    # Augmentation draws from per-sample generators; this only keeps stray global RNG use distinct.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


class Paradigm(NamedTuple):
    """What differs between top-down and bottom-up runs; the trainer is the same for both."""

    build_dataset: Callable
    build_loss: Callable
    train_one_epoch: Callable
    run_inference: Callable
    evaluate_predictions: Callable


TOP_DOWN = Paradigm(build_topdown_dataset, build_topdown_loss, topdown.train_one_epoch,
                    topdown.run_inference, topdown.evaluate_predictions)
BOTTOM_UP = Paradigm(build_bottomup_dataset, build_bottomup_loss, bottomup.train_one_epoch,
                     bottomup.run_inference, bottomup.evaluate_predictions)


def paradigm_of(cfg: CfgNode) -> Paradigm:
    return BOTTOM_UP if is_bottom_up(cfg.MODEL.NAME) else TOP_DOWN


def make_loader(cfg: CfgNode, dataset, is_train: bool, device: torch.device) -> DataLoader:
    batch_size = cfg.TRAIN.BATCH_SIZE_PER_GPU if is_train else cfg.TEST.BATCH_SIZE_PER_GPU
    collate_fn = None
    if not is_train and is_bottom_up(cfg.MODEL.NAME):
        # Whole test images differ in size: one image, uncollated, per step.
        batch_size, collate_fn = 1, bottomup.first_item
    generator = torch.Generator().manual_seed(cfg.SEED)
    return DataLoader(dataset, batch_size=batch_size, shuffle=is_train and cfg.TRAIN.SHUFFLE,
                      num_workers=cfg.WORKERS, pin_memory=cfg.PIN_MEMORY and device.type == "cuda",
                      drop_last=False, worker_init_fn=_worker_init, generator=generator,
                      persistent_workers=False, collate_fn=collate_fn)


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam (no weight decay, as the originals), AdamW (decoupled TRAIN.WD, as HRNeXt) or SGD with
    momentum, weight decay and Nesterov. The learning rate is set every iteration by the schedule."""
    if cfg.TRAIN.OPTIMIZER == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.TRAIN.LR, momentum=cfg.TRAIN.MOMENTUM,
                               weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.NESTEROV)
    if cfg.TRAIN.OPTIMIZER == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WD)
    return torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)


def _resume(cfg, paths, model, optimizer) -> tuple[int, float, int]:
    """Restore a killed run from checkpoint.pth; returns (next epoch, best indicator, global step)."""
    path = os.path.join(paths.output_dir, CHECKPOINT_NAME)
    if not (cfg.AUTO_RESUME and os.path.isfile(path)):
        return cfg.TRAIN.BEGIN_EPOCH, float("-inf"), 0
    checkpoint = load_checkpoint_file(path)
    if checkpoint.get("model_name") != cfg.MODEL.NAME:
        raise CheckpointError(f"'{path}' was written for model {checkpoint.get('model_name')!r}, "
                              f"not {cfg.MODEL.NAME!r}; delete it or set AUTO_RESUME False")
    load_state_dict_strict(model, checkpoint["state_dict"], source=f"checkpoint '{path}'")
    optimizer.load_state_dict(checkpoint["optimizer"])
    logger.info("resumed from %s at epoch %d (best indicator %.4f)", path, checkpoint["epoch"],
                checkpoint["best_perf"])
    return checkpoint["epoch"], checkpoint["best_perf"], checkpoint.get("global_step", 0)


def summary_name(name: str) -> str:
    """A metric name as TensorBoard accepts it without a warning: 'AP (M)' -> 'AP_M'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_")


def _validate(cfg, model, loader, device, criterion, output_dir, writer=None, step=0) -> float:
    paradigm = paradigm_of(cfg)
    predictions = paradigm.run_inference(cfg, model, loader, device, criterion, output_dir)
    name_values, indicator = paradigm.evaluate_predictions(cfg, loader.dataset, predictions,
                                                           output_dir)
    log_name_value_table(logger, name_values, cfg.MODEL.NAME)
    if writer is not None:
        if np.isfinite(predictions["loss"]):
            writer.add_scalar("valid_loss", predictions["loss"], step)
        for name, value in name_values.items():
            writer.add_scalar(f"valid/{summary_name(name)}", value, step)
    return indicator


def train(cfg: CfgNode, paths: RunPaths) -> float:
    """Train cfg's model on its training split, validating every TRAIN.VAL_INTERVAL epochs.

    Writes checkpoint.pth after every epoch (model, optimizer, epoch, step, best indicator),
    model_best.pth when the validation indicator does not drop, and final_state.pth at the end.
    Returns the best validation indicator (AP, or PCKh Mean for MPII).
    """
    seed_everything(cfg.SEED)
    paradigm = paradigm_of(cfg)
    device = select_device(cfg)
    model = apply_sync_batchnorm(build_model(cfg, is_train=True), cfg.MODEL.SYNC_BN, world_size())
    model = model.to(device, memory_format=IMAGE_MEMORY_FORMAT)
    criterion = paradigm.build_loss(cfg).to(device)
    train_set = paradigm.build_dataset(cfg, is_train=True)
    valid_set = paradigm.build_dataset(cfg, is_train=False)
    train_loader = make_loader(cfg, train_set, True, device)
    valid_loader = make_loader(cfg, valid_set, False, device)
    optimizer = build_optimizer(cfg, model)
    iterations_per_epoch = len(train_loader)

    # The rate is a function of the iteration, so a resumed run needs no scheduler state. Decays
    # start at epoch LR_STEP[i] as LR_STEP says; the originals stepped MultiStepLR before each
    # epoch, which on PyTorch >= 1.1 moves every decay one epoch earlier.
    def learning_rate(iteration: int) -> float:
        return cfg.TRAIN.LR * learning_rate_factor(cfg.TRAIN, iteration, iterations_per_epoch)

    begin_epoch, best_perf, global_step = _resume(cfg, paths, model, optimizer)
    logger.info("training %s on %s for epochs %d..%d on %s", cfg.MODEL.NAME,
                cfg.DATASET.DATASET, begin_epoch, cfg.TRAIN.END_EPOCH - 1, device)

    writer = SummaryWriter(paths.tensorboard_dir)
    try:
        for epoch in range(begin_epoch, cfg.TRAIN.END_EPOCH):
            train_set.set_epoch(epoch)
            # The shuffle order (and worker seeds) of an epoch depend on (SEED, epoch) only, so a
            # resumed run sees the batches the uninterrupted run would have.
            train_loader.generator.manual_seed(cfg.SEED * 100_003 + epoch)
            writer.add_scalar("learning_rate", learning_rate(global_step), epoch)
            _, global_step = paradigm.train_one_epoch(
                model, train_loader, criterion, optimizer, device, epoch, cfg.PRINT_FREQ, writer,
                global_step, cfg.DEBUG, paths.output_dir, learning_rate)
            last_epoch = epoch == cfg.TRAIN.END_EPOCH - 1
            if (epoch + 1) % cfg.TRAIN.VAL_INTERVAL == 0 or last_epoch:
                perf = _validate(cfg, model, valid_loader, device, criterion, paths.output_dir,
                                 writer, epoch)
                if perf >= best_perf:
                    best_perf = perf
                    save_checkpoint_atomic(model.state_dict(),
                                           os.path.join(paths.output_dir, BEST_MODEL_NAME))
                    logger.info("saved %s (indicator %.4f)", BEST_MODEL_NAME, perf)
            save_checkpoint_atomic({
                "epoch": epoch + 1,
                "model_name": cfg.MODEL.NAME,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_perf": float(best_perf),
                "global_step": global_step,
            }, os.path.join(paths.output_dir, CHECKPOINT_NAME))
    finally:
        writer.close()
    final_path = os.path.join(paths.output_dir, FINAL_MODEL_NAME)
    save_checkpoint_atomic(model.state_dict(), final_path)
    logger.info("saved final model to %s; best indicator %.4f", final_path, best_perf)
    return best_perf


def validate_model(cfg: CfgNode, paths: RunPaths, fuse_batch_norm: bool = False) -> float:
    """Evaluate TEST.MODEL_FILE (or the run's final_state.pth) on the test split, optionally with
    BatchNorm folded into the convolutions (same numbers, faster)."""
    device = select_device(cfg)
    model = build_model(cfg, is_train=False)
    model_file = cfg.TEST.MODEL_FILE or os.path.join(paths.output_dir, FINAL_MODEL_NAME)
    if not cfg.TEST.MODEL_FILE and not os.path.isfile(model_file):
        raise CheckpointError(f"no model to evaluate: TEST.MODEL_FILE is empty and '{model_file}' "
                              f"does not exist (train first, or pass TEST.MODEL_FILE path.pth)")
    load_model_weights(model, model_file)
    if fuse_batch_norm:
        model = fuse_conv_bn(model)
    model.to(device, memory_format=IMAGE_MEMORY_FORMAT)
    paradigm = paradigm_of(cfg)
    valid_set = paradigm.build_dataset(cfg, is_train=False)
    loader = make_loader(cfg, valid_set, False, device)
    criterion = paradigm.build_loss(cfg).to(device)
    return _validate(cfg, model, loader, device, criterion, paths.output_dir)
