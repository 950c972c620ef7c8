"""Whole runs, one process or many under torchrun: build, train with checkpoints, resume,
validate."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from ..config.model_extras import is_bottom_up, is_regression
from ..datasets.build import build_bottomup_dataset, build_topdown_dataset
from ..datasets.regression import collate_regression_batch
from ..errors import HrposeError
from ..evaluation.table import log_name_value_table
from ..losses.build import build_bottomup_loss
from ..losses.joints_mse import build_topdown_loss
from ..models import build_model
from ..models.fuse import fuse_conv_bn
from ..utils.checkpoint import (
    CheckpointError,
    load_checkpoint_file,
    load_model_weights,
    load_state_dict_strict,
    non_finite_tensors,
    save_checkpoint_atomic,
)
from . import bottomup, regression, topdown
from .backends import inference_model
from .device import (
    apply_sync_batchnorm,
    autocast_dtype,
    check_sync_batchnorm,
    memory_format,
    select_device,
)
from .distributed import (
    ShardSampler,
    TrainSampler,
    all_reduce_mean,
    broadcast_from_main,
    distributed_session,
    gather_to_main,
    is_main_process,
    rank,
    unwrap_model,
    world_size,
    wrap_model,
)
from .loop import DivergenceMonitor, EpochOptions
from .run_dir import RunPaths
from .schedule import base_learning_rate, learning_rate_factor, recipe_batch_size
from .seeding import enable_deterministic_mode, mixed_seed, seed_everything, seed_worker

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pth"
BEST_MODEL_NAME = "model_best.pth"
FINAL_MODEL_NAME = "final_state.pth"


class NonFiniteWeightsError(HrposeError, FloatingPointError):
    """Model weights that became NaN or infinite: they are not saved, and the run stops."""


class Paradigm(NamedTuple):
    """What differs between top-down, bottom-up (tags) and keypoint-regression runs; the
    trainer is the same for all."""

    build_dataset: Callable
    build_loss: Callable
    train_one_epoch: Callable
    run_inference: Callable
    merge_predictions: Callable  # the run_inference outputs of all processes -> one
    evaluate_predictions: Callable


TOP_DOWN = Paradigm(build_topdown_dataset, build_topdown_loss, topdown.train_one_epoch,
                    topdown.run_inference, topdown.merge_predictions,
                    topdown.evaluate_predictions)
BOTTOM_UP = Paradigm(build_bottomup_dataset, build_bottomup_loss, bottomup.train_one_epoch,
                     bottomup.run_inference, bottomup.merge_predictions,
                     bottomup.evaluate_predictions)
REGRESSION = Paradigm(regression.build_dataset, regression.build_loss,
                      regression.train_one_epoch, regression.run_inference,
                      regression.merge_predictions, regression.evaluate_predictions)


def paradigm_of(cfg: CfgNode) -> Paradigm:
    if is_regression(cfg.MODEL.NAME):
        return REGRESSION
    return BOTTOM_UP if is_bottom_up(cfg.MODEL.NAME) else TOP_DOWN


def make_loader(cfg: CfgNode, dataset, is_train: bool, device: torch.device) -> DataLoader:
    """This process's loader: a seeded shuffle (its share of it under torchrun) for training,
    every world_size-th sample in order for testing."""
    processes, index = world_size(), rank()
    collate_fn = None
    if is_train:
        batch_size = cfg.TRAIN.BATCH_SIZE_PER_GPU
        # The shuffle of epoch e is seeded by (SEED, e) and shared by all processes.
        sampler = TrainSampler(dataset, processes, index, shuffle=cfg.TRAIN.SHUFFLE,
                               seed=mixed_seed(cfg.SEED))
        if is_regression(cfg.MODEL.NAME):
            # Stages without offset targets hold None, which the default collate refuses.
            collate_fn = collate_regression_batch
    else:
        batch_size = cfg.TEST.BATCH_SIZE_PER_GPU
        sampler = ShardSampler(dataset, processes, index)
        if is_bottom_up(cfg.MODEL.NAME):
            # Whole test images differ in size: one image, uncollated, per step.
            batch_size, collate_fn = 1, bottomup.first_item
    # Seeds the loader workers (reseeded per epoch in training).
    generator = torch.Generator().manual_seed(mixed_seed(cfg.SEED, index))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.WORKERS,
                      pin_memory=cfg.PIN_MEMORY and device.type == "cuda", drop_last=False,
                      worker_init_fn=seed_worker, generator=generator,
                      persistent_workers=False, collate_fn=collate_fn)


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam (no weight decay, as the originals), AdamW (decoupled TRAIN.WD, as HRNeXt) or SGD with
    momentum, weight decay and Nesterov. The learning rate is set every iteration by the
    schedule."""
    if cfg.TRAIN.OPTIMIZER == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.TRAIN.LR, momentum=cfg.TRAIN.MOMENTUM,
                               weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.NESTEROV)
    if cfg.TRAIN.OPTIMIZER == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WD)
    return torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)


