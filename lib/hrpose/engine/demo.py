"""The synthetic-data demo: make the data if needed, train, validate, draw predictions."""

from __future__ import annotations

import logging
import os

from yacs.config import CfgNode

from ..datasets.build import split_source
from ..datasets.coco_format import annotation_file, image_folder, load_coco_file
from ..datasets.metadata import get_keypoint_info
from ..datasets.synthetic import generate_synthetic_dataset, synthetic_dataset_exists
from ..evaluation.results import load_keypoint_results
from ..utils.render import render_results
from .run_dir import RunPaths
from .trainer import train

logger = logging.getLogger(__name__)


def ensure_synthetic_dataset(root: str, seed: int = 0) -> None:
    """Generate the default synthetic dataset under root unless a complete one is there."""
    if synthetic_dataset_exists(root):
        logger.info("synthetic dataset found at %s", root)
        return
    logger.info("generating the synthetic dataset at %s ...", root)
    summary = generate_synthetic_dataset(root, seed=seed, show_progress=True)
    logger.info("synthetic dataset written: %s", summary)


def run_demo(cfg: CfgNode, paths: RunPaths, num_images: int = 8) -> tuple[float, list[str]]:
    """Train cfg on the synthetic data, then draw the final predictions on a few val images."""
    if cfg.DATASET.DATASET == "synthetic":
        ensure_synthetic_dataset(cfg.DATASET.ROOT, seed=cfg.SEED)
    best = train(cfg, paths)
    name, root, image_set = split_source(cfg, is_train=False)
    results_file = os.path.join(paths.output_dir, "results", f"keypoints_{image_set}_results.json")
    coco = load_coco_file(annotation_file(name, root, image_set))
    folder = image_folder(name, root, image_set)
    image_paths = {image["id"]: os.path.join(folder, image["file_name"])
                   for image in coco.dataset["images"]}
    drawn = render_results(load_keypoint_results(results_file), image_paths, get_keypoint_info(name),
                           os.path.join(paths.output_dir, "demo_images"), num_images)
    return best, drawn
