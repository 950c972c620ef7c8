"""Keypoint result files: JSON lists of {image_id, category_id, keypoints, score, ...} dicts."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrpose.evaluation._atomic import atomic_write
from hrpose.utils.io import read_json

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


def write_keypoint_results(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write result dicts as a JSON list, atomically, creating parent folders; return the path."""
    target = Path(path)
    payload = to_json_compatible(list(results))
    with atomic_write(target, "w") as file:
        json.dump(payload, file, sort_keys=True)
    logger.info("wrote %d keypoint results to %s", len(payload), target)
    return target


def load_keypoint_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a results file written by ``write_keypoint_results`` (or any COCO results JSON)."""
    results = read_json(path, "keypoint results")
    if not isinstance(results, list):
        raise ValueError(f"keypoint results file {path} must hold a JSON list, "
                         f"found {type(results).__name__}")
    return results
