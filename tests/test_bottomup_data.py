"""Bottom-up (HigherHRNet) data: AE heatmap and tag targets, ignore masks, augmentation, dataset."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hrpose.codecs.associative_embedding import (
    encode_ae_heatmaps,
    encode_ae_tags,
    higherhrnet_gaussian_patch,
    scale_aware_sigmas,
    sigmas_per_resolution,
)
from hrpose.datasets.bottomup import (
    AffineDraw,
    BottomUpAugmentation,
    BottomUpDataset,
    apply_augmentation,
    bottomup_affine_matrix,
    draw_augmentation,
    ignore_mask,
    kept_for_targets,
    people_joints,
)
from hrpose.datasets.metadata import COCO
from hrpose.datasets.synthetic import generate_synthetic_dataset
from hrpose.errors import DataError, DataFileNotFoundError

NO_AUGMENTATION = BottomUpAugmentation(max_rotation=0.0, min_scale=1.0, max_scale=1.0,
                                       max_translate=0.0, flip_probability=0.0)


def reference_heatmaps(joints, size, sigmas):
    """HigherHRNet's generator written out as its per-person, per-joint paste loop."""
    joints = np.asarray(joints, dtype=np.float64)
    heatmaps = np.zeros((joints.shape[1], size, size), dtype=np.float32)
    for person, sigma in zip(joints, sigmas):
        patch = higherhrnet_gaussian_patch(sigma)
        for index, (x, y, v) in enumerate(person[:, :3]):
            if v <= 0:
                continue
            x, y = int(x), int(y)
            if x < 0 or y < 0 or x >= size or y >= size:
                continue
            ul = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            br = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            c, d = max(0, -ul[0]), min(br[0], size) - ul[0]
            a, b = max(0, -ul[1]), min(br[1], size) - ul[1]
            cc, dd = max(0, ul[0]), min(br[0], size)
            aa, bb = max(0, ul[1]), min(br[1], size)
            heatmaps[index, aa:bb, cc:dd] = np.maximum(heatmaps[index, aa:bb, cc:dd],
                                                       patch[a:b, c:d])
    return heatmaps


# ----------------------------------------------------------------------------------------------
# Codec


def test_heatmap_peaks_on_the_truncated_pixel_with_the_reference_gaussian():
    joints = np.zeros((1, 2, 3))
    joints[0, 0] = (5.7, 3.2, 2)  # joint 1 is unlabelled
    heatmaps = encode_ae_heatmaps(joints, 16, 2.0)
    assert heatmaps.shape == (2, 16, 16) and heatmaps.dtype == np.float32
    assert not heatmaps[1].any()
    assert np.unravel_index(heatmaps[0].argmax(), (16, 16)) == (3, 5)
    assert heatmaps[0, 3, 5] == 1.0
    rows, columns = np.mgrid[0:16, 0:16]
    expected = np.exp(-((columns - 5) ** 2 + (rows - 3) ** 2) / 8.0)
    # The 15 x 15 patch covers columns 5-7 .. 5+7 and rows 3-7 .. 3+7 (clipped at 0).
    expected[(columns > 12) | (rows > 10)] = 0
    np.testing.assert_allclose(heatmaps[0], expected.astype(np.float32), rtol=0, atol=0)
    patch = higherhrnet_gaussian_patch(2)
    assert patch.shape == (15, 15) and patch[7, 7] == 1.0


def test_heatmaps_equal_the_reference_loop_and_take_the_max_over_people():
    rng = np.random.default_rng(3)
    size = 24
    joints = np.concatenate([rng.uniform(-3, size + 2, (5, 4, 2)),
                             rng.integers(0, 3, (5, 4, 1))], axis=2)
    joints[0, 0] = (-0.5, 4.0, 2)  # truncates to column 0: inside, as the reference
    joints[1, 0] = (2.0, 5.0, 2)  # overlaps person 0's joint 0
    for sigma in (2.0, 2.5, 1.7, -1):  # -1: output / 64
        resolved = size / 64 if sigma < 0 else sigma
        ours = encode_ae_heatmaps(joints, size, sigma)
        np.testing.assert_array_equal(ours, reference_heatmaps(joints, size, [resolved] * 5))
    # Scale-aware: one sigma per person.
    sigmas = np.array([1.0, 2.0, 3.0, 1.5, 2.5])
    np.testing.assert_array_equal(encode_ae_heatmaps(joints, size, sigmas),
                                  reference_heatmaps(joints, size, sigmas))
    # Max over people: each person alone, then all together.
    alone = [encode_ae_heatmaps(joints[i:i + 1], size, 2.0) for i in range(5)]
    np.testing.assert_array_equal(encode_ae_heatmaps(joints, size, 2.0), np.max(alone, axis=0))
    assert encode_ae_heatmaps(np.zeros((0, 4, 3)), size, 2.0).shape == (4, size, size)


