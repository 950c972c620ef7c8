"""COCO keypoint AP/AR (pycocotools' numbers), reported under the names the original logs use."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

from pycocotools.coco import COCO

from hrpose.evaluation._cocotools import (
    ResultsArg,
    as_sigma_array,
    coco_from_dataset,
    load_result_list,
    read_gt_dataset,
    summarised_keypoint_eval,
)

logger = logging.getLogger(__name__)

# Names of COCOeval's 10 keypoint stats, in order. 'Ap .5' (lower-case p) is how the original
# HRNet/HigherHRNet logs spell it; keeping it lets old and new logs be parsed the same way.
COCO_STAT_NAMES = ("AP", "Ap .5", "AP .75", "AP (M)", "AP (L)",
                   "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


def load_coco_gt(gt: COCO | str | os.PathLike) -> COCO:
    """Return ``gt`` itself when it is already a COCO object, else index the JSON at that path."""
    if isinstance(gt, COCO):
        return gt
    return coco_from_dataset(read_gt_dataset(gt), logger)


def evaluate_coco_keypoints(gt: COCO | str | os.PathLike, results: ResultsArg,
                            sigmas: Any = None, backend: str = "auto") -> OrderedDict[str, float]:
    """COCO keypoint evaluation: the 10 summary stats of COCOeval 'keypoints', as Python floats.

    ``results`` is a list of {image_id, category_id, keypoints (flat 3K), score} dicts or the
    path of a JSON file holding one. ``sigmas`` replaces pycocotools' COCO OKS sigmas when
    given (one per keypoint). An empty result list scores every stat 0 with a warning.
    ``backend`` is a TEST.EVAL_BACKEND value (evaluation/backends.py).
    """
    coco_gt = load_coco_gt(gt)
    detections = load_result_list(results)
    if not detections:
        logger.warning("no keypoint results to evaluate; reporting every COCO stat as 0")
        return OrderedDict((name, 0.0) for name in COCO_STAT_NAMES)
    sigma_array = None if sigmas is None else as_sigma_array(sigmas, coco_gt)
    evaluator = summarised_keypoint_eval(coco_gt, detections, sigma_array, None, backend, logger)
    return OrderedDict((name, float(value))
                       for name, value in zip(COCO_STAT_NAMES, evaluator.stats))
