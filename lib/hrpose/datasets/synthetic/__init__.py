"""Seeded generator of a synthetic COCO-format person-keypoint dataset small enough for a CPU."""

from .files import (
    ANNOTATION_FILE_PATTERN,
    DETECTION_FILE,
    FIRST_IMAGE_ID,
    FORMAT_VERSION,
    IMAGE_FOLDER_PATTERN,
    MANIFEST_FILE,
    SPLITS,
    ImageSample,
    generate_synthetic_dataset,
    make_image_sample,
    synthetic_dataset_exists,
    validate_options,
)

__all__ = [
    "ANNOTATION_FILE_PATTERN", "DETECTION_FILE", "FIRST_IMAGE_ID", "FORMAT_VERSION",
    "IMAGE_FOLDER_PATTERN", "MANIFEST_FILE", "SPLITS", "ImageSample", "generate_synthetic_dataset",
    "make_image_sample", "synthetic_dataset_exists", "validate_options",
]
