"""Tests of hrpose.evaluation on hand-made problems whose expected scores are derived by hand."""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict

import numpy as np
import pytest
import scipy.io

from hrpose.datasets.metadata import get_keypoint_info
from hrpose.evaluation import (
    COCO_STAT_NAMES,
    CROWDPOSE_STAT_NAMES,
    PCKH_COLUMN_NAMES,
    evaluate_coco_keypoints,
    evaluate_crowdpose_keypoints,
    evaluate_mpii_pckh,
    format_name_value_table,
    load_keypoint_results,
    log_name_value_table,
    save_mpii_predictions,
    write_keypoint_results,
)
from hrpose.evaluation import crowdpose as crowdpose_module
from hrpose.evaluation import results as results_module

# The COCO OKS thresholds and the 101 recall points at which precision is interpolated.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


# ----------------------------------------------------------------------------------------------
# Independent scoring helpers: the textbook definitions, not pycocotools' code.


def direct_oks(gt_xy, pred_xy, visible, scale, sigmas):
    """OKS by its definition: mean over labelled points of exp(-d^2 / (2 s (2 sigma)^2))."""
    squared_distance = np.sum((np.asarray(pred_xy) - np.asarray(gt_xy)) ** 2, axis=1)
    similarity = np.exp(-squared_distance / (2.0 * scale * (2.0 * np.asarray(sigmas)) ** 2))
    return float(np.mean(similarity[np.asarray(visible) > 0]))


def interpolated_ap(is_true_positive_by_rank, num_gt):
    """101-point AP: for each recall point, the best precision reached at that recall or more."""
    hits = np.cumsum(is_true_positive_by_rank)
    ranks = np.arange(1, len(is_true_positive_by_rank) + 1)
    precision, recall = hits / ranks, hits / num_gt
    return float(np.mean([precision[recall >= point].max(initial=0.0) for point in RECALL_POINTS]))


def passed_threshold_count(oks):
    """How many of the 10 OKS thresholds a detection with this OKS is matched at."""
    assert np.min(np.abs(OKS_THRESHOLDS - oks)) > 1e-3, "test OKS too close to a threshold"
    return int(np.sum(OKS_THRESHOLDS <= oks))


# ----------------------------------------------------------------------------------------------
# COCO


COCO_BOX_SIZE = (120.0, 200.0)
COCO_SEGMENT_AREA = 15000.0  # the OKS scale for COCO GT, deliberately not the box area


def coco_person_xy(left, top):
    """17 keypoints spread over a 75 x 176 extent, so every person is 'large' (> 96^2)."""
    k = np.arange(17)
    return np.stack([left + 20.0 + (k % 4) * 25.0, top + 10.0 + k * 11.0], axis=1)


def keypoint_triplets(xy, third):
    """Flatten (K, 2) positions and a per-point third value into COCO's [x, y, v] * K list."""
    third = np.broadcast_to(np.asarray(third, dtype=np.float64), (len(xy),))
    return [float(v) for v in np.column_stack([xy, third]).ravel()]


def coco_annotation(annotation_id, image_id, left, top, visibility):
    return {
        "id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": keypoint_triplets(coco_person_xy(left, top), visibility),
        "num_keypoints": int(np.count_nonzero(visibility)),
        "area": COCO_SEGMENT_AREA, "bbox": [left, top, *COCO_BOX_SIZE],
    }


# Three images holding 1, 2 and 3 people, far apart from each other. The lone person in
# image 1 has two unlabelled points, which must not count in its OKS.
PERTURBED_VISIBILITY = np.array([2] * 15 + [0, 0])
COCO_PEOPLE = [  # (annotation id, image id, left, top, visibility)
    (1, 1, 50.0, 60.0, PERTURBED_VISIBILITY),
    (2, 2, 50.0, 60.0, np.full(17, 2)),
    (3, 2, 400.0, 300.0, np.full(17, 2)),
    (4, 3, 50.0, 60.0, np.full(17, 2)),
    (5, 3, 400.0, 60.0, np.full(17, 1)),
    (6, 3, 700.0, 500.0, np.full(17, 2)),
]
PERTURBATION = np.array([13.0, 0.0])


