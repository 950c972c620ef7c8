"""Bottom-up test-time pipeline: size rounding, back-projection, a full round trip, COCO results."""

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrpose.datasets.topdown import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from hrpose.postprocess.ae_grouping import GroupingParams, group_keypoints
from hrpose.postprocess.bottomup import (
    BottomUpTestParams,
    coco_keypoint_results,
    get_final_preds,
    get_multi_scale_size,
    infer_bottom_up,
    multi_scale_maps,
    multi_stage_outputs,
    resize_align_multi_scale,
    round_up_to_64,
)
from hrpose.utils.transforms import affine_transform_points, flip_permutation, get_affine_transform

J = 17
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
FLIP_INDEX = tuple(int(i) for i in flip_permutation(COCO_FLIP_PAIRS, J))


def test_round_up_to_64():
    assert round_up_to_64(64) == 64
    assert round_up_to_64(65) == 128
    assert round_up_to_64(512) == 512
    assert round_up_to_64(767.38) == 768
    # (512.5 + 63) // 64 = 8: the reference's formula rounds this fractional value down.
    assert round_up_to_64(512.5) == 512


@pytest.mark.parametrize("image_size, input_size, scale, min_scale, size, center, scale_vec", [
    # 640x427 at 512: h = 512; w = (512/427*640 = 767.4 + 63) // 64 * 64 = 768;
    # scale = (768/512 * 427/200, 427/200); centre (int(320.5), int(214.0)).
    ((640, 427), 512, 1.0, 1.0, (768, 512), (320, 214), (768 / 512 * 427 / 200, 2.135)),
    # the same image in portrait
    ((427, 640), 512, 1.0, 1.0, (512, 768), (214, 320), (2.135, 768 / 512 * 427 / 200)),
    # 640x480, scales (0.5, 1, 2): min input = (256 + 63) // 64 * 64 = 256; the long side at
    # 0.5 = (341.3 + 63) // 64 * 64 = 384; scale s multiplies both by s / 0.5.
    ((640, 480), 512, 0.5, 0.5, (384, 256), (320, 240), (384 / 256 * 480 / 200, 2.4)),
    ((640, 480), 512, 1.0, 0.5, (768, 512), (320, 240), (768 / 512 * 480 / 200, 2.4)),
    ((640, 480), 512, 2.0, 0.5, (1536, 1024), (320, 240), (1536 / 1024 * 480 / 200, 2.4)),
    # 500x375, min scale 0.75: min input (384 + 63) // 64 * 64 = 384; long side (512 + 63)
    # // 64 * 64 = 512; at scale 1 both times 1/0.75 and truncated: 682 x 512.
    ((500, 375), 512, 1.0, 0.75, (682, 512), (250, 188), (682 / 512 * 375 / 200, 1.875)),
    ((500, 375), 512, 0.75, 0.75, (512, 384), (250, 188), (512 / 384 * 375 / 200, 1.875)),
    # a 1x1-aspect image at 640
    ((300, 300), 640, 1.0, 1.0, (640, 640), (150, 150), (1.5, 1.5)),
])
def test_multi_scale_size(image_size, input_size, scale, min_scale, size, center, scale_vec):
    got_size, got_center, got_scale = get_multi_scale_size(image_size, input_size, scale,
                                                           min_scale)
    assert got_size == size
    np.testing.assert_array_equal(got_center, center)
    np.testing.assert_allclose(got_scale, scale_vec, rtol=1e-12)


def test_resize_align_and_back_projection():
    image = np.zeros((427, 640, 3), dtype=np.uint8)
    image[200:230, 300:340] = 255
    resized, center, scale = resize_align_multi_scale(image, 512, 1.0, 1.0)
    assert resized.shape == (512, 768, 3)
    # zoom 512/427, the 768-wide output covers 640.5 image pixels centred on x = 320
    zoom = 512 / 427
    rows, columns = np.nonzero(resized[..., 0] > 127)
    # first white column 300, last white row 229 (pixel indices of the block)
    assert columns.min() == pytest.approx(384 + (300 - 320) * zoom, abs=0.6)
    assert rows.max() == pytest.approx(256 + (229 - 214) * zoom, abs=0.6)
    # back-projection: a hand-computed point, and the inverse of the forward affine
    pose = np.array([[[384.0, 256.0, 0.9, 0.1], [0.0, 0.0, 0.0, 0.0]]])
    back = get_final_preds(pose, center, scale, (768, 512))
    np.testing.assert_allclose(back[0, 0], [320, 214, 0.9, 0.1], atol=1e-9)
    np.testing.assert_allclose(back[0, 1, :2], [320 - 384 * 640.5 / 768, 214 - 256 * 640.5 / 768],
                               atol=1e-9)
    points = np.array([[10.0, 20.0], [600.5, 400.25], [320.0, 0.0]])
    forward = affine_transform_points(points, get_affine_transform(center, scale, 0, (768, 512)))
    poses = np.concatenate([forward, np.ones((3, 1))], axis=1)[None]
    np.testing.assert_allclose(get_final_preds(poses, center, scale, (768, 512))[0, :, :2],
                               points, atol=1e-9)
    assert get_final_preds(np.zeros((0, J, 4)), center, scale, (768, 512)).shape == (0, J, 4)


