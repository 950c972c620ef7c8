"""Pose rescoring: feature (74 COCO / 59 CrowdPose), the net's use, best-OKS targets, data file."""

import contextlib
import io
import os

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from hrpose.datasets.metadata import COCO, CROWDPOSE, MPII, SYNTHETIC
from hrpose.errors import DataError, DataFileNotFoundError
from hrpose.postprocess.rescore import (
    COCO_AREA_RANGES,
    RescoreData,
    Rescorer,
    apply_rescore_net,
    best_oks_per_detection,
    coco_oks,
    concatenate_rescore_data,
    pose_rescore_features,
    read_rescore_data,
    rescore_feature,
    rescore_samples,
    rescore_training_arrays,
    write_rescore_data,
)


def loop_feature(pose, limbs, torso):
    """The feature of one pose (J, 3), written out limb by limb."""
    lengths = [float(np.hypot(*(pose[a, :2] - pose[b, :2]))) for a, b in limbs]
    norm = max((lengths[torso[0]] + lengths[torso[1]]) / 2, 1.0)
    feature = []
    for a, b in limbs:
        feature += [(pose[a, 0] - pose[b, 0]) / norm, (pose[a, 1] - pose[b, 1]) / norm]
    feature += [length / norm for length in lengths]
    feature += list(pose[:, 2])
    return np.array(feature)


@pytest.mark.parametrize("info, size", [(COCO, 74), (CROWDPOSE, 59), (SYNTHETIC, 74)])
def test_feature_length_and_order(info, size):
    rng = np.random.default_rng(0)
    poses = np.concatenate([rng.uniform(0, 300, size=(5, info.num_keypoints, 2)),
                            rng.uniform(0, 1, size=(5, info.num_keypoints, 1))], axis=2)
    poses[1, :, :2] = 7.0  # every joint on one point: torso length 0, normalised by 1
    features = pose_rescore_features(poses, info)
    assert features.shape == (5, size) and features.dtype == np.float32
    expected = np.stack([loop_feature(p, info.rescore_limbs, info.rescore_torso_limbs)
                         for p in poses])
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
    assert not features[1, :-info.num_keypoints].any()


def test_reference_limb_lists():
    first, second = zip(*COCO.rescore_limbs)
    assert first == (0, 0, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 7, 8, 11, 11, 12, 13, 14)
    assert second == (1, 2, 2, 3, 4, 5, 6, 6, 7, 11, 8, 12, 9, 10, 12, 13, 14, 15, 16)
    first, second = zip(*CROWDPOSE.rescore_limbs)
    assert first == (12, 13, 13, 0, 1, 2, 3, 0, 1, 6, 7, 8, 9, 6, 0)
    assert second == (13, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 7, 1)
    # COCO normalises by the shoulder-hip limbs.
    assert [COCO.rescore_limbs[i] for i in COCO.rescore_torso_limbs] == [(5, 11), (6, 12)]
    with pytest.raises(ValueError, match="rescore limbs"):
        pose_rescore_features(np.zeros((1, 16, 3)), MPII)
    with pytest.raises(ValueError, match="torso_limbs"):
        rescore_feature(np.zeros((1, 3, 3)), [(0, 1)], (0, 1))


class NanFirst(torch.nn.Module):
    """A net whose output is NaN for the first row and 2 for the others."""

    def forward(self, x):
        out = torch.full((x.shape[0], 1), 2.0)
        out[0] = float("nan")
        return out


def test_applying_a_rescore_net():
    scores = np.array([0.5, 0.25, 0.1], dtype=np.float32)
    new = apply_rescore_net(NanFirst(), np.zeros((3, 74), dtype=np.float32), scores)
    np.testing.assert_array_equal(new, np.array([0.0, 0.5, 0.2], dtype=np.float32))
    net = torch.nn.Linear(74, 1)
    torch.nn.init.uniform_(net.weight, -0.01, 0.01)
    net.train()
    rescorer = Rescorer(net, COCO)
    assert not net.training and rescorer.feature_size == 74
    poses = np.random.default_rng(1).uniform(0, 100, size=(4, 17, 3))
    got = rescorer(poses, np.full(4, 0.5))
    features = torch.from_numpy(rescore_feature(poses, COCO.rescore_limbs, (9, 11)))
    expected = (net(features).detach().numpy()[:, 0] * 0.5).astype(np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert rescorer(np.zeros((0, 17, 3)), np.zeros(0)).shape == (0,)


# ------------------------------------------------------------------------------------------------
# Best OKS against pycocotools

class RecordingEval(COCOeval):
    """The reference's data-recording evaluator, written out: per image and area range, each of
    the top detections with its best OKS under the greedy scan."""

    records: dict

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g["_ignore"] = int(bool(g["ignore"]) or g["area"] < aRng[0] or g["area"] > aRng[1])
        gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
        gt = [gt[i] for i in gtind]
        dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dtind[0:maxDet]]
        ious = self.ious[imgId, catId]
        if len(ious) == 0:
            return None
        ious = ious[:, gtind]
        for dind, d in enumerate(dt):
            iou, m = 0, -1
            for gind, g in enumerate(gt):
                if m > -1 and gt[m]["_ignore"] == 0 and g["_ignore"] == 1:
                    break
                if ious[dind, gind] < iou:
                    continue
                iou, m = ious[dind, gind], gind
            self.records.setdefault((imgId, tuple(aRng)), []).append(
                (np.array(d["keypoints"]).reshape(-1, 3), iou))
        return None