def coco_gt_dict():
    return {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 1000, "height": 1000}
                   for i in (1, 2, 3)],
        "annotations": [coco_annotation(*person) for person in COCO_PEOPLE],
        "categories": [{"id": 1, "name": "person",
                        "keypoints": list(get_keypoint_info("coco").keypoint_names)}],
    }


def coco_predictions(perturb=True):
    """One prediction per GT; person 1 is shifted (and its unlabelled points thrown far away)
    and scored lowest, so it ranks last."""
    predictions = []
    for rank, (annotation_id, image_id, left, top, _) in enumerate(COCO_PEOPLE):
        xy = coco_person_xy(left, top)
        if perturb and annotation_id == 1:
            xy = xy + PERTURBATION
            xy[PERTURBED_VISIBILITY == 0] += 500.0
        predictions.append({"image_id": image_id, "category_id": 1,
                            "keypoints": keypoint_triplets(xy, 0.9),
                            "score": 0.5 if annotation_id == 1 else 0.95 - 0.01 * rank})
    return predictions


@pytest.fixture
def coco_gt_file(tmp_path):
    path = tmp_path / "person_keypoints_val.json"
    path.write_text(json.dumps(coco_gt_dict()))
    return path


def expected_coco_stats(oks):
    """Derived by hand: 6 GT; 5 exact predictions and the perturbed one, ranked last.

    At a threshold the perturbed one passes, every prediction is a TP (AP 1, recall 1).
    Otherwise it is a trailing FP and one GT is missed: AP = interpolated_ap(5 TP then FP).
    """
    passed = passed_threshold_count(oks)
    ap_when_missed = interpolated_ap([1, 1, 1, 1, 1, 0], num_gt=6)
    assert ap_when_missed == pytest.approx(84 / 101)  # recall points 0 .. 0.83 have precision 1
    ap_by_threshold = [1.0] * passed + [ap_when_missed] * (10 - passed)
    recall_by_threshold = [1.0] * passed + [5 / 6] * (10 - passed)
    return {"AP": np.mean(ap_by_threshold), "Ap .5": ap_by_threshold[0],
            "AP .75": ap_by_threshold[5], "AR": np.mean(recall_by_threshold),
            "AR .5": recall_by_threshold[0], "AR .75": recall_by_threshold[5]}


def perturbed_person_oks(sigmas):
    gt_xy = coco_person_xy(50.0, 60.0)
    return direct_oks(gt_xy, gt_xy + PERTURBATION, PERTURBED_VISIBILITY, COCO_SEGMENT_AREA,
                      sigmas)


def test_coco_predictions_equal_to_gt_score_one(coco_gt_file):
    stats = evaluate_coco_keypoints(coco_gt_file, coco_predictions(perturb=False))
    assert list(stats) == list(COCO_STAT_NAMES)
    assert all(type(value) is float for value in stats.values())
    for name in ("AP", "Ap .5", "AP .75", "AP (L)", "AR", "AR .5", "AR .75", "AR (L)"):
        assert stats[name] == pytest.approx(1.0), name
    # No GT is medium-sized, so pycocotools reports -1 for the medium range.
    assert stats["AP (M)"] == -1.0 and stats["AR (M)"] == -1.0


def test_coco_perturbed_person_gives_the_derived_ap(coco_gt_file):
    oks = perturbed_person_oks(get_keypoint_info("coco").sigmas_array)
    assert 1 <= passed_threshold_count(oks) <= 5  # informative: AP .5 is 1, AP .75 is not
    expected = expected_coco_stats(oks)
    stats = evaluate_coco_keypoints(coco_gt_file, coco_predictions())
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value, abs=1e-12), name
    # Every GT and every prediction is large, so the large range repeats the 'all' numbers.
    assert stats["AP (L)"] == pytest.approx(stats["AP"])
    assert stats["AR (L)"] == pytest.approx(stats["AR"])


def test_coco_custom_sigmas_are_used(coco_gt_file):
    default = evaluate_coco_keypoints(coco_gt_file, coco_predictions())
    wide_sigmas = 2.0 * get_keypoint_info("coco").sigmas_array
    oks = perturbed_person_oks(wide_sigmas)
    assert passed_threshold_count(oks) > passed_threshold_count(
        perturbed_person_oks(get_keypoint_info("coco").sigmas_array))
    stats = evaluate_coco_keypoints(coco_gt_file, coco_predictions(), sigmas=list(wide_sigmas))
    for name, value in expected_coco_stats(oks).items():
        assert stats[name] == pytest.approx(value, abs=1e-12), name
    assert stats["AP"] > default["AP"]