@dataclasses.dataclass
class TrainingState:
    """Where a run stands, as checkpoint.pth records it besides weights and optimizer."""

    epoch: int  # the epoch in progress
    iteration: int  # batches of that epoch already trained (0: the epoch has not started)
    global_step: int  # optimizer steps since the start of training (tensorboard's x axis)
    best_perf: float  # best validation indicator so far (AP, or PCKh Mean for MPII)
    best_epoch: int  # the epoch that reached it (-1: none yet)


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How the data is split: per process, in total, and into iterations of an epoch."""

    per_process: int
    total: int
    iterations_per_epoch: int


def _resume(cfg: CfgNode, paths: RunPaths, model, optimizer, scaler,
            layout: BatchLayout) -> TrainingState:
    """Restore a killed run from checkpoint.pth when AUTO_RESUME is set and the file exists."""
    fresh = TrainingState(cfg.TRAIN.BEGIN_EPOCH, 0, 0, float("-inf"), -1)
    path = os.path.join(paths.output_dir, CHECKPOINT_NAME)
    if not (cfg.AUTO_RESUME and os.path.isfile(path)):
        return fresh
    checkpoint = load_checkpoint_file(path)
    if checkpoint.get("model_name") != cfg.MODEL.NAME:
        raise CheckpointError(f"'{path}' was written for model {checkpoint.get('model_name')!r}, "
                              f"not {cfg.MODEL.NAME!r}; delete it or set AUTO_RESUME False")
    iteration = checkpoint.get("iteration", 0)
    saved_batch = checkpoint.get("total_batch_size", layout.total)
    if iteration and saved_batch != layout.total:
        raise CheckpointError(
            f"'{path}' stopped {iteration} iterations into epoch {checkpoint['epoch']} with a "
            f"total batch of {saved_batch}, but this run's total batch is {layout.total} "
            f"(TRAIN.BATCH_SIZE_PER_GPU {layout.per_process} x {world_size()} processes): resume "
            f"with the same total batch, or from an epoch boundary")
    load_state_dict_strict(model, checkpoint["state_dict"], source=f"checkpoint '{path}'")
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scaler.is_enabled() and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    state = TrainingState(checkpoint["epoch"], iteration, checkpoint.get("global_step", 0),
                          checkpoint["best_perf"], checkpoint.get("best_epoch", -1))
    logger.info("resumed from %s at epoch %d, iteration %d (best indicator %.4f)", path,
                state.epoch, state.iteration, state.best_perf)
    return state


def _checkpoint(cfg: CfgNode, model, optimizer, scaler, state: TrainingState,
                layout: BatchLayout) -> dict:
    """checkpoint.pth: everything a resumed run needs, as tensors and plain numbers only."""
    return {
        "model_name": cfg.MODEL.NAME,
        "state_dict": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "iteration": state.iteration,
        "global_step": state.global_step,
        "best_perf": float(state.best_perf),
        "best_epoch": state.best_epoch,
        "total_batch_size": layout.total,
        "iterations_per_epoch": layout.iterations_per_epoch,
        "learning_rate": optimizer.param_groups[0]["lr"],
    }


def check_finite_weights(model: torch.nn.Module, name: str, where: str) -> None:
    """Raise NonFiniteWeightsError, on every process together, when a parameter or buffer of
    model holds NaN or inf; name is the file that is then not written, where says when."""
    bare = unwrap_model(model)
    state_dict = bare.state_dict()
    bad = non_finite_tensors(state_dict)
    # Processes may differ (e.g. unsynchronised BatchNorm statistics): any one stops them all.
    # The count lives on the model's device, where NCCL can reduce it.
    device = next(bare.parameters()).device
    if all_reduce_mean(torch.tensor([float(len(bad))], device=device)).item() == 0:
        return
    shown = ", ".join(bad[:3]) + (f", ... ({len(bad) - 3} more)" if len(bad) > 3 else "")
    detail = (f"in {len(bad)} of {len(state_dict)} tensors ({shown})" if bad
              else "on another process")
    raise NonFiniteWeightsError(
        f"the model's weights became NaN or infinite {where}, {detail}; {name} was not "
        f"written, so the files on disk keep the last finite weights. Lower TRAIN.LR or add "
        f"warm-up (TRAIN.WARMUP_ITERS), or train in float32 (TRAIN.AMP off)")


def summary_name(name: str) -> str:
    """A metric name as TensorBoard accepts it without a warning: 'AP (M)' -> 'AP_M'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_")


