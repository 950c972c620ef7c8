"""The CrowdPose keypoint protocol (crowdposetools' numbers) as a thin layer over pycocotools."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrpose.datasets.metadata import get_keypoint_info
from hrpose.evaluation._cocotools import (
    ResultsArg,
    as_sigma_array,
    call_logging_stdout,
    coco_from_dataset,
    load_result_list,
    read_gt_dataset,
    summarised_keypoint_eval,
)

logger = logging.getLogger(__name__)

CROWDPOSE_STAT_NAMES = ("AP", "Ap .5", "AP .75", "AR", "AR .5", "AR .75",
                        "AP (E)", "AP (M)", "AP (H)")

# Positions in pycocotools' 10 keypoint stats. Indices 3, 4, 8 and 9 are medium/large *area*
# stats, which CrowdPose does not report (its E/M/H are crowd-index subsets, computed apart).
_FULL_SET_STAT_INDEX = {"AP": 0, "Ap .5": 1, "AP .75": 2, "AR": 5, "AR .5": 6, "AR .75": 7}

# crowdposetools splits with first=0.2, second=0.8 and strict '<', so 0.2 is medium, 0.8 hard.
EASY_CROWD_INDEX_BELOW = 0.2
HARD_CROWD_INDEX_FROM = 0.8

# The protocol uses the GT box area times this factor as the OKS scale (CrowdPose has no
# segmentation areas).
GT_AREA_FACTOR = 0.53

# crowdposetools evaluates the top 20 detections per image (pycocotools' keypoint default too).
MAX_DETECTIONS = [20]


def crowdpose_area(annotation: Mapping[str, Any]) -> float:
    """The OKS scale crowdposetools uses for a GT person: (box w * h) * 0.53.

    Written as ``(w * h) * 0.53`` in exactly that order, like crowdposetools, so that OKS and
    therefore every tie-breaking comparison stay bit-identical.
    """
    if "bbox" not in annotation:
        raise ValueError(f"CrowdPose GT annotation {annotation.get('id')} has no 'bbox'")
    width, height = annotation["bbox"][2], annotation["bbox"][3]
    return (width * height) * GT_AREA_FACTOR


def with_crowdpose_areas(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the GT dict whose annotation 'area' is overwritten with ``crowdpose_area``.

    num_keypoints and iscrowd are kept as the file has them: crowdposetools ignores a person
    whose stored num_keypoints is 0 even when some points are labelled, and recomputing the
    count moves AP on the real val set.
    """
    annotations = [{**annotation, "area": crowdpose_area(annotation)}
                   for annotation in dataset["annotations"]]
    return {**dataset, "annotations": annotations}


def crowd_index_subsets(images: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int],
                                                                       list[int]]:
    """Split image ids into easy (< 0.2), medium (< 0.8) and hard crowd-index subsets."""
    easy: list[int] = []
    medium: list[int] = []
    hard: list[int] = []
    for image in images:
        if "crowdIndex" not in image:
            raise ValueError(f"CrowdPose GT image {image.get('id')} has no 'crowdIndex'")
        crowd_index = image["crowdIndex"]
        if crowd_index < EASY_CROWD_INDEX_BELOW:
            easy.append(image["id"])
        elif crowd_index < HARD_CROWD_INDEX_FROM:
            medium.append(image["id"])
        else:
            hard.append(image["id"])
    return easy, medium, hard


def round_like_crowdposetools(mean_precision: np.float64) -> float:
    """A subset AP rounded to 4 decimals the way crowdposetools rounds it.

    Its get_type_result applies ``round(..., 4)`` to the np.float64 that np.mean returns, so
    NumPy rounds: rint(x * 10^4) / 10^4 in float64 (the product rounded first, then half to
    even). Python's round of a float gives the correctly rounded decimal instead; the two differ
    at half values, e.g. 0.96825 (0.9682 here, 0.9683 in Python) and 0.43215 (0.4322, 0.4321).
    """
    return float(np.round(np.float64(mean_precision), 4))


def subset_average_precision(evaluator: COCOeval, image_ids: list[int]) -> float:
    """crowdposetools' per-subset AP: the plain mean of the 'all'-area precision, 4 decimals.

    The mean includes -1 entries, which with one category and one maxDets value makes the
    result the subset AP, or -1 when the subset has no non-ignored GT. An empty subset is -1
    by the same rule and is answered without an evaluation run.
    """
    if not image_ids:
        return -1.0
    evaluator.params.imgIds = list(image_ids)
    call_logging_stdout(logger, evaluator.evaluate)
    call_logging_stdout(logger, evaluator.accumulate)
    return round_like_crowdposetools(np.mean(evaluator.eval["precision"][:, :, :, 0, :]))


def load_crowdpose_gt(gt: COCO | Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """The GT as a dict, from a path, a dict or a COCO object (whose dataset is used)."""
    if isinstance(gt, COCO):
        return gt.dataset
    if isinstance(gt, Mapping):
        return dict(gt)
    return read_gt_dataset(gt)


def evaluate_crowdpose_keypoints(gt_path_or_dict: COCO | Mapping[str, Any] | str | os.PathLike,
                                 results: ResultsArg,
                                 sigmas: Any = None,
                                 backend: str = "auto") -> OrderedDict[str, float]:
    """CrowdPose evaluation, numerically identical to crowdposetools.

    ``results`` is a list of {image_id, category_id, keypoints (flat 3 x 14), score} dicts or a
    path to a JSON file of them; they are evaluated as given (no filtering, no area change).
    ``sigmas`` defaults to the CrowdPose sigmas. AP (E/M/H) are the APs of the easy, medium
    and hard crowd-index subsets of all GT images, -1 for an empty subset. An empty result
    list is evaluated as "nothing detected" (AP and AR 0) with a warning. ``backend`` is a
    TEST.EVAL_BACKEND value (evaluation/backends.py).
    """
    dataset = load_crowdpose_gt(gt_path_or_dict)
    coco_gt = coco_from_dataset(with_crowdpose_areas(dataset), logger)
    sigma_array = as_sigma_array(
        get_keypoint_info("crowdpose").sigmas_array if sigmas is None else sigmas, coco_gt)
    detections = load_result_list(results)
    if not detections:
        logger.warning("no keypoint results to evaluate; CrowdPose AP and AR will be 0")
    evaluator = summarised_keypoint_eval(coco_gt, detections, sigma_array, MAX_DETECTIONS,
                                         backend, logger)
    name_value = OrderedDict((name, float(evaluator.stats[index]))
                             for name, index in _FULL_SET_STAT_INDEX.items())
    # The subsets run last: they leave the evaluator's imgIds restricted to the hard subset.
    subsets = crowd_index_subsets(dataset["images"])
    for name, image_ids in zip(("AP (E)", "AP (M)", "AP (H)"), subsets):
        name_value[name] = subset_average_precision(evaluator, image_ids)
    return name_value
