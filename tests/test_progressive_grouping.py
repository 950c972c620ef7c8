"""HAE's progressive associative decoding, the TEST.GROUPING switch, and tag-map rendering."""

import numpy as np
import pytest
import torch
from torch import nn

from grouping_scenes import as_batch, random_positions, render_people
from hrpose.config import load_config
from hrpose.config.update import ConfigError
from hrpose.engine import bottomup as engine
from hrpose.postprocess import bottomup_inference
from hrpose.postprocess.ae_grouping import (
    GroupedPoses,
    GroupingParams,
    group_keypoints,
    top_k_candidates,
)
from hrpose.postprocess.bottomup import infer_bottom_up
from hrpose.postprocess.progressive_grouping import (
    count_isolated_keypoints,
    get_grouping_function,
    group_keypoints_progressive,
    isolated_keypoints_per_image,
    progressive_match,
)
from hrpose.postprocess.tag_maps import (
    infer_bottom_up_with_maps,
    render_heatmap,
    render_tag_map,
    warp_to_image,
)

J = 17
SYNTHETIC_HIGHER_HRNET = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml"
# COCO numbering: the hip the fixed order visits right after the head and shoulders.
LEFT_HIP = 11


def person_joints(pose):
    """{joint: (x, y)} of the joints a decoded pose (J, C) holds."""
    return {j: (int(pose[j, 0]), int(pose[j, 1])) for j in np.flatnonzero(pose[:, 2] > 0)}


def truth_joints(positions, peaks, person):
    return {j: (int(positions[person, j, 0]), int(positions[person, j, 1]))
            for j in range(J) if peaks[person, j] > 0}


def drifting_people(tag_dim=1):
    """Two people whose tags drift along the body (the case HAE targets).

    Per person with base tag b: head and shoulders (0-6) carry b, the left hip b + 1.15 and all
    other joints b + 0.45. The fixed order meets the left hip while the person's mean tag is
    still b (distance 1.15 >= 1: a new one-joint person, which no later joint joins: they are
    within 0.5 of the person and 0.7 from the hip). Progressive decoding takes the left hip
    last, when the mean is b + 9 * 0.45 / 16 (distance 0.90 < 1).
    With tag_dim 2 the second component is the person's constant b (no drift).
    """
    rng = np.random.default_rng(11)
    positions = random_positions(rng, 2, 40, 48)
    bases = np.array([0.0, 5.0])
    drift = np.full(J, 0.45)
    drift[:7] = 0.0
    drift[LEFT_HIP] = 1.15
    first = bases[:, None] + drift[None, :]
    if tag_dim == 1:
        joint_tags = first[..., None]
    else:
        joint_tags = np.stack([first, np.repeat(bases[:, None], J, axis=1)], axis=2)
    heatmaps, tags = render_people(positions, joint_tags, 40, 48)
    return positions, heatmaps, tags


@pytest.mark.parametrize("tag_dim", [1, 2])
def test_recovers_every_person_from_ideal_maps(tag_dim):
    rng = np.random.default_rng(5)
    num_people = 5
    positions = random_positions(rng, num_people, 56, 64)
    base = np.arange(num_people, dtype=np.float64) * 3.0
    joint_tags = np.repeat(base[:, None, None], J, axis=1).repeat(tag_dim, axis=2)
    if tag_dim == 2:
        joint_tags[..., 1] += 0.1  # the flipped pass's tags differ a little from the original
    peaks = np.ones((num_people, J))
    peaks[1, 0] = 0          # person 1 lacks the seed type (nose): seeded by its left eye
    peaks[2, [5, 9, 16]] = 0
    peaks[3, 4] = 0.6
    heatmaps, tags = render_people(positions, joint_tags, 56, 64, peaks)

    params = GroupingParams(num_joints=J, detection_threshold=0.1, adjust=False, refine=False)
    grouped = group_keypoints_progressive(*as_batch(heatmaps, tags), params)
    assert len(grouped) == 1
    poses = grouped[0].poses
    assert poses.shape == (num_people, J, 3 + tag_dim) and poses.dtype == np.float32
    found = sorted((person_joints(pose) for pose in poses), key=lambda d: sorted(d.items()))
    truth = sorted((truth_joints(positions, peaks, p) for p in range(num_people)),
                   key=lambda d: sorted(d.items()))
    assert found == truth
    for pose in poses:  # each person carries one tag
        present = pose[:, 2] > 0
        assert np.ptp(pose[present, 3:], axis=0).max() == 0
    assert count_isolated_keypoints(poses, 0.1) == 0

    # On ideal maps the visiting order does not matter: with adjust and refine the result is
    # exactly the fixed order's.
    full = GroupingParams(num_joints=J, detection_threshold=0.1)
    progressive = group_keypoints_progressive(*as_batch(heatmaps, tags), full)[0]
    fixed = group_keypoints(*as_batch(heatmaps, tags), full)[0]
    np.testing.assert_array_equal(progressive.poses, fixed.poses)
    np.testing.assert_array_equal(progressive.scores, fixed.scores)