def test_coco_rejects_a_wrong_number_of_sigmas(coco_gt_file):
    with pytest.raises(ValueError, match="17 OKS sigmas"):
        evaluate_coco_keypoints(coco_gt_file, coco_predictions(), sigmas=[0.1] * 14)


def test_coco_accepts_a_results_file_and_a_coco_object(coco_gt_file, tmp_path):
    from pycocotools.coco import COCO

    from_list = evaluate_coco_keypoints(coco_gt_file, coco_predictions())
    results_path = write_keypoint_results(coco_predictions(), tmp_path / "results.json")
    coco_gt = COCO()
    coco_gt.dataset = coco_gt_dict()
    coco_gt.createIndex()
    assert evaluate_coco_keypoints(str(coco_gt_file), results_path) == from_list
    assert evaluate_coco_keypoints(coco_gt, str(results_path)) == from_list


def test_coco_leaves_the_callers_results_unchanged(coco_gt_file):
    predictions = coco_predictions()
    before = json.dumps(predictions)
    evaluate_coco_keypoints(coco_gt_file, predictions)
    assert json.dumps(predictions) == before


def test_coco_output_goes_to_the_log_not_stdout(coco_gt_file, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="hrpose.evaluation.coco"):
        evaluate_coco_keypoints(coco_gt_file, coco_predictions())
    assert capsys.readouterr().out == ""
    assert any("Average Precision" in record.getMessage() for record in caplog.records)


def test_coco_empty_results_give_zeros_and_a_warning(coco_gt_file, caplog):
    with caplog.at_level(logging.WARNING, logger="hrpose.evaluation.coco"):
        stats = evaluate_coco_keypoints(coco_gt_file, [])
    assert stats == OrderedDict((name, 0.0) for name in COCO_STAT_NAMES)
    assert any(record.levelno == logging.WARNING for record in caplog.records)


def test_coco_missing_and_invalid_files_raise_clear_errors(coco_gt_file, tmp_path):
    missing_gt = tmp_path / "no_such_gt.json"
    with pytest.raises(FileNotFoundError, match="no_such_gt.json"):
        evaluate_coco_keypoints(missing_gt, coco_predictions())
    missing_results = tmp_path / "no_such_results.json"
    with pytest.raises(FileNotFoundError, match="no_such_results.json"):
        evaluate_coco_keypoints(coco_gt_file, missing_results)
    broken = tmp_path / "broken_results.json"
    broken.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match="broken_results.json.*not valid JSON"):
        evaluate_coco_keypoints(coco_gt_file, broken)


def test_coco_results_for_unknown_images_are_rejected(coco_gt_file):
    predictions = coco_predictions()
    predictions[0] = {**predictions[0], "image_id": 99}
    with pytest.raises(ValueError, match="not in the ground truth: 99"):
        evaluate_coco_keypoints(coco_gt_file, predictions)


# ----------------------------------------------------------------------------------------------
# CrowdPose


CROWDPOSE_BOX = (100.0, 180.0)
CROWDPOSE_SIGMAS = get_keypoint_info("crowdpose").sigmas_array


def crowdpose_person_xy(left, top):
    k = np.arange(14)
    return np.stack([left + 10.0 + (k % 3) * 35.0, top + 8.0 + k * 12.0], axis=1)


def crowdpose_annotation(annotation_id, image_id, left, top, **overrides):
    annotation = {
        "id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": keypoint_triplets(crowdpose_person_xy(left, top), 2),
        "num_keypoints": 14, "bbox": [left, top, *CROWDPOSE_BOX],
    }
    return {**annotation, **overrides}


def crowdpose_prediction(image_id, left, top, score, shift=(0.0, 0.0)):
    xy = crowdpose_person_xy(left, top) + np.asarray(shift)
    return {"image_id": image_id, "category_id": 1,
            "keypoints": keypoint_triplets(xy, 0.8), "score": score}


