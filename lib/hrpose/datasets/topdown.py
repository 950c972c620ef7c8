"""The top-down sample pipeline: read, augment, crop the person box, normalise, encode targets."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..codecs.dark import encode_unbiased_heatmaps
from ..codecs.heatmap import encode_gaussian_heatmaps
from ..utils.transforms import (
    affine_transform_points,
    fliplr_joints,
    get_affine_transform,
    half_body_transform,
)
from .images import read_image
from .metadata import KeypointInfo

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
ROTATION_PROBABILITY = 0.6
FLIP_PROBABILITY = 0.5
TARGET_ENCODINGS = ("standard", "unbiased")


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation settings (DATASET.* keys)."""

    flip: bool = True
    scale_factor: float = 0.25
    rotation_factor: float = 30.0
    half_body_probability: float = 0.0
    half_body_min_joints: int = 8


def _normalization_table() -> np.ndarray:
    """(3, 256, 1) float32: the normalised value of every uint8 level in each channel.

    Computed with the very expressions of the per-pixel formula, so a look-up gives the same bits.
    """
    levels = np.arange(256, dtype=np.float32)[:, None]
    table = (levels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(table.T)[:, :, None]


NORMALIZATION_TABLE = _normalization_table()


def normalize_image(image: np.ndarray, reverse_channels: bool = False) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float tensor with the ImageNet mean and std (as ToTensor + Normalize).

    reverse_channels normalises image[..., ::-1] (BGR read, RGB wanted) without copying it. A
    uint8 image goes through a per-channel table look-up into the tensor's memory, bit-equal to
    the float arithmetic that other inputs still take.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        if reverse_channels:
            image = image[..., ::-1]
        array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    planes = cv2.split(np.ascontiguousarray(image))
    if reverse_channels:
        planes = planes[::-1]
    tensor = torch.empty((3,) + image.shape[:2], dtype=torch.float32)
    output = tensor.numpy()
    for channel, plane in enumerate(planes):
        cv2.LUT(plane, NORMALIZATION_TABLE[channel], dst=output[channel])
    return tensor


def _clamp(value: float, low: float, high: float) -> float:
    """np.clip of one number, without the cost of an array call."""
    return float(min(max(float(value), low), high))


class TopDownDataset(Dataset):
    """Person crops from records (image path, centre, scale, joints) for heatmap models.

    Each item is (input 3xHxW, target JxHhxWh, target_weight Jx1, meta). Augmentation draws from a
    generator seeded by (seed, epoch, index), so a sample is reproducible across workers and runs.
    """

    def __init__(self, records: list[dict], keypoint_info: KeypointInfo, image_size, heatmap_size,
                 sigma: float, is_train: bool, augmentation: Augmentation = Augmentation(),
                 color_rgb: bool = False, convention: str = "hrnet",
                 use_joint_weights: bool = False, seed: int = 0,
                 target_encoding: str = "standard"):
        self.records = records
        self.keypoint_info = keypoint_info
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.sigma = sigma
        self.is_train = is_train
        self.augmentation = augmentation
        self.color_rgb = color_rgb
        self.convention = convention
        if target_encoding not in TARGET_ENCODINGS:
            raise ValueError(f"target_encoding must be one of {TARGET_ENCODINGS}, "
                             f"got {target_encoding!r}")
        self.target_encoding = target_encoding
        self.joint_weights = (np.asarray(keypoint_info.joint_weights, dtype=np.float32)
                              if use_joint_weights else None)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (call before creating the epoch's
        iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _augment(self, image, joints, joints_vis, center, scale, rng):
        settings = self.augmentation
        if (joints_vis.sum() > settings.half_body_min_joints
                and rng.random() < settings.half_body_probability):
            half_body = half_body_transform(joints, joints_vis, self.keypoint_info.upper_body_ids,
                                            self.aspect_ratio, rng, self.convention)
            if half_body is not None:
                center, scale = half_body
        factor = settings.scale_factor
        scale = scale * _clamp(rng.standard_normal() * factor + 1, 1 - factor, 1 + factor)
        rotation = 0.0
        if rng.random() <= ROTATION_PROBABILITY:
            rotation = _clamp(rng.standard_normal() * settings.rotation_factor,
                              -2 * settings.rotation_factor, 2 * settings.rotation_factor)
        if settings.flip and rng.random() <= FLIP_PROBABILITY:
            width = image.shape[1]
            # A mirrored copy for the warp; NumPy would copy the reversed view pixel by pixel.
            image = cv2.flip(image, 1)
            joints, joints_vis = fliplr_joints(joints, joints_vis, width,
                                               self.keypoint_info.flip_pairs)
            center = center.copy()
            center[0] = width - center[0] - 1
        return image, joints, joints_vis, center, scale, rotation

    def __getitem__(self, index: int):
        record = self.records[index]
        # Read as BGR: the warp treats channels alike, so the small crop is put in RGB order
        # instead of the whole image (same bits).
        image = read_image(record["image"], color_rgb=False)
        joints = np.array(record["joints"], dtype=np.float64)
        joints_vis = np.array(record["joints_vis"], dtype=np.float64)
        center = np.array(record["center"], dtype=np.float64)
        scale = np.array(record["scale"], dtype=np.float64)
        rotation = 0.0
        if self.is_train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, joints, joints_vis, center, scale, rotation = self._augment(
                image, joints, joints_vis, center, scale, rng)

        transform = get_affine_transform(center, scale, rotation, self.image_size, self.convention)
        crop = cv2.warpAffine(np.ascontiguousarray(image), transform, self.image_size,
                              flags=cv2.INTER_LINEAR)
        visible = joints_vis > 0
        joints_in_crop = joints.copy()
        joints_in_crop[visible] = affine_transform_points(joints[visible], transform)
        if self.target_encoding == "unbiased":
            # DARK maps the joints a second time, straight to sub-pixel heatmap coordinates.
            to_heatmap = get_affine_transform(center, scale, rotation, self.heatmap_size,
                                              self.convention)
            joints_in_heatmap = joints.copy()
            joints_in_heatmap[visible] = affine_transform_points(joints[visible], to_heatmap)
            target, target_weight = encode_unbiased_heatmaps(
                joints_in_heatmap, joints_vis, self.heatmap_size, self.sigma,
                joint_weights=self.joint_weights)
        else:
            target, target_weight = encode_gaussian_heatmaps(
                joints_in_crop, joints_vis, self.image_size, self.heatmap_size, self.sigma,
                joint_weights=self.joint_weights)
        meta = {
            "index": index,
            "image_id": record["image_id"],
            "center": center.astype(np.float32),
            "scale": scale.astype(np.float32),
            "rotation": np.float32(rotation),
            "score": np.float32(record["score"]),
            "joints": joints_in_crop.astype(np.float32),
            "joints_vis": joints_vis.astype(np.float32),
        }
        return (normalize_image(crop, reverse_channels=self.color_rgb), torch.from_numpy(target),
                torch.from_numpy(target_weight), meta)
