"""Shared plumbing over pycocotools: quiet calls, GT and result loading, the evaluator run."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrpose.evaluation.results import load_keypoint_results
from hrpose.utils.io import read_json

ReturnT = TypeVar("ReturnT")

ResultsArg = Sequence[Mapping[str, Any]] | str | os.PathLike


def call_logging_stdout(logger: logging.Logger, function: Callable[..., ReturnT],
                        *args: Any) -> ReturnT:
    """Call a pycocotools function and send what it prints to ``logger`` at INFO.

    pycocotools reports progress and its summary with print(); redirecting keeps stdout clean
    and lands the summary in the run's log file. The captured text is logged even when the call
    raises, because it usually explains the failure.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return function(*args)
    finally:
        for line in captured.getvalue().splitlines():
            if line.strip():
                logger.info("%s", line)


def coco_from_dataset(dataset: Mapping[str, Any], logger: logging.Logger) -> COCO:
    """Index an in-memory COCO-format dict without going through a file."""
    coco = COCO()
    coco.dataset = dict(dataset)
    call_logging_stdout(logger, coco.createIndex)
    return coco


def read_gt_dataset(gt_path: str | os.PathLike) -> dict[str, Any]:
    """Load a GT annotation JSON, with clear errors for a missing or malformed file."""
    dataset = read_json(gt_path, "ground-truth annotation")
    if not isinstance(dataset, dict) or "images" not in dataset or "annotations" not in dataset:
        raise ValueError(f"ground-truth file {gt_path} is not a COCO-format dict "
                         "with 'images' and 'annotations'")
    return dataset


def load_result_list(results: ResultsArg) -> list[dict[str, Any]]:
    """Return the results as a list of fresh dicts, reading them first when given a path.

    ``COCO.loadRes`` writes 'id', 'area' and 'bbox' into the dicts it receives, so it gets
    shallow copies and the caller's results stay as they were.
    """
    if isinstance(results, (str, os.PathLike)):
        results = load_keypoint_results(results)
    return [dict(result) for result in results]


def check_result_image_ids(coco_gt: COCO, results: Sequence[Mapping[str, Any]]) -> None:
    """Raise a ValueError naming result image ids absent from the GT (loadRes only asserts)."""
    unknown = sorted({result["image_id"] for result in results} - set(coco_gt.getImgIds()))
    if unknown:
        shown = ", ".join(str(image_id) for image_id in unknown[:10])
        raise ValueError(f"{len(unknown)} result image id(s) are not in the ground truth: {shown}"
                         + (", ..." if len(unknown) > 10 else ""))


def load_detections(coco_gt: COCO, results: list[dict[str, Any]],
                    logger: logging.Logger) -> COCO:
    """Wrap result dicts in a COCO object; an empty list gives a COCO object with no detections.

    loadRes indexes results[0] and so fails on an empty list; an index with no annotations lets
    the evaluator score "nothing detected" in the usual way instead.
    """
    if not results:
        empty = {"images": list(coco_gt.dataset["images"]),
                 "categories": list(coco_gt.dataset.get("categories", [])),
                 "annotations": []}
        return coco_from_dataset(empty, logger)
    check_result_image_ids(coco_gt, results)
    return call_logging_stdout(logger, coco_gt.loadRes, results)


def keypoint_count(coco_gt: COCO) -> int | None:
    """Number of keypoints per GT person, or None when the GT holds no annotations."""
    for annotation in coco_gt.dataset.get("annotations", []):
        return len(annotation["keypoints"]) // 3
    return None


def as_sigma_array(sigmas: Any, coco_gt: COCO) -> np.ndarray:
    """Validate OKS sigmas against the GT keypoint count and return them as a float64 array.

    pycocotools computes ``(sigmas * 2) ** 2``, which silently repeats a Python list instead of
    doubling it, so the array conversion is required, not cosmetic.
    """
    array = np.asarray(sigmas, dtype=np.float64)
    expected = keypoint_count(coco_gt)
    if array.ndim != 1 or (expected is not None and array.size != expected):
        raise ValueError(f"expected {expected} OKS sigmas (one per keypoint), "
                         f"got shape {array.shape}")
    return array


def summarised_keypoint_eval(coco_gt: COCO, coco_dt: COCO, sigmas: np.ndarray | None,
                             max_dets: list[int] | None, logger: logging.Logger) -> COCOeval:
    """Run COCOeval 'keypoints' evaluate/accumulate/summarize and return the evaluator."""
    evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
    if sigmas is not None:
        evaluator.params.kpt_oks_sigmas = sigmas
    if max_dets is not None:
        evaluator.params.maxDets = list(max_dets)
    call_logging_stdout(logger, evaluator.evaluate)
    call_logging_stdout(logger, evaluator.accumulate)
    call_logging_stdout(logger, evaluator.summarize)
    return evaluator
