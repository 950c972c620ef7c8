"""Evaluation: COCO-style keypoint AP, the CrowdPose protocol, MPII PCKh, result tables."""

from hrpose.evaluation.coco import COCO_STAT_NAMES, evaluate_coco_keypoints
from hrpose.evaluation.crowdpose import CROWDPOSE_STAT_NAMES, evaluate_crowdpose_keypoints
from hrpose.evaluation.pckh import PCKH_COLUMN_NAMES, evaluate_mpii_pckh, save_mpii_predictions
from hrpose.evaluation.results import load_keypoint_results, write_keypoint_results
from hrpose.evaluation.table import format_name_value_table, log_name_value_table

__all__ = [
    "COCO_STAT_NAMES",
    "CROWDPOSE_STAT_NAMES",
    "PCKH_COLUMN_NAMES",
    "evaluate_coco_keypoints",
    "evaluate_crowdpose_keypoints",
    "evaluate_mpii_pckh",
    "format_name_value_table",
    "load_keypoint_results",
    "log_name_value_table",
    "save_mpii_predictions",
    "write_keypoint_results",
]
