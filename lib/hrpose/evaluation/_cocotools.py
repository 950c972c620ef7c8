"""Shared plumbing over pycocotools and hotcoco: quiet calls, GT and result loading, the
evaluator run."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

from hrpose.evaluation.backends import FAST_BACKEND, choose_backend, fast_backend_module
from hrpose.evaluation.results import load_keypoint_results
from hrpose.utils.io import read_json

ReturnT = TypeVar("ReturnT")

ResultsArg = Sequence[Mapping[str, Any]] | str | os.PathLike

# hotcoco warns whenever the sigmas are not its own literals (0.026, ...); pycocotools' .26 / 10
# already differs from those in the last bit, and CrowdPose's sigmas are the protocol's.
_HOTCOCO_SIGMA_WARNING = "hotcoco: kpt_oks_sigmas differ from the COCO defaults"


def call_logging_stdout(logger: logging.Logger, function: Callable[..., ReturnT],
                        *args: Any) -> ReturnT:
    """Call a pycocotools or hotcoco function and send what it prints to ``logger`` at INFO.

    Both report progress and the summary with print(); redirecting keeps stdout clean and lands
    the summary in the run's log file. The captured text is logged even when the call raises,
    because it usually explains the failure. hotcoco's custom-sigma warning is dropped.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_HOTCOCO_SIGMA_WARNING)
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


def load_result_list(results: ResultsArg) -> list[Mapping[str, Any]]:
    """Return the results as a list, reading them first when given a path."""
    if isinstance(results, (str, os.PathLike)):
        return load_keypoint_results(results)
    return list(results)


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


def default_keypoint_sigmas() -> np.ndarray:
    """pycocotools' COCO keypoint sigmas (.26 / 10, ...), bit for bit."""
    return np.asarray(Params(iouType="keypoints").kpt_oks_sigmas, dtype=np.float64)


def pycocotools_evaluator(coco_gt: COCO, results: list[Mapping[str, Any]],
                          logger: logging.Logger) -> COCOeval:
    """pycocotools' 'keypoints' COCOeval over the results.

    ``COCO.loadRes`` writes 'id', 'area' and 'bbox' into the dicts it receives, so it gets
    shallow copies and the caller's results stay as they were.
    """
    detections = load_detections(coco_gt, [dict(result) for result in results], logger)
    return COCOeval(coco_gt, detections, "keypoints")


def hotcoco_evaluator(coco_gt: COCO, results: list[Mapping[str, Any]],
                      logger: logging.Logger) -> Any:
    """hotcoco's 'keypoints' COCOeval over the results (which it reads without changing them);
    it keeps pycocotools' attribute names (params.imgIds, eval['precision'], stats)."""
    hotcoco = fast_backend_module()
    gt = call_logging_stdout(logger, hotcoco.COCO, coco_gt.dataset)
    detections = call_logging_stdout(logger, gt.load_res, results)
    return hotcoco.COCOeval(gt, detections, "keypoints")


def summarised_keypoint_eval(coco_gt: COCO, results: list[Mapping[str, Any]],
                             sigmas: np.ndarray | None, max_dets: list[int] | None,
                             backend: str, logger: logging.Logger) -> Any:
    """Run a 'keypoints' COCOeval evaluate/accumulate/summarize and return the evaluator.

    ``backend`` is a TEST.EVAL_BACKEND value; the library it resolves to gets the sigmas
    explicitly (pycocotools' own when None), so both score with the same bits.
    """
    check_result_image_ids(coco_gt, results)
    library = choose_backend(backend, coco_gt.dataset, logger)
    make_evaluator = hotcoco_evaluator if library == FAST_BACKEND else pycocotools_evaluator
    evaluator = make_evaluator(coco_gt, results, logger)
    evaluator.params.kpt_oks_sigmas = default_keypoint_sigmas() if sigmas is None else sigmas
    if max_dets is not None:
        evaluator.params.maxDets = list(max_dets)
    call_logging_stdout(logger, evaluator.evaluate)
    call_logging_stdout(logger, evaluator.accumulate)
    call_logging_stdout(logger, evaluator.summarize)
    return evaluator
