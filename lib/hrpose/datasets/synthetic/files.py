"""Writing the synthetic dataset: per-image seeds, image and JSON files, atomic replacement."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ...utils.io import process_is_running
from ..metadata import COCO
from .coco_annotations import PERSON_CATEGORY_ID, scene_annotations, simulated_detections
from .scenes import render_scene

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val")
# Image ids differ between the splits, as COCO's do, so results of one split never match the other.
FIRST_IMAGE_ID = {"train": 1, "val": 1_000_001}
ANNOTATION_FILE_PATTERN = "annotations/person_keypoints_{split}.json"
IMAGE_FOLDER_PATTERN = "images/{split}"
DETECTION_FILE = "person_detection_results/synthetic_val_detections.json"
# Written last into the staging folder, so its presence means the dataset is complete.
MANIFEST_FILE = "synthetic_manifest.json"
JPEG_QUALITY = 92

# Streams of the per-image seed sequence: the image content, and the detector simulated on it.
SPLIT_STREAM = {"train": 0, "val": 1}
IMAGE_STREAM, DETECTION_STREAM = 0, 1


# ----------------------------------------------------------------------------------------------
# Random streams


def image_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The generator of one image's stream, independent of how many images come before it."""
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLIT_STREAM[split], index, stream))
    return np.random.default_rng(sequence)


# ----------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class ImageSample:
    """One generated image with everything written about it."""

    image_id: int
    file_name: str
    image: np.ndarray
    annotations: list[dict]  # without ids
    detections: list[dict]


def make_image_sample(seed: int, split: str, index: int, min_size: int,
                      max_size: int) -> ImageSample:
    """Image ``index`` of a split; it depends only on these arguments."""
    rng = image_rng(seed, split, index, IMAGE_STREAM)
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    scene = render_scene(rng, width, height)
    annotations = scene_annotations(scene)
    image_id = FIRST_IMAGE_ID[split] + index
    detections = []
    if split == "val":
        detections = simulated_detections(image_rng(seed, split, index, DETECTION_STREAM),
                                          annotations, image_id, width, height)
    return ImageSample(image_id, f"{image_id:012d}.jpg", scene.image, annotations, detections)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write a JPEG with a fixed quality, so that the same pixels give the same bytes."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def write_json(path: Path, content) -> None:
    """Compact JSON with sorted keys: the same content always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
                    + "\n", encoding="utf-8")


def person_category() -> dict:
    """COCO's person category, keypoint names and 1-based skeleton included."""
    return {
        "id": PERSON_CATEGORY_ID,
        "keypoints": list(COCO.keypoint_names),
        "name": "person",
        "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
        "supercategory": "person",
    }


def split_statistics(annotations: list[dict], num_images: int) -> dict:
    """Counts reported in the manifest and the summary."""
    people = [a for a in annotations if not a["iscrowd"]]
    visibilities = [v for a in people for v in a["keypoints"][2::3]]
    return {
        "images": num_images,
        "people": len(people),
        "crowd_regions": len(annotations) - len(people),
        "keypoints_visible": visibilities.count(2),
        "keypoints_occluded": visibilities.count(1),
        "keypoints_outside": visibilities.count(0),
    }


def image_samples(split: str, options: dict,
                  pool: concurrent.futures.Executor | None) -> Iterator[ImageSample]:
    """The samples of a split in index order, made here or by the worker processes of ``pool``."""
    count = options[f"num_{split}"]
    arguments = (itertools.repeat(options["seed"], count), itertools.repeat(split, count),
                 range(count), itertools.repeat(options["min_size"], count),
                 itertools.repeat(options["max_size"], count))
    if pool is None:
        return map(make_image_sample, *arguments)
    return pool.map(make_image_sample, *arguments, chunksize=4)


def generate_split(directory: Path, split: str, options: dict, show_progress: bool,
                   pool: concurrent.futures.Executor | None) -> tuple[dict, list[dict]]:
    """Write a split's images and annotation file; return its statistics and detections."""
    num_images = options[f"num_{split}"]
    image_folder = directory / IMAGE_FOLDER_PATTERN.format(split=split)
    image_folder.mkdir(parents=True, exist_ok=True)
    samples = image_samples(split, options, pool)
    if show_progress:
        from tqdm import tqdm
        samples = tqdm(samples, total=num_images, desc=f"synthetic {split}", unit="image")
    images, annotations, detections = [], [], []
    for sample in samples:
        write_image(image_folder / sample.file_name, sample.image)
        height, width = sample.image.shape[:2]
        images.append({"file_name": sample.file_name, "height": height, "id": sample.image_id,
                       "width": width})
        for annotation in sample.annotations:
            annotations.append({**annotation, "id": len(annotations) + 1,
                                "image_id": sample.image_id})
        detections += sample.detections
    document = {
        "annotations": annotations,
        "categories": [person_category()],
        "images": images,
        "info": {"description": "hrpose synthetic person keypoints", "seed": options["seed"],
                 "version": FORMAT_VERSION},
        "licenses": [],
    }
    write_json(directory / ANNOTATION_FILE_PATTERN.format(split=split), document)
    return split_statistics(annotations, num_images), detections


