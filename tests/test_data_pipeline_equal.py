"""The fast top-down sample path gives the same bits as the plain path it replaced.

`reference_item` below is a copy of TopDownDataset.__getitem__ as it stood before the loader was
sped up (whole-image colour conversion, the mirrored view copied with NumPy, float arithmetic for
the normalisation, the vectorised encoders of that time). bench/bench_data_pipeline.py imports it
as its baseline.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hrpose.codecs.dark import encode_unbiased_heatmaps
from hrpose.codecs.heatmap import encode_gaussian_heatmaps
from hrpose.datasets.metadata import COCO
from hrpose.datasets.topdown import Augmentation, TopDownDataset, normalize_image
from hrpose.utils.transforms import (
    affine_transform_points,
    box_to_center_scale,
    fliplr_joints,
    get_affine_transform,
    half_body_transform,
)

REFERENCE_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
REFERENCE_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def reference_normalize(image: np.ndarray) -> torch.Tensor:
    array = (image.astype(np.float32) / 255.0 - REFERENCE_MEAN) / REFERENCE_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def reference_gaussian_patch(sigma):
    sigma = float(sigma)
    size = 2 * 3 * sigma + 1
    offsets = np.arange(0, size, 1, dtype=np.float32) - size // 2
    squared = offsets[None, :] ** 2 + offsets[:, None] ** 2
    return np.exp(-squared / (2 * sigma ** 2))


def reference_encode_standard(joints, joints_vis, image_size, heatmap_size, sigma, joint_weights):
    joints = np.asarray(joints, dtype=np.float64)
    joints_vis = np.asarray(joints_vis, dtype=np.float64)
    visibility = joints_vis if joints_vis.ndim == 1 else joints_vis[:, 0]
    heatmap_width, heatmap_height = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.asarray(image_size, dtype=np.float64) / np.asarray(heatmap_size, dtype=np.float64)
    radius = 3 * float(sigma)
    center = np.trunc(joints[:, :2] / stride + 0.5)
    upper_left = np.trunc(center - radius).astype(np.int64)
    bottom_right = np.trunc(center + radius + 1).astype(np.int64)
    misses_map = ((upper_left[:, 0] >= heatmap_width) | (upper_left[:, 1] >= heatmap_height)
                  | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0))
    target_weight = np.where(misses_map, 0.0, visibility).astype(np.float32)[:, None]
    patch = reference_gaussian_patch(sigma)
    patch_size = patch.shape[0]
    num_joints = joints.shape[0]
    offsets = np.arange(patch_size)
    columns = upper_left[:, 0:1] + offsets
    rows = upper_left[:, 1:2] + offsets
    column_ok = ((columns >= 0) & (columns < heatmap_width)
                 & (offsets < bottom_right[:, 0:1] - upper_left[:, 0:1]))
    drawn = target_weight[:, 0:1] > 0.5
    row_ok = ((rows >= 0) & (rows < heatmap_height)
              & (offsets < bottom_right[:, 1:2] - upper_left[:, 1:2]) & drawn)
    map_pixels = num_joints * heatmap_height * heatmap_width
    row_starts = (np.arange(num_joints)[:, None] * heatmap_height + rows) * heatmap_width
    flat_index = np.where(row_ok[:, :, None] & column_ok[:, None, :],
                          row_starts[:, :, None] + columns[:, None, :], map_pixels)
    flat_target = np.zeros(map_pixels + 1, dtype=np.float32)
    flat_target[flat_index.ravel()] = np.broadcast_to(patch, flat_index.shape).ravel()
    target = flat_target[:map_pixels].reshape(num_joints, heatmap_height, heatmap_width)
    if joint_weights is not None:
        target_weight = target_weight * np.asarray(joint_weights, dtype=np.float32)[:, None]
    return target, target_weight


def reference_encode_unbiased(joints, joints_vis, heatmap_size, sigma, joint_weights):
    joints = np.asarray(joints, dtype=np.float64)
    joints_vis = np.asarray(joints_vis, dtype=np.float64)
    visibility = joints_vis if joints_vis.ndim == 1 else joints_vis[:, 0]
    heatmap_width, heatmap_height = int(heatmap_size[0]), int(heatmap_size[1])
    radius = 3 * float(sigma)
    mu = joints[:, :2]
    upper_left = np.trunc(mu - radius)
    bottom_right = np.trunc(mu + radius + 1)
    misses_map = ((upper_left[:, 0] >= heatmap_width) | (upper_left[:, 1] >= heatmap_height)
                  | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0))
    target_weight = np.where(misses_map, 0.0, visibility).astype(np.float32)[:, None]
    x = np.arange(heatmap_width, dtype=np.float64)
    y = np.arange(heatmap_height, dtype=np.float64)
    gauss_x = np.exp(-(x[None, :] - mu[:, 0:1]) ** 2 / (2 * sigma ** 2))
    gauss_y = np.exp(-(y[None, :] - mu[:, 1:2]) ** 2 / (2 * sigma ** 2))
    target = gauss_y[:, :, None] * gauss_x[:, None, :]
    drawn = target_weight[:, 0] > 0.5
    target = np.where(drawn[:, None, None], target, 0.0).astype(np.float32)
    if joint_weights is not None:
        target_weight = target_weight * np.asarray(joint_weights, dtype=np.float32)[:, None]
    return target, target_weight


def reference_augment(dataset, image, joints, joints_vis, center, scale, rng):
    settings = dataset.augmentation
    if (joints_vis.sum() > settings.half_body_min_joints
            and rng.random() < settings.half_body_probability):
        half_body = half_body_transform(joints, joints_vis, dataset.keypoint_info.upper_body_ids,
                                        dataset.aspect_ratio, rng, dataset.convention)
        if half_body is not None:
            center, scale = half_body
    factor = settings.scale_factor
    scale = scale * np.clip(rng.standard_normal() * factor + 1, 1 - factor, 1 + factor)
    rotation = 0.0
    if rng.random() <= 0.6:
        rotation = float(np.clip(rng.standard_normal() * settings.rotation_factor,
                                 -2 * settings.rotation_factor, 2 * settings.rotation_factor))
    if settings.flip and rng.random() <= 0.5:
        width = image.shape[1]
        image = image[:, ::-1]
        joints, joints_vis = fliplr_joints(joints, joints_vis, width,
                                           dataset.keypoint_info.flip_pairs)
        center = center.copy()
        center[0] = width - center[0] - 1
    return image, joints, joints_vis, center, scale, rotation


def reference_item(dataset: TopDownDataset, index: int):
    """(input, target, target_weight, meta) of dataset[index] by the plain path."""
    record = dataset.records[index]
    image = cv2.imread(record["image"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if dataset.color_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    joints = np.array(record["joints"], dtype=np.float64)
    joints_vis = np.array(record["joints_vis"], dtype=np.float64)
    center = np.array(record["center"], dtype=np.float64)
    scale = np.array(record["scale"], dtype=np.float64)
    rotation = 0.0
    if dataset.is_train:
        rng = np.random.default_rng([dataset.seed, dataset.epoch, index])
        image, joints, joints_vis, center, scale, rotation = reference_augment(
            dataset, image, joints, joints_vis, center, scale, rng)
    transform = get_affine_transform(center, scale, rotation, dataset.image_size,
                                     dataset.convention)
    crop = cv2.warpAffine(np.ascontiguousarray(image), transform, dataset.image_size,
                          flags=cv2.INTER_LINEAR)
    visible = joints_vis > 0
    joints_in_crop = joints.copy()
    joints_in_crop[visible] = affine_transform_points(joints[visible], transform)
    if dataset.target_encoding == "unbiased":
        to_heatmap = get_affine_transform(center, scale, rotation, dataset.heatmap_size,
                                          dataset.convention)
        joints_in_heatmap = joints.copy()
        joints_in_heatmap[visible] = affine_transform_points(joints[visible], to_heatmap)
        target, target_weight = reference_encode_unbiased(
            joints_in_heatmap, joints_vis, dataset.heatmap_size, dataset.sigma,
            dataset.joint_weights)
    else:
        target, target_weight = reference_encode_standard(
            joints_in_crop, joints_vis, dataset.image_size, dataset.heatmap_size, dataset.sigma,
            dataset.joint_weights)
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
    return (reference_normalize(crop), torch.from_numpy(target), torch.from_numpy(target_weight),
            meta)


def textured_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like BGR image: smooth colour fields plus grain, so the JPEG has real detail."""
    coarse = rng.integers(0, 256, (max(height // 40, 2), max(width // 40, 2), 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 12.0, smooth.shape)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def person_records(folder, num_images: int, people_per_image: int, rng: np.random.Generator,
                   aspect_ratio: float, convention: str = "hrnet", sizes=((640, 480),),
                   num_joints: int = 17) -> list[dict]:
    """COCO-like JPEGs written to folder and one record per person box, as the loaders make them."""
    records = []
    for image_id in range(num_images):
        width, height = sizes[image_id % len(sizes)]
        path = str(folder / f"{image_id:012d}.jpg")
        cv2.imwrite(path, textured_image(rng, width, height), [cv2.IMWRITE_JPEG_QUALITY, 90])
        for _ in range(people_per_image):
            box_width = rng.uniform(0.1, 0.6) * width
            box_height = rng.uniform(0.2, 0.9) * height
            left = rng.uniform(-0.1 * width, width - 0.9 * box_width)
            top = rng.uniform(-0.1 * height, height - 0.9 * box_height)
            center, scale = box_to_center_scale([left, top, box_width, box_height], aspect_ratio,
                                                convention)
            joints = np.stack([rng.uniform(left, left + box_width, num_joints),
                               rng.uniform(top, top + box_height, num_joints)], axis=1)
            joints_vis = (rng.random(num_joints) < 0.75).astype(np.float64)
            records.append({"image": path, "image_id": image_id, "center": center,
                            "scale": scale, "joints": joints * joints_vis[:, None],
                            "joints_vis": joints_vis, "score": float(rng.uniform(0.5, 1.0))})
    return records


def assert_same_sample(actual, expected, where: str) -> None:
    for name, got, want in zip(("input", "target", "target_weight"), actual[:3], expected[:3]):
        assert got.dtype == want.dtype and got.shape == want.shape, f"{where}: {name}"
        assert torch.equal(got, want), f"{where}: {name} differs"
    got_meta, want_meta = actual[3], expected[3]
    assert got_meta.keys() == want_meta.keys(), where
    for key, want in want_meta.items():
        got = got_meta[key]
        assert type(got) is type(want), f"{where}: meta {key} type"
        assert np.asarray(got).dtype == np.asarray(want).dtype, f"{where}: meta {key} dtype"
        np.testing.assert_array_equal(got, want, err_msg=f"{where}: meta {key}")


SETTINGS = [
    # (image_size, heatmap_size, sigma, encoding, convention, color_rgb, joint weights)
    ((192, 256), (48, 64), 2.0, "standard", "hrnet", True, False),
    ((288, 384), (72, 96), 3.0, "standard", "hrnet", False, True),
    ((192, 256), (48, 64), 2.0, "unbiased", "dark", True, False),
    ((96, 128), (24, 32), 1.0, "unbiased", "hrnet", True, True),
]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s[0][0]}x{s[0][1]}-{s[3]}-{s[4]}")
@pytest.mark.parametrize("is_train", [True, False], ids=["train", "test"])
def test_every_sample_equals_the_plain_path(tmp_path, setting, is_train):
    image_size, heatmap_size, sigma, encoding, convention, color_rgb, joint_weights = setting
    rng = np.random.default_rng([SETTINGS.index(setting), is_train])
    aspect_ratio = image_size[0] / image_size[1]
    records = person_records(tmp_path, 6, 3, rng, aspect_ratio, convention,
                             sizes=((640, 480), (500, 375), (427, 640)))
    augmentation = Augmentation(flip=True, scale_factor=0.35, rotation_factor=45.0,
                                half_body_probability=0.5, half_body_min_joints=8)
    dataset = TopDownDataset(records, COCO, image_size, heatmap_size, sigma, is_train,
                             augmentation, color_rgb=color_rgb, convention=convention,
                             use_joint_weights=joint_weights, seed=3, target_encoding=encoding)
    for epoch in range(3 if is_train else 1):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            assert_same_sample(dataset[index], reference_item(dataset, index),
                               f"epoch {epoch} sample {index}")


def test_normalisation_of_every_level_equals_the_float_formula():
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack(np.meshgrid(levels, levels[::-1], indexing="ij"), axis=-1)
    image = np.concatenate([image, image[..., :1] ^ 0x5A], axis=-1)  # 256 x 256 x 3
    assert torch.equal(normalize_image(image), reference_normalize(image))
    assert torch.equal(normalize_image(image, reverse_channels=True),
                       reference_normalize(np.ascontiguousarray(image[..., ::-1])))
    mirrored = image[:, ::-1]  # a non-contiguous view
    assert torch.equal(normalize_image(mirrored), reference_normalize(mirrored))


def test_non_uint8_input_keeps_the_float_formula():
    image = np.random.default_rng(0).uniform(0, 255, (8, 6, 3)).astype(np.float32)
    assert torch.equal(normalize_image(image), reference_normalize(image))
    assert torch.equal(normalize_image(image, reverse_channels=True),
                       reference_normalize(image[..., ::-1]))


@pytest.mark.parametrize("heatmap_size,sigma", [((48, 64), 2.0), ((72, 96), 3.0), ((24, 32), 1.0)])
def test_encoders_equal_the_plain_encoders_on_random_joints(heatmap_size, sigma):
    rng = np.random.default_rng(int(sigma * 10))
    image_size = (heatmap_size[0] * 4, heatmap_size[1] * 4)
    joint_weights = rng.uniform(0.5, 1.5, 17).astype(np.float32)
    for trial in range(200):
        # Joints spread past the map on every side, some unlabelled, some labelled 2.
        joints = np.stack([rng.uniform(-0.3, 1.3, 17) * heatmap_size[0],
                           rng.uniform(-0.3, 1.3, 17) * heatmap_size[1]], axis=1)
        joints_vis = rng.choice([0.0, 1.0, 2.0], 17, p=[0.3, 0.5, 0.2])
        weights = joint_weights if trial % 2 else None
        unbiased = encode_unbiased_heatmaps(joints, joints_vis, heatmap_size, sigma, weights)
        expected = reference_encode_unbiased(joints, joints_vis, heatmap_size, sigma, weights)
        for got, want in zip(unbiased, expected):
            assert got.dtype == want.dtype and np.array_equal(got, want), trial
        standard = encode_gaussian_heatmaps(joints * 4, joints_vis, image_size, heatmap_size,
                                            sigma, weights)
        expected = reference_encode_standard(joints * 4, joints_vis, image_size, heatmap_size,
                                             sigma, weights)
        for got, want in zip(standard, expected):
            assert got.dtype == want.dtype and np.array_equal(got, want), trial