def test_sigma_options():
    assert sigmas_per_resolution(-1, [128, 256]) == [2.0, 4.0]
    assert sigmas_per_resolution(2, [128, 256]) == [2.0, 2.0]
    assert sigmas_per_resolution([2, 3], [128, 256]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="2 output sizes"):
        sigmas_per_resolution([2, 3, 4], [128, 256])
    boxes = np.array([[0, 0, 100, 512], [5, 5, 64, 32]])
    np.testing.assert_allclose(scale_aware_sigmas(boxes), [4.0, 0.5])
    # int(round(sigma + 0.5)) with half-to-even rounding: 4.5 -> 4, 1.0 -> 1.
    np.testing.assert_array_equal(scale_aware_sigmas(boxes, int_sigma=True), [4.0, 1.0])


def test_tag_indices_keep_each_joint_in_its_own_slot():
    size, count = 8, 3
    joints = np.zeros((3, count, 3))
    joints[0] = [(1.5, 2.9, 2), (7.9, 0.0, 0), (3.0, 4.0, 1)]  # joint 1 unlabelled
    joints[1] = [(8.0, 1.0, 2), (0.0, 0.0, 2), (-2.0, 1.0, 2)]  # x = 8 and -2 are outside
    joints[2] = [(0, 0, 0)] * 3  # a person without keypoints keeps its slot
    tags = encode_ae_tags(joints, size, max_num_people=4)
    assert tags.shape == (4, count, 2) and tags.dtype == np.int64
    np.testing.assert_array_equal(tags[0], [[0 * 64 + 2 * 8 + 1, 1], [0, 0],
                                            [2 * 64 + 4 * 8 + 3, 1]])
    np.testing.assert_array_equal(tags[1], [[0, 0], [1 * 64 + 0, 1], [0, 0]])
    assert not tags[2:].any()
    shared = encode_ae_tags(joints, size, max_num_people=4, tag_per_joint=False)
    np.testing.assert_array_equal(shared[0, :, 0], [2 * 8 + 1, 0, 4 * 8 + 3])
    # More people than slots: the extra ones are left out instead of failing.
    many = np.tile(joints[:1], (5, 1, 1))
    capped = encode_ae_tags(many, size, max_num_people=2)
    assert capped.shape == (2, count, 2) and (capped[:, 0, 1] == 1).all()


# ----------------------------------------------------------------------------------------------
# Annotations: masks and joints


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def uncompressed_rle(mask):
    flat = mask.ravel(order="F").astype(np.uint8)
    runs, current, length = [], 0, 0
    for value in flat:
        if value == current:
            length += 1
        else:
            runs.append(length)
            current, length = value, 1
    runs.append(length)
    return {"counts": runs, "size": list(mask.shape)}


def tiny_coco_tree(root, size=48):
    """A 48 x 48 COCO-format split: a person, a person without keypoints, a crowd region, and an
    image without annotations."""
    keypoints = [0.0] * 51
    keypoints[0:3] = [10.0, 12.0, 2]
    keypoints[3:6] = [20.0, 30.0, 1]
    crowd = np.zeros((size, size), dtype=bool)
    crowd[30:40, 2:12] = True
    write_json(root / "annotations" / "person_keypoints_train2017.json", {
        "images": [{"id": 5, "file_name": "a.jpg", "width": size, "height": size},
                   {"id": 6, "file_name": "b.jpg", "width": size, "height": size}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "iscrowd": 0, "num_keypoints": 2,
             "keypoints": keypoints, "bbox": [5, 5, 20, 30], "area": 600,
             "segmentation": [[5, 5, 25, 5, 25, 35, 5, 35]]},
            {"id": 2, "image_id": 5, "category_id": 1, "iscrowd": 0, "num_keypoints": 0,
             "keypoints": [0] * 51, "bbox": [30, 4, 10, 10], "area": 100,
             "segmentation": [[30, 4, 40, 4, 40, 14, 30, 14]]},
            {"id": 3, "image_id": 5, "category_id": 1, "iscrowd": 1, "num_keypoints": 0,
             "keypoints": [0] * 51, "bbox": [2, 30, 10, 10], "area": 100,
             "segmentation": uncompressed_rle(crowd)},
        ],
        "categories": [{"id": 1, "name": "person"}],
    })
    (root / "images" / "train2017").mkdir(parents=True, exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / "images" / "train2017" / name),
                    np.full((size, size, 3), 128, np.uint8))
    return crowd