def write_dataset(directory: Path, options: dict, show_progress: bool, num_workers: int) -> dict:
    """Generate every file into ``directory``; the manifest goes last and is returned."""
    # Spawned rather than forked workers: forking a process that runs threads (a PyTorch
    # training process does) can deadlock.
    pool = (concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=multiprocessing.get_context("spawn")) if num_workers > 0 else None)
    try:
        splits, detections = {}, []
        for split in SPLITS:
            splits[split], split_detections = generate_split(directory, split, options,
                                                             show_progress, pool)
            detections += split_detections
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    write_json(directory / DETECTION_FILE, detections)
    manifest = {"detections": len(detections), "format_version": FORMAT_VERSION,
                "options": options, "splits": splits}
    write_json(directory / MANIFEST_FILE, manifest)
    return manifest


def synthetic_dataset_exists(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a complete generated dataset (manifest, annotations, images)."""
    root = Path(root)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        image_counts = {split: manifest["splits"][split]["images"] for split in SPLITS}
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    for split in SPLITS:
        folder = root / IMAGE_FOLDER_PATTERN.format(split=split)
        annotation_file = root / ANNOTATION_FILE_PATTERN.format(split=split)
        if not annotation_file.is_file() or not folder.is_dir():
            return False
        if sum(1 for _ in folder.glob("*.jpg")) != image_counts[split]:
            return False
    return (root / DETECTION_FILE).is_file()


def unique_sibling(path: Path, purpose: str) -> Path:
    """A hidden, not yet existing path next to ``path``, on the same file system for os.replace."""
    return path.with_name(f".{path.name}.{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_staging(root: Path) -> None:
    """Delete staging folders that killed runs left next to ``root`` (their process is gone)."""
    if not root.parent.is_dir():
        return
    for folder in root.parent.glob(f".{root.name}.partial-*"):
        pid = folder.name.rsplit("-", 2)[-2]
        if folder.is_dir() and pid.isdigit() and not process_is_running(int(pid)):
            logger.info("removing %s, left by an interrupted run", folder)
            shutil.rmtree(folder, ignore_errors=True)


def replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    trash = unique_sibling(target, "old")
    trash.mkdir()
    os.replace(target, trash / "previous")
    os.replace(new, target)
    shutil.rmtree(trash)


def validate_options(num_train: int, num_val: int, seed: int, min_size: int, max_size: int,
                     num_workers: int) -> None:
    """Reject options that cannot give a dataset, with a message that says why."""
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got num_train={num_train}, num_val={num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 64 <= min_size <= max_size:
        raise ValueError(f"need 64 <= min_size <= max_size, got {min_size} and {max_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")


def generate_synthetic_dataset(root: str | os.PathLike, num_train: int = 1000, num_val: int = 200,
                               seed: int = 0, min_size: int = 256, max_size: int = 384,
                               show_progress: bool = False, overwrite: bool = False,
                               num_workers: int = 0) -> dict:
    """Generate the synthetic dataset under ``root`` and return a summary of what it holds.

    Everything is written into a temporary sibling folder that is renamed to ``root`` at the end,
    so an interrupted run leaves nothing at ``root``. A complete dataset already at ``root`` is
    kept as it is (and summarised) unless ``overwrite`` is set. The summary has the options, per
    split the numbers of images, people, crowd regions and visible/occluded/outside keypoints,
    the number of detections, whether this call generated the data, and the root.
    ``num_workers`` > 0 renders images in that many processes; the files are the same either way.
    """
    validate_options(num_train, num_val, seed, min_size, max_size, num_workers)
    root = Path(root)
    options = {"max_size": int(max_size), "min_size": int(min_size), "num_train": int(num_train),
               "num_val": int(num_val), "seed": int(seed)}
    if root.exists() and not overwrite:
        if synthetic_dataset_exists(root):
            manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
            if manifest["options"] != options:
                logger.warning("%s already holds a synthetic dataset made with %s, not %s; "
                               "keeping it (pass overwrite=True to regenerate)", root,
                               manifest["options"], options)
            return {**manifest, "generated": False, "root": str(root)}
        if not root.is_dir() or any(root.iterdir()):
            raise DataError(f"'{root}' exists but is not a complete synthetic dataset; "
                            f"pass overwrite=True (--overwrite) to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root)
    staging = unique_sibling(root, "partial")
    staging.mkdir()
    try:
        manifest = write_dataset(staging, options, show_progress, num_workers)
        replace_directory(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**manifest, "generated": True, "root": str(root)}
