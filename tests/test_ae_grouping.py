"""Associative-embedding grouping: ideal maps, thresholds, cost, adjust, refine, parity."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from grouping_scenes import as_batch, random_positions, render_people
from hrpose.config import load_config
from hrpose.config.update import ConfigError
from hrpose.postprocess import ae_grouping, bottomup_inference
from hrpose.postprocess.ae_grouping import (
    REFERENCE_JOINT_ORDER,
    GroupingParams,
    adjust_poses,
    default_joint_order,
    group_keypoints,
    match_by_tag,
    matching_cost,
    pose_scores,
    refine_pose,
    tag_components,
    top_k_candidates,
    window_max,
)
from hrpose.postprocess.assignment import munkres_assignment
from reference_grouping import munkres_pairs, reference_group, scipy_pairs

J = 17


def assert_every_person_recovered(poses, positions, person_tags):
    """poses (P, J, 3 + D) are the people at positions (P, J, 2) whose tags are person_tags (P, D),
    each once: exact positions, joint values 1, the person's tags (the first picks the person)."""
    assert poses.shape == (len(positions), J, 3 + person_tags.shape[1])
    recovered = []
    for pose in poses:
        person = int(np.argmin(np.abs(person_tags[:, 0] - pose[0, 3])))
        recovered.append(person)
        np.testing.assert_array_equal(pose[:, :2], positions[person])
        np.testing.assert_array_equal(pose[:, 2], 1.0)
        np.testing.assert_allclose(pose[:, 3:], np.tile(person_tags[person], (J, 1)), rtol=0,
                                   atol=1e-6)
    assert sorted(recovered) == list(range(len(positions)))


def test_default_joint_order():
    assert default_joint_order(17) == REFERENCE_JOINT_ORDER
    assert default_joint_order(14) == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13)
    assert default_joint_order(12) == tuple(range(12))
    with pytest.raises(ValueError, match="nms_kernel"):
        GroupingParams(num_joints=17, nms_kernel=5, nms_padding=1)
    with pytest.raises(ValueError, match="permutation"):
        GroupingParams(num_joints=3, joint_order=(0, 1, 1))


def test_recovers_every_person_from_ideal_maps():
    rng = np.random.default_rng(3)
    height, width, num_people = 56, 64, 6
    positions = random_positions(rng, num_people, height, width)
    person_tags = rng.permutation(np.arange(num_people) * 2.0 - 5.0) + rng.uniform(-0.2, 0.2)
    heatmaps, tags = render_people(positions, person_tags, height, width)
    params = GroupingParams(num_joints=J, detection_threshold=0.1, nms_kernel=5, nms_padding=2,
                            adjust=False, refine=False)
    (poses, scores), = group_keypoints(*as_batch(heatmaps, tags), params)
    assert_every_person_recovered(poses, positions, person_tags[:, None])
    np.testing.assert_array_equal(scores, 1.0)

    # With adjust, a symmetric peak ties on both axes: -0.25 then +0.5.
    adjusted_params = GroupingParams(num_joints=J, detection_threshold=0.1, nms_kernel=5,
                                     nms_padding=2, adjust=True, refine=True)
    (adjusted, _), = group_keypoints(*as_batch(heatmaps, tags), adjusted_params)
    np.testing.assert_array_equal(adjusted[:, :, :2], poses[:, :, :2] + 0.25)


def test_detection_threshold_drops_weak_joints():
    positions = np.stack([np.stack([np.arange(J) * 3 + 4, np.full(J, 10)], axis=1)])
    peaks = np.ones((1, J))
    peaks[0, 3] = 0.08
    heatmaps, tags = render_people(positions, [0.0], 24, 60, peaks)
    batch = as_batch(heatmaps, tags)
    strict = GroupingParams(num_joints=J, detection_threshold=0.1, adjust=False, refine=False)
    (poses, scores), = group_keypoints(*batch, strict)
    assert poses.shape[0] == 1
    np.testing.assert_array_equal(poses[0, 3], 0.0)
    assert np.count_nonzero(poses[0, :, 2]) == J - 1
    assert scores[0] == pytest.approx((J - 1) / J)
    loose = GroupingParams(num_joints=J, detection_threshold=0.05, adjust=False, refine=False)
    (poses, scores), = group_keypoints(*batch, loose)
    np.testing.assert_allclose(poses[0, 3, :3], [13, 10, 0.08], rtol=1e-6)
    assert scores[0] == pytest.approx((J - 1 + 0.08) / J)