# ---------------------------------------------------------------------------------------------
# Round trip through the whole pipeline with a fake model that looks at the image.

# Joint offsets from the person's reference point, in image pixels. Each left/right pair is
# mirror-symmetric and its "left" joint (odd index, COCO) has the larger x, as for a person
# facing the camera, so a mirrored image shows the same person with left and right swapped.
PAIR_OFFSETS = ((12, -58), (24, -52), (35, -25), (50, 0), (60, 25), (22, 20), (25, 55), (28, 90))
NOSE_OFFSET = (0, -50)
BLOB_RADIUS = 6


def person_keypoints(reference_x, reference_y):
    points = np.zeros((J, 2))
    points[0] = NOSE_OFFSET
    for pair, (dx, dy) in enumerate(PAIR_OFFSETS):
        points[2 * pair + 1] = (dx, dy)
        points[2 * pair + 2] = (-dx, dy)
    return points + (reference_x, reference_y)


def group_code(group):
    """Green value that marks the blobs of joint group (0 nose, 1.. the pairs)."""
    return 25 * (group + 1)


def draw_person(width, height, keypoints):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    rows, columns = np.mgrid[0:height, 0:width]
    for joint, (x, y) in enumerate(keypoints):
        disc = (columns - x) ** 2 + (rows - y) ** 2 <= BLOB_RADIUS ** 2
        image[disc, 0] = 255
        image[disc, 1] = group_code((joint + 1) // 2)
    return image


def gaussian_maps(centers, height, width, sigma):
    """(J, height, width) Gaussians with peak 1 at float centres (J, 2)."""
    rows = torch.arange(height, dtype=torch.float32)[None, :, None]
    columns = torch.arange(width, dtype=torch.float32)[None, None, :]
    x = torch.as_tensor(centers[:, 0], dtype=torch.float32)[:, None, None]
    y = torch.as_tensor(centers[:, 1], dtype=torch.float32)[:, None, None]
    return torch.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))


