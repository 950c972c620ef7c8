"""Keypoint result files: JSON lists of {image_id, category_id, keypoints, score, ...} dicts."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrpose.utils.io import atomic_write, read_json

logger = logging.getLogger(__name__)


def to_json_compatible(value: Any) -> Any:
    """Convert NumPy arrays and scalars (nested in dicts, lists, tuples) to plain Python values.

    The stdlib encoder rejects ``np.float32`` and friends, so every number is converted
    explicitly rather than relying on a permissive third-party encoder.
    """
    if isinstance(value, np.ndarray):
        return to_json_compatible(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Mapping):
        return {str(key): to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write a value of type {type(value).__name__} to a results file")


def is_finite_value(value: Any) -> bool:
    """Whether every number in a JSON-compatible value (nested lists and dicts) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(is_finite_value(item) for item in value.values())
    if isinstance(value, list):
        return all(is_finite_value(item) for item in value)
    return True


def write_keypoint_results(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write result dicts as a strict JSON list, atomically, creating parent folders; return the
    path. Results holding a NaN or infinite number (a model with non-finite weights) are left
    out with a warning: JSON has no such numbers, and COCO tools reject the 'NaN' tokens."""
    target = Path(path)
    payload = to_json_compatible(list(results))
    finite = [entry for entry in payload if is_finite_value(entry)]
    if len(finite) < len(payload):
        logger.warning("left %d of %d keypoint results out of %s: they hold NaN or infinite "
                       "scores or coordinates", len(payload) - len(finite), len(payload), target)
    with atomic_write(target, "w") as file:
        json.dump(finite, file, sort_keys=True, allow_nan=False)
    logger.info("wrote %d keypoint results to %s", len(finite), target)
    return target


def load_keypoint_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a results file written by ``write_keypoint_results`` (or any COCO results JSON)."""
    results = read_json(path, "keypoint results")
    if not isinstance(results, list):
        raise ValueError(f"keypoint results file {path} must hold a JSON list, "
                         f"found {type(results).__name__}")
    return results
