"""Keypoint-regression training and validation loops: one epoch, whole-image inference, evaluation.

The third paradigm of the trainer (beside top-down and the associative-embedding bottom-up one),
for the 2020 heatmap-guided regression models. Training batches come from
``datasets.regression`` and go through ``losses.regression``; validation runs
``postprocess.regression.infer_regression`` on every test image and evaluates both of its result
sets with the split's protocol (COCO or CrowdPose):

* "regression": regressed joints scored by centre score x heat value;
* "final": joints absorbed into heatmap peaks and refined by a Gaussian fit; the run's indicator
  (model_best.pth follows its AP) and results/keypoints_<split>_results.json.

When RESCORE.USE is set and RESCORE.MODEL_FILE names a file, the rescore net is loaded once, when
the test split is built, and multiplies the person scores of both sets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from ..datasets.regression import build_regression_dataset
from ..evaluation.coco import evaluate_coco_keypoints
from ..evaluation.crowdpose import evaluate_crowdpose_keypoints
from ..evaluation.results import write_keypoint_results
from ..evaluation.table import log_name_value_table
from ..losses.regression import RegressionLoss, total_regression_loss
from ..postprocess.bottomup import coco_keypoint_results
from ..postprocess.regression import RegressionPrediction, RegressionTestParams, infer_regression
from ..postprocess.rescore import load_rescorer
from .bottomup import loss_terms
from .loop import EpochOptions, StepOutput, run_epoch, to_device
from .topdown import _progress

logger = logging.getLogger(__name__)

# The result sets of one validation, in the order infer_regression returns them; the final one
# is the run's indicator.
RESULT_SETS = RegressionPrediction._fields
INDICATOR_SET = "final"


def build_dataset(cfg: CfgNode, is_train: bool):
    """The training split as augmented samples with targets, or the test split as whole images
    carrying the rescorer its results are scored with (``rescorer``, None without rescoring)."""
    dataset = build_regression_dataset(cfg, is_train)
    if not is_train:
        dataset.rescorer = load_rescorer(cfg, dataset.keypoint_info)
    return dataset


def build_loss(cfg: CfgNode) -> RegressionLoss:
    """The heatmap and offset losses cfg.LOSS asks for."""
    return RegressionLoss.from_config(cfg)


def training_step(criterion: nn.Module):
    """The forward pass and loss of one (images, heatmaps, masks, offsets, offset weights) batch."""
    def step(model: nn.Module, batch, device: torch.device, options: EpochOptions) -> StepOutput:
        images, heatmaps, masks, offsets, offset_weights = batch
        heatmaps, masks, offsets, offset_weights = (
            to_device(values, device) for values in (heatmaps, masks, offsets, offset_weights))
        images, (heatmap_outputs, offset_outputs) = options.forward(model, images, device)
        losses = criterion(heatmap_outputs, offset_outputs, heatmaps, masks, offsets,
                           offset_weights)
        return StepOutput(total_regression_loss(*losses),
                          loss_terms(losses, names=("heatmaps", "offsets")), images.shape[0])
    return step


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer, device: torch.device,
                    epoch: int, print_freq: int, writer=None, global_step: int = 0,
                    debug: CfgNode | None = None, output_dir: str = "",
                    learning_rate: Callable[[int], float] | None = None,
                    options: EpochOptions | None = None) -> tuple[float, int]:
    """One pass over a RegressionDataset loader (batches of ``collate_regression_batch``);
    returns the mean loss and the updated global step. The signature is the other paradigms';
    debug and output_dir are unused (no debug images for regression models)."""
    return run_epoch(training_step(criterion), model, loader, optimizer, device, epoch,
                     print_freq, writer, global_step, None, learning_rate, options)


@torch.no_grad()
def run_inference(cfg: CfgNode, model: nn.Module, loader, device: torch.device,
                  criterion: nn.Module | None = None, output_dir: str = "") -> dict:
    """COCO result entries of both result sets for every image of a test loader (one image per
    step), rescored by the test split's rescorer when it has one."""
    model.eval()
    dataset = loader.dataset
    params = RegressionTestParams.from_config(cfg, dataset.keypoint_info)
    rescorer = getattr(dataset, "rescorer", None)
    results = {name: [] for name in RESULT_SETS}
    indices = {name: [] for name in RESULT_SETS}
    num_images = 0
    for image, meta in _progress(loader, "test", len(loader)):
        prediction = infer_regression(model, image, params, device, rescorer=rescorer)
        for name, persons in zip(RESULT_SETS, prediction):
            entries = coco_keypoint_results(persons.poses, persons.scores, meta["image_id"])
            results[name] += entries
            # The dataset index puts the results of a sharded (distributed) run back in order.
            indices[name] += [meta.get("index", num_images)] * len(entries)
        num_images += 1
    return {"results": results, "result_indices": indices, "num_images": num_images,
            "loss": float("nan")}


