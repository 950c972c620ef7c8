"""Bottom-up training and validation loops: one epoch of training, whole-image inference, evaluation."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..evaluation.coco import evaluate_coco_keypoints
from ..evaluation.crowdpose import evaluate_crowdpose_keypoints
from ..evaluation.results import write_keypoint_results
from ..losses.associative_embedding import total_bottomup_loss
from ..postprocess.ae_grouping import GroupingParams
from ..postprocess.bottomup import BottomUpTestParams, coco_keypoint_results, infer_bottom_up
from ..postprocess.progressive_grouping import (GroupingFunction, count_isolated_keypoints,
                                                get_grouping_function)
from ..postprocess.tag_maps import BottomUpWithMaps, infer_bottom_up_with_maps
from .debug import save_bottomup_debug_images
from .device import IMAGE_MEMORY_FORMAT
from .topdown import _progress, optimizer_step

logger = logging.getLogger(__name__)


def _loss_terms(losses, names=("heatmaps", "push", "pull")) -> dict[str, float]:
    """Batch means of every existing per-stage term, keyed 'heatmaps_0', 'push_0', ..."""
    terms = {}
    for name, per_stage in zip(names, losses):
        for stage, loss in enumerate(per_stage):
            if loss is not None:
                terms[f"{name}_{stage}"] = loss.mean().item()
    return terms


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer, device: torch.device,
                    epoch: int, print_freq: int, writer=None, global_step: int = 0,
                    debug: CfgNode | None = None, output_dir: str = "",
                    learning_rate: Callable[[int], float] | None = None) -> tuple[float, int]:
    """One pass over a BottomUpDataset loader; returns the mean loss and the updated global step.

    The signature is the top-down loop's, so the trainer drives either paradigm the same way.
    """
    model.train()
    total_loss, total_samples = 0.0, 0
    started = time.monotonic()
    bar = _progress(loader, f"epoch {epoch}", len(loader))
    for iteration, (images, heatmaps, masks, joints) in enumerate(bar):
        images = images.to(device, non_blocking=True, memory_format=IMAGE_MEMORY_FORMAT)
        heatmaps = [h.to(device, non_blocking=True) for h in heatmaps]
        masks = [m.to(device, non_blocking=True) for m in masks]
        joints = [j.to(device, non_blocking=True) for j in joints]
        outputs = model(images)
        losses = criterion(outputs, heatmaps, masks, joints)
        loss = total_bottomup_loss(*losses)
        if not torch.isfinite(loss):
            bad = [name for name, value in _loss_terms(losses).items() if not np.isfinite(value)]
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, iteration "
                                     f"{iteration} (non-finite terms: {', '.join(bad) or 'sum'})")
        optimizer_step(optimizer, loss, learning_rate, global_step)

        batch, loss_value = images.shape[0], loss.item()
        total_loss += loss_value * batch
        total_samples += batch
        global_step += 1
        bar.set_postfix(loss=f"{loss_value:.6f}")
        printing = iteration % print_freq == 0 or iteration == len(loader) - 1
        # Each term is a host sync: read them once, and only when they are written somewhere.
        terms = _loss_terms(losses) if writer is not None or printing else {}
        if writer is not None:
            writer.add_scalar("train_loss", loss_value, global_step)
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value, global_step)
        if printing:
            elapsed = time.monotonic() - started
            logger.info("Epoch: [%d][%d/%d]  loss %.6f (avg %.6f)  %s  %.1f images/s", epoch,
                        iteration, len(loader), loss_value, total_loss / total_samples,
                        "  ".join(f"{name} {value:.3e}" for name, value in terms.items()),
                        total_samples / max(elapsed, 1e-9))
            if debug is not None:
                save_bottomup_debug_images(debug, os.path.join(output_dir, f"train_{iteration}"),
                                           images, heatmaps, joints, outputs)
    return total_loss / max(total_samples, 1), global_step


def test_params(cfg: CfgNode, flip_index) -> tuple[BottomUpTestParams, GroupingParams]:
    """The test-time pipeline and grouping settings of cfg (TEST, LOSS and DATASET keys)."""
    pipeline = BottomUpTestParams(
        input_size=cfg.DATASET.INPUT_SIZE, scale_factors=tuple(cfg.TEST.SCALE_FACTOR),
        flip_test=cfg.TEST.FLIP_TEST,
        flip_index=tuple(int(j) for j in flip_index) if cfg.TEST.FLIP_TEST else None,
        project2image=cfg.TEST.PROJECT2IMAGE, heatmaps_loss=tuple(cfg.LOSS.WITH_HEATMAPS_LOSS),
        ae_loss=tuple(cfg.LOSS.WITH_AE_LOSS), with_heatmaps=tuple(cfg.TEST.WITH_HEATMAPS),
        with_ae=tuple(cfg.TEST.WITH_AE))
    grouping = GroupingParams(
        num_joints=cfg.MODEL.NUM_JOINTS, max_num_people=cfg.DATASET.MAX_NUM_PEOPLE,
        detection_threshold=cfg.TEST.DETECTION_THRESHOLD, tag_threshold=cfg.TEST.TAG_THRESHOLD,
        use_detection_val=cfg.TEST.USE_DETECTION_VAL, ignore_too_much=cfg.TEST.IGNORE_TOO_MUCH,
        nms_kernel=cfg.TEST.NMS_KERNEL, nms_padding=cfg.TEST.NMS_PADDING,
        adjust=cfg.TEST.ADJUST, refine=cfg.TEST.REFINE)
    return pipeline, grouping


def grouping_function(cfg: CfgNode) -> GroupingFunction:
    """The grouping TEST.GROUPING names: fixed-order AE ('fixed') or HAE ('progressive').

    run_inference sends 'fixed' through postprocess.bottomup.infer_bottom_up and any other
    grouping through postprocess.tag_maps.infer_bottom_up_with_maps (the same pipeline with the
    grouping function passed in).
    """
    return get_grouping_function(cfg.TEST.GROUPING)


def infer_image(cfg: CfgNode, model: nn.Module, image: np.ndarray, pipeline: BottomUpTestParams,
                grouping: GroupingParams, group: GroupingFunction, device: torch.device,
                keep_maps: bool = False) -> BottomUpWithMaps:
    """The persons of one whole image (H, W, 3 uint8, in DATASET.COLOR_RGB's channel order).

    TEST.GROUPING 'fixed' without keep_maps goes through postprocess.bottomup.infer_bottom_up,
    anything else through postprocess.tag_maps.infer_bottom_up_with_maps (the same persons for
    'fixed'); maps is None unless kept. The validation loop and apis.PosePredictor both call this.
    """
    if cfg.TEST.GROUPING == "fixed" and not keep_maps:
        return BottomUpWithMaps(infer_bottom_up(model, image, pipeline, grouping, device), None)
    return infer_bottom_up_with_maps(model, image, pipeline, grouping, group, device)


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
    results, num_images, isolated = [], 0, 0
    for image, meta in _progress(loader, "test", len(loader)):
        prediction = infer_image(cfg, model, image, pipeline, grouping, group, device).prediction
        results += coco_keypoint_results(prediction.poses, prediction.scores, meta["image_id"])
        isolated += count_isolated_keypoints(prediction.poses, cfg.TEST.DETECTION_THRESHOLD)
        num_images += 1
    # One-joint "persons" are the grouping's typical failure (a keypoint cut off its body).
    logger.info("%d images: %.3f isolated keypoints per image (persons with one joint above "
                "TEST.DETECTION_THRESHOLD)", num_images, isolated / max(num_images, 1))
    return {"results": results, "num_images": num_images, "loss": float("nan"),
            "isolated_per_image": isolated / max(num_images, 1)}


def evaluate_predictions(cfg: CfgNode, dataset, predictions: dict, output_dir: str) -> tuple[dict, float]:
    """Write the split's results file and score it (COCO or CrowdPose protocol)."""
    evaluation = dataset.evaluation
    name, image_set = evaluation["dataset"], evaluation["image_set"]
    results = predictions["results"]
    results_file = os.path.join(output_dir, "results", f"keypoints_{image_set}_results.json")
    write_keypoint_results(results, results_file)
    if not evaluation["coco"].dataset.get("annotations"):
        logger.info("%s has no ground truth; nothing to evaluate", evaluation["gt_file"])
        return {"Null": 0.0}, 0.0
    sigmas = dataset.keypoint_info.sigmas_array
    if name == "crowdpose":
        name_values = evaluate_crowdpose_keypoints(evaluation["gt_file"], results, sigmas)
    else:
        name_values = evaluate_coco_keypoints(evaluation["coco"], results, sigmas)
    return name_values, name_values["AP"]
