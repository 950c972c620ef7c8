"""Crop geometry: affine construction vs cv2, round trips, flip consistency, boxes, half-body."""

import cv2
import numpy as np
import pytest
import torch

from hrpose.datasets.metadata import COCO
from hrpose.utils.transforms import (
    BOX_PADDING,
    CONVENTIONS,
    HALF_BODY_PADDING,
    PIXEL_STD,
    affine_transform_points,
    box_to_center_scale,
    fliplr_joints,
    get_affine_transform,
    half_body_transform,
    transform_preds,
    transform_preds_torch,
)


def three_point_pairs(center, scale, rotation_deg, output_size, convention):
    """The references' construction: centre, rotated half-width up-vector, perpendicular point."""
    source_width = scale[0] * PIXEL_STD
    width, height = output_size
    if convention == "dark":
        source_half, output_half = (source_width - 1) / 2, (width - 1) / 2
        output_center = np.array([(width - 1) / 2, (height - 1) / 2])
    else:
        source_half, output_half = source_width / 2, width / 2
        output_center = np.array([width / 2, height / 2])
    radians = np.pi * rotation_deg / 180
    up = np.array([0.0, -source_half])
    rotated_up = np.array([up[0] * np.cos(radians) - up[1] * np.sin(radians),
                           up[0] * np.sin(radians) + up[1] * np.cos(radians)])

    def with_third(first, second):
        along = first - second
        return np.array([first, second, second + np.array([-along[1], along[0]])])

    source = with_third(np.asarray(center, float), np.asarray(center, float) + rotated_up)
    output = with_third(output_center, output_center + np.array([0.0, -output_half]))
    return source, output


def solve_three_points(source, output):
    """The affine matrix (2, 3) taking three source points exactly onto three output points."""
    homogeneous = np.concatenate([source, np.ones((3, 1))], axis=1)
    return np.linalg.solve(homogeneous, output).T


def random_crops(seed, count=40):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        center = rng.uniform(-50, 700, size=2)
        scale = rng.uniform(0.2, 3.0, size=2)
        rotation = rng.uniform(-90, 90)
        output_size = (int(rng.integers(16, 400)), int(rng.integers(16, 400)))
        yield center, scale, rotation, output_size


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("inverse", [False, True])
def test_closed_form_equals_three_point_solve(convention, inverse):
    for center, scale, rotation, output_size in random_crops(seed=1):
        source, output = three_point_pairs(center, scale, rotation, output_size, convention)
        expected = solve_three_points(output, source) if inverse else solve_three_points(source,
                                                                                         output)
        matrix = get_affine_transform(center, scale, rotation, output_size, convention,
                                      inverse=inverse)
        assert matrix.shape == (2, 3) and matrix.dtype == np.float64
        np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("rotation", [0.0, 90.0, 180.0, -90.0])