def crowdpose_gt(images, annotations):
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person",
                            "keypoints": list(get_keypoint_info("crowdpose").keypoint_names)}]}


def crowdpose_image(image_id, crowd_index):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": 1000, "height": 1000,
            "crowdIndex": crowd_index}


# Five images; crowd index 0.2 and 0.8 sit on the bin edges (medium and hard respectively).
# Every prediction either coincides with a GT (OKS 1) or lies far from every GT (OKS ~ 0).
#   easy   (image 1, 0.1):  2 GT, both predicted exactly                    -> AP(E) = 1
#   medium (images 2, 3):   2 GT, each "predicted" far away                 -> AP(M) = 0
#   hard   (images 4, 5):   3 GT, 2 predicted exactly; a far prediction in
#                           image 4 outscores both                          -> AP(H) derived
CROWDPOSE_IMAGES = [crowdpose_image(1, 0.1), crowdpose_image(2, 0.2), crowdpose_image(3, 0.5),
                    crowdpose_image(4, 0.8), crowdpose_image(5, 0.95)]
CROWDPOSE_ANNOTATIONS = [
    crowdpose_annotation(1, 1, 50.0, 50.0), crowdpose_annotation(2, 1, 500.0, 50.0),
    crowdpose_annotation(3, 2, 50.0, 50.0), crowdpose_annotation(4, 3, 50.0, 50.0),
    crowdpose_annotation(5, 4, 50.0, 50.0), crowdpose_annotation(6, 4, 500.0, 50.0),
    crowdpose_annotation(7, 5, 50.0, 50.0),
]
FAR = (600.0, 700.0)  # a shift that puts a prediction far from every GT in its image
CROWDPOSE_PREDICTIONS = [  # (prediction, is a true positive at every threshold)
    (crowdpose_prediction(1, 50.0, 50.0, 0.9), True),
    (crowdpose_prediction(1, 500.0, 50.0, 0.7), True),
    (crowdpose_prediction(2, 50.0, 50.0, 0.95, shift=FAR), False),
    (crowdpose_prediction(3, 50.0, 50.0, 0.4, shift=FAR), False),
    (crowdpose_prediction(4, 50.0, 50.0, 0.6), True),
    (crowdpose_prediction(4, 300.0, 50.0, 0.99, shift=FAR), False),
    (crowdpose_prediction(5, 50.0, 50.0, 0.5), True),
]


def ap_of_subset(image_ids, num_gt):
    """Derived AP of the predictions in some images (the same at every OKS threshold here)."""
    ranked = sorted((p for p in CROWDPOSE_PREDICTIONS if p[0]["image_id"] in image_ids),
                    key=lambda p: -p[0]["score"])
    return interpolated_ap([is_tp for _, is_tp in ranked], num_gt)


def test_crowdpose_protocol_on_a_hand_made_problem(tmp_path):
    gt_path = tmp_path / "crowdpose_val.json"
    gt_path.write_text(json.dumps(crowdpose_gt(CROWDPOSE_IMAGES, CROWDPOSE_ANNOTATIONS)))
    stats = evaluate_crowdpose_keypoints(gt_path, [p for p, _ in CROWDPOSE_PREDICTIONS])

    # Full set, 7 GT, ranked TP flags: .99 F, .95 F, .9 T, .7 T, .6 T, .5 T, .4 F.
    full_ap = ap_of_subset({1, 2, 3, 4, 5}, num_gt=7)
    assert full_ap == pytest.approx(np.mean(
        [4 / 6 if point <= 4 / 7 else 0.0 for point in RECALL_POINTS]))
    # Hard: ranked F, T, T of 3 GT -> precision 2/3 up to recall 2/3 (67 recall points).
    hard_ap = ap_of_subset({4, 5}, num_gt=3)
    assert hard_ap == pytest.approx(2 / 3 * 67 / 101)

    assert list(stats) == list(CROWDPOSE_STAT_NAMES)
    assert all(type(value) is float for value in stats.values())
    for name in ("AP", "Ap .5", "AP .75"):
        assert stats[name] == pytest.approx(full_ap, abs=1e-12), name
    for name in ("AR", "AR .5", "AR .75"):
        assert stats[name] == pytest.approx(4 / 7, abs=1e-12), name
    assert stats["AP (E)"] == 1.0
    assert stats["AP (M)"] == 0.0
    assert stats["AP (H)"] == round(hard_ap, 4) == 0.4422


