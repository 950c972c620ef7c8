"""Standard heatmap codec: target parity with the per-joint algorithm, decoding, flip helpers."""


import numpy as np
import pytest
import torch

from hrpose.codecs import heatmap as heatmap_codec
from hrpose.codecs.heatmap import (
    HeatmapDecodeResult,
    decode_standard,
    encode_gaussian_heatmaps,
    first_argmax,
    flip_back,
    get_max_preds,
    shift_flipped_heatmaps,
)
from hrpose.config import get_default_config
from hrpose.datasets.metadata import COCO, MPII
from hrpose.postprocess.topdown import decode_poses
from hrpose.utils.transforms import (
    affine_transform_points,
    get_affine_transform,
    transform_preds,
    transform_preds_torch,
)
from reference_topdown import (
    reference_get_final_preds,
    reference_get_max_preds,
    reference_quarter_offset,
)


def per_joint_target(joints, joints_vis, image_size, heatmap_size, sigma):
    """The reference target generation written plainly, one joint at a time."""
    num_joints = len(joints)
    weight = np.ones((num_joints, 1), dtype=np.float32)
    weight[:, 0] = joints_vis
    target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
    radius = sigma * 3
    stride = np.array(image_size) / np.array(heatmap_size)
    for joint in range(num_joints):
        mu_x = int(joints[joint][0] / stride[0] + 0.5)
        mu_y = int(joints[joint][1] / stride[1] + 0.5)
        left, top = int(mu_x - radius), int(mu_y - radius)
        right, bottom = int(mu_x + radius + 1), int(mu_y + radius + 1)
        if left >= heatmap_size[0] or top >= heatmap_size[1] or right < 0 or bottom < 0:
            weight[joint] = 0
            continue
        size = 2 * radius + 1
        xs = np.arange(0, size, 1, np.float32)
        ys = xs[:, np.newaxis]
        middle = size // 2
        patch = np.exp(-((xs - middle) ** 2 + (ys - middle) ** 2) / (2 * sigma ** 2))
        patch_cols = max(0, -left), min(right, heatmap_size[0]) - left
        patch_rows = max(0, -top), min(bottom, heatmap_size[1]) - top
        map_cols = max(0, left), min(right, heatmap_size[0])
        map_rows = max(0, top), min(bottom, heatmap_size[1])
        if weight[joint] > 0.5:
            target[joint][map_rows[0]:map_rows[1], map_cols[0]:map_cols[1]] = \
                patch[patch_rows[0]:patch_rows[1], patch_cols[0]:patch_cols[1]]
    return target, weight