def test_ignore_mask_is_false_on_crowds_and_people_without_keypoints(tmp_path):
    crowd = tiny_coco_tree(tmp_path)
    annotations = json.loads((tmp_path / "annotations" / "person_keypoints_train2017.json")
                             .read_text())["annotations"]
    mask = ignore_mask(annotations, 48, 48)
    assert mask.dtype == bool and mask.shape == (48, 48)
    assert not mask[crowd].any()
    assert not mask[6:13, 31:39].any()  # inside the polygon of the person without keypoints
    assert mask[20, 15] and mask[45, 45]  # the annotated person and the background count
    assert mask.sum() == 48 * 48 - crowd.sum() - (~mask[0:20, 25:45]).sum()

    kept = kept_for_targets(annotations)
    assert [a["id"] for a in kept] == [1, 2]  # the crowd goes, the keypoint-less person stays
    joints = people_joints(kept, 17)
    assert joints.shape == (2, 17, 3)
    np.testing.assert_array_equal(joints[0, :2], [[10, 12, 2], [20, 30, 1]])
    centred = people_joints(kept, 17, with_center=True)
    assert centred.shape == (2, 18, 3)
    np.testing.assert_array_equal(centred[0, 17], [15, 21, 1])
    np.testing.assert_array_equal(centred[1, 17], [0, 0, 0])


def test_dataset_mask_and_targets_without_augmentation(tmp_path):
    crowd = tiny_coco_tree(tmp_path)
    dataset = BottomUpDataset("coco", str(tmp_path), "train2017", is_train=True, input_size=48,
                              output_sizes=(48, 24), augmentation=NO_AUGMENTATION)
    assert dataset.image_ids == [5]  # training keeps only annotated images
    image, heatmaps, masks, joints = dataset[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    # A square image at its own size: the affine is the identity.
    np.testing.assert_array_equal(masks[0].numpy() == 0, ~ignore_mask(
        dataset.coco.loadAnns([1, 2, 3]), 48, 48))
    assert (masks[0].numpy()[crowd] == 0).all()
    assert masks[1].shape == (24, 24) and masks[1][35 // 2, 7 // 2] == 0
    assert heatmaps[0][0, 12, 10] == 1.0 and heatmaps[1][0, 6, 5] == 1.0
    assert heatmaps[1][1, 15, 10] == 1.0
    np.testing.assert_array_equal(joints[0][0, :2], [[12 * 48 + 10, 1],
                                                     [48 * 48 + 30 * 48 + 20, 1]])
    assert joints[0].shape == (30, 17, 2) and not joints[0][1:].any()

    test = BottomUpDataset("coco", str(tmp_path), "train2017", is_train=False)
    assert test.image_ids == [5, 6]
    raw, meta = test[1]
    assert raw.shape == (48, 48, 3) and raw.dtype == np.uint8
    assert meta["image_id"] == 6 and meta["image_file"].endswith("b.jpg")

    unmasked = BottomUpDataset("coco", str(tmp_path), "train2017", is_train=True,
                               input_size=48, output_sizes=(48,), augmentation=NO_AUGMENTATION,
                               use_ignore_mask=False)
    assert (unmasked[0][2][0] == 1).all()


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="person_keypoints_train2017.json"):
        BottomUpDataset("coco", str(tmp_path), "train2017", is_train=True)
    tiny_coco_tree(tmp_path)
    (tmp_path / "images" / "train2017" / "a.jpg").unlink()
    dataset = BottomUpDataset("coco", str(tmp_path), "train2017", is_train=True)
    with pytest.raises(DataFileNotFoundError, match="a.jpg"):
        dataset[0]
    (tmp_path / "images" / "train2017" / "b.jpg").unlink()
    (tmp_path / "images" / "train2017").rmdir()
    with pytest.raises(DataFileNotFoundError, match="image folder"):
        BottomUpDataset("coco", str(tmp_path), "train2017", is_train=False)
    annotation = tmp_path / "annotations" / "person_keypoints_train2017.json"
    annotation.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        BottomUpDataset("coco", str(tmp_path), "train2017", is_train=True)


# ----------------------------------------------------------------------------------------------
# Augmentation


def blob_centroid(channel):
    weights = channel.astype(np.float64)
    weights[weights < 0.05 * weights.max()] = 0
    rows, columns = np.mgrid[0:channel.shape[0], 0:channel.shape[1]]
    return np.array([(weights * columns).sum(), (weights * rows).sum()]) / weights.sum()


def dot_image(width, height, centres):
    """One Gaussian dot per colour channel at the given (x, y) centres."""
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    for channel, (x, y) in enumerate(centres):
        dot = np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * 2.5 ** 2))
        image[..., channel] = np.round(255 * dot).astype(np.uint8)
    return image