def test_crowdpose_accepts_a_dict_and_a_results_file(tmp_path):
    gt = crowdpose_gt(CROWDPOSE_IMAGES, CROWDPOSE_ANNOTATIONS)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    predictions = [p for p, _ in CROWDPOSE_PREDICTIONS]
    results_path = write_keypoint_results(predictions, tmp_path / "results.json")
    before = json.dumps(gt)
    from_dict = evaluate_crowdpose_keypoints(gt, predictions)
    assert json.dumps(gt) == before  # the caller's GT keeps its (absent) area fields
    assert evaluate_crowdpose_keypoints(gt_path, results_path) == from_dict
    assert evaluate_crowdpose_keypoints(gt, predictions, sigmas=CROWDPOSE_SIGMAS) == from_dict


# crowdposetools (Jeff-sjtu/CrowdPose, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py,
# get_type_result) stores res.append(round(np.mean(score), 4)): Python's round() of the np.float64
# mean, which NumPy carries out as rint(x * 1e4) / 1e4. At these half values that gives the
# second column (the float64 products are exactly ...x.5, rounded half to even); Python's round()
# of a float (the third column) gives the correctly rounded decimal of the binary value instead.
CROWDPOSE_HALF_VALUES = [
    (0.96825, 0.9682, 0.9683),
    (0.12345, 0.1234, 0.1235),
    (0.43215, 0.4322, 0.4321),
    (0.11115, 0.1112, 0.1111),
    (0.00005, 0.0, 0.0001),
]


@pytest.mark.parametrize("value, crowdposetools, python_round", CROWDPOSE_HALF_VALUES)
def test_crowdpose_subset_ap_rounds_half_values_as_crowdposetools(value, crowdposetools,
                                                                  python_round):
    assert round(value, 4) == python_round != crowdposetools  # the values really tell them apart

    class StubEvaluator:
        """Just what subset_average_precision touches: a one-entry 'all'-area precision."""
        params = type("Params", (), {"imgIds": []})()
        eval = {"precision": np.full((1, 1, 1, 3, 1), value)}

        def evaluate(self):
            pass

        def accumulate(self):
            pass

    ap = crowdpose_module.subset_average_precision(StubEvaluator(), [1])
    assert type(ap) is float and ap == crowdposetools


def test_crowdpose_rounding_matches_numpys_on_random_half_values():
    rng = np.random.default_rng(0)
    halves = (rng.integers(0, 20000, 2000) + 0.5) / 1e4
    rounded = [crowdpose_module.round_like_crowdposetools(np.float64(x)) for x in halves]
    # The crowdposetools expression itself, on the np.float64 the mean gives it.
    assert rounded == [float(round(np.float64(x), 4)) for x in halves]
    assert sum(r != round(float(x), 4) for r, x in zip(rounded, halves)) > 100


def test_crowdpose_empty_subset_is_minus_one():
    # Only the easy and medium images: the hard subset is empty.
    images = CROWDPOSE_IMAGES[:3]
    annotations = [a for a in CROWDPOSE_ANNOTATIONS if a["image_id"] <= 3]
    predictions = [p for p, _ in CROWDPOSE_PREDICTIONS if p["image_id"] <= 3]
    stats = evaluate_crowdpose_keypoints(crowdpose_gt(images, annotations), predictions)
    assert stats["AP (E)"] == 1.0
    assert stats["AP (M)"] == 0.0
    assert stats["AP (H)"] == -1.0


