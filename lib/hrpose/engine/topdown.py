"""Top-down training and validation loops: one epoch of training, batched inference, evaluation."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

from ..evaluation.coco import evaluate_coco_keypoints
from ..evaluation.crowdpose import evaluate_crowdpose_keypoints
from ..evaluation.pckh import evaluate_mpii_pckh, save_mpii_predictions
from ..evaluation.results import write_keypoint_results
from ..postprocess.topdown import (
    coco_results,
    decode_poses,
    final_heatmaps,
    predict_heatmaps,
    select_poses,
)
from .debug import save_debug_images
from .device import memory_format
from .distributed import is_main_process
from .loop import EpochOptions, StepOutput, run_epoch, to_device

logger = logging.getLogger(__name__)


def _progress(iterable, description: str, total: int):
    # A bar in a terminal on rank 0; nothing on other ranks, in files or in CI.
    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True,
                disable=not (sys.stderr.isatty() and is_main_process()))


def loss_terms(criterion: nn.Module, output, target, target_weight) -> dict[str, torch.Tensor]:
    """The heatmap loss, one term per stack for models with intermediate supervision."""
    if isinstance(output, (list, tuple)):
        return {f"heatmaps_{stack}": criterion(stage, target, target_weight)
                for stack, stage in enumerate(output)}
    return {"heatmaps": criterion(output, target, target_weight)}


def training_step(criterion: nn.Module, debug: CfgNode | None = None):
    """The top-down forward pass and loss of one (images, target, target_weight, meta) batch."""
    def step(model: nn.Module, batch, device: torch.device, options: EpochOptions) -> StepOutput:
        images, target, target_weight, meta = batch
        target, target_weight = to_device(target, device), to_device(target_weight, device)
        images, output = options.forward(model, images, device)
        terms = loss_terms(criterion, output, target, target_weight)
        save_debug = None
        if debug is not None:
            def save_debug(prefix: str) -> None:
                save_debug_images(debug, prefix, images, meta, target, final_heatmaps(output))
        return StepOutput(torch.stack(list(terms.values())).sum(), terms, images.shape[0],
                          save_debug)
    return step


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer, device: torch.device,
                    epoch: int, print_freq: int, writer=None, global_step: int = 0,
                    debug: CfgNode | None = None, output_dir: str = "",
                    learning_rate: Callable[[int], float] | None = None,
                    options: EpochOptions | None = None) -> tuple[float, int]:
    """One pass over a top-down loader; returns the mean loss and the updated global step.

    learning_rate(iteration), when given, sets the rate of the epoch's iteration before its
    step; options carry precision, memory format and resume position (engine.loop.EpochOptions).
    """
    return run_epoch(training_step(criterion, debug), model, loader, optimizer, device, epoch,
                     print_freq, writer, global_step,
                     lambda iteration: os.path.join(output_dir, f"train_{iteration}"),
                     learning_rate, options)


def _concatenate(parts: list[np.ndarray], empty_shape: tuple, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)


@torch.no_grad()
def run_inference(cfg: CfgNode, model: nn.Module, loader, device: torch.device,
                  criterion: nn.Module | None = None, output_dir: str = "") -> dict:
    """Poses in image coordinates for every sample of loader, plus the boxes they came from."""
    model.eval()
    dataset = loader.dataset
    flip_index = dataset.keypoint_info.flip_index if cfg.TEST.FLIP_TEST else None
    images_format = memory_format(cfg, device)
    poses, centers, scales, box_scores, image_ids, indices = [], [], [], [], [], []
    total_loss, total_samples = 0.0, 0
    for iteration, (images, target, target_weight, meta) in enumerate(
            _progress(loader, "test", len(loader))):
        images = images.to(device, non_blocking=True, memory_format=images_format)
        heatmaps = predict_heatmaps(model, images, flip_index, cfg.TEST.SHIFT_HEATMAP)
        if output_dir and iteration % cfg.PRINT_FREQ == 0:
            save_debug_images(cfg.DEBUG, os.path.join(output_dir, f"val_{iteration}"), images,
                              meta, target, heatmaps)
        if criterion is not None:
            loss = criterion(heatmaps, target.to(device), target_weight.to(device))
            total_loss += loss.item() * images.shape[0]
            total_samples += images.shape[0]
        center = meta["center"].numpy().astype(np.float64)
        scale = meta["scale"].numpy().astype(np.float64)
        poses.append(decode_poses(cfg, heatmaps, center, scale))
        centers.append(center)
        scales.append(scale)
        box_scores.append(meta["score"].numpy().astype(np.float64))
        image_ids.append(meta["image_id"].numpy())
        indices.append(meta["index"].numpy())
    num_joints = dataset.keypoint_info.num_keypoints
    # A process of a distributed run may get no test sample at all: empty arrays, right shapes.
    return {
        "poses": _concatenate(poses, (0, num_joints, 3), np.float64),
        "centers": _concatenate(centers, (0, 2), np.float64),
        "scales": _concatenate(scales, (0, 2), np.float64),
        "box_scores": _concatenate(box_scores, (0,), np.float64),
        "image_ids": _concatenate(image_ids, (0,), np.int64),
        "indices": _concatenate(indices, (0,), np.int64),
        "loss": total_loss / total_samples if total_samples else float("nan"),
        "loss_samples": total_samples,
    }


def merge_predictions(shards: list[dict]) -> dict:
    """The predictions of every process's test shard as one process would have made them:
    concatenated, in dataset order, with the sample-weighted mean loss."""
    order = np.argsort(np.concatenate([shard["indices"] for shard in shards]), kind="stable")
    merged = {key: np.concatenate([shard[key] for shard in shards])[order]
              for key in ("poses", "centers", "scales", "box_scores", "image_ids", "indices")}
    samples = sum(shard["loss_samples"] for shard in shards)
    merged["loss"] = (sum(shard["loss"] * shard["loss_samples"] for shard in shards
                          if shard["loss_samples"]) / samples if samples else float("nan"))
    merged["loss_samples"] = samples
    return merged


def evaluate_predictions(cfg: CfgNode, dataset, predictions: dict,
                         output_dir: str) -> tuple[dict, float]:
    """Write the results file of the split and score it; returns (name -> value, indicator)."""
    evaluation = dataset.evaluation
    name, image_set = evaluation["dataset"], evaluation["image_set"]
    poses = predictions["poses"]
    if name == "mpii":
        order = np.argsort(predictions["indices"])
        save_mpii_predictions(poses[order, :, :2], os.path.join(output_dir, "pred.mat"))
        if "test" in image_set:
            return {"Null": 0.0}, 0.0
        name_values = evaluate_mpii_pckh(poses[order, :, :2], evaluation["gt_file"])
        return name_values, name_values["Mean"]

    info = dataset.keypoint_info
    keep, scores = select_poses(cfg, poses, predictions["box_scores"], predictions["scales"],
                                predictions["image_ids"], info.sigmas_array)
    results = coco_results(poses[keep], scores[keep], predictions["image_ids"][keep],
                           predictions["centers"][keep], predictions["scales"][keep])
    results_file = os.path.join(output_dir, "results", f"keypoints_{image_set}_results.json")
    write_keypoint_results(results, results_file)
    logger.info("wrote %d poses to %s", len(results), results_file)
    if not evaluation["coco"].dataset.get("annotations"):
        # COCO test-dev ships image information only: submit the results file to the server.
        logger.info("%s has no ground truth; nothing to evaluate", evaluation["gt_file"])
        return {"Null": 0.0}, 0.0
    if name == "crowdpose":
        name_values = evaluate_crowdpose_keypoints(evaluation["gt_file"], results,
                                                   info.sigmas_array, cfg.TEST.EVAL_BACKEND)
    else:
        name_values = evaluate_coco_keypoints(evaluation["coco"], results, info.sigmas_array,
                                              cfg.TEST.EVAL_BACKEND)
    return name_values, name_values["AP"]