@pytest.mark.parametrize("inverse", [False, True])
def test_equals_cv2_get_affine_transform_on_float32_exact_points(convention, rotation, inverse):
    # cv2 only takes float32 points; with these crops every point is exact in float32, so cv2's
    # float64 solve must agree with the closed form to 1e-9.
    center, scale, output_size = np.array([321.5, 207.25]), np.array([1.28, 1.70]), (192, 256)
    source, output = three_point_pairs(center, scale, rotation, output_size, convention)
    source = np.round(source, 6)
    assert np.array_equal(source.astype(np.float32), source)
    assert np.array_equal(output.astype(np.float32), output)
    pairs = (output, source) if inverse else (source, output)
    expected = cv2.getAffineTransform(pairs[0].astype(np.float32), pairs[1].astype(np.float32))
    matrix = get_affine_transform(center, scale, rotation, output_size, convention, inverse)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_equals_cv2_get_affine_transform_up_to_float32_points(convention):
    # At arbitrary angles the references' float32 points move the matrix by ~1e-6 only.
    for center, scale, rotation, output_size in random_crops(seed=2):
        source, output = three_point_pairs(center, scale, rotation, output_size, convention)
        expected = cv2.getAffineTransform(source.astype(np.float32), output.astype(np.float32))
        matrix = get_affine_transform(center, scale, rotation, output_size, convention)
        np.testing.assert_allclose(matrix, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_forward_then_inverse_returns_the_points(convention):
    rng = np.random.default_rng(3)
    for center, scale, rotation, output_size in random_crops(seed=3):
        points = rng.uniform(-100, 800, size=(25, 2))
        forward = get_affine_transform(center, scale, rotation, output_size, convention)
        backward = get_affine_transform(center, scale, rotation, output_size, convention,
                                        inverse=True)
        crop_points = affine_transform_points(points, forward)
        np.testing.assert_allclose(affine_transform_points(crop_points, backward), points,
                                   rtol=0, atol=1e-6)


def test_unrotated_crop_formulas():
    center, scale, (width, height) = np.array([300.0, 200.0]), np.array([1.5, 2.0]), (192, 256)
    source_width = 1.5 * PIXEL_STD
    point = np.array([[350.0, 120.0]])
    hrnet = affine_transform_points(point, get_affine_transform(center, scale, 0, (width, height)))
    expected = [(350 - 300) * width / source_width + width / 2,
                (120 - 200) * width / source_width + height / 2]
    np.testing.assert_allclose(hrnet[0], expected, atol=1e-12)
    dark = affine_transform_points(point, get_affine_transform(center, scale, 0, (width, height),
                                                               "dark"))
    zoom = (width - 1) / (source_width - 1)
    expected = [50 * zoom + (width - 1) / 2, -80 * zoom + (height - 1) / 2]
    np.testing.assert_allclose(dark[0], expected, atol=1e-12)


def test_rotation_turns_the_content_the_other_way():
    # Under a +90 degree crop the source's right side shows at the crop's top and the source's
    # top at the crop's left.
    center, scale = np.array([100.0, 100.0]), np.array([1.0, 1.0])
    matrix = get_affine_transform(center, scale, 90.0, (200, 200))
    crop = affine_transform_points(np.array([[150.0, 100.0], [100.0, 50.0]]), matrix)
    np.testing.assert_allclose(crop, [[100.0, 50.0], [50.0, 100.0]], atol=1e-9)


def crop_to_heatmap(points, center, scale, image_size, heatmap_size, convention):
    """Input-crop pixels -> heatmap pixels through the image, as the dataset and decoder do."""
    to_image = get_affine_transform(center, scale, 0, image_size, convention, inverse=True)
    to_heatmap = get_affine_transform(center, scale, 0, heatmap_size, convention)
    return affine_transform_points(affine_transform_points(points, to_image), to_heatmap)


@pytest.mark.parametrize("image_size,heatmap_size", [((192, 256), (48, 64)),
                                                     ((288, 384), (72, 96))])
def test_flip_consistency_dark_is_exact_and_hrnet_is_off_by_three_quarters(image_size,
                                                                            heatmap_size):
    rng = np.random.default_rng(4)
    center = np.array([250.0, 180.0])
    scale = np.array([1.1, 1.1 * image_size[1] / image_size[0]])
    points = rng.uniform(0, image_size[0] - 1, size=(50, 2))
    mirrored = points.copy()
    mirrored[:, 0] = image_size[0] - 1 - points[:, 0]
    stride = image_size[0] / heatmap_size[0]
    for convention in CONVENTIONS:
        direct = crop_to_heatmap(points, center, scale, image_size, heatmap_size, convention)
        flipped = crop_to_heatmap(mirrored, center, scale, image_size, heatmap_size, convention)
        flipped_back_x = heatmap_size[0] - 1 - flipped[:, 0]
        np.testing.assert_allclose(flipped[:, 1], direct[:, 1], atol=1e-9)
        if convention == "dark":
            np.testing.assert_allclose(flipped_back_x, direct[:, 0], rtol=0, atol=1e-9)
        else:
            # Mirroring back lands 1 - 1/stride heatmap pixels to the left: 0.75 at stride 4.
            assert stride == 4
            np.testing.assert_allclose(flipped_back_x - direct[:, 0], -0.75, rtol=0, atol=1e-9)


def test_box_to_center_scale_hand_example():
    aspect_ratio = 192 / 256
    wide_box, tall_box = [10.0, 20.0, 100.0, 50.0], [0.0, 0.0, 30.0, 120.0]
    center, scale = box_to_center_scale(wide_box, aspect_ratio)
    np.testing.assert_allclose(center, [60.0, 45.0])
    # 100 > 0.75 * 50, so the height grows to 100 / 0.75.
    np.testing.assert_allclose(scale, [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25])
    center, scale = box_to_center_scale(tall_box, aspect_ratio)
    np.testing.assert_allclose(center, [15.0, 60.0])
    np.testing.assert_allclose(scale, [90 / 200 * 1.25, 120 / 200 * 1.25])
    center, scale = box_to_center_scale(wide_box, aspect_ratio, convention="dark")
    np.testing.assert_allclose(center, [59.5, 44.5])
    np.testing.assert_allclose(scale, [0.625, 100 / 0.75 / 200 * 1.25])
    center, scale = box_to_center_scale(wide_box, aspect_ratio, padding=1.0)
    np.testing.assert_allclose(scale, [0.5, 100 / 0.75 / 200])
    assert BOX_PADDING == 1.25


def test_box_to_center_scale_is_vectorised():
    boxes = np.random.default_rng(5).uniform(1, 300, size=(30, 4))
    centers, scales = box_to_center_scale(boxes, 0.75)
    assert centers.shape == scales.shape == (30, 2)
    for box, center, scale in zip(boxes, centers, scales):
        one_center, one_scale = box_to_center_scale(box, 0.75)
        np.testing.assert_array_equal(one_center, center)
        np.testing.assert_array_equal(one_scale, scale)


def test_fliplr_joints_mirrors_swaps_and_zeroes_invisible():
    joints = np.array([[10.0, 1.0], [20.0, 2.0], [30.0, 3.0], [40.0, 4.0], [50.0, 5.0]])
    joints_vis = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    original = joints.copy()
    flipped, flipped_vis = fliplr_joints(joints, joints_vis, 100, ((1, 2), (3, 4)))
    # Joint 1 takes old joint 2 (invisible, so zeroed); joint 2 takes old joint 1, mirrored.
    np.testing.assert_array_equal(flipped, [[89, 1], [0, 0], [79, 2], [49, 5], [59, 4]])
    np.testing.assert_array_equal(flipped_vis, [1, 0, 1, 1, 1])
    np.testing.assert_array_equal(joints, original)

    joints3 = np.concatenate([joints, np.zeros((5, 1))], axis=1)
    vis3 = np.repeat(joints_vis[:, None], 3, axis=1) * [1, 1, 0]
    flipped3, flipped_vis3 = fliplr_joints(joints3, vis3, 100, ((1, 2), (3, 4)))
    np.testing.assert_array_equal(flipped3[:, :2], flipped)
    np.testing.assert_array_equal(flipped_vis3[:, 0], flipped_vis)
    assert flipped_vis3.shape == (5, 3)


def test_fliplr_twice_is_identity_for_visible_joints():
    rng = np.random.default_rng(6)
    joints = rng.uniform(0, 640, size=(17, 2))
    vis = np.ones(17)
    once = fliplr_joints(joints, vis, 640, COCO.flip_pairs)
    twice, _ = fliplr_joints(*once, 640, COCO.flip_pairs)
    np.testing.assert_allclose(twice, joints, atol=1e-12)


def standing_person():
    """17 COCO joints of an upright figure: head at the top, ankles at the bottom."""
    x = np.array([100, 95, 105, 90, 110, 80, 120, 70, 130, 65, 135, 85, 115, 83, 117, 82, 118.0])
    y = np.array([40, 35, 35, 38, 38, 70, 70, 100, 100, 130, 130, 140, 140, 190, 190, 240, 240.0])
    return np.stack([x, y], axis=1)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_half_body_is_deterministic_and_matches_the_rule(convention):
    joints, vis, aspect_ratio = standing_person(), np.ones(17), 0.75
    sides_seen = set()
    for seed in range(20):
        first_draw = np.random.default_rng(seed).standard_normal()
        rng = np.random.default_rng(seed)
        center, scale = half_body_transform(joints, vis, COCO.upper_body_ids, aspect_ratio, rng,
                                            convention)
        again = half_body_transform(joints, vis, COCO.upper_body_ids, aspect_ratio,
                                    np.random.default_rng(seed), convention)
        np.testing.assert_array_equal(again[0], center)
        np.testing.assert_array_equal(again[1], scale)
        # Exactly one draw is consumed.
        assert rng.standard_normal() == np.random.default_rng(seed).standard_normal(2)[1]

        side = "upper" if first_draw < 0.5 else "lower"
        sides_seen.add(side)
        selected = joints[:11] if side == "upper" else joints[11:]
        width, height = np.ptp(selected, axis=0) + (1.0 if convention == "dark" else 0.0)
        if width > aspect_ratio * height:
            height = width / aspect_ratio
        else:
            width = height * aspect_ratio
        np.testing.assert_allclose(center, selected.mean(axis=0))
        np.testing.assert_allclose(scale, np.array([width, height]) / 200 * HALF_BODY_PADDING)
    assert sides_seen == {"upper", "lower"}


def test_half_body_prefers_the_upper_body_69_percent_of_the_time():
    rng = np.random.default_rng(7)
    joints, vis = standing_person(), np.ones(17)
    upper_center = joints[:11].mean(axis=0)
    picks = [half_body_transform(joints, vis, COCO.upper_body_ids, 0.75, rng)[0]
             for _ in range(4000)]
    upper_share = np.mean([np.allclose(center, upper_center) for center in picks])
    assert abs(upper_share - 0.6915) < 0.03  # P(N(0, 1) < 0.5)


def test_half_body_falls_back_and_gives_up():
    joints = standing_person()
    # Only two visible lower joints: the lower side needs more than two, so the upper is used.
    vis = np.zeros(17)
    vis[[0, 1, 2, 5, 11, 12]] = 1
    for seed in range(5):
        center, _ = half_body_transform(joints, vis, COCO.upper_body_ids, 0.75,
                                        np.random.default_rng(seed))
        np.testing.assert_allclose(center, joints[[0, 1, 2, 5]].mean(axis=0))
    # A single visible joint cannot make a box.
    vis = np.zeros(17)
    vis[3] = 1
    assert half_body_transform(joints, vis, COCO.upper_body_ids, 0.75,
                               np.random.default_rng(0)) is None
    # (K, 3) visibility works the same way.
    vis3 = np.zeros((17, 3))
    vis3[3, :2] = 1
    assert half_body_transform(joints, vis3, COCO.upper_body_ids, 0.75,
                               np.random.default_rng(0)) is None


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_transform_preds_is_the_inverse_heatmap_affine(convention):
    rng = np.random.default_rng(8)
    heatmap_size = (48, 64)
    centers = rng.uniform(0, 600, size=(6, 2))
    scales = rng.uniform(0.3, 2.5, size=(6, 2))
    coords = rng.uniform(-2, 70, size=(6, 17, 2))
    result = transform_preds(coords, centers, scales, heatmap_size, convention)
    assert result.shape == (6, 17, 2)
    for sample in range(6):
        inverse = get_affine_transform(centers[sample], scales[sample], 0, heatmap_size,
                                       convention, inverse=True)
        np.testing.assert_allclose(result[sample], affine_transform_points(coords[sample], inverse),
                                   rtol=0, atol=1e-9)
        one = transform_preds(coords[sample], centers[sample], scales[sample], heatmap_size,
                              convention)
        np.testing.assert_array_equal(one, result[sample])


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_transform_preds_torch_gives_the_same_numbers(convention):
    rng = np.random.default_rng(9)
    centers = rng.uniform(0, 600, size=(5, 2)).astype(np.float32)
    scales = rng.uniform(0.3, 2.5, size=(5, 2)).astype(np.float32)
    coords = rng.uniform(0, 48, size=(5, 17, 2)).astype(np.float32)
    expected = transform_preds(coords, centers, scales, (48, 64), convention)
    result = transform_preds_torch(torch.from_numpy(coords), torch.from_numpy(centers),
                                   torch.from_numpy(scales), (48, 64), convention)
    assert result.dtype == torch.float64
    np.testing.assert_array_equal(result.numpy(), expected)
    from_numpy_meta = transform_preds_torch(torch.from_numpy(coords), centers, scales, (48, 64),
                                            convention)
    np.testing.assert_array_equal(from_numpy_meta.numpy(), expected)


def test_unknown_convention_is_rejected():
    with pytest.raises(ValueError, match="convention"):
        get_affine_transform([0, 0], [1, 1], 0, (192, 256), convention="udp")
    with pytest.raises(ValueError, match="convention"):
        box_to_center_scale([0, 0, 10, 10], 0.75, convention="HRNet")
