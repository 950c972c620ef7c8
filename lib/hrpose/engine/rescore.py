"""The rescore net's training: making its training data, training it.

docs/regression.md (rescore). The pieces (feature, OKS targets, data file, and loading the
net for testing: ``load_rescorer``) live in ``postprocess.rescore``; this module drives them with
a config:

* ``make_rescore_data``: a regression model over a split (the training split by default), each
  image's poses recorded with their best OKS against its ground truth (tools/rescore_data.py);
* ``train_rescore_net``: MSE, Adam at RESCORE.LR, batches of RESCORE.BATCHSIZE with a fresh
  shuffle per epoch and the last partial batch dropped, RESCORE.END_EPOCH epochs, on the CPU
  (tools/rescore_train.py); ``save_rescore_net`` writes the state dict atomically.
"""

from __future__ import annotations

import logging
import sys
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm
from yacs.config import CfgNode

from ..config.model_extras import is_regression
from ..datasets.metadata import get_keypoint_info
from ..datasets.regression import build_regression_dataset
from ..errors import DataError
from ..evaluation.crowdpose import crowdpose_area
from ..models import build_model
from ..models.rescore_net import RescoreNet
from ..postprocess.regression import RegressionPrediction, RegressionTestParams, infer_regression
from ..postprocess.rescore import (
    RescoreData,
    build_rescore_net,
    concatenate_rescore_data,
    read_rescore_data,
    rescore_samples,
    rescore_training_arrays,
    write_rescore_data,
)
from ..utils.checkpoint import CheckpointError, load_model_weights, save_checkpoint_atomic
from .device import select_device
from .topdown import _progress

logger = logging.getLogger(__name__)

# What infer_regression returns, in order; rescore data is made from one of them.
RESULT_SETS = RegressionPrediction._fields
# Datasets whose OKS scale is the box area times GT_AREA_FACTOR rather than the annotated area.
BOX_AREA_DATASETS = ("crowdpose",)


# ------------------------------------------------------------------------------------------------
# Training data


class GroundTruth(NamedTuple):
    """One image's ground truth as rescore_samples takes it."""

    keypoints: np.ndarray  # (G, J, 3)
    boxes: np.ndarray  # (G, 4) x, y, w, h
    areas: np.ndarray  # (G,) OKS scale, also tested against the area ranges
    ignore: np.ndarray  # (G,) crowd, or no labelled keypoint


def image_ground_truth(coco, image_id: int, dataset_name: str, num_joints: int) -> GroundTruth:
    """The ground truth COCOeval compares an image's detections with (all annotations, crowds
    included and marked ignored). CrowdPose's OKS scale is its box area x 0.53."""
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
    keypoints = np.zeros((len(annotations), num_joints, 3))
    boxes = np.zeros((len(annotations), 4))
    areas = np.zeros(len(annotations))
    ignore = np.zeros(len(annotations), dtype=bool)
    for row, annotation in enumerate(annotations):
        if annotation.get("keypoints"):
            keypoints[row] = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        boxes[row] = annotation.get("bbox", [0.0, 0.0, 0.0, 0.0])
        areas[row] = (crowdpose_area(annotation) if dataset_name in BOX_AREA_DATASETS
                      else annotation.get("area", boxes[row, 2] * boxes[row, 3]))
        labelled = annotation.get("num_keypoints", int((keypoints[row, :, 2] > 0).sum()))
        ignore[row] = bool(annotation.get("iscrowd", 0)) or labelled == 0
    return GroundTruth(keypoints, boxes, areas, ignore)


def _first_item(batch):
    return batch[0]


def make_rescore_data(cfg: CfgNode, model: nn.Module, dataset, device: torch.device,
                      result_set: str = "final") -> RescoreData:
    """Run model (eval mode, no rescoring) over the images of dataset (test items of a
    ``RegressionDataset``) that have annotations, and record each of their poses of result_set
    with its best OKS against the image's ground truth (``rescore_samples``: the top 20 by
    score, once per COCO area range, as the reference records them)."""
    if result_set not in RESULT_SETS:
        raise ValueError(f"result_set must be one of {RESULT_SETS}, got {result_set!r}")
    model.eval()
    info = dataset.keypoint_info
    params = RegressionTestParams.from_config(cfg, info)
    coco = dataset.coco
    annotated = [index for index, image_id in enumerate(dataset.image_ids)
                 if coco.getAnnIds(imgIds=image_id, iscrowd=None)]
    if not annotated:
        raise DataError(f"no annotated images in {dataset.dataset} split '{dataset.image_set}': "
                        f"rescore data needs ground truth")
    loader = DataLoader(Subset(dataset, annotated), batch_size=1, shuffle=False,
                        num_workers=cfg.WORKERS, collate_fn=_first_item)
    parts = []
    with torch.no_grad():
        for image, meta in _progress(loader, "rescore data", len(loader)):
            prediction = infer_regression(model, image, params, device)
            persons = prediction[RESULT_SETS.index(result_set)]
            truth = image_ground_truth(coco, meta["image_id"], dataset.dataset,
                                       info.num_keypoints)
            parts.append(rescore_samples(persons.poses, persons.scores, truth.keypoints,
                                         truth.boxes, truth.areas, truth.ignore,
                                         info.sigmas_array))
    data = concatenate_rescore_data(parts)
    logger.info("%d rescore samples from %d images of %s %s ('%s' poses; mean best OKS %.3f)",
                len(data.oks), len(annotated), dataset.dataset, dataset.image_set, result_set,
                float(data.oks.mean()) if len(data.oks) else float("nan"))
    return data


# ------------------------------------------------------------------------------------------------
# Training