def test_tags_farther_than_threshold_are_never_merged():
    # Person A has the first nine joint types of the visiting order, B the other eight, so
    # the Hungarian step would happily give B's joints to A; only the threshold separates them.
    order = REFERENCE_JOINT_ORDER
    positions = np.zeros((2, J, 2), dtype=np.int64)
    positions[0, :, 0], positions[0, :, 1] = np.arange(J) * 3 + 4, 8
    positions[1, :, 0], positions[1, :, 1] = np.arange(J) * 3 + 4, 24
    peaks = np.zeros((2, J))
    peaks[0, list(order[:9])] = 1.0
    peaks[1, list(order[9:])] = 1.0
    heatmaps, tags = render_people(positions, [0.0, 1.5], 32, 60, peaks)
    batch = as_batch(heatmaps, tags)
    params = GroupingParams(num_joints=J, detection_threshold=0.1, tag_threshold=1.0,
                            adjust=False, refine=False)
    (poses, _), = group_keypoints(*batch, params)
    assert poses.shape[0] == 2
    first, second = poses
    np.testing.assert_array_equal(first[list(order[:9]), 1], 8)
    np.testing.assert_array_equal(first[list(order[9:]), 2], 0)
    np.testing.assert_array_equal(second[list(order[9:]), 1], 24)
    np.testing.assert_array_equal(second[list(order[:9]), 2], 0)
    # The same maps with a looser threshold merge into one person: the threshold is what acts.
    loose = GroupingParams(num_joints=J, detection_threshold=0.1, tag_threshold=2.0,
                           adjust=False, refine=False)
    (merged, _), = group_keypoints(*batch, loose)
    assert merged.shape[0] == 1


def test_matching_cost_formula():
    candidate_tags = np.array([[0.1], [0.6], [1.7], [2.5]])
    values = np.array([0.9, 0.5, 0.3, 0.7])
    person_tags = np.array([[0.0], [1.5]], dtype=np.float32)
    cost, distances = matching_cost(candidate_tags, values, person_tags, use_detection_val=True)
    expected_distances = np.array([[0.1, 1.4], [0.6, 0.9], [1.7, 0.2], [2.5, 1.0]])
    np.testing.assert_allclose(distances, expected_distances, atol=1e-12)
    # round(distance) * 100 - value; NumPy rounds half to even (2.5 -> 2); two padding columns.
    expected = np.array([[0 - 0.9, 100 - 0.9, 1e10, 1e10],
                         [100 - 0.5, 100 - 0.5, 1e10, 1e10],
                         [200 - 0.3, 0 - 0.3, 1e10, 1e10],
                         [200 - 0.7, 100 - 0.7, 1e10, 1e10]])
    np.testing.assert_allclose(cost, expected, atol=1e-12)
    plain, _ = matching_cost(candidate_tags, values, person_tags, use_detection_val=False)
    np.testing.assert_allclose(plain[:, :2], expected_distances, atol=1e-12)
    assert plain.shape == (4, 4)


def _two_joint_case(use_detection_val):
    """Joint 0: one candidate, tag 0. Joint 1: a close weak one and a farther strong one."""
    values = np.array([[0.8, 0.0], [0.5, 0.9]], dtype=np.float32)
    locations = np.array([[[5, 5], [0, 0]], [[10, 3], [20, 3]]])
    tags = np.array([[[0.0], [0.0]], [[0.1], [0.3]]], dtype=np.float32)
    params = GroupingParams(num_joints=2, detection_threshold=0.1,
                            use_detection_val=use_detection_val)
    return match_by_tag(values, locations, tags, params)


