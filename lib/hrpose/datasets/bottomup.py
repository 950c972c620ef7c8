"""The bottom-up (HigherHRNet / associative embedding) image-level dataset over COCO-format files.

Training items follow HigherHRNet's COCOKeypoints: one whole image, its ignore mask (crowd regions
and people without keypoints), all people's joints, one random affine draw (short-side scale,
rotation, translation) applied at the input size and at every output size, a horizontal flip
with the flip index, then per output size the heatmaps and tag indices of the AE codec:

    (image (3, In, In) float32, [heatmaps (J, S_k, S_k) float32], [mask (S_k, S_k) float32],
     [joints (MAX_NUM_PEOPLE, J, 2) int64 of (flat tag index, visible)])

Test items are (image (H, W, 3) uint8, meta dict) for the test-time resize pipeline. Augmentation
draws come from a generator seeded by (seed, epoch, index), as in the top-down dataset, so a
sample is reproducible across workers and runs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from ..codecs.associative_embedding import (
    encode_ae_heatmaps,
    encode_ae_tags,
    scale_aware_sigmas,
    sigmas_per_resolution,
)
from ..errors import DataError, DataFileNotFoundError
from . import coco_format
from .images import read_image
from .metadata import KeypointInfo, get_keypoint_info
from .topdown import normalize_image

logger = logging.getLogger(__name__)

# The references' person-scale unit: scale s stands for a 200 * s pixel square.
SCALE_UNIT = 200.0
SCALE_TYPES = ("short", "long")
# "reference": joints flipped as x -> S - 1 - x at each output size while the image is flipped at
# the input size (all three bottom-up repositories; targets sit 0.75 output pixels off at stride
# 4). "exact": x -> S - S / input_size - x, which keeps targets on the flipped image content.
FLIP_CONVENTIONS = ("reference", "exact")
# Datasets whose annotations mark crowds and unannotated people; CrowdPose trains unmasked.
UNMASKED_DATASETS = ("crowdpose",)


@dataclass(frozen=True)
class BottomUpAugmentation:
    """Random affine + flip settings (HigherHRNet's DATASET.MAX_ROTATION ... FLIP)."""

    max_rotation: float = 30.0
    min_scale: float = 0.75
    max_scale: float = 1.25
    scale_type: str = "short"
    max_translate: float = 40.0
    flip_probability: float = 0.5
    flip_convention: str = "reference"

    def __post_init__(self) -> None:
        if self.scale_type not in SCALE_TYPES:
            raise ValueError(f"scale_type must be one of {SCALE_TYPES}, got {self.scale_type!r}")
        if self.flip_convention not in FLIP_CONVENTIONS:
            raise ValueError(f"flip_convention must be one of {FLIP_CONVENTIONS}, "
                             f"got {self.flip_convention!r}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale} and "
                             f"{self.max_scale}")


@dataclass(frozen=True)
class AffineDraw:
    """One random draw of the augmentation: crop centre and scale (in 200-pixel units), the
    scale factor that was drawn, rotation in degrees, and whether to flip."""

    center: np.ndarray
    scale: float
    aug_scale: float
    rotation: float
    flip: bool


def draw_augmentation(image_width: int, image_height: int, settings: BottomUpAugmentation,
                      rng: np.random.Generator) -> AffineDraw:
    """Draw scale, rotation, translation (if max_translate > 0) and flip, in that order."""
    center = np.array([image_width / 2.0, image_height / 2.0])
    side = min(image_width, image_height) if settings.scale_type == "short" else max(
        image_width, image_height)
    aug_scale = rng.random() * (settings.max_scale - settings.min_scale) + settings.min_scale
    scale = side / SCALE_UNIT * aug_scale
    rotation = (rng.random() * 2 - 1) * settings.max_rotation
    if settings.max_translate > 0:
        # The references pass float bounds to randint, which truncates them toward zero.
        bound = int(settings.max_translate * scale)
        if bound > 0:
            center = center + rng.integers(-bound, bound, size=2)
    flip = bool(rng.random() < settings.flip_probability)
    return AffineDraw(center, float(scale), float(aug_scale), float(rotation), flip)


def bottomup_affine_matrix(center: Sequence[float], scale: float, output_size: int,
                           rotation: float = 0.0) -> np.ndarray:
    """The (2, 3) matrix taking image pixels into a square S x S crop (hourglass-style).

    A square of side 200 * scale around ``center`` is zoomed onto the crop, then the crop is turned
    by ``rotation`` degrees about its centre (S/2, S/2) (image content turns the other way). Crops
    of different sizes are exact rescalings of each other: u = S / S' * u'.
    """
    size = float(output_size)
    side = SCALE_UNIT * float(scale)
    zoom = size / side
    matrix = np.array([[zoom, 0.0, size * (-float(center[0]) / side + 0.5)],
                       [0.0, zoom, size * (-float(center[1]) / side + 0.5)],
                       [0.0, 0.0, 1.0]])
    if rotation != 0:
        radians = -float(rotation) * np.pi / 180.0
        sin, cos = np.sin(radians), np.cos(radians)
        turn = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        to_origin = np.array([[1.0, 0.0, -size / 2], [0.0, 1.0, -size / 2], [0.0, 0.0, 1.0]])
        back = np.array([[1.0, 0.0, size / 2], [0.0, 1.0, size / 2], [0.0, 0.0, 1.0]])
        matrix = back @ (turn @ (to_origin @ matrix))
    return matrix[:2]


def apply_augmentation(image: np.ndarray, mask: np.ndarray, joints: np.ndarray, draw: AffineDraw,
                       input_size: int, output_sizes: Sequence[int], flip_index: Sequence[int],
                       flip_convention: str = "reference"
                       ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Warp the image to input_size and the mask and joints to every output size, then flip.

    image (H, W, 3) uint8; mask (H, W) bool or 0/1 (1 = pixel counts); joints (P, J, >=3) with x, y
    first (other columns are carried along). Returns the warped image, masks (S_k, S_k) float32 of
    0/1 (outside the image = 0, ignored) and joints (P, J, >=3) float64 in each output's pixels.
    """
    if flip_convention not in FLIP_CONVENTIONS:
        raise ValueError(f"flip_convention must be one of {FLIP_CONVENTIONS}, "
                         f"got {flip_convention!r}")
    flip_index = np.asarray(flip_index, dtype=np.int64)
    mask_bytes = (np.asarray(mask, dtype=np.float64) * 255).astype(np.uint8)
    joints = np.asarray(joints, dtype=np.float64)
    masks, joints_list = [], []
    for size in output_sizes:
        size = int(size)
        matrix = bottomup_affine_matrix(draw.center, draw.scale, size, draw.rotation)
        warped = cv2.warpAffine(mask_bytes, matrix, (size, size)) / 255.0
        warped = (warped > 0.5).astype(np.float32)
        moved = joints.copy()
        moved[..., :2] = joints[..., :2] @ matrix[:, :2].T + matrix[:, 2]
        if draw.flip:
            warped = np.ascontiguousarray(warped[:, ::-1])
            moved = moved[:, flip_index]
            if flip_convention == "exact":
                moved[..., 0] = size - size / float(input_size) - moved[..., 0]
            else:
                moved[..., 0] = size - 1 - moved[..., 0]
        masks.append(warped)
        joints_list.append(moved)
    matrix = bottomup_affine_matrix(draw.center, draw.scale, int(input_size), draw.rotation)
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (int(input_size), int(input_size)))
    if draw.flip:
        image = np.ascontiguousarray(image[:, ::-1])
    return image, masks, joints_list


def segmentation_mask(segmentation, height: int, width: int) -> np.ndarray | None:
    """Pixels (H, W) bool covered by a COCO segmentation (polygons, or RLE compressed or not);
    None when the annotation has no segmentation."""
    if isinstance(segmentation, list):
        polygons = [polygon for polygon in segmentation if len(polygon) >= 6]
        if not polygons:
            return None
        rles = mask_utils.frPyObjects(polygons, height, width)
        return _decode(rles).any(axis=2)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        return _decode(rle).astype(bool)
    return None


def _decode(rle) -> np.ndarray:
    # pycocotools' compiled decoder trips NumPy 2's __array__(copy=...) deprecation; the values
    # are unaffected, so the warning is silenced here rather than left in every training run.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept",
                                category=DeprecationWarning)
        return mask_utils.decode(rle)


def ignore_mask(annotations: list[dict], height: int, width: int) -> np.ndarray:
    """HigherHRNet's training mask (H, W) bool: False on crowd regions and on non-crowd people
    with no labelled keypoint, True (the pixel counts) everywhere else."""
    ignored = np.zeros((height, width), dtype=bool)
    for annotation in annotations:
        if annotation.get("iscrowd", 0) or _num_keypoints(annotation) == 0:
            region = segmentation_mask(annotation.get("segmentation"), height, width)
            if region is not None:
                if region.shape != ignored.shape:
                    raise DataError(f"segmentation of annotation {annotation.get('id')} is "
                                    f"{region.shape[1]}x{region.shape[0]}, its image "
                                    f"{width}x{height}")
                ignored |= region
    return ~ignored


def _num_keypoints(annotation: dict) -> int:
    if "num_keypoints" in annotation:
        return int(annotation["num_keypoints"])
    keypoints = annotation.get("keypoints") or []
    return int(np.count_nonzero(np.asarray(keypoints, dtype=np.float64)[2::3] > 0))


def people_joints(annotations: list[dict], num_keypoints: int, with_center: bool = False,
                  image_id=None) -> np.ndarray:
    """Joints (P, J[+1], 3) as (x, y, v) of the annotations kept for targets.

    With ``with_center`` a last joint holds the mean of the joints with v > 0 (v = 1), or zeros
    when none is labelled. Annotations without keypoints give a row of zeros.
    """
    count = num_keypoints + (1 if with_center else 0)
    joints = np.zeros((len(annotations), count, 3), dtype=np.float64)
    for person, annotation in enumerate(annotations):
        keypoints = annotation.get("keypoints") or [0.0] * (3 * num_keypoints)
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
        if keypoints.shape[0] != num_keypoints:
            raise DataError(f"annotation {annotation.get('id')} of image {image_id} has "
                            f"{keypoints.shape[0]} keypoints, expected {num_keypoints}")
        joints[person, :num_keypoints] = keypoints
        if with_center:
            visible = keypoints[:, 2] > 0
            if visible.any():
                joints[person, -1, :2] = keypoints[visible, :2].mean(axis=0)
                joints[person, -1, 2] = 1.0
    return joints


def kept_for_targets(annotations: list[dict]) -> list[dict]:
    """The annotations that occupy a person slot: non-crowd ones, and crowds with keypoints."""
    return [a for a in annotations if a.get("iscrowd", 0) == 0 or _num_keypoints(a) > 0]


class BottomUpDataset(Dataset):
    """Whole images of a COCO-format split (COCO, CrowdPose, OCHuman, synthetic) for AE models.

    dataset: layout and keypoint-metadata name ('coco', 'crowdpose', 'synthetic', ...); root and
    image_set locate the files as coco_format does. is_train: training items (augmented, with
    targets) over the images that have at least one annotation; otherwise test items
    (image uint8 (H, W, 3), meta) over every image.

    Target settings: input_size (square), output_sizes (one square size per resolution), sigma
    (scalar shared by every resolution, a per-resolution list, < 0 for output/64; None for a
    subclass that encodes other targets, datasets.regression),
    max_num_people, tag_per_joint, with_center (an extra mean-of-visible-joints joint; needs
    the flip index to map it to itself, which is done here), scale_aware_sigma with base_size,
    base_sigma, int_sigma (sigma per person from its box, divided by the drawn scale factor).
    use_ignore_mask: None chooses per dataset (CrowdPose trains with an all-ones mask).
    color_rgb: HigherHRNet feeds RGB.
    """

    def __init__(self, dataset: str, root: str, image_set: str, is_train: bool,
                 input_size: int = 512, output_sizes: Sequence[int] = (128, 256),
                 sigma: float | Sequence[float] = 2.0, max_num_people: int = 30,
                 augmentation: BottomUpAugmentation = BottomUpAugmentation(),
                 keypoint_info: KeypointInfo | None = None, tag_per_joint: bool = True,
                 with_center: bool = False, scale_aware_sigma: bool = False,
                 base_size: float = 256.0, base_sigma: float = 2.0, int_sigma: bool = False,
                 use_ignore_mask: bool | None = None, color_rgb: bool = True, seed: int = 0):
        self.dataset = dataset
        self.root = root
        self.image_set = image_set
        self.is_train = is_train
        self.input_size = int(input_size)
        self.output_sizes = [int(size) for size in np.atleast_1d(output_sizes)]
        self.sigmas = None if sigma is None else sigmas_per_resolution(sigma, self.output_sizes)
        self.max_num_people = int(max_num_people)
        self.augmentation = augmentation
        self.keypoint_info = keypoint_info or get_keypoint_info(dataset)
        self.tag_per_joint = tag_per_joint
        self.with_center = with_center
        self.scale_aware_sigma = scale_aware_sigma
        self.base_size = float(base_size)
        self.base_sigma = float(base_sigma)
        self.int_sigma = int_sigma
        self.use_ignore_mask = (dataset not in UNMASKED_DATASETS if use_ignore_mask is None
                                else use_ignore_mask)
        self.color_rgb = color_rgb
        self.seed = seed
        self.epoch = 0
        self.num_keypoints = self.keypoint_info.num_keypoints
        self.flip_index = self.keypoint_info.flip_index
        if with_center:
            self.flip_index = np.append(self.flip_index, self.num_keypoints)

        self.annotation_path = coco_format.annotation_file(dataset, root, image_set)
        self.coco = coco_format.load_coco_file(self.annotation_path, self.num_keypoints)
        self.images_dir = coco_format.image_folder(dataset, root, image_set)
        image_ids = list(self.coco.getImgIds())
        if is_train:
            image_ids = [i for i in image_ids if self.coco.getAnnIds(imgIds=i, iscrowd=None)]
        self.image_ids = image_ids
        if image_ids and not os.path.isdir(self.images_dir):
            raise DataFileNotFoundError(f"image folder not found: '{self.images_dir}' (the "
                                        f"annotation file '{self.annotation_path}' lists "
                                        f"{len(image_ids)} images)")
        if is_train and scale_aware_sigma:
            self._check_boxes_for_sigma()
        self.evaluation = {"dataset": dataset, "gt_file": self.annotation_path, "coco": self.coco,
                           "image_set": image_set}
        logger.info("%s %s: %d images (bottom-up, %s)", dataset, image_set, len(image_ids),
                    "train" if is_train else "test")

    def _check_boxes_for_sigma(self) -> None:
        """Scale-aware sigmas grow with a person's box: each person needs a box with extent."""
        for annotation in kept_for_targets(self.coco.dataset.get("annotations", [])):
            if max(annotation["bbox"][2:]) <= 0:
                raise DataError(f"annotation file '{self.annotation_path}': annotation "
                                f"{annotation.get('id')} of image {annotation.get('image_id')} "
                                f"has bbox {annotation['bbox']}; DATASET.SCALE_AWARE_SIGMA "
                                f"needs a positive width or height")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (call before making its iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> str:
        info = self.coco.loadImgs(self.image_ids[index])[0]
        return os.path.join(self.images_dir, info["file_name"])

    def _read(self, index: int) -> tuple[np.ndarray, dict]:
        image_id = self.image_ids[index]
        info = self.coco.loadImgs(image_id)[0]
        path = os.path.join(self.images_dir, info["file_name"])
        image = read_image(path, self.color_rgb)
        if "height" in info and "width" in info and image.shape[:2] != (info["height"],
                                                                        info["width"]):
            raise DataError(f"image '{path}' is {image.shape[1]}x{image.shape[0]} but its "
                            f"annotation file says {info['width']}x{info['height']}")
        return image, info

    def __getitem__(self, index: int):
        image, info = self._read(index)
        if not self.is_train:
            meta = {"index": index, "image_id": self.image_ids[index],
                    "image_file": os.path.join(self.images_dir, info["file_name"]),
                    "height": image.shape[0], "width": image.shape[1]}
            return image, meta
        return self.training_item(index, image, info)

    def people_and_mask(self, index: int, height: int, width: int) -> tuple[list[dict],
                                                                             np.ndarray]:
        """The annotations of image ``index`` that occupy a person slot, and its training mask
        (H, W) bool (all True for datasets trained unmasked)."""
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=self.image_ids[index],
                                                              iscrowd=None))
        if self.use_ignore_mask:
            mask = ignore_mask(annotations, height, width)
        else:
            mask = np.ones((height, width), dtype=bool)
        return kept_for_targets(annotations), mask

    def augment(self, index: int, image: np.ndarray, mask: np.ndarray, joints: np.ndarray
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], AffineDraw]:
        """The epoch's random affine and flip of sample ``index`` (``apply_augmentation``), and
        the draw itself."""
        height, width = image.shape[:2]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        draw = draw_augmentation(width, height, self.augmentation, rng)
        image, masks, joints_list = apply_augmentation(
            image, mask, joints, draw, self.input_size, self.output_sizes, self.flip_index,
            self.augmentation.flip_convention)
        return image, masks, joints_list, draw

    def training_item(self, index: int, image: np.ndarray, info: dict):
        """Augment image ``index`` (already read) and encode its targets at every resolution."""
        people, mask = self.people_and_mask(index, *image.shape[:2])
        joints = people_joints(people, self.num_keypoints, self.with_center, self.image_ids[index])
        if self.scale_aware_sigma:
            boxes = np.array([p.get("bbox", [0, 0, 0, 0]) for p in people], dtype=np.float64)
            person_sigma = scale_aware_sigmas(boxes, self.base_size, self.base_sigma,
                                              self.int_sigma)
        image, masks, joints_list, draw = self.augment(index, image, mask, joints)
        heatmaps, tags = [], []
        for k, size in enumerate(self.output_sizes):
            sigma = person_sigma / draw.aug_scale if self.scale_aware_sigma else self.sigmas[k]
            heatmaps.append(torch.from_numpy(encode_ae_heatmaps(joints_list[k], size, sigma)))
            tags.append(torch.from_numpy(encode_ae_tags(joints_list[k], size, self.max_num_people,
                                                        self.tag_per_joint)))
        masks = [torch.from_numpy(m) for m in masks]
        return normalize_image(image), heatmaps, masks, tags