def train_rescore_net(cfg: CfgNode, features: np.ndarray, targets: np.ndarray, keypoint_info,
                      seed: int = 0) -> tuple[RescoreNet, list[float]]:
    """Train a fresh rescore net on features (N, F) and target OKS (N, 1); returns the net (eval
    mode, CPU) and the mean loss of every epoch.

    MSE loss, Adam at RESCORE.LR, RESCORE.END_EPOCH epochs of batches of RESCORE.BATCHSIZE in a
    fresh random order each epoch, the last partial batch dropped (the reference's loader);
    initialisation and order come from seed.
    """
    features = torch.as_tensor(np.asarray(features, dtype=np.float32))
    targets = torch.as_tensor(np.asarray(targets, dtype=np.float32)).reshape(-1, 1)
    if features.shape[0] != targets.shape[0]:
        raise ValueError(f"got {features.shape[0]} feature rows for {targets.shape[0]} targets")
    batch_size = cfg.RESCORE.BATCHSIZE
    num_batches = features.shape[0] // batch_size
    if num_batches == 0:
        raise DataError(f"{features.shape[0]} rescore samples make no full batch of "
                        f"RESCORE.BATCHSIZE {batch_size} (the last partial batch is dropped); "
                        f"make more data or lower RESCORE.BATCHSIZE")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_rescore_net(cfg, keypoint_info)
    if net.l1.in_features != features.shape[1]:
        raise DataError(f"rescore features have {features.shape[1]} values, the net for dataset "
                        f"'{keypoint_info.name}' takes {net.l1.in_features}")
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.RESCORE.LR)
    criterion = nn.MSELoss()
    order_generator = torch.Generator().manual_seed(seed)
    epoch_losses = []
    net.train()
    bar = tqdm(range(cfg.RESCORE.END_EPOCH), desc="rescore net", unit="epoch", leave=False,
               dynamic_ncols=True, disable=not sys.stderr.isatty())
    for epoch in bar:
        order = torch.randperm(features.shape[0], generator=order_generator)
        total = 0.0
        for batch in range(num_batches):
            chosen = order[batch * batch_size:(batch + 1) * batch_size]
            loss = criterion(net(features[chosen]), targets[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        epoch_losses.append(total / num_batches)
        bar.set_postfix(loss=f"{epoch_losses[-1]:.5f}", refresh=False)
        logger.info("rescore net epoch %d: MSE %.6f over %d batches of %d", epoch,
                    epoch_losses[-1], num_batches, batch_size)
    return net.eval(), epoch_losses


def save_rescore_net(net: nn.Module, path: str) -> str:
    """Write the net's state dict (tensors only) to path atomically; returns the path."""
    if not path:
        raise CheckpointError("no file to save the rescore net to: set RESCORE.MODEL_FILE or "
                              "pass --output")
    save_checkpoint_atomic({key: value.detach().cpu() for key, value in net.state_dict().items()},
                           path)
    logger.info("saved the rescore net to %s", path)
    return path


# ------------------------------------------------------------------------------------------------
# What the tools run


def write_rescore_data_of_config(cfg: CfgNode, split: str = "train", result_set: str = "final",
                                 output: str = "") -> str:
    """tools/rescore_data.py: run cfg's regression model (TEST.MODEL_FILE) over the training
    (split 'train') or test split ('test') and write the samples to output (default
    RESCORE.DATA_FILE). Returns the path written."""
    if not is_regression(cfg.MODEL.NAME):
        raise DataError(f"rescore data comes from a keypoint-regression model "
                        f"(pose_hrnet_regression, pose_higher_hrnet_regression); MODEL.NAME is "
                        f"{cfg.MODEL.NAME!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = output or cfg.RESCORE.DATA_FILE
    if not path:
        raise DataError("no file to write the rescore data to: set RESCORE.DATA_FILE or pass "
                        "--output")
    if not cfg.TEST.MODEL_FILE:
        raise CheckpointError("no pose model to make rescore data with: set TEST.MODEL_FILE to "
                              "the trained regression model (e.g. its model_best.pth)")
    device = select_device(cfg)
    model = build_model(cfg, is_train=False)
    load_model_weights(model, cfg.TEST.MODEL_FILE)
    model.to(device)
    dataset = build_regression_dataset(cfg, is_train=False, training_split=split == "train")
    data = make_rescore_data(cfg, model, dataset, device, result_set)
    write_rescore_data(path, data)
    logger.info("wrote %d rescore samples to %s", len(data.oks), path)
    return path


def train_rescore_net_of_config(cfg: CfgNode, data_file: str = "",
                                output: str = "") -> tuple[str, list[float]]:
    """tools/rescore_train.py: train a rescore net on data_file (default RESCORE.DATA_FILE) with
    the limbs of the training dataset (DATASET.DATASET) and save it to output (default
    RESCORE.MODEL_FILE). Returns the path and the per-epoch losses."""
    target = output or cfg.RESCORE.MODEL_FILE
    if not target:
        raise CheckpointError("no file to save the rescore net to: set RESCORE.MODEL_FILE or "
                              "pass --output")
    info = get_keypoint_info(cfg.DATASET.DATASET)
    data = read_rescore_data(data_file or cfg.RESCORE.DATA_FILE, info.num_keypoints)
    features, targets = rescore_training_arrays(data, info)
    logger.info("training the rescore net on %d samples (%d features) of %s", len(targets),
                features.shape[1] if features.ndim == 2 else 0, data_file or cfg.RESCORE.DATA_FILE)
    net, losses = train_rescore_net(cfg, features, targets, info, seed=cfg.SEED)
    return save_rescore_net(net, target), losses
