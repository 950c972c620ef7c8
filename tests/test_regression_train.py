"""The keypoint-regression paradigm end to end on a tiny synthetic dataset.

pose_hrnet_regression trains through engine.trainer and validates with both result sets
("regression" and "final"), each written and scored; tools/valid.py's path gives back the run's
indicator; PosePredictor returns the validation's final poses; ONNX export refuses the model with
one message. The higher variant is checked on one batch: forward, loss, backward, decoding.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hrpose.apis.export import ExportError, load_model_for_export
from hrpose.apis.predictor import PosePredictor
from hrpose.config import load_config
from hrpose.engine import regression
from hrpose.engine.loop import EpochOptions
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import make_loader, paradigm_of, train, validate_model
from hrpose.evaluation.coco import evaluate_coco_keypoints
from hrpose.models import build_model
from hrpose.postprocess.regression import RegressionTestParams, infer_regression
from hrpose.utils.checkpoint import load_checkpoint_file
from tiny_runs import make_tiny_dataset, run_opts

REPO_ROOT = Path(__file__).resolve().parents[1]
REGRESSION_CFG = ("experiments/synthetic/hrnet_regression/"
                  "w16_4x_reg_delaysep_bg01_stn_256_adam_lr2e-3_synthetic_x4.yaml")
# A higher-variant model of width 8 at 128: one module of one block per stage, narrow heads.
HIGHER_OPTS = [
    "MODEL.NAME", "pose_higher_hrnet_regression", "LOSS.NUM_STAGES", "2",
    "DATASET.OUTPUT_SIZE", "[32, 64]", "DATASET.SIGMA", "[[2.0, 2.0, 2.0], [2.0]]",
    "DATASET.BG_WEIGHT", "[[0.1, 0.1, 0.1], [0.025]]",
    "LOSS.WITH_HEATMAPS_LOSS", "[True, True]", "LOSS.HEATMAPS_LOSS_FACTOR", "[1.0, 1.0]",
    "LOSS.WITH_OFFSETS_LOSS", "[True, False]", "LOSS.OFFSETS_LOSS_FACTOR", "[0.01, 0.01]",
    "TEST.WITH_HEATMAPS", "[True, True]",
    "MODEL.EXTRA.STAGE2.NUM_CHANNELS", "[8, 16]", "MODEL.EXTRA.STAGE3.NUM_CHANNELS",
    "[8, 16, 32]", "MODEL.EXTRA.STAGE4.NUM_CHANNELS", "[8, 16, 32, 64]",
    "MODEL.EXTRA.STAGE2.NUM_BLOCKS", "[1, 1]", "MODEL.EXTRA.STAGE3.NUM_BLOCKS", "[1, 1, 1]",
    "MODEL.EXTRA.STAGE4.NUM_BLOCKS", "[1, 1, 1, 1]",
    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.BLOCK", "['STNBLOCK', 'STNBLOCK', 'STNBLOCK']",
    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.NUM_BLOCKS", "[1, 1, 1]",
    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.NUM_CHANNELS", "[8, 8, 8]",
    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.DILATION_RATE", "[1, 2, 3]",
    "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.NUM_CHANNELS", "[16]",
    "MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8]", "MODEL.EXTRA.DECONV.NUM_BASIC_BLOCKS", "1",
    "MODEL.EXTRA.DECONV.KERNEL_SIZE", "[4]", "MODEL.EXTRA.DECONV.CAT_OUTPUT", "[True]",
    "MODEL.EXTRA.DECONV.NUM_DECONVS", "1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory, "synthetic_regression", seed=5, num_val=3,
                             min_size=140, max_size=176)


def tiny_config(repo_root, data_root, output_root, *extra):
    return load_config(str(repo_root / REGRESSION_CFG), [
        "DATASET.ROOT", str(data_root), "MODEL.PRETRAINED", "''", *run_opts(output_root),
        "DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32]",
        "TRAIN.BATCH_SIZE_PER_GPU", "3", "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[1]",
        "TRAIN.VAL_INTERVAL", "1", *extra])


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    output_root = tmp_path_factory.mktemp("regression_run")
    cfg = tiny_config(REPO_ROOT, tiny_data, output_root)
    paths = create_run(cfg, REGRESSION_CFG, "train")
    best = train(cfg, paths)
    return cfg, paths, best


def read_results(path):
    with open(path) as handle:
        return json.load(handle)


def test_train_validates_both_result_sets_and_keeps_the_final_ap(trained, tiny_data):
    cfg, paths, best = trained
    assert paradigm_of(cfg) is not None and paradigm_of(cfg).run_inference is \
        regression.run_inference
    results_dir = os.path.join(paths.output_dir, "results")
    final = read_results(os.path.join(results_dir, "keypoints_val_results.json"))
    regressed = read_results(os.path.join(results_dir, "keypoints_val_regression_results.json"))
    assert final and len(final) == len(regressed)
    val_ids = {image["id"] for image in json.loads(
        (tiny_data / "annotations" / "person_keypoints_val.json").read_text())["images"]}
    for entry in final + regressed:
        assert entry["image_id"] in val_ids and len(entry["keypoints"]) == 17 * 3
    # Same poses before absorption/fitting: the sets differ in joint scores (and positions).
    assert any(a["keypoints"] != b["keypoints"] for a, b in zip(final, regressed))

    # The run's indicator is the final set's AP, scored independently here.
    coco_gt = str(tiny_data / "annotations" / "person_keypoints_val.json")
    assert best == pytest.approx(evaluate_coco_keypoints(coco_gt, final)["AP"], abs=1e-12)
    checkpoint = load_checkpoint_file(os.path.join(paths.output_dir, "checkpoint.pth"))
    assert checkpoint["best_perf"] == pytest.approx(best)

    # The log holds a COCO table for each set: 'regression', then the final one.
    with open(paths.log_file) as handle:
        log = handle.read()
    header = ("| Arch | AP | Ap .5 | AP .75 | AP (M) | AP (L) | AR | AR .5 | AR .75 | AR (M) "
              "| AR (L) |")
    assert log.count(header) == 2
    regression_row = re.search(r"\| regression \| ([0-9.-]+) \|", log)
    final_row = re.search(r"Result set 'final'.*\n.*\n.*\n.*\| pose_hrn\.\.\. \| ([0-9.-]+) \|",
                          log)
    assert regression_row and final_row
    regression_ap = evaluate_coco_keypoints(coco_gt, regressed)["AP"]
    assert float(regression_row.group(1)) == pytest.approx(regression_ap, abs=5e-4)
    assert float(final_row.group(1)) == pytest.approx(best, abs=5e-4)


def test_valid_path_reproduces_the_indicator(trained, repo_root, tiny_data, tmp_path):
    cfg, paths, best = trained
    valid_cfg = tiny_config(repo_root, tiny_data, tmp_path, "TEST.MODEL_FILE",
                            os.path.join(paths.output_dir, "model_best.pth"))
    assert validate_model(valid_cfg, create_run(valid_cfg, REGRESSION_CFG, "valid")) == best


def test_predictor_gives_the_final_validation_poses(trained, tiny_data):
    cfg, paths, _ = trained
    predictor = PosePredictor.from_config(cfg, os.path.join(paths.output_dir, "model_best.pth"),
                                          "cpu")
    # The predictor keeps its weights channels-last; the CPU validation ran them contiguous, and
    # the Gaussian fit carries that rounding difference to ~1e-3 pixels on an untrained model.
    predictor.model.to(memory_format=torch.contiguous_format)
    final = read_results(os.path.join(paths.output_dir, "results", "keypoints_val_results.json"))
    content = json.loads((tiny_data / "annotations" / "person_keypoints_val.json").read_text())
    for image in content["images"]:
        persons = predictor(str(tiny_data / "images" / "val" / image["file_name"]))
        expected = [entry for entry in final if entry["image_id"] == image["id"]]
        assert len(persons) == len(expected)
        for person, entry in zip(persons, expected):
            np.testing.assert_allclose(person.keypoints.reshape(-1), entry["keypoints"],
                                       rtol=0, atol=1e-4)
            assert person.score == pytest.approx(entry["score"], abs=1e-6)
    with pytest.raises(Exception, match="keypoint-regression"):
        predictor.predict(str(tiny_data / "images" / "val" / content["images"][0]["file_name"]),
                          keep_maps=True)


def test_onnx_export_refuses_regression_models(repo_root):
    cfg = load_config(str(repo_root / REGRESSION_CFG), ["MODEL.PRETRAINED", "''"])
    with pytest.raises(ExportError, match="deformable convolutions"):
        load_model_for_export(cfg, random_weights=True)


def test_merge_puts_sharded_results_back_in_image_order():
    def shard(indices):
        entries = {name: [{"image_id": i, "set": name} for i in indices]
                   for name in regression.RESULT_SETS}
        return {"results": entries, "result_indices": {n: list(indices) for n in entries},
                "num_images": len(set(indices)), "loss": float("nan")}

    merged = regression.merge_predictions([shard([0, 0, 2]), shard([1, 3])])
    for name in regression.RESULT_SETS:
        assert [entry["image_id"] for entry in merged["results"][name]] == [0, 0, 1, 2, 3]
        assert {entry["set"] for entry in merged["results"][name]} == {name}
    assert merged["num_images"] == 4


def test_higher_variant_batch_forward_loss_and_decoding(repo_root, tiny_data, tmp_path):
    cfg = tiny_config(repo_root, tiny_data, tmp_path, *HIGHER_OPTS)
    paradigm = paradigm_of(cfg)
    dataset = paradigm.build_dataset(cfg, is_train=True)
    loader = make_loader(cfg, dataset, True, torch.device("cpu"))
    batch = next(iter(loader))
    images, heatmaps, masks, offsets, offset_weights = batch
    assert [[tuple(h.shape) for h in stage] for stage in heatmaps] == [[(3, 18, 32, 32)],
                                                                       [(3, 18, 64, 64)]]
    assert offsets[1] is None
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True)
    criterion = paradigm.build_loss(cfg)
    output = regression.training_step(criterion)(model, batch, torch.device("cpu"),
                                                 EpochOptions())
    assert set(output.terms) == {"heatmaps_0", "heatmaps_1", "offsets_0"}
    expected = sum(term for term in output.terms.values())
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    output.loss.backward()
    assert model.final_layers[2].weight.grad.abs().sum() > 0  # the 1/2-resolution head learns
    assert model.final_layers[1].weight.grad.abs().sum() > 0  # so do the offsets

    model.eval()
    test_set = paradigm.build_dataset(cfg, is_train=False)
    params = RegressionTestParams.from_config(cfg, test_set.keypoint_info)
    image, meta = test_set[0]
    prediction = infer_regression(model, image, params, "cpu")
    for persons in prediction:
        assert persons.poses.ndim == 3 and persons.poses.shape[1:] == (17, 3)
        assert persons.scores.shape == (len(persons.poses),)
        assert np.isfinite(persons.poses).all()


def test_indicator_is_the_final_sets_ap(repo_root, tiny_data, tmp_path, caplog):
    """Perfect 'final' poses and displaced 'regression' poses: each set is scored on its own and
    the final set's AP (1.0) is the indicator, with the regression table logged beside it."""
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    dataset = regression.build_dataset(cfg, is_train=False)
    coco = dataset.evaluation["coco"]
    final, displaced = [], []
    for annotation in coco.dataset["annotations"]:
        if annotation["num_keypoints"] == 0 or annotation["iscrowd"]:
            continue
        entry = {"image_id": annotation["image_id"], "category_id": 1,
                 "keypoints": list(annotation["keypoints"]), "score": 1.0}
        final.append(entry)
        moved = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        moved[:, 0] += 60.0
        displaced.append({**entry, "keypoints": moved.reshape(-1).tolist()})
    assert final
    predictions = {"results": {"regression": displaced, "final": final},
                   "result_indices": {"regression": [], "final": []},
                   "num_images": len(dataset), "loss": float("nan")}
    with caplog.at_level("INFO", logger="hrpose.engine.regression"):
        name_values, indicator = regression.evaluate_predictions(cfg, dataset, predictions,
                                                                 str(tmp_path))
    assert indicator == pytest.approx(1.0) and name_values["AP"] == pytest.approx(1.0)
    assert re.search(r"\| regression \| 0\.000 \|", caplog.text)
    written = read_results(os.path.join(tmp_path, "results",
                                        "keypoints_val_regression_results.json"))
    assert written[0]["keypoints"] == displaced[0]["keypoints"]