def merge_predictions(shards: list[dict]) -> dict:
    """The results of every process's test shard as one process would have listed them."""
    results, indices = {}, {}
    for name in RESULT_SETS:
        order_keys = [index for shard in shards for index in shard["result_indices"][name]]
        entries = [entry for shard in shards for entry in shard["results"][name]]
        order = np.argsort(np.asarray(order_keys, dtype=np.int64), kind="stable")
        results[name] = [entries[i] for i in order]
        indices[name] = [order_keys[i] for i in order]
    return {"results": results, "result_indices": indices,
            "num_images": sum(shard["num_images"] for shard in shards), "loss": float("nan")}


def results_file(output_dir: str, image_set: str, result_set: str) -> str:
    """Where a result set of a split is written: the final set under the name every paradigm
    uses (results/keypoints_<split>_results.json), the others with their name added."""
    tag = "" if result_set == INDICATOR_SET else f"_{result_set}"
    return os.path.join(output_dir, "results", f"keypoints_{image_set}{tag}_results.json")


def score_results(dataset, results: list[dict], backend: str = "auto") -> dict[str, float]:
    """The split's evaluation protocol (CrowdPose or COCO) applied to result entries, scored by
    the TEST.EVAL_BACKEND library ``backend``."""
    evaluation = dataset.evaluation
    sigmas = dataset.keypoint_info.sigmas_array
    if evaluation["dataset"] == "crowdpose":
        return evaluate_crowdpose_keypoints(evaluation["gt_file"], results, sigmas, backend)
    return evaluate_coco_keypoints(evaluation["coco"], results, sigmas, backend)


def evaluate_predictions(cfg: CfgNode, dataset, predictions: dict,
                         output_dir: str) -> tuple[dict, float]:
    """Write and score both result sets, log the regression set's table, and return the final
    set's numbers (for the trainer's table) with its AP as the indicator."""
    evaluation = dataset.evaluation
    image_set = evaluation["image_set"]
    has_ground_truth = bool(evaluation["coco"].dataset.get("annotations"))
    scored = {}
    for name in RESULT_SETS:
        results = predictions["results"][name]
        write_keypoint_results(results, results_file(output_dir, image_set, name))
        if has_ground_truth:
            scored[name] = score_results(dataset, results, cfg.TEST.EVAL_BACKEND)
    if not has_ground_truth:
        logger.info("%s has no ground truth; nothing to evaluate", evaluation["gt_file"])
        return {"Null": 0.0}, 0.0
    rescored = getattr(dataset, "rescorer", None) is not None
    logger.info("%d images%s. Result set 'regression' (joint score = centre score x heat value):",
                predictions["num_images"], ", person scores rescored" if rescored else "")
    log_name_value_table(logger, scored["regression"], "regression")
    # The trainer logs the returned numbers as its table, labelled with the model's name.
    logger.info("Result set 'final' (joints absorbed into heatmap peaks and Gaussian-fitted; "
                "its AP is the run's indicator):")
    return scored[INDICATOR_SET], scored[INDICATOR_SET]["AP"]