def synthetic_ground_truth(rng):
    images, annotations, results = [], [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "width": 640, "height": 480})
        count = 4 if image_id != 3 else 0
        for person in range(count):
            keypoints = np.concatenate([rng.uniform(50, 450, size=(17, 2)),
                                        rng.integers(0, 3, size=(17, 1))], axis=1)
            if person == 1:
                keypoints[:, 2] = 0  # no labelled keypoint: ignored, compared by box distance
            keypoints[keypoints[:, 2] == 0, :2] = 0
            x, y = rng.uniform(0, 300, size=2)
            w, h = rng.uniform(20, 200, size=2)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "keypoints": keypoints.reshape(-1).tolist(),
                "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                "bbox": [x, y, w, h], "area": float(rng.choice([500.0, 4000.0, 20000.0])),
                "iscrowd": int(person == 3 and image_id == 2)})
            # Detections near the person, and one per image far from everybody.
            for _ in range(2):
                pose = keypoints.copy()
                pose[:, :2] = np.where(pose[:, :2] > 0, pose[:, :2], rng.uniform(60, 400, (17, 2)))
                pose[:, :2] += rng.normal(0, 8, size=(17, 2))
                pose[:, 2] = rng.uniform(0, 1, size=17)
                results.append({"image_id": image_id, "category_id": 1,
                                "keypoints": pose.reshape(-1).tolist(),
                                "score": float(rng.uniform(0, 1))})
        results.append({"image_id": image_id, "category_id": 1,
                        "keypoints": rng.uniform(500, 600, size=(17, 3)).reshape(-1).tolist(),
                        "score": 0.5})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}]}, results


def test_best_oks_matches_the_reference_evaluator():
    rng = np.random.default_rng(5)
    dataset, results = synthetic_ground_truth(rng)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi()
        gt.dataset = dataset
        gt.createIndex()
        evaluator = RecordingEval(gt, gt.loadRes(results), "keypoints")
        evaluator.records = {}
        evaluator.evaluate()
    sigmas = COCO.sigmas_array
    for image_id in (1, 2, 3):
        annotations = gt.loadAnns(gt.getAnnIds(imgIds=image_id))
        dets = [r for r in results if r["image_id"] == image_id]
        poses = np.array([d["keypoints"] for d in dets]).reshape(-1, 17, 3)
        scores = np.array([d["score"] for d in dets])
        samples = rescore_samples(
            poses, scores,
            np.array([a["keypoints"] for a in annotations]).reshape(-1, 17, 3),
            np.array([a["bbox"] for a in annotations]).reshape(-1, 4),
            np.array([a["area"] for a in annotations]),
            np.array([a["iscrowd"] or a["num_keypoints"] == 0 for a in annotations]), sigmas)
        expected = [record for area_range in COCO_AREA_RANGES
                    for record in evaluator.records.get((image_id, area_range), [])]
        assert len(samples.oks) == len(expected) == (0 if image_id == 3 else 3 * len(dets))
        if expected:
            np.testing.assert_allclose(samples.oks, [oks for _, oks in expected], rtol=1e-12)
            np.testing.assert_allclose(samples.poses, np.stack([p for p, _ in expected]),
                                       rtol=1e-6)
        # coco_oks itself against pycocotools' matrix (detections sorted by score).
        if annotations:
            order = np.argsort(-scores, kind="mergesort")
            ours = coco_oks(poses[order], np.array([a["keypoints"] for a in annotations])
                            .reshape(-1, 17, 3), [a["area"] for a in annotations],
                            [a["bbox"] for a in annotations], sigmas)
            np.testing.assert_allclose(ours, evaluator.ious[image_id, 1], rtol=1e-12)


def test_best_oks_scan():
    oks = np.array([[0.2, 0.9, 0.5], [0.0, 0.0, 0.0]])
    # Non-ignored ground truth wins even when an ignored one overlaps better.
    np.testing.assert_array_equal(best_oks_per_detection(oks, [False, True, False]), [0.5, 0])
    # All ignored: the best over all of them.
    np.testing.assert_array_equal(best_oks_per_detection(oks, [True, True, True]), [0.9, 0])


# ------------------------------------------------------------------------------------------------
# The data file

def test_rescore_data_file(tmp_path):
    rng = np.random.default_rng(6)
    parts = [RescoreData(rng.uniform(0, 1, size=(n, 17, 3)).astype(np.float32),
                         rng.uniform(0, 1, size=n)) for n in (3, 0, 4)]
    parts[0].oks[1] = 1.0
    data = concatenate_rescore_data(parts)
    assert data.poses.shape == (7, 17, 3)
    path = tmp_path / "rescore" / "rescore_dataset_train_coco_kpt"
    assert write_rescore_data(path, data) == path
    assert os.listdir(path.parent) == [path.name]  # no temporary file left
    read = read_rescore_data(path, num_joints=17)
    np.testing.assert_array_equal(read.poses, data.poses)
    np.testing.assert_array_equal(read.oks, data.oks)
    features, targets = rescore_training_arrays(read, COCO)
    assert features.shape == (7, 74) and targets.shape == (7, 1)
    assert targets[1, 0] == 0.0 and targets[0, 0] == np.float32(data.oks[0])
    with pytest.raises(DataError, match="14"):
        read_rescore_data(path, num_joints=14)
    with pytest.raises(DataFileNotFoundError):
        read_rescore_data(tmp_path / "missing")
    (tmp_path / "text").write_text("not an archive")
    with pytest.raises(DataError, match="npz"):
        read_rescore_data(tmp_path / "text")
    np.savez(tmp_path / "other.npz", poses=data.poses)
    with pytest.raises(DataError, match="oks"):
        read_rescore_data(tmp_path / "other.npz")
    with pytest.raises(ValueError):
        write_rescore_data(tmp_path / "bad", RescoreData(np.zeros((2, 17, 3)), np.zeros(3)))
    assert not (tmp_path / "bad").exists()
