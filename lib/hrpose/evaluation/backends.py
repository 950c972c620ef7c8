"""Which COCO evaluator library scores keypoints: pycocotools (the reference) or hotcoco."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

# The values of TEST.EVAL_BACKEND. 'auto' is hotcoco where it gives pycocotools' numbers bit for
# bit (tests/test_eval_backends.py) and pycocotools everywhere else.
EVAL_BACKENDS = ("auto", "pycocotools", "hotcoco")
REFERENCE_BACKEND = "pycocotools"
FAST_BACKEND = "hotcoco"


def fast_backend_module() -> ModuleType | None:
    """The hotcoco module, or None when it is not installed (it is an optional speed-up)."""
    try:
        return importlib.import_module(FAST_BACKEND)
    except ImportError:
        return None


def has_annotation_id_zero(gt_dataset: Mapping[str, Any]) -> bool:
    """Whether some GT annotation has id 0.

    pycocotools marks "unmatched" with 0, so a detection matched to GT id 0 counts as a false
    positive while that GT is used up; hotcoco keeps matches apart from ids and counts it as a
    true positive. Real COCO and CrowdPose files have no id 0.
    """
    return any(annotation.get("id") == 0 for annotation in gt_dataset.get("annotations", []))


def choose_backend(requested: str, gt_dataset: Mapping[str, Any], logger: logging.Logger) -> str:
    """The library that evaluates this GT: pycocotools or hotcoco, with one log line on a
    fallback.

    'auto' takes hotcoco unless it is not installed or the GT has annotation id 0, the one case
    where its numbers differ from pycocotools'. An explicit 'hotcoco' is honoured for id 0 too,
    with a warning that the numbers will differ.
    """
    if requested not in EVAL_BACKENDS:
        raise ValueError(f"evaluation backend {requested!r} is not one of "
                         f"{', '.join(repr(name) for name in EVAL_BACKENDS)}")
    if requested == REFERENCE_BACKEND:
        return REFERENCE_BACKEND
    if fast_backend_module() is None:
        log = logger.warning if requested == FAST_BACKEND else logger.info
        log("TEST.EVAL_BACKEND %r: hotcoco is not installed, so pycocotools evaluates "
            "(`pip install hotcoco` for a faster evaluation with the same numbers)", requested)
        return REFERENCE_BACKEND
    if has_annotation_id_zero(gt_dataset):
        if requested == "auto":
            logger.info("TEST.EVAL_BACKEND 'auto': the ground truth has annotation id 0, which "
                        "hotcoco scores differently from pycocotools, so pycocotools evaluates")
            return REFERENCE_BACKEND
        logger.warning("TEST.EVAL_BACKEND 'hotcoco': the ground truth has annotation id 0; "
                       "hotcoco counts a detection matched to it as a true positive where "
                       "pycocotools counts a false positive, so AP and AR differ from "
                       "pycocotools'")
    return FAST_BACKEND
