"""The evaluation backends: hotcoco gives pycocotools' stats bit for bit, and the fallbacks."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from hrpose.config import ConfigError, load_config
from hrpose.config.update import CHOICES
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.engine import bottomup, regression, topdown
from hrpose.evaluation import (
    _cocotools,
    backends,
    evaluate_coco_keypoints,
    evaluate_crowdpose_keypoints,
)
from test_evaluation import (
    CROWDPOSE_ANNOTATIONS,
    CROWDPOSE_IMAGES,
    CROWDPOSE_PREDICTIONS,
    coco_gt_dict,
    coco_predictions,
    crowdpose_gt,
)

# Problems per randomized test (COCO's sigmas and the CrowdPose protocol), and per variant of
# the sigmas; small problems, so that every one has its own mix of corners.
NUM_SEEDS = 24
NUM_SEEDS_PER_VARIANT = 8
COCO_SIGMAS = get_keypoint_info("coco").sigmas_array
CROWDPOSE_SIGMAS = get_keypoint_info("crowdpose").sigmas_array
MPII_SIGMAS = get_keypoint_info("mpii").sigmas_array
# Crowd indices on and around crowdposetools' 0.2 / 0.8 subset edges.
CROWD_INDICES = (0.0, 0.1, 0.2, 0.5, 0.79, 0.8, 0.95)

requires_hotcoco = pytest.mark.skipif(backends.fast_backend_module() is None,
                                      reason="hotcoco is not installed")


def refuse_pycocotools(*args):
    raise AssertionError("pycocotools evaluated where hotcoco was asked for")


@pytest.fixture
def hotcoco_only(monkeypatch):
    """Make a silent fallback to pycocotools fail the test instead of passing it."""
    monkeypatch.setattr(_cocotools, "pycocotools_evaluator", refuse_pycocotools)


def both_backends(evaluate, monkeypatch, *args, **kwargs):
    """(pycocotools' stats, hotcoco's stats) of one evaluation call."""
    reference = evaluate(*args, **kwargs, backend="pycocotools")
    with monkeypatch.context() as patch:
        patch.setattr(_cocotools, "pycocotools_evaluator", refuse_pycocotools)
        fast = evaluate(*args, **kwargs, backend="hotcoco")
    return reference, fast


# ----------------------------------------------------------------------------------------------
# Randomized problems: every corner of the matching at once.


def random_person(rng, num_keypoints):
    """(joints (K, 2), visibility (K,), box) somewhere in a 640 x 480 image."""
    width, height = rng.uniform(5, 200), rng.uniform(10, 300)
    left, top = rng.uniform(0, 600), rng.uniform(0, 440)
    joints = np.column_stack([left + rng.uniform(0, width, num_keypoints),
                              top + rng.uniform(0, height, num_keypoints)])
    visibility = rng.choice([0, 1, 2], num_keypoints, p=[0.25, 0.15, 0.6])
    return joints, visibility, [left, top, width, height]


def random_annotation(rng, annotation_id, image_id, num_keypoints):
    """A GT person, now and then with the corners pycocotools treats specially: an iscrowd
    region (with or without points), num_keypoints 0 despite labelled points (ignored), no
    labelled point but num_keypoints > 0 (OKS against the doubled box), area 0, and an
    'ignore' field, which pycocotools overwrites with iscrowd."""
    joints, visibility, box = random_person(rng, num_keypoints)
    if rng.uniform() < 0.05:
        visibility[:] = 0
    num_labelled = int(np.count_nonzero(visibility))
    if rng.uniform() < 0.05:
        num_labelled = 0 if num_labelled else 3
    iscrowd = int(rng.uniform() < 0.1)
    if iscrowd and rng.uniform() < 0.7:
        visibility[:], num_labelled = 0, 0
    keypoints = np.column_stack([joints * (visibility[:, None] > 0), visibility])
    annotation = {"id": annotation_id, "image_id": image_id, "category_id": 1,
                  "iscrowd": iscrowd, "keypoints": keypoints.ravel().tolist(),
                  "num_keypoints": num_labelled, "bbox": [float(v) for v in box],
                  "area": 0.0 if rng.uniform() < 0.03 else box[2] * box[3] * rng.uniform(0.3, 0.9)}
    if rng.uniform() < 0.1:
        annotation["ignore"] = int(rng.integers(0, 2))
    return annotation, joints


def random_detections(rng, image_id, people, num_keypoints, with_boxes):
    """Jittered copies of the people at several noise levels, exact near-duplicates, false
    positives, sometimes more than 20 in an image (past maxDets), some with all keypoint scores
    0, some with an area of their own (loadRes replaces it); scores rounded to one decimal so
    that many tie. ``with_boxes`` gives every result a box unrelated to its keypoints, whose
    area loadRes then uses for the area ranges (bottom-up results carry a box)."""
    poses = []
    for joints in people:
        for _ in range(int(rng.integers(0, 4))):
            pose = joints + rng.normal(0, rng.choice([0.5, 3.0, 10.0, 30.0]), joints.shape)
            poses.append(pose)
            if rng.uniform() < 0.3:
                poses.append(pose + rng.normal(0, 1e-3, pose.shape))
    for _ in range(int(rng.integers(0, 3)) + (25 if rng.uniform() < 0.05 else 0)):
        poses.append(np.column_stack([rng.uniform(0, 640, num_keypoints),
                                      rng.uniform(0, 480, num_keypoints)]))
    results = []
    for pose in poses:
        scores = rng.uniform(0, 1, num_keypoints) * (rng.uniform() >= 0.05)
        result = {"image_id": image_id, "category_id": 1,
                  "keypoints": np.column_stack([pose, scores]).ravel().tolist(),
                  "score": float(rng.choice([round(rng.uniform(), 1), rng.uniform(), 0.5]))}
        if with_boxes:
            result["bbox"] = rng.uniform(0, 300, 4).tolist()
        if rng.uniform() < 0.1:
            result["area"] = float(rng.uniform(0, 1e4))
        results.append(result)
    return results


def random_problem(seed, num_keypoints=17, num_images=15, crowd_index=False):
    """(GT dict, results): some images without GT, annotation ids from 1 with gaps, results with
    boxes for every third seed."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    next_id = 1
    with_boxes = seed % 3 == 0
    for image_id in range(1, num_images + 1):
        image = {"id": image_id, "file_name": f"{image_id}.jpg", "width": 640, "height": 480}
        if crowd_index:
            image["crowdIndex"] = float(rng.choice(CROWD_INDICES))
        images.append(image)
        people = []
        for _ in range(0 if rng.uniform() < 0.15 else int(rng.integers(0, 7))):
            annotation, joints = random_annotation(rng, next_id, image_id, num_keypoints)
            annotations.append(annotation)
            people.append(joints)
            next_id += int(rng.integers(1, 3))
        results += random_detections(rng, image_id, people, num_keypoints, with_boxes)
    categories = [{"id": 1, "name": "person",
                   "keypoints": [f"joint{k}" for k in range(num_keypoints)]}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_gt_file(tmp_path, gt):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


@requires_hotcoco
@pytest.mark.parametrize("num_keypoints, sigmas, num_seeds", [
    (17, None, NUM_SEEDS), (17, 2.0 * COCO_SIGMAS, NUM_SEEDS_PER_VARIANT),
    (14, CROWDPOSE_SIGMAS, NUM_SEEDS_PER_VARIANT), (16, MPII_SIGMAS, NUM_SEEDS_PER_VARIANT)],
    ids=["coco-default", "coco-wide", "crowdpose-14", "mpii-format-16"])
def test_coco_protocol_is_bit_equal_on_random_problems(num_keypoints, sigmas, num_seeds,
                                                       tmp_path, monkeypatch):
    informative = 0
    for seed in range(num_seeds):
        gt, results = random_problem(seed, num_keypoints)
        reference, fast = both_backends(evaluate_coco_keypoints, monkeypatch,
                                        coco_gt_file(tmp_path, gt), results, sigmas=sigmas)
        assert fast == reference, f"seed {seed}"  # == on floats: bit-equal, not approximately
        informative += 0.0 < reference["AP"] < 1.0
    assert informative >= num_seeds // 2  # the problems are neither trivial nor hopeless


@requires_hotcoco
def test_crowdpose_protocol_is_bit_equal_on_random_problems(monkeypatch):
    subset_values = set()
    for seed in range(NUM_SEEDS):
        # A few images per problem, so that some crowd-index subsets are empty.
        gt, results = random_problem(seed, 14, num_images=4 + seed % 12, crowd_index=True)
        reference, fast = both_backends(evaluate_crowdpose_keypoints, monkeypatch, gt, results)
        assert fast == reference, f"seed {seed}"
        subset_values |= {reference[name] for name in ("AP (E)", "AP (M)", "AP (H)")}
    assert -1.0 in subset_values and len(subset_values) > 10


@requires_hotcoco
def test_crowdpose_protocol_is_bit_equal_without_results(monkeypatch):
    gt, _ = random_problem(3, 14, crowd_index=True)
    reference, fast = both_backends(evaluate_crowdpose_keypoints, monkeypatch, gt, [])
    assert fast == reference


# ----------------------------------------------------------------------------------------------
# The hand-made problems of tests/test_evaluation.py.


@requires_hotcoco
@pytest.mark.parametrize("perturb, sigmas", [(False, None), (True, None),
                                             (True, 2.0 * COCO_SIGMAS)])
def test_coco_test_problems_are_bit_equal(perturb, sigmas, tmp_path, monkeypatch):
    path = coco_gt_file(tmp_path, coco_gt_dict())
    reference, fast = both_backends(evaluate_coco_keypoints, monkeypatch, path,
                                    coco_predictions(perturb), sigmas=sigmas)
    assert fast == reference


@requires_hotcoco
@pytest.mark.parametrize("num_images", [5, 3])  # all five subsets' images; no hard image
def test_crowdpose_test_problems_are_bit_equal(num_images, monkeypatch):
    images = CROWDPOSE_IMAGES[:num_images]
    gt = crowdpose_gt(images, [a for a in CROWDPOSE_ANNOTATIONS if a["image_id"] <= num_images])
    predictions = [p for p, _ in CROWDPOSE_PREDICTIONS if p["image_id"] <= num_images]
    reference, fast = both_backends(evaluate_crowdpose_keypoints, monkeypatch, gt, predictions)
    assert fast == reference


@requires_hotcoco
def test_hotcoco_leaves_the_callers_results_unchanged(tmp_path, hotcoco_only):
    predictions = coco_predictions()
    before = json.dumps(predictions)
    evaluate_coco_keypoints(coco_gt_file(tmp_path, coco_gt_dict()), predictions,
                            backend="hotcoco")
    assert json.dumps(predictions) == before


# ----------------------------------------------------------------------------------------------
# Annotation id 0: the one case where hotcoco's numbers differ, so 'auto' keeps pycocotools.


def id_zero_problem():
    """One GT person with annotation id 0 and one exact detection of it."""
    gt = coco_gt_dict()
    gt["images"] = gt["images"][:1]
    gt["annotations"] = [{**gt["annotations"][0], "id": 0}]
    predictions = [p for p in coco_predictions(perturb=False) if p["image_id"] == 1]
    return gt, predictions


def test_auto_keeps_pycocotools_for_annotation_id_zero(tmp_path, caplog):
    gt, predictions = id_zero_problem()
    path = coco_gt_file(tmp_path, gt)
    with caplog.at_level(logging.INFO, logger="hrpose.evaluation.coco"):
        stats = evaluate_coco_keypoints(path, predictions, backend="auto")
    if backends.fast_backend_module() is not None:  # else the line says hotcoco is missing
        lines = [r for r in caplog.records if "TEST.EVAL_BACKEND" in r.getMessage()]
        assert len(lines) == 1 and "annotation id 0" in lines[0].getMessage()
    assert stats == evaluate_coco_keypoints(path, predictions, backend="pycocotools")
    # pycocotools' evaluateImg records the matched GT's id in dtm and accumulate counts dtm == 0
    # as unmatched: the exact detection of GT id 0 is a false positive, so AP and AR are 0.
    assert stats["AP"] == 0.0 and stats["AR"] == 0.0


@requires_hotcoco
def test_explicit_hotcoco_with_annotation_id_zero_warns_and_counts_the_match(tmp_path, caplog,
                                                                             hotcoco_only):
    gt, predictions = id_zero_problem()
    with caplog.at_level(logging.WARNING, logger="hrpose.evaluation.coco"):
        stats = evaluate_coco_keypoints(coco_gt_file(tmp_path, gt), predictions,
                                        backend="hotcoco")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "annotation id 0" in warnings[0]
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Backend choice and fallback.


@requires_hotcoco
def test_auto_and_hotcoco_choose_hotcoco_for_the_test_problems(tmp_path, caplog, hotcoco_only):
    path = coco_gt_file(tmp_path, coco_gt_dict())
    with caplog.at_level(logging.INFO, logger="hrpose.evaluation.coco"):
        for backend in ("auto", "hotcoco"):
            evaluate_coco_keypoints(path, coco_predictions(), backend=backend)
    assert not [r for r in caplog.records if "TEST.EVAL_BACKEND" in r.getMessage()]


@pytest.mark.parametrize("backend, level", [("auto", logging.INFO), ("hotcoco", logging.WARNING)])
def test_missing_hotcoco_falls_back_with_one_log_line(backend, level, tmp_path, caplog,
                                                      monkeypatch):
    monkeypatch.setattr(backends, "fast_backend_module", lambda: None)
    path = coco_gt_file(tmp_path, coco_gt_dict())
    with caplog.at_level(logging.INFO, logger="hrpose.evaluation.coco"):
        stats = evaluate_coco_keypoints(path, coco_predictions(), backend=backend)
    lines = [r for r in caplog.records if "TEST.EVAL_BACKEND" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == level
    assert "not installed" in lines[0].getMessage()
    assert stats == evaluate_coco_keypoints(path, coco_predictions(), backend="pycocotools")


def test_pycocotools_backend_never_consults_hotcoco(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(backends, "fast_backend_module", None)  # calling it would raise
    with caplog.at_level(logging.INFO, logger="hrpose.evaluation.coco"):
        evaluate_coco_keypoints(coco_gt_file(tmp_path, coco_gt_dict()), coco_predictions(),
                                backend="pycocotools")
    assert not [r for r in caplog.records if "TEST.EVAL_BACKEND" in r.getMessage()]


def test_unknown_backend_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="evaluation backend 'fast'.*'auto', 'pycocotools'"):
        evaluate_coco_keypoints(coco_gt_file(tmp_path, coco_gt_dict()), coco_predictions(),
                                backend="fast")


# ----------------------------------------------------------------------------------------------
# The config key and where the engines read it.


def test_config_key_allows_exactly_the_backends():
    assert CHOICES["TEST.EVAL_BACKEND"] == backends.EVAL_BACKENDS
    assert load_config().TEST.EVAL_BACKEND == "auto"
    assert load_config("", ["TEST.EVAL_BACKEND", "pycocotools"]).TEST.EVAL_BACKEND == "pycocotools"
    with pytest.raises(ConfigError, match="'TEST.EVAL_BACKEND'.*'faster_coco_eval'.*allowed"):
        load_config("", ["TEST.EVAL_BACKEND", "faster_coco_eval"])


def fake_dataset(dataset_name):
    coco = SimpleNamespace(dataset={"annotations": [{"id": 1}]})
    return SimpleNamespace(
        evaluation={"dataset": dataset_name, "image_set": "val", "coco": coco,
                    "gt_file": "gt.json"},
        keypoint_info=get_keypoint_info("coco"), rescorer=None)


def one_pose_predictions(paradigm):
    result = {"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.9}
    if paradigm is topdown:
        return {"poses": np.ones((1, 17, 3)), "box_scores": np.ones(1), "scales": np.ones((1, 2)),
                "centers": np.ones((1, 2)), "image_ids": np.ones(1, dtype=np.int64)}
    if paradigm is bottomup:
        return {"results": [result], "num_images": 1, "isolated": 0}
    return {"results": {name: [result] for name in regression.RESULT_SETS}, "num_images": 1}


@pytest.mark.parametrize("paradigm", [topdown, bottomup, regression],
                         ids=["topdown", "bottomup", "regression"])
@pytest.mark.parametrize("dataset_name", ["coco", "crowdpose"])
def test_engines_pass_the_config_key(paradigm, dataset_name, tmp_path, monkeypatch):
    seen = []

    def recording_evaluation(gt, results, sigmas, backend):
        seen.append(backend)
        return {"AP": 0.5}

    monkeypatch.setattr(paradigm, "evaluate_coco_keypoints", recording_evaluation)
    monkeypatch.setattr(paradigm, "evaluate_crowdpose_keypoints", recording_evaluation)
    monkeypatch.setattr(paradigm, "log_name_value_table", lambda *args: None, raising=False)
    cfg = load_config("", ["TEST.EVAL_BACKEND", "pycocotools"])
    paradigm.evaluate_predictions(cfg, fake_dataset(dataset_name),
                                  one_pose_predictions(paradigm), str(tmp_path))
    assert seen and set(seen) == {"pycocotools"}


@requires_hotcoco
def test_hotcoco_gets_pycocotools_default_sigmas_bit_for_bit(hotcoco_only):
    # hotcoco's own defaults are the literals 0.026, ..., which differ from pycocotools'
    # .26 / 10, ... in the last bit for five joints.
    from pycocotools.cocoeval import Params

    coco_gt = _cocotools.coco_from_dataset(coco_gt_dict(), logging.getLogger(__name__))
    evaluator = _cocotools.summarised_keypoint_eval(coco_gt, coco_predictions(), None, None,
                                                    "hotcoco", logging.getLogger(__name__))
    expected = list(Params(iouType="keypoints").kpt_oks_sigmas)
    assert list(evaluator.params.kpt_oks_sigmas) == expected