def test_crowdpose_uses_0_53_box_area_not_the_area_field():
    # The GT carries an 'area' three times its box; OKS must use (w * h) * 0.53 instead.
    width, height = CROWDPOSE_BOX
    stated_area = 3.0 * width * height
    shift = np.array([14.0, 0.0])
    gt_xy = crowdpose_person_xy(50.0, 50.0)
    oks = direct_oks(gt_xy, gt_xy + shift, np.ones(14), (width * height) * 0.53,
                     CROWDPOSE_SIGMAS)
    oks_with_area_field = direct_oks(gt_xy, gt_xy + shift, np.ones(14), stated_area,
                                     CROWDPOSE_SIGMAS)
    passed = passed_threshold_count(oks)
    assert passed < passed_threshold_count(oks_with_area_field)  # the case discriminates

    gt = crowdpose_gt([crowdpose_image(1, 0.5)],
                      [crowdpose_annotation(1, 1, 50.0, 50.0, area=stated_area)])
    stats = evaluate_crowdpose_keypoints(
        gt, [crowdpose_prediction(1, 50.0, 50.0, 0.9, shift=shift)])
    # One GT and one prediction: AP and recall are 1 at the thresholds it passes, else 0.
    assert stats["AP"] == pytest.approx(passed / 10)
    assert stats["AR"] == pytest.approx(passed / 10)
    assert stats["AP (M)"] == round(passed / 10, 4)


def test_crowdpose_keeps_num_keypoints_and_iscrowd_from_the_file():
    # Person 2 has labelled points but num_keypoints 0, person 3 is an iscrowd region; both
    # are ignored, so their missing predictions cost nothing.
    annotations = [
        crowdpose_annotation(1, 1, 50.0, 50.0),
        crowdpose_annotation(2, 1, 300.0, 50.0, num_keypoints=0),
        crowdpose_annotation(3, 1, 600.0, 50.0, iscrowd=1),
    ]
    stats = evaluate_crowdpose_keypoints(
        crowdpose_gt([crowdpose_image(1, 0.1)], annotations),
        [crowdpose_prediction(1, 50.0, 50.0, 0.9)])
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)
    assert stats["AP (E)"] == 1.0


def test_crowdpose_empty_results_score_zero(caplog):
    gt = crowdpose_gt(CROWDPOSE_IMAGES[:3], [a for a in CROWDPOSE_ANNOTATIONS
                                             if a["image_id"] <= 3])
    with caplog.at_level(logging.WARNING, logger="hrpose.evaluation.crowdpose"):
        stats = evaluate_crowdpose_keypoints(gt, [])
    assert any(record.levelno == logging.WARNING for record in caplog.records)
    assert stats == OrderedDict([("AP", 0.0), ("Ap .5", 0.0), ("AP .75", 0.0), ("AR", 0.0),
                                 ("AR .5", 0.0), ("AR .75", 0.0), ("AP (E)", 0.0),
                                 ("AP (M)", 0.0), ("AP (H)", -1.0)])


def test_crowdpose_missing_crowd_index_is_a_clear_error():
    image = {k: v for k, v in crowdpose_image(7, 0.1).items() if k != "crowdIndex"}
    gt = crowdpose_gt([image], [crowdpose_annotation(1, 7, 50.0, 50.0)])
    with pytest.raises(ValueError, match="image 7 has no 'crowdIndex'"):
        evaluate_crowdpose_keypoints(gt, [crowdpose_prediction(7, 50.0, 50.0, 0.9)])


# ----------------------------------------------------------------------------------------------
# MPII PCKh


MPII_JOINT_NAMES = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
                    "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]
HEAD, LANK, LSHO = 9, 5, 13