def _validate(cfg, model, loader, device, criterion, output_dir, writer=None, step=0) -> float:
    """Test this process's shard, gather every shard on rank 0, evaluate there; every process
    returns rank 0's indicator."""
    paradigm = paradigm_of(cfg)
    main = is_main_process()
    # The bare model: inference needs no gradient synchronisation.
    predictions = paradigm.run_inference(cfg, unwrap_model(model), loader, device, criterion,
                                         output_dir if main else "")
    shards = gather_to_main(predictions)
    indicator = None
    if main:
        merged = paradigm.merge_predictions(shards)
        name_values, indicator = paradigm.evaluate_predictions(cfg, loader.dataset, merged,
                                                               output_dir)
        log_name_value_table(logger, name_values, cfg.MODEL.NAME)
        if writer is not None:
            if np.isfinite(merged["loss"]):
                writer.add_scalar("valid_loss", merged["loss"], step)
            for name, value in name_values.items():
                writer.add_scalar(f"valid/{summary_name(name)}", value, step)
    return broadcast_from_main(indicator)


def _prepare_model(cfg: CfgNode, device: torch.device) -> torch.nn.Module:
    """The training model on its device in the configured memory format, SyncBN-converted when
    asked for (before the DDP wrapper, which the caller adds after resuming)."""
    processes = world_size()
    check_sync_batchnorm(cfg.MODEL.SYNC_BN, processes, device)
    model = apply_sync_batchnorm(build_model(cfg, is_train=True), cfg.MODEL.SYNC_BN, processes)
    return model.to(device, memory_format=memory_format(cfg, device))


def train(cfg: CfgNode, paths: RunPaths) -> float:
    """Train cfg's model on its training split, validating every TRAIN.VAL_INTERVAL epochs.

    One process, or one per GPU (or CPU share) under torchrun with the same code: each process
    trains on its shard of every batch and DDP averages the gradients. Rank 0 writes
    checkpoint.pth after every epoch and every TRAIN.CHECKPOINT_EVERY iterations (model,
    optimizer, loss scaler, epoch, iteration, best indicator), model_best.pth when the
    validation indicator does not drop, and final_state.pth at the end. Returns the best
    validation indicator (AP, or PCKh Mean for MPII).
    """
    device = select_device(cfg)
    with distributed_session(device):
        return _train(cfg, paths, device)