def test_detection_value_decides_between_equally_rounded_tags():
    # Both candidates' distances round to 0: the cost -value prefers the stronger one, which
    # joins the person; the weaker one starts a person of its own.
    poses = _two_joint_case(use_detection_val=True)
    assert poses.shape == (2, 2, 4)
    np.testing.assert_allclose(poses[0, 1, :3], [20, 3, 0.9], rtol=1e-6)
    np.testing.assert_allclose(poses[1, 1, :3], [10, 3, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(poses[1, 0], 0)
    # Plain distances pick the closer one instead.
    poses = _two_joint_case(use_detection_val=False)
    np.testing.assert_allclose(poses[0, 1, :3], [10, 3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(poses[1, 1, :3], [20, 3, 0.9], rtol=1e-6)


def test_equal_first_tags_collide_unless_unique_ids():
    values = np.array([[0.9, 0.6]], dtype=np.float32)
    locations = np.array([[[4, 4], [12, 4]]])
    tags = np.array([[[0.5, 1.0], [0.5, 2.0]]], dtype=np.float32)
    faithful = match_by_tag(values, locations, tags, GroupingParams(num_joints=1))
    # The reference keys persons by tag[0]: the second candidate overwrites the first.
    assert faithful.shape == (1, 1, 5)
    np.testing.assert_allclose(faithful[0, 0], [12, 4, 0.6, 0.5, 2.0], rtol=1e-6)
    fixed = match_by_tag(values, locations, tags,
                         GroupingParams(num_joints=1, unique_person_ids=True))
    assert fixed.shape == (2, 1, 5)


def test_adjust_moves_a_quarter_towards_the_larger_neighbour():
    heatmaps = np.zeros((1, 7, 7), dtype=np.float32)
    heatmaps[0, 3, 3] = 1.0
    heatmaps[0, 3, 4], heatmaps[0, 3, 2] = 0.6, 0.4    # right > left: x + 0.25
    heatmaps[0, 4, 3], heatmaps[0, 2, 3] = 0.3, 0.5    # below < above: y - 0.25
    heatmaps[0, 0, 0], heatmaps[0, 0, 1] = 0.9, 0.2    # corner peak: clamped neighbours
    heatmaps[0, 1, 0] = 0.9
    poses = np.array([[[3, 3, 1.0, 0.0]], [[0, 0, 0.9, 0.0]], [[5, 5, 0.0, 0.0]]], np.float32)
    adjusted = adjust_poses(poses, heatmaps)
    np.testing.assert_array_equal(adjusted[0, 0, :2], [3 + 0.25 + 0.5, 3 - 0.25 + 0.5])
    # x: right 0.2 > left (itself, clamped) 0.9? no -> -0.25; y: below 0.9 > above 0.9? no.
    np.testing.assert_array_equal(adjusted[1, 0, :2], [0.25, 0.25])
    np.testing.assert_array_equal(adjusted[2], poses[2])    # value 0: untouched
    np.testing.assert_array_equal(adjusted[:, :, 2:], poses[:, :, 2:])


def test_refine_fills_a_missing_joint_from_the_tag_weighted_maximum():
    height, width = 40, 40
    heatmaps = np.zeros((3, height, width), dtype=np.float32)
    tags = np.full((3, height, width), 3.0, dtype=np.float32)
    heatmaps[0, 5, 5] = heatmaps[2, 5, 25] = 1.0
    tags[0], tags[2] = 1.0, 1.0
    heatmaps[1, 10, 12], heatmaps[1, 10, 13] = 0.05, 0.02    # weak joint, the person's tag
    tags[1, 8:13, 10:15] = 1.1
    heatmaps[1, 30, 5] = 0.09                             # stronger but another tag
    batch = as_batch(heatmaps, tags)
    common = dict(num_joints=3, detection_threshold=0.1)
    (plain, plain_scores), = group_keypoints(*batch, GroupingParams(refine=False, **common))
    (refined, scores), = group_keypoints(*batch, GroupingParams(refine=True, **common))
    assert plain.shape == refined.shape == (1, 3, 4)
    np.testing.assert_array_equal(plain[0, 1], 0)
    # argmax at (row 10, col 12); right neighbour 0.02 > left 0: x + 0.25; rows tie: y - 0.25.
    np.testing.assert_allclose(refined[0, 1, :3], [12.75, 10.25, 0.05], rtol=1e-6)
    np.testing.assert_array_equal(refined[0, 1, 3], 0)
    np.testing.assert_array_equal(refined[0, [0, 2]], plain[0, [0, 2]])
    # The score is taken before refine.
    np.testing.assert_allclose(scores, plain_scores)
    assert scores[0] == pytest.approx(2 / 3)
    # refine_pose alone gives the same
    np.testing.assert_array_equal(refine_pose(plain[0], heatmaps, tags), refined[0])


# ---------------------------------------------------------------------------------------------
# Against the reference decoder written out as plain loops (reference_grouping.py) on random maps.


def reference_munkres():
    """The munkres package the reference calls (HigherHRNet lib/core/group.py py_max_match), at
    the version requirements.txt pins; the test is skipped where it is not installed."""
    munkres = pytest.importorskip("munkres")
    if getattr(munkres, "__version__", None) != "1.1.4":
        pytest.skip(f"munkres {getattr(munkres, '__version__', '?')} installed, 1.1.4 needed")
    return munkres.Munkres


@pytest.mark.parametrize("case", [
    dict(),
    dict(use_detection_val=False, nms_kernel=5, nms_padding=2),
    dict(max_num_people=10, ignore_too_much=True, sparse_first_joint=True),
    dict(max_num_people=8, detection_threshold=0.3),
    dict(quantized_tags=True),
    dict(tag_dim=1, adjust=False),
    dict(assignment_solver="scipy"),
    dict(assignment_solver="scipy", quantized_tags=True),
])
def test_library_equals_plain_reference_loop(case):
    """With 'munkres' (default) against the reference's loops and munkres, with 'scipy' against
    the same loops with scipy's solver."""
    case = dict(case)
    solve = scipy_pairs if case.get("assignment_solver") == "scipy" else munkres_pairs
    if solve is munkres_pairs:
        reference_munkres()
    quantized = case.pop("quantized_tags", False)
    tag_dim = case.pop("tag_dim", 2)
    sparse_first_joint = case.pop("sparse_first_joint", False)
    rng = np.random.default_rng(len(str(case)) + 7 * quantized)
    height, width = 22, 26
    heatmaps = rng.random((J, height, width), dtype=np.float32)
    if sparse_first_joint:
        # Three seeds, so that persons pass max_num_people only at a later joint type.
        heatmaps[0] = 0
        heatmaps[0, [3, 10, 17], [4, 12, 20]] = [0.5, 0.6, 0.7]
    tags = rng.normal(scale=1.2, size=(J, height, width, tag_dim)).astype(np.float32)
    if quantized:
        # Repeated tag values exercise the reference's float person keys and ties in the cost.
        tags = np.round(tags * 2) / 2
    params = GroupingParams(num_joints=J, **{"detection_threshold": 0.1, **case})
    expected_poses, expected_scores = reference_group(heatmaps, tags, params, solve)
    (poses, scores), = group_keypoints(*as_batch(heatmaps, tags), params)
    assert poses.shape[0] > 3
    np.testing.assert_array_equal(poses, expected_poses)
    np.testing.assert_array_equal(scores, expected_scores)


def test_top_k_with_one_shared_tag_channel():
    rng = np.random.default_rng(5)
    heatmaps = torch.from_numpy(rng.random((2, J, 12, 14), dtype=np.float32))
    shared = torch.from_numpy(rng.normal(size=(2, 1, 12, 14)).astype(np.float32))
    params = GroupingParams(num_joints=J, max_num_people=5)
    candidates = top_k_candidates(heatmaps, shared, params)
    assert candidates.values.shape == (2, J, 5)
    assert candidates.tags.shape == (2, J, 5, 1)
    x, y = candidates.locations[..., 0], candidates.locations[..., 1]
    image = np.arange(2)[:, None, None]
    joint = np.arange(J)[None, :, None]
    np.testing.assert_array_equal(candidates.values, heatmaps.numpy()[image, joint, y, x])
    np.testing.assert_array_equal(candidates.tags[..., 0], shared.numpy()[image, 0, y, x])
    assert np.all(np.diff(candidates.values, axis=2) <= 0)


def test_empty_result_and_scores_shape():
    heatmaps = torch.zeros(1, J, 8, 8)
    tags = torch.zeros(1, J, 8, 8, 2)
    (poses, scores), = group_keypoints(heatmaps, tags, GroupingParams(num_joints=J))
    assert poses.shape == (0, J, 5) and poses.dtype == np.float32
    assert scores.shape == (0,)
    assert pose_scores(np.zeros((0, J, 5), np.float32)).shape == (0,)


@pytest.mark.parametrize("num_people", [2, 5, 20])
def test_recovers_every_person_with_flip_tags(num_people):
    # Two tag components per joint, as the flip test stacks them: (1, J, H, W, 2). The mirrored
    # pass gives every person a slightly different second tag.
    rng = np.random.default_rng(100 + num_people)
    height, width = 64, 72
    positions = random_positions(rng, num_people, height, width)
    first_tags = rng.permutation(num_people) * 2.0 - num_people + rng.uniform(-0.3, 0.3)
    second_tags = first_tags + rng.uniform(-0.2, 0.2, num_people)
    heatmaps, tags_first = render_people(positions, first_tags, height, width)
    _, tags_second = render_people(positions, second_tags, height, width)
    tags = np.stack([tags_first, tags_second], axis=-1)
    batch = torch.from_numpy(heatmaps)[None], torch.from_numpy(tags)[None]
    assert batch[1].shape == (1, J, height, width, 2)
    params = GroupingParams(num_joints=J, detection_threshold=0.1, tag_threshold=1.0,
                            nms_kernel=5, nms_padding=2, adjust=False, refine=False)
    (poses, scores), = group_keypoints(*batch, params)
    assert_every_person_recovered(poses, positions, np.stack([first_tags, second_tags], axis=1))
    np.testing.assert_array_equal(scores, 1.0)
    # Adjust and refine on: every joint was found, so refine has nothing to fill, and the
    # symmetric peaks tie on both axes (-0.25, then +0.5).
    full = GroupingParams(num_joints=J, detection_threshold=0.1, tag_threshold=1.0,
                          nms_kernel=5, nms_padding=2, adjust=True, refine=True)
    (adjusted, adjusted_scores), = group_keypoints(*batch, full)
    np.testing.assert_array_equal(adjusted[:, :, :2], poses[:, :, :2] + 0.25)
    np.testing.assert_array_equal(adjusted[:, :, 2:], poses[:, :, 2:])
    np.testing.assert_array_equal(adjusted_scores, scores)
    # The tag maps as two separate component maps, as the test-time pipeline keeps them.
    components = (batch[1][..., 0].clone(), batch[1][..., 1].clone())
    (separate, separate_scores), = group_keypoints(batch[0], components, full)
    np.testing.assert_array_equal(separate, adjusted)
    np.testing.assert_array_equal(separate_scores, adjusted_scores)


def test_tag_components_accepts_one_map_a_component_axis_or_a_sequence():
    maps = torch.arange(2 * 3 * 4 * 5 * 2, dtype=torch.float32).reshape(2, 3, 4, 5, 2)
    assert len(tag_components(maps[..., 0], 4)) == 1
    split = tag_components(maps, 4)
    assert len(split) == 2 and torch.equal(split[1], maps[..., 1])
    kept = tag_components([maps[..., 0], maps[..., 1].numpy()], 4)
    assert torch.equal(torch.stack(kept, dim=-1), maps)
    with pytest.raises(ValueError, match="tag maps must be"):
        tag_components([maps[..., 0], maps[:1, ..., 1]], 4)
    with pytest.raises(ValueError, match="tag maps must be"):
        tag_components(maps[0, 0, 0], 4)


def test_top_k_in_chunks_of_joints_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(5)
    heatmaps = torch.from_numpy(rng.random((2, J, 24, 20), dtype=np.float32))
    tags = torch.from_numpy(rng.random((2, J, 24, 20, 2), dtype=np.float32))
    params = GroupingParams(num_joints=J)
    whole = top_k_candidates(heatmaps, tags, params)
    monkeypatch.setattr(ae_grouping, "NMS_CHUNK_ELEMENTS", 3 * 2 * 24 * 20)
    chunked = top_k_candidates(heatmaps, tags, params)
    for expected, actual in zip(whole, chunked):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("height, width", [(23, 17), (4, 2), (1, 6)])
def test_window_max_equals_max_pool(height, width):
    rng = np.random.default_rng(height * width)
    # quantised values: plateaus and ties, negative values, as decoded maps can have
    maps = torch.from_numpy(np.round(rng.normal(size=(2, 3, height, width)) * 2) / 2)
    for padding in range(4):
        kernel = 2 * padding + 1
        assert torch.equal(window_max(maps, kernel, padding),
                           torch.nn.functional.max_pool2d(maps, kernel, 1, padding))


# Cost matrices with several optimal assignments and the pairs munkres 1.1.4
# (munkres.Munkres().compute, the solver HigherHRNet's lib/core/group.py py_max_match calls)
# returns for them; scipy's linear_sum_assignment returns another optimum for each. The last one
# is padded with 1e10 columns as the reference pads more candidates than persons.
MUNKRES_TIE_CASES = [
    ([[200.0, 200.0, 100.0], [100.0, 200.0, 0.0], [99.5, 99.5, 99.5]],
     [(0, 2), (1, 0), (2, 1)]),
    ([[200.0, 100.0, 0.0, 0.0, 200.0], [-0.5, 199.5, 199.5, -0.5, -0.5],
      [200.0, 100.0, 0.0, 200.0, 200.0]],
     [(0, 3), (1, 4), (2, 2)]),
    ([[99.5, 199.5, 199.5, 199.5], [-0.5, 99.5, 99.5, 99.5], [-0.5, -0.5, 99.5, 99.5],
      [-0.5, 199.5, 199.5, 99.5]],
     [(0, 2), (1, 3), (2, 1), (3, 0)]),
    ([[99.1, -0.9, 1e10, 1e10], [99.2, -0.8, 1e10, 1e10], [-0.7, -0.7, 1e10, 1e10],
      [-0.6, 199.4, 1e10, 1e10]],
     [(0, 1), (1, 3), (2, 0), (3, 2)]),
]


@pytest.mark.parametrize("cost, expected", MUNKRES_TIE_CASES)
def test_munkres_assignment_breaks_ties_as_munkres(cost, expected):
    rows, columns = munkres_assignment(np.array(cost))
    assert list(zip(rows.tolist(), columns.tolist())) == expected
    assert list(zip(*(a.tolist() for a in linear_sum_assignment(np.array(cost))))) != expected


def tied_cost_matrix(rng, trial):
    """Cost matrices as the grouping makes them, with many exact ties: small integers, rounded
    distances * 100 - values with repeated values, and the reference's 1e10 padding."""
    num_rows, num_columns = (int(n) for n in rng.integers(1, 16, 2))
    kind = trial % 4
    if kind == 0:
        return rng.integers(0, 4, (num_rows, num_columns)).astype(np.float64)
    if kind == 1:
        return (np.round(rng.uniform(0, 3, (num_rows, num_columns))) * 100
                - np.round(rng.random((num_rows, num_columns)) * 4) / 4)
    cost = np.round(rng.uniform(0, 3, (num_rows, num_columns))) * 100 \
        - rng.random(num_rows)[:, None]
    if kind == 3 and num_rows > num_columns:
        cost = np.concatenate(
            (cost, np.zeros((num_rows, num_rows - num_columns)) + 1e10), axis=1)
    return cost


def test_munkres_assignment_equals_munkres_on_random_tied_matrices():
    munkres = reference_munkres()
    rng = np.random.default_rng(3)
    differs_from_scipy = 0
    for trial in range(1500):
        cost = tied_cost_matrix(rng, trial)
        # munkres pads a NumPy matrix's rows in place, so wide/square ones go in as the
        # reference passes them (an array), tall unpadded ones as lists.
        reference_input = cost.tolist() if cost.shape[0] > cost.shape[1] else cost.copy()
        expected = [tuple(pair) for pair in munkres().compute(reference_input)]
        rows, columns = munkres_assignment(cost)
        assert list(zip(rows.tolist(), columns.tolist())) == expected, cost.tolist()
        scipy_rows, scipy_columns = linear_sum_assignment(cost)
        differs_from_scipy += not np.array_equal(scipy_columns, columns)
    assert differs_from_scipy > 100
    # Larger than the 62 rows and columns whose bit masks fit an int64.
    for shape in ((66, 70), (70, 64)):
        cost = rng.integers(0, 3, shape).astype(np.float64)
        reference_input = cost.tolist() if shape[0] > shape[1] else cost.copy()
        expected = [tuple(pair) for pair in munkres().compute(reference_input)]
        rows, columns = munkres_assignment(cost)
        assert list(zip(rows.tolist(), columns.tolist())) == expected


def test_munkres_assignment_edge_cases():
    rows, columns = munkres_assignment(np.zeros((0, 3)))
    assert rows.size == columns.size == 0
    rows, columns = munkres_assignment(np.array([[5.0]]))
    assert rows.tolist() == [0] and columns.tolist() == [0]
    with pytest.raises(ValueError, match="infinite or NaN"):
        munkres_assignment(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        munkres_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="assignment_solver 'greedy'"):
        GroupingParams(num_joints=J, assignment_solver="greedy")


def test_crowded_scenes_group_as_the_reference_with_munkres():
    """Whole grouping scenes (HigherHRNet's match_by_tag order, 30 people, detection value
    cost): the default solver gives the reference's persons in every scene; scipy's solver
    gives other persons in some, so the scenes do exercise ties."""
    reference_munkres()
    rng = np.random.default_rng(11)
    height, width = 24, 24
    params = GroupingParams(num_joints=J, detection_threshold=0.1, refine=False)
    scipy_params = GroupingParams(num_joints=J, detection_threshold=0.1, refine=False,
                                  assignment_solver="scipy")
    scenes_differing = 0
    for _ in range(12):
        heatmaps = rng.random((J, height, width), dtype=np.float32)
        tags = rng.normal(scale=1.5, size=(J, height, width, 2)).astype(np.float32)
        expected_poses, expected_scores = reference_group(heatmaps, tags, params)
        (poses, scores), = group_keypoints(*as_batch(heatmaps, tags), params)
        np.testing.assert_array_equal(poses, expected_poses)
        np.testing.assert_array_equal(scores, expected_scores)
        (scipy_poses, _), = group_keypoints(*as_batch(heatmaps, tags), scipy_params)
        scenes_differing += not np.array_equal(scipy_poses, poses)
    assert scenes_differing >= 3


def test_config_selects_the_assignment_solver(repo_root):
    path = str(repo_root / "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml")
    _, grouping = bottomup_inference.test_params(load_config(path), list(range(J)))
    assert grouping.assignment_solver == "munkres"
    assert grouping.solver() is munkres_assignment
    scipy_cfg = load_config(path, ["TEST.ASSIGNMENT_SOLVER", "scipy"])
    _, grouping = bottomup_inference.test_params(scipy_cfg, list(range(J)))
    assert grouping.solver() is linear_sum_assignment
    with pytest.raises(ConfigError, match="TEST.ASSIGNMENT_SOLVER.*'munkres', 'scipy'"):
        load_config(path, ["TEST.ASSIGNMENT_SOLVER", "hungarian"])
