"""The inference demo's pose file: every processed frame's persons as JSON or CSV."""

from __future__ import annotations

import csv
import json
import math

from ..errors import DataError
from ..evaluation.results import to_json_compatible
from ..utils.io import atomic_write

OUTPUT_FORMATS = ("json", "csv")


def csv_header(keypoint_names, tracked: bool = False) -> list[str]:
    columns = ["frame", "timestamp", "image", "person", *(["track_id"] if tracked else []),
               "score", "box_x", "box_y", "box_w", "box_h"]
    for name in keypoint_names:
        columns += [f"{name}_x", f"{name}_y", f"{name}_score"]
    return columns


def non_finite_as_null(value):
    """JSON-ready values with NaN and infinities as None: the pose file stays strict JSON (a
    diverged model's NaN keypoints read back as null, not as the non-standard NaN token)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: non_finite_as_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [non_finite_as_null(item) for item in value]
    return value


def write_pose_file(path: str, records: list[dict], header: dict, output_format: str) -> str:
    """The poses of every processed frame as JSON ({...header, frames: [...]}) or CSV (one row
    per person with its frame number and timestamp; frames without persons have no row; a
    track_id column when the header has 'tracking')."""
    if output_format == "json":
        payload = non_finite_as_null(to_json_compatible({**header, "frames": records}))
        with atomic_write(path, "w") as handle:
            json.dump(payload, handle, allow_nan=False)
        return path
    if output_format != "csv":
        raise DataError(f"unknown pose file format {output_format!r}; use one of "
                        f"{', '.join(OUTPUT_FORMATS)}")
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        tracked = "tracking" in header
        writer.writerow(csv_header(header["keypoint_names"], tracked))
        for record in records:
            timestamp = "" if record["timestamp"] is None else f"{record['timestamp']:.6f}"
            for number, person in enumerate(record["persons"]):
                row = [record["frame"], timestamp, record["image"] or "", number,
                       *([person["track_id"]] if tracked else []),
                       repr(person["score"]), *map(repr, person["bbox"])]
                row += [repr(value) for value in person["keypoints"]]
                writer.writerow(row)
    return path