@pytest.mark.parametrize("flip", [False, True])
def test_drawn_dots_follow_their_joints_through_the_affine_and_flip(flip):
    # Left eye (1) red channel, right eye (2) green channel.
    width, height, input_size = 90, 70, 64
    eyes = [(30.3, 41.6), (58.8, 22.1)]
    image = dot_image(width, height, eyes)
    joints = np.zeros((1, 17, 3))
    joints[0, 1] = (*eyes[0], 2)
    joints[0, 2] = (*eyes[1], 2)
    draw = AffineDraw(center=np.array([47.0, 33.0]), scale=0.4, aug_scale=1.0, rotation=23.0,
                      flip=flip)
    sizes = (input_size, 16)
    warped, masks, moved = apply_augmentation(image, np.ones((height, width), bool), joints, draw,
                                              input_size, sizes, COCO.flip_index)
    assert warped.shape == (64, 64, 3) and [m.shape for m in masks] == [(64, 64), (16, 16)]
    # After a flip the left-eye slot holds the mirrored right eye, drawn in green, and vice versa.
    channel_of_slot = {1: 1, 2: 0} if flip else {1: 0, 2: 1}
    for slot, channel in channel_of_slot.items():
        centroid = blob_centroid(warped[..., channel])
        np.testing.assert_allclose(moved[0][0, slot, :2], centroid, atol=0.15)
        if flip:
            # The references flip joints as S - 1 - x at every size: exact at the input size,
            # 1 - S / input_size = 0.75 pixels off at a quarter of it.
            np.testing.assert_allclose(moved[1][0, slot, :2],
                                       centroid * 16 / 64 + [16 / 64 - 1, 0], atol=0.05)
        else:
            np.testing.assert_allclose(moved[1][0, slot, :2], centroid * 16 / 64, atol=0.05)
    assert moved[0][0, 1, 2] == 2 and moved[0][0, 0, 2] == 0
    if flip:
        _, _, exact = apply_augmentation(image, np.ones((height, width), bool), joints, draw,
                                         input_size, sizes, COCO.flip_index, "exact")
        np.testing.assert_allclose(exact[1][0, 1:3, :2], exact[0][0, 1:3, :2] * 16 / 64,
                                   atol=1e-9)


def test_affine_matrix_and_random_draw():
    matrix = bottomup_affine_matrix((100.0, 50.0), 1.0, 128)  # 200 px square -> 128
    np.testing.assert_allclose(matrix @ [100.0, 50.0, 1.0], [64.0, 64.0])
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 0.64)
    turned = bottomup_affine_matrix((100.0, 50.0), 1.0, 128, rotation=90.0)
    # The crop turns by +90 degrees, so image content turns by -90 (x right -> y up).
    np.testing.assert_allclose(turned @ [110.0, 50.0, 1.0], [64.0, 64.0 - 6.4], atol=1e-9)
    # Every output size is an exact rescaling of the input size.
    np.testing.assert_allclose(bottomup_affine_matrix((30, 40), 0.7, 32, 17.0) * 4,
                               bottomup_affine_matrix((30, 40), 0.7, 128, 17.0), atol=1e-12)

    settings = BottomUpAugmentation(max_rotation=30, min_scale=0.75, max_scale=1.5,
                                    max_translate=40, flip_probability=0.5)
    draws = [draw_augmentation(400, 300, settings, np.random.default_rng(i)) for i in range(200)]
    scales = np.array([d.aug_scale for d in draws])
    assert 0.75 <= scales.min() and scales.max() < 1.5
    np.testing.assert_allclose([d.scale for d in draws], scales * 300 / 200)
    assert max(abs(d.rotation) for d in draws) <= 30
    shifts = np.array([d.center - (200, 150) for d in draws])
    assert (shifts == np.round(shifts)).all()
    assert (np.abs(shifts) <= 40 * scales[:, None] * 1.5).all()
    assert 60 < sum(d.flip for d in draws) < 140
    with pytest.raises(ValueError, match="scale_type"):
        BottomUpAugmentation(scale_type="middle")