def random_joints(rng, count, image_size):
    """Joints over and beyond the crop: a third anywhere, a third near the edges, a third on
    even pixels (where x / stride + 0.5 lands exactly on an integer or a half)."""
    width, height = image_size
    third = count // 3
    anywhere = rng.uniform([-0.4 * width, -0.4 * height], [1.4 * width, 1.4 * height],
                           size=(third, 2))
    edges = rng.choice([0.0, 1.0], size=(third, 2)) * [width, height]
    near_edges = edges + rng.uniform(-30, 30, size=(third, 2))
    even = rng.integers(-20, max(width, height) // 2 + 20, size=(count - 2 * third, 2)) * 2.0
    return np.concatenate([anywhere, near_edges, even])


@pytest.mark.parametrize("image_size,heatmap_size,sigma", [
    ((192, 256), (48, 64), 2), ((288, 384), (72, 96), 3), ((96, 128), (24, 32), 1),
    ((256, 256), (64, 64), 2.0), ((192, 256), (48, 64), 1.5)])
def test_encode_equals_per_joint_reference(image_size, heatmap_size, sigma):
    rng = np.random.default_rng(10)
    for _ in range(20):
        joints = random_joints(rng, 40, image_size)
        joints_vis = (rng.random(40) < 0.8).astype(np.float64)
        target, weight = encode_gaussian_heatmaps(joints, joints_vis, image_size, heatmap_size,
                                                  sigma)
        expected_target, expected_weight = per_joint_target(joints, joints_vis, image_size,
                                                            heatmap_size, sigma)
        assert target.dtype == np.float32 and weight.dtype == np.float32
        assert target.shape == (40, heatmap_size[1], heatmap_size[0]) and weight.shape == (40, 1)
        np.testing.assert_array_equal(weight, expected_weight)
        np.testing.assert_array_equal(target, expected_target)


def test_encode_accepts_three_column_inputs_and_joint_weights():
    rng = np.random.default_rng(11)
    joints = rng.uniform(0, 192, size=(17, 2))
    joints_vis = np.ones(17)
    joints_vis[[2, 5]] = 0
    target, weight = encode_gaussian_heatmaps(joints, joints_vis, (192, 256), (48, 64), 2)
    joints3 = np.concatenate([joints, np.zeros((17, 1))], axis=1)
    vis3 = np.stack([joints_vis, joints_vis, np.zeros(17)], axis=1)
    weights = np.asarray(COCO.joint_weights, dtype=np.float32)
    target3, weight3 = encode_gaussian_heatmaps(joints3, vis3, (192, 256), (48, 64), 2,
                                                joint_weights=weights)
    np.testing.assert_array_equal(target3, target)
    np.testing.assert_array_equal(weight3, weight * weights[:, None])
    assert weight3.dtype == np.float32
    assert target[[2, 5]].max() == 0 and weight[[2, 5]].max() == 0


def test_encode_peak_is_one_at_the_rounded_pixel():
    joints = np.array([[101.9, 54.1], [102.0, 54.0]])
    target, weight = encode_gaussian_heatmaps(joints, np.ones(2), (192, 256), (48, 64), 2)
    for heatmap, (x, y) in zip(target, [(25, 14), (26, 14)]):
        assert heatmap[y, x] == 1.0
        assert np.unravel_index(heatmap.argmax(), heatmap.shape) == (y, x)
    np.testing.assert_array_equal(weight, [[1], [1]])


def per_sample_max_preds(heatmaps):
    """get_max_preds written over numpy, joint by joint."""
    batch, joints, _, width = heatmaps.shape
    coords = np.zeros((batch, joints, 2), dtype=np.float32)
    maxvals = np.zeros((batch, joints, 1), dtype=heatmaps.dtype)
    for b in range(batch):
        for j in range(joints):
            flat = heatmaps[b, j].reshape(-1)
            index = int(np.argmax(flat))
            maxvals[b, j, 0] = flat[index]
            if flat[index] > 0:
                coords[b, j] = index % width, index // width
    return coords, maxvals


def test_get_max_preds_matches_argmax_with_first_index_ties_and_zeroed_negatives():
    rng = np.random.default_rng(12)
    heatmaps = rng.normal(size=(4, 17, 64, 48)).astype(np.float32)
    heatmaps[0, 0] = 0.5  # a full tie: the first pixel wins
    heatmaps[0, 1, 10, 20] = heatmaps[0, 1, 30, 5] = 100.0  # row 10 comes first
    heatmaps[1, 2] = -rng.random((64, 48))  # all negative: coordinates set to 0
    heatmaps[1, 3] = 0.0
    coords, maxvals = get_max_preds(torch.from_numpy(heatmaps))
    expected_coords, expected_maxvals = per_sample_max_preds(heatmaps)
    assert coords.dtype == torch.float32 and coords.shape == (4, 17, 2)
    np.testing.assert_array_equal(coords.numpy(), expected_coords)
    np.testing.assert_array_equal(maxvals.numpy(), expected_maxvals)
    assert coords[0, 0].tolist() == [0.0, 0.0] and coords[0, 1].tolist() == [20.0, 10.0]
    assert coords[1, 2].tolist() == [0.0, 0.0] and maxvals[1, 2, 0] < 0


def gaussian_maps(centers, width, height, sigma):
    """Untruncated Gaussians (N, H, W) at sub-pixel centres (N, 2), evaluated analytically."""
    xs = np.arange(width)[None, None, :]
    ys = np.arange(height)[None, :, None]
    squared = (xs - centers[:, 0, None, None]) ** 2 + (ys - centers[:, 1, None, None]) ** 2
    return np.exp(-squared / (2 * sigma ** 2)).astype(np.float32)


def test_quarter_offset_error_is_at_most_a_quarter_pixel():
    rng = np.random.default_rng(13)
    width, height = 48, 64
    centers = np.stack([rng.uniform(4, width - 5, 600), rng.uniform(4, height - 5, 600)], axis=1)
    heatmaps = torch.from_numpy(gaussian_maps(centers, width, height, sigma=2)).reshape(
        20, 30, height, width)
    coords, maxvals = decode_standard(heatmaps, post_process=True)
    error = np.abs(coords.reshape(-1, 2).numpy() - centers)
    assert error.max() <= 0.25 + 1e-6
    # Without the offset the argmax is the nearest pixel, so the error was up to 0.5.
    raw, _ = decode_standard(heatmaps, post_process=False)
    assert np.abs(raw.reshape(-1, 2).numpy() - centers).max() > 0.4
    np.testing.assert_array_equal(raw.reshape(-1, 2).numpy(), np.round(centers))
    assert torch.all(maxvals > 0.8)


def test_without_post_process_decoding_is_the_integer_argmax():
    heatmaps = torch.rand(3, 17, 64, 48, generator=torch.Generator().manual_seed(0))
    result = decode_standard(heatmaps, post_process=False)
    assert isinstance(result, HeatmapDecodeResult)
    expected_coords, expected_maxvals = get_max_preds(heatmaps)
    assert torch.equal(result.coords, expected_coords)
    assert torch.equal(result.maxvals, expected_maxvals)
    assert torch.equal(result.coords, torch.round(result.coords))


def test_quarter_offset_only_inside_the_border_band_and_zero_on_equal_neighbours():
    height = width = 16
    peaks = [(1, 8), (2, 8), (14, 8), (15, 8), (8, 1), (8, 15), (8, 14), (8, 8)]
    heatmaps = torch.zeros(1, len(peaks), height, width)
    for joint, (x, y) in enumerate(peaks):
        heatmaps[0, joint, y, x] = 1.0
        heatmaps[0, joint, y, x - 1] = 0.5  # the left neighbour is higher
        heatmaps[0, joint, y - 1, x] = 0.5  # so is the one above
    heatmaps[0, 7, 9, 8] = 0.5  # the last peak's vertical neighbours are equal
    coords, _ = decode_standard(heatmaps, post_process=True)
    moved = coords[0] - torch.tensor(peaks, dtype=torch.float32)
    # Only 1 < px < W - 1 and 1 < py < H - 1 move: 2 and 14 do, 1 and 15 do not.
    quarter = [-0.25, -0.25]
    expected = [[0, 0], quarter, quarter, [0, 0], [0, 0], [0, 0], quarter, [-0.25, 0]]
    assert moved.tolist() == expected


def test_flip_back_is_an_involution_that_swaps_pair_channels():
    for info in (COCO, MPII):
        generator = torch.Generator().manual_seed(1)
        heatmaps = torch.rand(2, info.num_keypoints, 8, 6, generator=generator)
        flipped = flip_back(heatmaps, info.flip_index)
        assert torch.equal(flip_back(flipped, info.flip_index), heatmaps)
        for left, right in info.flip_pairs:
            assert torch.equal(flipped[:, left], heatmaps[:, right].flip(-1))
            assert torch.equal(flipped[:, right], heatmaps[:, left].flip(-1))
        paired = {joint for pair in info.flip_pairs for joint in pair}
        centre_joints = set(range(info.num_keypoints)) - paired
        for joint in centre_joints:
            assert torch.equal(flipped[:, joint], heatmaps[:, joint].flip(-1))
        index_tensor = torch.as_tensor(info.flip_index)
        assert torch.equal(flip_back(heatmaps, index_tensor), flipped)


def test_shift_flipped_heatmaps_moves_columns_right_keeping_column_zero():
    heatmaps = torch.arange(12.0).reshape(1, 1, 2, 6)
    shifted = shift_flipped_heatmaps(heatmaps)
    assert shifted.tolist() == [[[[0, 0, 1, 2, 3, 4], [6, 6, 7, 8, 9, 10]]]]
    assert heatmaps[0, 0, 0, 1] == 1  # the input is left alone


def test_shift_realigns_flipped_targets_under_hrnet():
    # Crop x = 111 is heatmap x 27.75 (target peak 28). Its mirror 191 - 111 = 80 is heatmap x 20
    # exactly, which mirrors back to 27 = 27.75 - 0.75; the one-column shift restores 28.
    image_size, heatmap_size = (192, 256), (48, 64)
    direct, _ = encode_gaussian_heatmaps(np.array([[111.0, 120.0]]), np.ones(1), image_size,
                                         heatmap_size, 2)
    mirrored, _ = encode_gaussian_heatmaps(np.array([[80.0, 120.0]]), np.ones(1), image_size,
                                           heatmap_size, 2)
    back = flip_back(torch.from_numpy(mirrored)[None], [0])
    assert get_max_preds(torch.from_numpy(direct)[None]).coords[0, 0, 0].item() == 28
    assert get_max_preds(back).coords[0, 0, 0].item() == 27
    assert get_max_preds(shift_flipped_heatmaps(back)).coords[0, 0, 0].item() == 28


@pytest.mark.parametrize("source_width,tolerance_scale", [(48.0, 1.0), (230.0, 230.0 / 48)])
def test_encode_decode_round_trip_in_image_pixels(source_width, tolerance_scale):
    rng = np.random.default_rng(14)
    image_size, heatmap_size = (192, 256), (48, 64)
    center = np.array([320.0, 240.0])
    scale = np.array([source_width, source_width * 256 / 192]) / 200
    to_crop = get_affine_transform(center, scale, 0, image_size)
    batch = []
    for _ in range(8):
        # Points whose crop position lies inside the crop, away from its border.
        crop_points = np.stack([rng.uniform(8, 184, 17), rng.uniform(8, 248, 17)], axis=1)
        image_points = affine_transform_points(
            crop_points, get_affine_transform(center, scale, 0, image_size, inverse=True))
        joints_in_crop = affine_transform_points(image_points, to_crop)
        target, weight = encode_gaussian_heatmaps(joints_in_crop, np.ones(17), image_size,
                                                  heatmap_size, 2)
        assert np.all(weight == 1)
        batch.append((image_points, target))
    heatmaps = torch.from_numpy(np.stack([target for _, target in batch]))
    coords, _ = decode_standard(heatmaps, post_process=True)
    centers, scales = np.tile(center, (8, 1)), np.tile(scale, (8, 1))
    decoded = transform_preds(coords.numpy(), centers, scales, heatmap_size)
    expected = np.stack([points for points, _ in batch])
    # Rounding to a heatmap pixel costs at most half a heatmap pixel: 0.5 px when one heatmap
    # pixel is one image pixel.
    assert np.abs(decoded - expected).max() <= 0.5 * tolerance_scale + 1e-9
    on_device = transform_preds_torch(coords, centers, scales, heatmap_size)
    np.testing.assert_array_equal(on_device.numpy(), decoded)


@pytest.mark.parametrize("length", [3072, 64 * 7, 100])
def test_first_argmax_equals_torch_max_with_ties_and_nan(length, decoding_path):
    generator = torch.Generator().manual_seed(length)
    values = torch.round(torch.randn(40, length, generator=generator) * 2) / 2  # many ties
    values[3] = 0.0
    values[5, 7] = float("nan")
    values[6, [1, length - 1]] = float("nan")
    values[8] = -1.0
    maxvals, index = first_argmax(values)
    expected_maxvals, expected_index = values.max(dim=1)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(maxvals, expected_maxvals, equal_nan=True)
    assert index[3] == 0 and index[5] == 7 and index[6] == 1


def awkward_maps(rng, batch, joints, height, width, dtype=np.float32):
    """Maps with what the argmax and the quarter offset must get right as the reference does:
    values on a coarse grid (tied maxima, equal neighbours), peaks on and next to the borders,
    two equal peaks, and maps whose maximum is zero or negative."""
    maps = (np.round(rng.normal(size=(batch * joints, height, width)) * 4) / 4).astype(dtype)
    for index, heatmap in enumerate(maps):
        kind = index % 6
        y, x = rng.integers(height), rng.integers(width)
        if kind == 1:  # a peak on or next to a border
            if rng.random() < 0.5:
                x = rng.choice([0, 1, width - 2, width - 1]) % width
            else:
                y = rng.choice([0, 1, height - 2, height - 1]) % height
            heatmap[y, x] = 10
        elif kind == 2:
            heatmap[...] = -np.abs(heatmap) - 0.25
        elif kind == 3:
            heatmap[...] = 0
        elif kind == 4:  # two equal peaks
            heatmap[y, x] = heatmap[rng.integers(height), rng.integers(width)] = 10
        elif kind == 5:  # equal neighbours on both axes
            heatmap[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 5
            heatmap[y, x] = 10
    return maps.reshape(batch, joints, height, width)


def coco_like_boxes(rng, count, aspect_ratio):
    """Centres in a 640x480 image and scales of boxes 10 to 640 px wide, padded by 1.25."""
    center = np.stack([rng.uniform(0, 640, count), rng.uniform(0, 480, count)], axis=1)
    width = rng.uniform(10, 640, count) * 1.25 / 200
    return center, np.stack([width, width * aspect_ratio], axis=1)


@pytest.fixture(params=["numpy", "numpy-threads", "torch"])
def decoding_path(request, monkeypatch):
    """Runs a test with CPU maps decoded in NumPy (in one thread, then in chunks on three threads,
    as large batches are), then again through the torch operations that decode maps on other
    devices."""
    if request.param == "numpy-threads":
        monkeypatch.setattr(heatmap_codec, "PARALLEL_DECODE_BYTES", 0)
        monkeypatch.setattr(heatmap_codec, "_decode_workers", lambda: 3)
    if request.param == "torch":
        monkeypatch.setattr(heatmap_codec, "host_array", lambda tensor: None)
    return request.param


@pytest.mark.parametrize("post_process", [True, False])
def test_decode_poses_equals_hrnet_get_final_preds(post_process, decoding_path):
    rng = np.random.default_rng(15)
    maps = awkward_maps(rng, 60, 17, 64, 48)
    center, scale = coco_like_boxes(rng, 60, 64 / 48)
    cfg = get_default_config()
    cfg.MODEL.HEATMAP_SIZE = [48, 64]
    cfg.TEST.DECODER = "standard"
    cfg.TEST.POST_PROCESS = post_process
    poses = decode_poses(cfg, torch.from_numpy(maps), center, scale)
    preds, maxvals = reference_get_final_preds(maps, center, scale, post_process)
    assert poses.shape == (60, 17, 3) and poses.dtype == np.float64
    np.testing.assert_array_equal(poses[..., 2:], maxvals)
    # The reference builds its affine from float32 points and keeps float32 image coordinates:
    # up to about 8e-5 px from exact ones at COCO's image sizes.
    np.testing.assert_allclose(poses[..., :2], preds, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", [(6, 17, 64, 48), (4, 5, 5, 4), (3, 4, 3, 3), (2, 3, 2, 7),
                                   (2, 2, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_standard_equals_the_reference_in_heatmap_pixels(shape, dtype, decoding_path):
    maps = awkward_maps(np.random.default_rng(16), *shape, dtype=dtype)
    coords, maxvals = decode_standard(torch.from_numpy(maps), post_process=True)
    expected_coords, expected_maxvals = reference_get_max_preds(maps)
    expected_coords = reference_quarter_offset(expected_coords, maps)
    assert coords.dtype == torch.from_numpy(maps).dtype and maxvals.dtype == coords.dtype
    np.testing.assert_array_equal(coords.numpy(), expected_coords)
    np.testing.assert_array_equal(maxvals.numpy(), expected_maxvals)
    raw, raw_maxvals = decode_standard(torch.from_numpy(maps), post_process=False)
    np.testing.assert_array_equal(raw.numpy(), reference_get_max_preds(maps)[0])
    assert torch.equal(raw_maxvals, maxvals)


def test_an_empty_batch_decodes_to_empty_results(decoding_path):
    coords, maxvals = decode_standard(torch.zeros(0, 17, 64, 48))
    assert coords.shape == (0, 17, 2) and maxvals.shape == (0, 17, 1)
    assert coords.dtype == maxvals.dtype == torch.float32


def test_decoding_ignores_the_maps_memory_layout(decoding_path):
    maps = torch.from_numpy(awkward_maps(np.random.default_rng(17), 4, 34, 64, 48))
    expected = decode_standard(maps)
    channels_last = maps.contiguous(memory_format=torch.channels_last)
    for layout in (channels_last, maps.requires_grad_(True)):
        result = decode_standard(layout)
        assert torch.equal(result.coords, expected.coords)
        assert torch.equal(result.maxvals, expected.maxvals)
    every_other = maps.detach()[:, ::2]
    assert torch.equal(decode_standard(every_other).coords, expected.coords[:, ::2])


def test_infinite_and_nan_maps_decode_as_the_reference(decoding_path):
    maps = np.zeros((1, 3, 8, 8), dtype=np.float32)
    maps[0, 0, 4, 4] = 1.0
    maps[0, 0, 4, [3, 5]] = -np.inf  # -inf - -inf across x: NaN in the reference, via np.sign
    maps[0, 1, 4, 4] = np.inf  # an infinite peak between finite neighbours still moves
    maps[0, 1, 5, 4] = 1.0
    maps[0, 2, 2, 6] = np.nan  # NaN is the maximum; the coordinates are zeroed
    maps[0, 2, 4, 4] = 1.0
    coords, maxvals = decode_standard(torch.from_numpy(maps))
    expected_coords, expected_maxvals = reference_get_max_preds(maps)
    with np.errstate(invalid="ignore"):
        expected_coords = reference_quarter_offset(expected_coords, maps)
    np.testing.assert_array_equal(coords.numpy(), expected_coords)
    np.testing.assert_array_equal(maxvals.numpy(), expected_maxvals)
    assert np.isnan(coords.numpy()[0, 0, 0]) and coords[0, 0, 1] == 4
    assert coords[0, 1].tolist() == [4.0, 4.25] and coords[0, 2].tolist() == [0.0, 0.0]
    assert np.isnan(maxvals.numpy()[0, 2, 0])