class BlobModel:
    """Finds the coloured blobs in the (normalised) input and answers like HigherHRNet would.

    Output 0: (1, 2J, h/4, w/4), J Gaussian heatmaps then J constant tag maps; output 1:
    (1, J, h/2, w/2) heatmaps. A joint at input pixel x is drawn at (x + 0.5) * f - 0.5 on a map
    with f = 1/4 or 1/2 (pixel centres aligned, as bilinear resizing without align_corners).
    Of a pair, the blob with the larger x is the "left" joint.
    """

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        mean = torch.as_tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.as_tensor(IMAGENET_STD)[:, None, None]
        pixels = ((images[0].cpu() * std + mean) * 255.0).numpy()
        height, width = pixels.shape[1:]
        centers = np.zeros((J, 2))
        for group in range(len(PAIR_OFFSETS) + 1):
            mask = (pixels[0] > 250) & (np.abs(pixels[1] - group_code(group)) < 6)
            rows, columns = np.nonzero(mask)
            assert rows.size, "the fake model did not find a blob"
            if group == 0:
                centers[0] = columns.mean(), rows.mean()
                continue
            right_side = columns > (columns.min() + columns.max()) / 2
            centers[2 * group - 1] = columns[right_side].mean(), rows[right_side].mean()
            centers[2 * group] = columns[~right_side].mean(), rows[~right_side].mean()
        quarter = gaussian_maps((centers + 0.5) / 4 - 0.5, height // 4, width // 4, 1.0)
        half = gaussian_maps((centers + 0.5) / 2 - 0.5, height // 2, width // 2, 2.0)
        tags = torch.full_like(quarter, 0.7)
        return [torch.cat([quarter, tags])[None].to(images.device), half[None].to(images.device)]


GROUPING = GroupingParams(num_joints=J, detection_threshold=0.1, nms_kernel=5, nms_padding=2)


@pytest.mark.parametrize("scales, flip, project2image, tolerance", [
    ((1.0,), False, True, 1.5),
    ((1.0,), True, True, 1.5),
    ((0.5, 1.0), False, True, 1.5),
    ((0.5, 1.0), True, True, 1.5),
    # decoded on the 1/2-resolution map: one map pixel is two input pixels
    ((1.0,), True, False, 2.0),
    ((0.5, 1.0), True, False, 2.0),
])
def test_pipeline_round_trip(scales, flip, project2image, tolerance):
    keypoints = person_keypoints(150, 120)
    image = draw_person(320, 240, keypoints)
    model = BlobModel()
    params = BottomUpTestParams(input_size=256, scale_factors=scales, flip_test=flip,
                                flip_index=FLIP_INDEX, project2image=project2image)
    poses, scores = infer_bottom_up(model, image, params, GROUPING)
    assert model.calls == len(scales) * (2 if flip else 1)
    assert poses.shape == (1, J, 3 + (2 if flip else 1))
    error = np.abs(poses[0, :, :2] - keypoints).max()
    assert error < tolerance, (error, poses[0, :, :2] - keypoints)
    assert 0.5 < scores[0] <= 1.0
    np.testing.assert_allclose(poses[0, :, 3:], 0.7, atol=1e-6)


def test_flip_with_a_wrong_index_breaks_the_round_trip():
    # Control for the test above: without re-indexing, the mirrored pass puts left joints on
    # the right, each averaged map has two half peaks and the decoded joints move.
    keypoints = person_keypoints(150, 120)
    image = draw_person(320, 240, keypoints)
    params = BottomUpTestParams(input_size=256, flip_test=True, flip_index=tuple(range(J)),
                                project2image=True)
    poses, _ = infer_bottom_up(BlobModel(), image, params, GROUPING)
    assert np.abs(poses[0, :, :2] - keypoints).max() > 10


def test_multi_scale_maps_layout():
    image = draw_person(320, 240, person_keypoints(150, 120))
    params = BottomUpTestParams(input_size=256, scale_factors=(0.5, 1.0), flip_test=True,
                                flip_index=FLIP_INDEX, project2image=False)
    maps = multi_scale_maps(BlobModel(), image, params, J)
    # not projected: the first (largest) scale's 1/2-resolution map; the scale-1 input is
    # 384 x 256, so 192 x 128; tags of scale 1 only, original and flipped
    assert maps.heatmaps.shape == (1, J, 128, 192)
    assert len(maps.tags) == 2 and all(t.shape == (1, J, 128, 192) for t in maps.tags)
    assert maps.heatmap_size == (192, 128)
    # the reference keeps the centre/scale of its last (smallest) resize
    _, _, smallest = get_multi_scale_size((320, 240), 256, 0.5, 0.5)
    np.testing.assert_array_equal(maps.scale, smallest)
    fixed = multi_scale_maps(BlobModel(), image,
                             BottomUpTestParams(input_size=256, scale_factors=(0.5, 1.0),
                                                backproject_with_base_scale=True), J)
    _, _, base = get_multi_scale_size((320, 240), 256, 1.0, 0.5)
    np.testing.assert_array_equal(fixed.scale, base)


def test_parameter_errors():
    with pytest.raises(ValueError, match="1.0"):
        BottomUpTestParams(scale_factors=(0.5, 2.0))
    with pytest.raises(ValueError, match="flip_index"):
        BottomUpTestParams(flip_test=True)
    with pytest.raises(ValueError, match="tags"):
        BottomUpTestParams(with_ae=(False, False))
    BottomUpTestParams(scale_factors=(0.5,))     # one scale other than 1 is fine


def test_coco_results_evaluate_to_full_ap():
    keypoints = person_keypoints(150, 120)
    image = draw_person(320, 240, keypoints)
    params = BottomUpTestParams(input_size=256, flip_test=True, flip_index=FLIP_INDEX,
                                project2image=True)
    poses, scores = infer_bottom_up(BlobModel(), image, params, GROUPING)
    results = coco_keypoint_results(poses, scores, image_id=7)
    assert len(results) == 1
    entry = results[0]
    assert set(entry) == {"image_id", "category_id", "keypoints", "score", "bbox"}
    assert entry["image_id"] == 7 and entry["category_id"] == 1
    assert len(entry["keypoints"]) == 3 * J
    assert all(type(v) is float for v in entry["keypoints"] + entry["bbox"] + [entry["score"]])
    np.testing.assert_allclose(entry["keypoints"][2::3], poses[0, :, 2])

    ground_truth = [float(v) for point in keypoints for v in (*point, 2)]
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": 7, "width": 320, "height": 240}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0,
                         "keypoints": ground_truth, "num_keypoints": J,
                         "bbox": [*low, *(high - low)], "area": float(np.prod(high - low))}],
    }
    coco_gt.createIndex()
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "keypoints")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image = draw_person(320, 240, person_keypoints(150, 120))
    params = BottomUpTestParams(input_size=256, scale_factors=(0.5, 1.0), flip_test=True,
                                flip_index=FLIP_INDEX, project2image=True)
    cpu_poses, cpu_scores = infer_bottom_up(BlobModel(), image, params, GROUPING)
    gpu_poses, gpu_scores = infer_bottom_up(BlobModel(), image, params, GROUPING,
                                            device="cuda")
    np.testing.assert_allclose(gpu_poses, cpu_poses, atol=1e-3)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-5)