def mpii_problem():
    """Four people; returns (gt dict for savemat, 0-based predictions).

    Head boxes have diagonals 50 and 100, i.e. head sizes 30 and 60 after SC_BIAS 0.6. Errors
    along x in head sizes:
      person 0: 0 everywhere;      person 1: 0.105 everywhere;
      person 2: 0.49 everywhere (fails if the +1 back to 1-based were skipped), lank missing;
      person 3: 0.6 everywhere but 0.2 at lsho, head missing.
    Pelvis and thorax are 5.0 off for everyone: PCKh 0, which the means must not see.
    """
    num_people = 4
    head_sizes = np.array([30.0, 60.0, 30.0, 60.0])
    errors = np.zeros((16, num_people))
    errors[:, 1], errors[:, 2], errors[:, 3] = 0.105, 0.49, 0.6
    errors[LSHO, 3] = 0.2
    errors[[6, 7], :] = 5.0
    missing = np.zeros((16, num_people), dtype=np.uint8)
    missing[LANK, 2] = missing[HEAD, 3] = 1
    errors[missing == 1] = 5.0

    joints = np.arange(16, dtype=np.float64)[:, None]
    people = np.arange(num_people, dtype=np.float64)[None, :]
    gt_positions = np.stack([np.broadcast_to(100.0 + 10.0 * joints + 200.0 * people, (16, 4)),
                             np.broadcast_to(50.0 + 7.0 * joints, (16, 4))], axis=1)
    # Head boxes from (10, 10) with sides 3:4, so diagonals 50 and 100.
    headboxes = np.full((2, 2, num_people), 10.0)
    headboxes[1, 0] += np.array([30.0, 60.0, 30.0, 60.0])
    headboxes[1, 1] += np.array([40.0, 80.0, 40.0, 80.0])
    pred_one_based = gt_positions.copy()
    pred_one_based[:, 0, :] += errors * head_sizes[None, :]
    dataset_joints = np.empty((1, 16), dtype=object)
    dataset_joints[0, :] = MPII_JOINT_NAMES
    gt = {"dataset_joints": dataset_joints, "jnt_missing": missing,
          "pos_gt_src": gt_positions, "headboxes_src": headboxes}
    return gt, np.transpose(pred_one_based, [2, 0, 1]) - 1.0


@pytest.fixture
def mpii_gt_file(tmp_path):
    gt, _ = mpii_problem()
    path = tmp_path / "gt_valid.mat"
    scipy.io.savemat(path, gt)
    return path


def test_pckh_on_a_hand_made_problem(mpii_gt_file):
    _, preds = mpii_problem()
    stats = evaluate_mpii_pckh(preds, mpii_gt_file)
    assert list(stats) == list(PCKH_COLUMN_NAMES)
    assert all(type(value) is float for value in stats.values())
    expected = {
        "Head": 100.0,                          # 3 visible, all within 0.5
        "Shoulder": (75.0 + 100.0) / 2,         # rsho 3/4, lsho 4/4
        "Elbow": 75.0, "Wrist": 75.0, "Hip": 75.0, "Knee": 75.0,
        "Ankle": (75.0 + 200.0 / 3) / 2,        # rank 3/4, lank 2/3
        # 54 visible unmasked joints (14 x 4 - 2), of which 14 + 14 + 13 + 1 are within 0.5.
        "Mean": 100.0 * 42 / 54,
        # Threshold 0.11: persons 0 and 1, 14 joints each.
        "Mean@0.1": 100.0 * 28 / 54,
    }
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value, abs=1e-9), name


def test_pckh_mean_at_0_1_uses_threshold_0_11(mpii_gt_file):
    _, preds = mpii_problem()
    stats = evaluate_mpii_pckh(preds, mpii_gt_file)
    # At a true 0.10 person 1 (0.105 head sizes off) would drop out: 14 / 54.
    assert stats["Mean@0.1"] != pytest.approx(100.0 * 14 / 54)
    assert stats["Mean@0.1"] == pytest.approx(100.0 * 28 / 54)
    assert evaluate_mpii_pckh(preds, mpii_gt_file, threshold=0.11)["Mean"] == pytest.approx(
        stats["Mean@0.1"])
    assert evaluate_mpii_pckh(preds, mpii_gt_file, threshold=0.1)["Mean"] == pytest.approx(
        100.0 * 14 / 54)


def test_pckh_accepts_predictions_with_a_score_channel(mpii_gt_file):
    _, preds = mpii_problem()
    with_scores = np.concatenate([preds, np.ones(preds.shape[:2] + (1,))], axis=2)
    assert evaluate_mpii_pckh(with_scores, mpii_gt_file) == evaluate_mpii_pckh(
        preds, mpii_gt_file)


def test_pckh_missing_file_or_key_is_a_clear_error(tmp_path, mpii_gt_file):
    _, preds = mpii_problem()
    with pytest.raises(FileNotFoundError, match="no_gt.mat"):
        evaluate_mpii_pckh(preds, tmp_path / "no_gt.mat")
    gt, _ = mpii_problem()
    del gt["headboxes_src"]
    broken = tmp_path / "broken_gt.mat"
    scipy.io.savemat(broken, gt)
    with pytest.raises(ValueError, match="broken_gt.mat.*headboxes_src"):
        evaluate_mpii_pckh(preds, broken)
    with pytest.raises(ValueError, match="do not match"):
        evaluate_mpii_pckh(preds[:3], mpii_gt_file)