@pytest.mark.parametrize("tag_dim", [1, 2])
def test_progressive_order_avoids_the_isolated_keypoint_of_the_fixed_order(tag_dim):
    positions, heatmaps, tags = drifting_people(tag_dim)
    params = GroupingParams(num_joints=J, detection_threshold=0.1, adjust=False, refine=False)

    fixed = group_keypoints(*as_batch(heatmaps, tags), params)[0].poses
    assert len(fixed) == 4
    assert count_isolated_keypoints(fixed, 0.1) == 2
    isolated = [pose for pose in fixed if (pose[:, 2] > 0).sum() == 1]
    assert all(person_joints(pose).keys() == {LEFT_HIP} for pose in isolated)

    match = progressive_match(*(a[0] for a in _candidates(heatmaps, tags, params)), params)
    assert match.visit_order[0] == 0 and match.visit_order[-1] == LEFT_HIP
    assert sorted(match.visit_order) == list(range(J))
    progressive = group_keypoints_progressive(*as_batch(heatmaps, tags), params)[0].poses
    assert len(progressive) == 2
    assert count_isolated_keypoints(progressive, 0.1) == 0
    found = sorted(person_joints(pose)[0] for pose in progressive)
    assert found == sorted(tuple(int(v) for v in positions[p, 0]) for p in range(2))
    for pose in progressive:
        person = next(p for p in range(2) if person_joints(pose)[0] == tuple(positions[p, 0]))
        assert person_joints(pose) == truth_joints(positions, np.ones((2, J)), person)


def _candidates(heatmaps, tags, params):
    return top_k_candidates(*as_batch(heatmaps, tags), params)


def test_types_without_candidates_and_the_reference_crash_case():
    # Three joint types: type 0 has two people (tags 0 and 3), type 1 one candidate whose tag
    # (20) is >= 10 from every person, type 2 nothing. The reference scores the empty type 10,
    # picks it before type 1 and later fails on list.index; here empty types are never visited.
    positions = np.array([[[5, 5], [12, 5], [20, 5]], [[5, 15], [12, 15], [20, 15]]])
    joint_tags = np.array([[[0.0], [20.0], [0.0]], [[3.0], [3.0], [3.0]]])
    peaks = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    heatmaps, tags = render_people(positions, joint_tags, 24, 28, peaks)
    params = GroupingParams(num_joints=3, detection_threshold=0.1, adjust=False, refine=False)
    candidates = _candidates(heatmaps, tags, params)
    match = progressive_match(candidates.values[0], candidates.locations[0],
                              candidates.tags[0], params)
    assert match.visit_order == (0, 1)
    assert len(match.poses) == 3  # two seeded people, the far type-1 candidate on its own
    assert not match.poses[:, 2, 2].any()

    grouped = group_keypoints_progressive(*as_batch(heatmaps, tags),
                                          GroupingParams(num_joints=3, detection_threshold=0.1))
    assert grouped[0].poses.shape == (3, 3, 4) and grouped[0].scores.shape == (3,)
    assert np.isfinite(grouped[0].poses).all()