class MixingModel:
    """A deterministic stand-in whose outputs depend on the input: fixed random 1x1 mixes of the
    average-pooled image plus a horizontal ramp (so a mirrored input does not give mirrored
    outputs), as HigherHRNet's [(1, 2J, h/4, w/4), (1, J, h/2, w/2)]."""

    def __init__(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.quarter_mix = torch.randn(2 * J, 3, generator=generator)
        self.half_mix = torch.randn(J, 3, generator=generator)

    def __call__(self, images):
        outputs = []
        for mix, factor in ((self.quarter_mix, 4), (self.half_mix, 2)):
            pooled = torch.nn.functional.avg_pool2d(images, factor)
            ramp = torch.linspace(0.0, 1.0, pooled.shape[3])
            outputs.append(torch.einsum("oc,nchw->nohw", mix, pooled) + ramp)
        return outputs


@pytest.mark.parametrize("flip, project2image", [
    (False, False), (True, False), (False, True), (True, True)])
def test_single_scale_aggregation_equals_the_single_scale_path(flip, project2image):
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    params = BottomUpTestParams(input_size=128, scale_factors=(1.0,), flip_test=flip,
                                flip_index=FLIP_INDEX, project2image=project2image)
    model = MixingModel()
    maps = multi_scale_maps(model, image, params, J)

    # By hand: one resize, one forward (two with flip), (orig + flip) / 2, tags stacked.
    resized, center, scale = resize_align_multi_scale(image, 128, 1.0, 1.0)
    assert resized.shape == (128, 192, 3)
    heatmaps, tags = multi_stage_outputs(model, normalize_image(resized)[None], params, J,
                                         (192, 128) if project2image else None)
    assert len(heatmaps) == len(tags) == (2 if flip else 1)
    expected_heatmaps = (heatmaps[0] + heatmaps[1]) / 2.0 if flip else heatmaps[0]
    expected_tags = torch.stack(tags, dim=4)
    size = (128, 192) if project2image else (64, 96)
    assert maps.heatmaps.shape == (1, J) + size
    assert len(maps.tags) == len(tags)
    assert all(component.shape == (1, J) + size for component in maps.tags)
    if flip and project2image:
        # The pipeline averages the two passes before projecting them (resizing is linear).
        torch.testing.assert_close(maps.heatmaps, expected_heatmaps, rtol=0, atol=1e-6)
    else:
        assert torch.equal(maps.heatmaps, expected_heatmaps)
    assert torch.equal(torch.stack(maps.tags, dim=4), expected_tags)
    assert maps.heatmap_size == size[::-1]
    np.testing.assert_array_equal(maps.center, center)
    np.testing.assert_array_equal(maps.scale, scale)
    if flip:
        # the flipped pass does count: the average is not the original pass alone
        assert not torch.equal(maps.heatmaps, heatmaps[0])

    # The whole pipeline is the grouping of those maps, mapped back with that centre/scale.
    grouping = GroupingParams(num_joints=J, detection_threshold=0.1, nms_kernel=5,
                              nms_padding=2)
    poses, scores = infer_bottom_up(model, image, params, grouping)
    grouped = group_keypoints(maps.heatmaps, expected_tags, grouping)[0]
    assert len(grouped.poses) > 0
    np.testing.assert_array_equal(poses, get_final_preds(grouped.poses, center, scale,
                                                         size[::-1]))
    np.testing.assert_array_equal(scores, grouped.scores)