def test_save_mpii_predictions_writes_one_based_preds(tmp_path):
    _, preds = mpii_problem()
    target = tmp_path / "out" / "pred.mat"
    save_mpii_predictions(np.concatenate([preds, np.ones((4, 16, 1))], axis=2), target)
    np.testing.assert_array_equal(scipy.io.loadmat(target)["preds"], preds + 1.0)
    assert os.listdir(target.parent) == ["pred.mat"]


# ----------------------------------------------------------------------------------------------
# Result files


def test_results_round_trip_with_numpy_values(tmp_path):
    results = [{"image_id": np.int64(397133), "category_id": 1,
                "keypoints": np.array([[1.5, 2.25, 0.5]] * 17, dtype=np.float32).ravel(),
                "score": np.float32(0.75), "center": np.array([10.0, 20.0]),
                "scale": (np.float64(1.25), 2.5)}]
    path = write_keypoint_results(results, tmp_path / "nested" / "folder" / "results.json")
    loaded = load_keypoint_results(path)
    assert loaded == [{"image_id": 397133, "category_id": 1,
                       "keypoints": [1.5, 2.25, 0.5] * 17, "score": 0.75,
                       "center": [10.0, 20.0], "scale": [1.25, 2.5]}]
    assert type(loaded[0]["image_id"]) is int and type(loaded[0]["score"]) is float
    assert os.listdir(path.parent) == ["results.json"]


def test_results_write_is_atomic(tmp_path, monkeypatch):
    path = write_keypoint_results([{"image_id": 1, "score": 0.5}], tmp_path / "results.json")

    def failing_dump(payload, file, **kwargs):
        file.write('[{"image_id": 2,')
        raise OSError("disk full")

    monkeypatch.setattr(results_module.json, "dump", failing_dump)
    with pytest.raises(OSError, match="disk full"):
        write_keypoint_results([{"image_id": 2, "score": 0.5}], path)
    monkeypatch.undo()
    assert load_keypoint_results(path) == [{"image_id": 1, "score": 0.5}]
    assert os.listdir(tmp_path) == ["results.json"]


def test_results_reject_unserialisable_values_and_bad_files(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_keypoint_results([{"image_id": 1, "extra": object()}], tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_keypoint_results(tmp_path / "missing.json")
    not_a_list = tmp_path / "dict.json"
    not_a_list.write_text('{"image_id": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        load_keypoint_results(not_a_list)


# ----------------------------------------------------------------------------------------------
# Name/value table


def test_table_matches_the_original_three_lines():
    lines = format_name_value_table(OrderedDict([("AP", 0.7512), ("Ap .5", 0.9)]), "pose_hrnet")
    assert lines == ["| Arch | AP | Ap .5 |",
                     "|---|---|---|",
                     "| pose_hrnet | 0.751 | 0.900 |"]


def test_table_truncates_arch_names_longer_than_15():
    name_value = OrderedDict([("AP", 0.5)])
    assert format_name_value_table(name_value, "a" * 15)[2] == "| " + "a" * 15 + " | 0.500 |"
    assert format_name_value_table(name_value, "pose_higher_hrnet")[2] == "| pose_hig... | 0.500 |"


def test_table_with_several_rows_and_logging(caplog):
    rows = [OrderedDict([("AP", 0.1), ("AR", 0.2)]), OrderedDict([("AP", 0.3), ("AR", 0.4)])]
    lines = format_name_value_table(rows, "hrnet")
    assert lines == ["| Arch | AP | AR |", "|---|---|---|",
                     "| hrnet | 0.100 | 0.200 |", "| hrnet | 0.300 | 0.400 |"]
    logger = logging.getLogger("hrpose.tests.table")
    with caplog.at_level(logging.INFO, logger=logger.name):
        log_name_value_table(logger, rows, "hrnet")
    assert [record.getMessage() for record in caplog.records] == lines
    with pytest.raises(ValueError, match="every row"):
        format_name_value_table([rows[0], OrderedDict([("AP", 0.1)])], "hrnet")
