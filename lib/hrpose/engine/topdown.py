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

from ..codecs.dark import decode_dark
from ..codecs.heatmap import decode_standard, flip_back, shift_flipped_heatmaps
from ..evaluation.coco import evaluate_coco_keypoints
from ..evaluation.crowdpose import evaluate_crowdpose_keypoints
from ..evaluation.pckh import evaluate_mpii_pckh, save_mpii_predictions
from ..evaluation.results import write_keypoint_results
from ..postprocess.topdown import box_areas, coco_results, nms_per_image, rescore_poses
from ..utils.transforms import transform_preds
from .debug import save_debug_images
from .device import memory_format
from .distributed import is_main_process
from .loop import EpochOptions, StepOutput, run_epoch, to_device

logger = logging.getLogger(__name__)


def _progress(iterable, description: str, total: int):
    # A bar in a terminal on rank 0; nothing on other ranks, in files or in CI.
    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True,
                disable=not (sys.stderr.isatty() and is_main_process()))


def _final_heatmaps(output) -> torch.Tensor:
    """Models with intermediate supervision return a list; the last map is the prediction."""
    return output[-1] if isinstance(output, (list, tuple)) else output


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
                save_debug_images(debug, prefix, images, meta, target, _final_heatmaps(output))
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


def decode_heatmaps(heatmaps: torch.Tensor, test_cfg: CfgNode):
    """Heatmap-pixel coords and confidences by the decoder TEST.DECODER names."""
    if test_cfg.DECODER == "dark":
        return decode_dark(heatmaps, test_cfg.BLUR_KERNEL, test_cfg.DARK_STEP)
    return decode_standard(heatmaps, test_cfg.POST_PROCESS)


def predict_heatmaps(model: nn.Module, images: torch.Tensor, flip_index: np.ndarray | None,
                     shift_heatmap: bool) -> torch.Tensor:
    """Heatmaps of a batch, averaged with those of the mirrored batch when flip_index is given."""
    heatmaps = _final_heatmaps(model(images))
    if flip_index is None:
        return heatmaps
    flipped = flip_back(_final_heatmaps(model(images.flip(3))), flip_index)
    if shift_heatmap:
        flipped = shift_flipped_heatmaps(flipped)
    return (heatmaps + flipped) * 0.5


def decode_poses(cfg: CfgNode, heatmaps: torch.Tensor, center: np.ndarray,
                 scale: np.ndarray) -> np.ndarray:
    """Poses (N, K, 3) float64 (x, y in image pixels, confidence) of a batch's heatmaps.

    center, scale (N, 2): the crop boxes the batch was cut from. The decoder is TEST.DECODER's,
    the coordinate convention DATASET.COORD_CONVENTION's. The validation loop and
    apis.PosePredictor both decode through here.
    """
    coords, maxvals = _to_host(*decode_heatmaps(heatmaps, cfg.TEST))
    image_coords = transform_preds(coords, np.asarray(center, dtype=np.float64),
                                   np.asarray(scale, dtype=np.float64), cfg.MODEL.HEATMAP_SIZE,
                                   cfg.DATASET.COORD_CONVENTION)
    return np.concatenate([image_coords, maxvals], 2)


def _to_host(coords: torch.Tensor, maxvals: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Decoded coords (N, K, 2) and maxvals (N, K, 1) as float64 NumPy arrays, copied off an
    accelerator in one transfer (one wait for the device)."""
    dtype = torch.promote_types(coords.dtype, maxvals.dtype)  # NumPy has no bfloat16
    coords, maxvals = coords.to(dtype), maxvals.to(dtype)
    if coords.device.type != "cpu":
        both = torch.cat([coords, maxvals], 2).cpu()
        coords, maxvals = both[..., :2], both[..., 2:]
    return coords.numpy().astype(np.float64), maxvals.numpy().astype(np.float64)


def select_poses(cfg: CfgNode, poses: np.ndarray, box_scores: np.ndarray, scales: np.ndarray,
                 image_ids: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person scores and the poses that survive per-image OKS-NMS: (kept indices, scores (N,)).

    Score = mean keypoint confidence above TEST.IN_VIS_THRE times the box score; NMS with
    TEST.OKS_THRE (soft with TEST.SOFT_NMS) on the padded box areas. The validation loop and
    apis.PosePredictor both select through here.
    """
    scores = rescore_poses(poses[:, :, 2], box_scores, cfg.TEST.IN_VIS_THRE)
    keep = nms_per_image(poses, scores, box_areas(scales), image_ids, cfg.TEST.OKS_THRE, sigmas,
                         soft=cfg.TEST.SOFT_NMS)
    return keep, scores


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


def evaluate_predictions(cfg: CfgNode, dataset, predictions: dict, output_dir: str) -> tuple[dict, float]:
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