def _train(cfg: CfgNode, paths: RunPaths, device: torch.device) -> float:
    if cfg.DETERMINISTIC:
        enable_deterministic_mode()
    seed_everything(cfg.SEED)
    paradigm = paradigm_of(cfg)
    main = is_main_process()
    model = _prepare_model(cfg, device)
    criterion = paradigm.build_loss(cfg).to(device)
    train_set = paradigm.build_dataset(cfg, is_train=True)
    valid_set = paradigm.build_dataset(cfg, is_train=False)
    train_loader = make_loader(cfg, train_set, True, device)
    valid_loader = make_loader(cfg, valid_set, False, device)
    optimizer = build_optimizer(cfg, model)
    amp_dtype = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    layout = BatchLayout(cfg.TRAIN.BATCH_SIZE_PER_GPU, cfg.TRAIN.BATCH_SIZE_PER_GPU * world_size(),
                         len(train_loader))
    base_lr = base_learning_rate(cfg, layout.total)

    # The rate is a function of the position in the schedule (epoch x iterations per epoch +
    # iteration), so a resumed run needs no scheduler state. Decays start at epoch LR_STEP[i]
    # as LR_STEP says; the originals stepped MultiStepLR before each epoch, which on
    # PyTorch >= 1.1 moves every decay one epoch earlier.
    def learning_rate(position: int) -> float:
        return base_lr * learning_rate_factor(cfg.TRAIN, position, layout.iterations_per_epoch)

    state = _resume(cfg, paths, model, optimizer, scaler, layout)
    model = wrap_model(model, device)
    logger.info("training %s on %s for epochs %d..%d on %s: %d process(es) x %d images = batch "
                "%d, learning rate %.3e%s, autocast %s, %s tensors", cfg.MODEL.NAME,
                cfg.DATASET.DATASET, state.epoch, cfg.TRAIN.END_EPOCH - 1, device, world_size(),
                layout.per_process, layout.total, base_lr,
                f" (TRAIN.LR x {layout.total}/{recipe_batch_size(cfg)})"
                if cfg.TRAIN.AUTO_SCALE_LR else "",
                str(amp_dtype).removeprefix("torch.") if amp_dtype else "off",
                "channels-last" if memory_format(cfg, device) == torch.channels_last
                else "contiguous")

    divergence = DivergenceMonitor(cfg.TRAIN.DIVERGENCE_FACTOR, cfg.TRAIN.DIVERGENCE_PATIENCE)

    def save(name: str, content: Callable[[], dict], where: str) -> bool:
        """Write content() as name unless the weights are suspect; True when written."""
        if divergence.suspect:
            if main:
                logger.warning("not writing %s %s: the loss is above %g x its running level "
                               "since epoch %d, iteration %d", name, where, divergence.factor,
                               *divergence.streak_start)
            return False
        check_finite_weights(model, name, where)
        if main:
            save_checkpoint_atomic(content(), os.path.join(paths.output_dir, name))
        return True

    def checkpoint_every(epoch: int) -> Callable[[int, int], None] | None:
        every = cfg.TRAIN.CHECKPOINT_EVERY
        if not every:
            return None

        def after_step(done: int, global_step: int) -> None:
            if global_step % every == 0:
                now = dataclasses.replace(state, epoch=epoch, iteration=done,
                                          global_step=global_step)
                save(CHECKPOINT_NAME,
                     lambda: _checkpoint(cfg, model, optimizer, scaler, now, layout),
                     f"at epoch {epoch}, iteration {done - 1} (global step {global_step})")
        return after_step

    writer = SummaryWriter(paths.tensorboard_dir) if main else None
    sampler = train_loader.sampler
    try:
        for epoch in range(state.epoch, cfg.TRAIN.END_EPOCH):
            start = state.iteration if epoch == state.epoch else 0
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            # A resumed epoch skips the batches the killed run finished: the same shuffle
            # (seeded by SEED and epoch) and per-sample augmentation give the same rest.
            sampler.skip(start * layout.per_process)
            train_loader.generator.manual_seed(mixed_seed(cfg.SEED, epoch, rank()))
            options = EpochOptions(amp_dtype=amp_dtype, scaler=scaler,
                                   memory_format=memory_format(cfg, device),
                                   start_iteration=start, seed=cfg.SEED,
                                   after_step=checkpoint_every(epoch), divergence=divergence)
            first_position = epoch * layout.iterations_per_epoch
            _, state.global_step = paradigm.train_one_epoch(
                model, train_loader, criterion, optimizer, device, epoch, cfg.PRINT_FREQ, writer,
                state.global_step, cfg.DEBUG if main else None, paths.output_dir,
                lambda iteration: learning_rate(first_position + iteration), options)
            last_epoch = epoch == cfg.TRAIN.END_EPOCH - 1
            if (epoch + 1) % cfg.TRAIN.VAL_INTERVAL == 0 or last_epoch:
                perf = _validate(cfg, model, valid_loader, device, criterion, paths.output_dir,
                                 writer, epoch)
                # Only a strict improvement replaces the best model (-inf: the first always does).
                if perf > state.best_perf and save(
                        BEST_MODEL_NAME, lambda: unwrap_model(model).state_dict(),
                        f"after epoch {epoch}"):
                    state.best_perf, state.best_epoch = perf, epoch
                    if main:
                        logger.info("saved %s (indicator %.4f)", BEST_MODEL_NAME, perf)
            state.epoch, state.iteration = epoch + 1, 0
            save(CHECKPOINT_NAME, lambda: _checkpoint(cfg, model, optimizer, scaler, state, layout),
                 f"after epoch {epoch}")
    finally:
        if writer is not None:
            writer.close()
    if save(FINAL_MODEL_NAME, lambda: unwrap_model(model).state_dict(), "at the end") and main:
        logger.info("saved final model to %s; best indicator %.4f (epoch %d)",
                    os.path.join(paths.output_dir, FINAL_MODEL_NAME), state.best_perf,
                    state.best_epoch)
    return state.best_perf


def validate_model(cfg: CfgNode, paths: RunPaths, fuse_batch_norm: bool = False) -> float:
    """Evaluate TEST.MODEL_FILE (or the run's final_state.pth) on the test split, optionally with
    BatchNorm folded into the convolutions (same numbers, faster), the forward pass run by
    TEST.BACKEND. Under torchrun every process tests a shard of the split and rank 0 evaluates
    them all."""
    device = select_device(cfg)
    with distributed_session(device):
        model = build_model(cfg, is_train=False)
        model_file = cfg.TEST.MODEL_FILE or os.path.join(paths.output_dir, FINAL_MODEL_NAME)
        if not cfg.TEST.MODEL_FILE and not os.path.isfile(model_file):
            raise CheckpointError(f"no model to evaluate: TEST.MODEL_FILE is empty and "
                                  f"'{model_file}' does not exist (train first, or pass "
                                  f"TEST.MODEL_FILE path.pth)")
        load_model_weights(model, model_file)
        if fuse_batch_norm:
            model = fuse_conv_bn(model)
        model.to(device, memory_format=memory_format(cfg, device))
        model = inference_model(cfg, model, device)
        paradigm = paradigm_of(cfg)
        valid_set = paradigm.build_dataset(cfg, is_train=False)
        loader = make_loader(cfg, valid_set, False, device)
        criterion = paradigm.build_loss(cfg).to(device)
        return _validate(cfg, model, loader, device, criterion, paths.output_dir)