def test_empty_images_give_no_people():
    params = GroupingParams(num_joints=J, detection_threshold=0.1)
    heatmaps = torch.zeros(2, J, 16, 20)
    heatmaps[1] = 0.05  # peaks, but none above the detection threshold
    tags = torch.zeros(2, J, 16, 20, 2)
    grouped = group_keypoints_progressive(heatmaps, tags, params)
    assert len(grouped) == 2
    for image in grouped:
        assert image.poses.shape == (0, J, 5) and image.poses.dtype == np.float32
        assert image.scores.shape == (0,)
    assert isolated_keypoints_per_image(grouped, 0.1).tolist() == [0, 0]
    # A map smaller than max_num_people pixels, with one shared tag channel.
    tiny = group_keypoints_progressive(torch.rand(1, J, 3, 3), torch.rand(1, 1, 3, 3), params)
    assert tiny[0].poses.shape[1:] == (J, 4)


def test_ignore_too_much_stops_once_the_people_limit_is_reached():
    positions, heatmaps, tags = drifting_people()
    params = GroupingParams(num_joints=J, max_num_people=2, detection_threshold=0.1,
                            ignore_too_much=True, adjust=False, refine=False)
    candidates = _candidates(heatmaps, tags, params)
    match = progressive_match(candidates.values[0], candidates.locations[0],
                              candidates.tags[0], params)
    assert match.visit_order == (0,)
    assert match.poses.shape == (2, J, 4)
    assert count_isolated_keypoints(match.poses, 0.1) == 2


def test_count_isolated_keypoints():
    poses = np.zeros((4, J, 4), dtype=np.float32)
    poses[0, :5, 2] = 0.9          # five joints
    poses[1, 3, 2] = 0.7           # one joint: isolated
    poses[2, [1, 2], 2] = [0.8, 0.05]  # one joint above 0.1: isolated
    # poses[3]: no joint at all, not counted
    assert count_isolated_keypoints(poses, 0.1) == 2
    assert count_isolated_keypoints(poses, 0.01) == 1
    assert count_isolated_keypoints(np.zeros((0, J, 4)), 0.1) == 0
    grouped = [GroupedPoses(poses, np.zeros(4)), GroupedPoses(poses[:1], np.zeros(1))]
    assert isolated_keypoints_per_image(grouped, 0.1).tolist() == [2, 0]


def test_config_selects_the_grouping(repo_root):
    path = str(repo_root / SYNTHETIC_HIGHER_HRNET)
    default = load_config(path)
    assert default.TEST.GROUPING == "fixed"
    assert bottomup_inference.grouping_function(default) is group_keypoints
    cfg = load_config(path, ["TEST.GROUPING", "progressive"])
    assert bottomup_inference.grouping_function(cfg) is group_keypoints_progressive
    pipeline, grouping = bottomup_inference.test_params(cfg, list(range(J)))
    assert grouping.num_joints == J and pipeline.flip_test
    assert get_grouping_function("progressive") is group_keypoints_progressive
    with pytest.raises(ValueError, match="unknown grouping"):
        get_grouping_function("greedy")
    with pytest.raises(ConfigError, match="TEST.GROUPING.*'fixed', 'progressive'"):
        load_config(path, ["TEST.GROUPING", "greedy"])
    with pytest.raises(ConfigError, match="TEST.GROUPING.*top-down"):
        load_config("", ["MODEL.NAME", "pose_hrnet", "TEST.GROUPING", "progressive"])


