"""Bottom-up training and validation loops: one epoch of training, whole-image inference,
evaluation."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..evaluation.coco import evaluate_coco_keypoints
from ..evaluation.crowdpose import evaluate_crowdpose_keypoints
from ..evaluation.results import write_keypoint_results
from ..losses.associative_embedding import total_bottomup_loss
from ..postprocess.bottomup import coco_keypoint_results
from ..postprocess.bottomup_inference import grouping_function, infer_image, test_params
from ..postprocess.progressive_grouping import count_isolated_keypoints
from .debug import save_bottomup_debug_images
from .loop import EpochOptions, StepOutput, run_epoch, to_device
from .topdown import _progress

logger = logging.getLogger(__name__)


def loss_terms(losses, names=("heatmaps", "push", "pull")) -> dict[str, torch.Tensor]:
    """Batch means of every existing per-stage term, keyed 'heatmaps_0', 'push_0', ..."""
    terms = {}
    for name, per_stage in zip(names, losses):
        for stage, loss in enumerate(per_stage):
            if loss is not None:
                terms[f"{name}_{stage}"] = loss.mean()
    return terms


def training_step(criterion: nn.Module, debug: CfgNode | None = None):
    """The bottom-up forward pass and loss of one (images, heatmaps, masks, joints) batch."""
    def step(model: nn.Module, batch, device: torch.device, options: EpochOptions) -> StepOutput:
        images, heatmaps, masks, joints = batch
        heatmaps, masks, joints = (to_device(values, device)
                                   for values in (heatmaps, masks, joints))
        images, outputs = options.forward(model, images, device)
        losses = criterion(outputs, heatmaps, masks, joints)
        save_debug = None
        if debug is not None:
            def save_debug(prefix: str) -> None:
                save_bottomup_debug_images(debug, prefix, images, heatmaps, joints, outputs)
        return StepOutput(total_bottomup_loss(*losses), loss_terms(losses), images.shape[0],
                          save_debug)
    return step


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer, device: torch.device,
                    epoch: int, print_freq: int, writer=None, global_step: int = 0,
                    debug: CfgNode | None = None, output_dir: str = "",
                    learning_rate: Callable[[int], float] | None = None,
                    options: EpochOptions | None = None) -> tuple[float, int]:
    """One pass over a BottomUpDataset loader; returns the mean loss and the updated global step.

    The signature is the top-down loop's, so the trainer drives either paradigm the same way.
    """
    return run_epoch(training_step(criterion, debug), model, loader, optimizer, device, epoch,
                     print_freq, writer, global_step,
                     lambda iteration: os.path.join(output_dir, f"train_{iteration}"),
                     learning_rate, options)


def first_item(batch):
    """Test items are whole images of different sizes: one per step, not collated."""
    return batch[0]


@torch.no_grad()
def run_inference(cfg: CfgNode, model: nn.Module, loader, device: torch.device,
                  criterion: nn.Module | None = None, output_dir: str = "") -> dict:
    """COCO result entries for every image of a bottom-up test loader (one image per step)."""
    model.eval()
    dataset = loader.dataset
    pipeline, grouping = test_params(cfg, dataset.flip_index)
    group = grouping_function(cfg)
    results, result_indices, num_images, isolated = [], [], 0, 0
    for image, meta in _progress(loader, "test", len(loader)):
        prediction = infer_image(cfg, model, image, pipeline, grouping, group, device).prediction
        entries = coco_keypoint_results(prediction.poses, prediction.scores, meta["image_id"])
        results += entries
        # The dataset index puts the results of a sharded (distributed) run back in order.
        result_indices += [meta.get("index", num_images)] * len(entries)
        isolated += count_isolated_keypoints(prediction.poses, cfg.TEST.DETECTION_THRESHOLD)
        num_images += 1
    return {"results": results, "result_indices": result_indices, "num_images": num_images,
            "isolated": isolated, "loss": float("nan")}


def merge_predictions(shards: list[dict]) -> dict:
    """The results of every process's test shard as one process would have listed them."""
    indices = [index for shard in shards for index in shard["result_indices"]]
    results = [entry for shard in shards for entry in shard["results"]]
    order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")
    return {"results": [results[i] for i in order],
            "result_indices": [indices[i] for i in order],
            "num_images": sum(shard["num_images"] for shard in shards),
            "isolated": sum(shard["isolated"] for shard in shards), "loss": float("nan")}


def evaluate_predictions(cfg: CfgNode, dataset, predictions: dict,
                         output_dir: str) -> tuple[dict, float]:
    """Write the split's results file and score it (COCO or CrowdPose protocol)."""
    evaluation = dataset.evaluation
    name, image_set = evaluation["dataset"], evaluation["image_set"]
    results = predictions["results"]
    num_images = predictions["num_images"]
    # One-joint "persons" are the grouping's typical failure (a keypoint cut off its body).
    logger.info("%d images: %.3f isolated keypoints per image (persons with one joint above "
                "TEST.DETECTION_THRESHOLD)", num_images,
                predictions["isolated"] / max(num_images, 1))
    results_file = os.path.join(output_dir, "results", f"keypoints_{image_set}_results.json")
    write_keypoint_results(results, results_file)
    if not evaluation["coco"].dataset.get("annotations"):
        logger.info("%s has no ground truth; nothing to evaluate", evaluation["gt_file"])
        return {"Null": 0.0}, 0.0
    sigmas = dataset.keypoint_info.sigmas_array
    if name == "crowdpose":
        name_values = evaluate_crowdpose_keypoints(evaluation["gt_file"], results, sigmas,
                                                   cfg.TEST.EVAL_BACKEND)
    else:
        name_values = evaluate_coco_keypoints(evaluation["coco"], results, sigmas,
                                              cfg.TEST.EVAL_BACKEND)
    return name_values, name_values["AP"]