def test_augmented_masks_ignore_pixels_outside_the_image():
    image = np.full((40, 40, 3), 255, np.uint8)
    draw = AffineDraw(center=np.array([20.0, 20.0]), scale=0.4, aug_scale=2.0, rotation=0.0,
                      flip=False)  # an 80-pixel window around a 40-pixel image
    warped, masks, _ = apply_augmentation(image, np.ones((40, 40), bool), np.zeros((0, 17, 3)),
                                          draw, 32, (32,), COCO.flip_index)
    assert masks[0][16, 16] == 1 and masks[0][2, 2] == 0 and masks[0][16, 30] == 0
    assert masks[0].sum() == pytest.approx(16 * 16, abs=32)
    assert warped[2, 2].sum() == 0


# ----------------------------------------------------------------------------------------------
# Synthetic dataset end to end


def test_synthetic_dataset_items_and_batches(tmp_path):
    root = tmp_path / "synthetic"
    generate_synthetic_dataset(root, num_train=4, num_val=1, min_size=96, max_size=128)
    dataset = BottomUpDataset("synthetic", str(root), "train", is_train=True, input_size=64,
                              output_sizes=(16, 32), sigma=2.0, max_num_people=30,
                              augmentation=BottomUpAugmentation(max_scale=1.5), seed=1)
    assert len(dataset) == 4
    first = dataset[0]
    again = dataset[0]
    torch.testing.assert_close(first[0], again[0])  # same seed, epoch and index: same draw
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0][0], first[0])
    image, heatmaps, masks, joints = first
    assert image.shape == (3, 64, 64)
    assert [tuple(h.shape) for h in heatmaps] == [(17, 16, 16), (17, 32, 32)]
    assert [tuple(m.shape) for m in masks] == [(16, 16), (32, 32)]
    assert [tuple(j.shape) for j in joints] == [(30, 17, 2), (30, 17, 2)]
    for size, heatmap, mask, tag in zip((16, 32), heatmaps, masks, joints):
        assert heatmap.dtype == torch.float32 and 0 <= heatmap.min() and heatmap.max() <= 1
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert tag.dtype == torch.int64 and int(tag[..., 0].max()) < 17 * size * size
        # Every tagged joint sits on a heatmap peak of its own channel.
        visible = tag[..., 1] > 0
        for flat in tag[..., 0][visible].tolist():
            channel, rest = divmod(flat, size * size)
            assert heatmap[channel].reshape(-1)[rest] == 1.0
    assert int(joints[0][..., 1].sum()) > 0

    loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=0)
    images, heatmaps, masks, joints = next(iter(loader))
    assert images.shape == (2, 3, 64, 64)
    assert heatmaps[1].shape == (2, 17, 32, 32) and masks[0].shape == (2, 16, 16)
    assert joints[0].shape == (2, 30, 17, 2)

    # Scale-aware sigma: whole sigmas (int_sigma) and no zoom give integer centres and peaks of 1;
    # fractional sigmas put the patch centre between pixels, as the reference does.
    unzoomed = BottomUpAugmentation(min_scale=1.0, max_scale=1.0)
    scale_aware = BottomUpDataset("synthetic", str(root), "train", is_train=True, input_size=64,
                                  output_sizes=(16,), scale_aware_sigma=True, base_size=64.0,
                                  int_sigma=True, augmentation=unzoomed)
    heatmap = scale_aware[1][1][0]
    assert heatmap.shape == (17, 16, 16) and math.isclose(float(heatmap.max()), 1.0)
    fractional = BottomUpDataset("synthetic", str(root), "train", is_train=True, input_size=64,
                                 output_sizes=(16,), scale_aware_sigma=True, base_size=64.0,
                                 base_sigma=1.7, augmentation=unzoomed)
    assert 0.5 < float(fractional[1][1][0].max()) < 1.0