class StubHigherHRNet(nn.Module):
    """Returns the drifting people's maps for a 256 x 256 input, as HigherHRNet lays them out:
    [(1, 2J, 64, 64) zero heatmaps + tags, (1, J, 128, 128) heatmaps]."""

    def __init__(self, people_tags):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the stub a device
        rng = np.random.default_rng(2)
        positions = random_positions(rng, 2, 60, 60) * 2 + 4  # 1/2 resolution, spread out
        self.positions = positions
        _, tags = render_people(positions // 2, people_tags, 64, 64)
        heatmaps, _ = render_people(positions, people_tags, 128, 128)
        quarter = torch.cat([torch.zeros(1, J, 64, 64), torch.from_numpy(tags[..., 0])[None]], 1)
        self.register_buffer("quarter_maps", quarter)
        self.register_buffer("half_maps", torch.from_numpy(heatmaps)[None] * 2.0)

    def forward(self, image):
        assert image.shape[2:] == (256, 256)
        return [self.quarter_maps + self.anchor, self.half_maps + self.anchor]


class FakeLoader(list):
    def __init__(self, items, flip_index):
        super().__init__(items)
        self.dataset = type("Dataset", (), {"flip_index": flip_index})()


def drift_tags():
    drift = np.full(J, 0.45)
    drift[:7] = 0.0
    drift[LEFT_HIP] = 1.15
    return np.stack([drift, drift + 5.0])[..., None]


def test_validation_loop_uses_the_configured_grouping(repo_root):
    path = str(repo_root / SYNTHETIC_HIGHER_HRNET)
    opts = ["TEST.FLIP_TEST", "False", "TEST.PROJECT2IMAGE", "False", "TEST.REFINE", "False"]
    model = StubHigherHRNet(drift_tags())
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    loader = FakeLoader([(image, {"image_id": 7})], list(range(J)))
    counts = {}
    for grouping in ("fixed", "progressive"):
        cfg = load_config(path, opts + ["TEST.GROUPING", grouping])
        output = engine.run_inference(cfg, model, loader, torch.device("cpu"))
        assert output["num_images"] == 1
        assert all(result["image_id"] == 7 for result in output["results"])
        counts[grouping] = len(output["results"])
    assert counts == {"fixed": 4, "progressive": 2}

    pipeline, grouping_params = bottomup_inference.test_params(cfg, list(range(J)))
    reference = infer_bottom_up(model, image, pipeline, grouping_params)
    with_maps = infer_bottom_up_with_maps(model, image, pipeline, grouping_params, "fixed")
    np.testing.assert_array_equal(with_maps.prediction.poses, reference.poses)
    np.testing.assert_array_equal(with_maps.prediction.scores, reference.scores)
    assert with_maps.maps.heatmaps.shape == (1, J, 128, 128)
    assert len(with_maps.maps.tags) == 1 and with_maps.maps.tags[0].shape == (1, J, 128, 128)
    progressive = infer_bottom_up_with_maps(model, image, pipeline, grouping_params,
                                            "progressive")
    assert len(progressive.prediction.poses) == 2

    tag_image = render_tag_map(with_maps.maps.heatmaps, with_maps.maps.tags)
    heat_image = render_heatmap(with_maps.maps.heatmaps)
    assert tag_image.shape == heat_image.shape == (128, 128, 3)
    warped = warp_to_image(tag_image, with_maps.maps.center, with_maps.maps.scale,
                           with_maps.maps.heatmap_size, (256, 256))
    assert warped.shape == (256, 256, 3) and warped.dtype == np.uint8
    assert warped.any()


def test_render_tag_map():
    positions = np.array([[[6, 6]], [[20, 10]]])
    heatmaps, tags = render_people(positions, np.array([[[0.0]], [[1.0]]]), 16, 28, sigma=2.0)
    _, swapped = render_people(positions, np.array([[[1.0]], [[0.0]]]), 16, 28, sigma=2.0)
    image = render_tag_map(heatmaps, tags)
    assert image.shape == (16, 28, 3) and image.dtype == np.uint8
    other = render_tag_map(heatmaps, swapped)
    assert not np.array_equal(image, other)
    # The two people get the two ends of the colormap, swapped with the tags.
    np.testing.assert_array_equal(image[6, 6], other[10, 20])
    assert not np.array_equal(image[6, 6], image[10, 20])
    assert not image[0, 27].any()  # far from both people: heatmap below threshold, black
    # Batch axes, a tag column, one joint type, torch input.
    batched = render_tag_map(torch.from_numpy(heatmaps)[None],
                             torch.from_numpy(np.concatenate([tags, tags + 3], axis=3))[None],
                             joint=0, component=1)
    np.testing.assert_array_equal(batched, image)
    assert not render_tag_map(np.zeros((1, 5, 5)), np.zeros((1, 5, 5))).any()
    with pytest.raises(ValueError, match="do not fit"):
        render_tag_map(heatmaps, np.zeros((1, 4, 4)))
    heat = render_heatmap(heatmaps)
    assert heat.shape == (16, 28, 3) and heat.dtype == np.uint8
    assert not np.array_equal(heat[6, 6], heat[0, 27])
