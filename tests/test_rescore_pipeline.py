"""The rescore net's life cycle on a tiny synthetic dataset: data from a regression model over the
training split (tools/rescore_data.py), training (tools/rescore_train.py), testing with
RESCORE.MODEL_FILE, and the errors for a rescore file that is missing or does not fit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hrpose.config import load_config
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.datasets.regression import build_regression_dataset
from hrpose.datasets.synthetic import generate_synthetic_dataset
from hrpose.engine import regression
from hrpose.engine.rescore import (
    train_rescore_net,
    train_rescore_net_of_config,
    write_rescore_data_of_config,
)
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import train, validate_model
from hrpose.errors import DataError
from hrpose.models import build_model
from hrpose.models.rescore_net import RescoreNet
from hrpose.postprocess.regression import RegressionTestParams, infer_regression
from hrpose.postprocess.rescore import load_rescorer, pose_rescore_features, read_rescore_data
from hrpose.utils.checkpoint import CheckpointError, load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CFG = ("experiments/synthetic/hrnet_regression/"
             "w16_4x_reg_delaysep_bg01_stn_256_adam_lr2e-3_synthetic_x4.yaml")
RESCORE_CFG = "experiments/synthetic/hrnet_regression/rescore_synthetic.yaml"
SYNTHETIC = get_keypoint_info("synthetic")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data and an untrained (seeded) regression model saved as a checkpoint."""
    root = tmp_path_factory.mktemp("rescore_pipeline")
    data = root / "data"
    generate_synthetic_dataset(str(data), num_train=4, num_val=3, seed=7, min_size=140,
                               max_size=176)
    opts = tiny_opts(data, root)
    torch.manual_seed(3)
    model = build_model(load_config(str(REPO_ROOT / MODEL_CFG), opts), is_train=True)
    checkpoint = root / "model.pth"
    torch.save(model.state_dict(), checkpoint)
    return data, root, checkpoint


def tiny_opts(data, root, *extra):
    # Every centre peak counts (an untrained model's centres are weak): poses in every image.
    # One pass per image (no flip test; test_regression_train covers it).
    return ["DATASET.ROOT", str(data), "MODEL.PRETRAINED", "''",
            "OUTPUT_DIR", str(root / "output"), "LOG_DIR", str(root / "log"),
            "DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32]", "WORKERS", "0",
            "DEVICE", "cpu", "TEST.KEYPOINT_THRESHOLD", "-1.0", "TEST.FLIP_TEST", "False",
            *extra]


def rescore_config(setup, *extra):
    data, root, checkpoint = setup
    return load_config(str(REPO_ROOT / RESCORE_CFG), tiny_opts(
        data, root, "TEST.MODEL_FILE", str(checkpoint),
        "RESCORE.DATA_FILE", str(root / "rescore" / "data.npz"),
        "RESCORE.MODEL_FILE", str(root / "rescore" / "net.pth"),
        "RESCORE.BATCHSIZE", "16", "RESCORE.END_EPOCH", "3", *extra))


def model_config(setup, *extra):
    data, root, checkpoint = setup
    return load_config(str(REPO_ROOT / MODEL_CFG),
                       tiny_opts(data, root, "TEST.MODEL_FILE", str(checkpoint), *extra))


def test_data_training_and_testing_with_the_rescore_net(setup):
    data, root, checkpoint = setup
    cfg = rescore_config(setup)
    assert write_rescore_data_of_config(cfg) == cfg.RESCORE.DATA_FILE
    samples = read_rescore_data(cfg.RESCORE.DATA_FILE, num_joints=17)

    # Independently: the final poses of every training image, each recorded once per COCO area
    # range (3) for the top 20 by score, in score order.
    model = build_model(cfg, is_train=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    train_set = regression.build_dataset(load_config(str(REPO_ROOT / MODEL_CFG),
                                                     tiny_opts(data, root)), is_train=True)
    params = RegressionTestParams.from_config(cfg, SYNTHETIC)
    images = build_regression_dataset(cfg, is_train=False, training_split=True)
    assert images.image_set == "train" and len(images) == len(train_set)
    expected_poses = []
    for index in range(len(images)):
        image, _ = images[index]
        final = infer_regression(model, image, params, "cpu").final
        order = np.argsort(-final.scores, kind="mergesort")[:20]
        expected_poses += [final.poses[order]] * 3
    expected_poses = np.concatenate(expected_poses)
    assert samples.poses.shape == expected_poses.shape and len(samples.poses) > 0
    np.testing.assert_allclose(samples.poses, expected_poses, rtol=0, atol=1e-3)
    assert ((samples.oks >= 0) & (samples.oks <= 1)).all()

    path, losses = train_rescore_net_of_config(cfg)
    assert path == cfg.RESCORE.MODEL_FILE and len(losses) == 3 and np.isfinite(losses).all()
    state = load_checkpoint_file(path)
    assert sorted(state) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias",
                             "l3.weight"]
    assert tuple(state["l1.weight"].shape) == (256, 74)
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".tmp")]

    # Testing with and without the net: the same poses; rescored person scores = net(feature)
    # x the plain scores.
    plain_cfg = model_config(setup, "RESCORE.USE", "False")
    plain_run = create_run(plain_cfg, "plain.yaml", "valid")
    validate_model(plain_cfg, plain_run)
    rescored_cfg = model_config(setup, "RESCORE.MODEL_FILE", path)
    rescored_run = create_run(rescored_cfg, "rescored.yaml", "valid")
    validate_model(rescored_cfg, rescored_run)
    net = RescoreNet(74)
    net.load_state_dict(state)
    net.eval()
    for result_set in ("keypoints_val_results.json", "keypoints_val_regression_results.json"):
        plain = json.loads(Path(plain_run.output_dir, "results", result_set).read_text())
        rescored = json.loads(Path(rescored_run.output_dir, "results", result_set).read_text())
        assert len(plain) == len(rescored) > 0
        poses = np.array([entry["keypoints"] for entry in plain]).reshape(-1, 17, 3)
        np.testing.assert_array_equal(poses, np.array([entry["keypoints"] for entry in rescored])
                                      .reshape(-1, 17, 3))
        with torch.no_grad():
            factor = net(torch.from_numpy(pose_rescore_features(poses, SYNTHETIC)))[:, 0].numpy()
        np.testing.assert_allclose([entry["score"] for entry in rescored],
                                   factor * np.array([entry["score"] for entry in plain]),
                                   rtol=1e-5, atol=1e-6)


def test_training_drops_the_last_partial_batch_and_is_seeded(setup):
    cfg = rescore_config(setup, "RESCORE.BATCHSIZE", "4", "RESCORE.END_EPOCH", "20",
                         "RESCORE.LR", "0.01")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 74)).astype(np.float32)
    targets = np.full((10, 1), 0.5, dtype=np.float32)
    steps = []
    original_step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original_step(self, *args, **kwargs)

    torch.optim.Adam.step = counting_step
    try:
        net, losses = train_rescore_net(cfg, features, targets, SYNTHETIC, seed=1)
    finally:
        torch.optim.Adam.step = original_step
    # 10 samples in batches of 4: two full batches per epoch, the last two samples dropped.
    assert len(steps) == 2 * 20
    assert losses[-1] < 0.1 * losses[0]
    again, _ = train_rescore_net(cfg, features, targets, SYNTHETIC, seed=1)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, again.state_dict()[key], rtol=0, atol=0)
    with pytest.raises(DataError, match="no full batch of RESCORE.BATCHSIZE 4"):
        train_rescore_net(cfg, features[:3], targets[:3], SYNTHETIC)


def test_bad_rescore_files_fail_before_anything_runs(setup, tmp_path):
    data, root, _ = setup
    missing = str(tmp_path / "missing.pth")
    cfg = model_config(setup, "RESCORE.MODEL_FILE", missing)
    with pytest.raises(CheckpointError, match="RESCORE.MODEL_FILE not found: '.*missing.pth'"):
        regression.build_dataset(cfg, is_train=False)
    # Training stops at start-up, before its first epoch writes anything.
    train_cfg = load_config(str(REPO_ROOT / MODEL_CFG), tiny_opts(
        data, tmp_path, "RESCORE.MODEL_FILE", missing, "TRAIN.END_EPOCH", "1",
        "TRAIN.LR_STEP", "[1]"))
    run = create_run(train_cfg, "missing.yaml", "train")
    with pytest.raises(CheckpointError, match="missing.pth"):
        train(train_cfg, run)
    assert not os.path.exists(os.path.join(run.output_dir, "checkpoint.pth"))
    # Switched off, the file is not looked for.
    assert load_rescorer(model_config(setup, "RESCORE.MODEL_FILE", missing, "RESCORE.USE",
                                      "False"), SYNTHETIC) is None

    crowdpose_net = tmp_path / "crowdpose.pth"
    torch.save(RescoreNet(59).state_dict(), crowdpose_net)
    with pytest.raises(CheckpointError, match=r"l1.weight: \(256, 59\) in file vs \(256, 74\)"):
        load_rescorer(model_config(setup, "RESCORE.MODEL_FILE", str(crowdpose_net)), SYNTHETIC)
    narrow_net = tmp_path / "narrow.pth"
    torch.save(RescoreNet(74, hidden=128).state_dict(), narrow_net)
    with pytest.raises(CheckpointError, match="RESCORE.HIDDEN_LAYER 256"):
        load_rescorer(model_config(setup, "RESCORE.MODEL_FILE", str(narrow_net)), SYNTHETIC)
    assert load_rescorer(model_config(setup, "RESCORE.MODEL_FILE", str(narrow_net),
                                      "RESCORE.HIDDEN_LAYER", "128"), SYNTHETIC) is not None
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_rescorer(model_config(setup, "RESCORE.MODEL_FILE", str(junk)), SYNTHETIC)


def test_valid_tool_reports_a_missing_rescore_file_in_one_line(setup, tmp_path):
    data, root, checkpoint = setup
    missing = str(tmp_path / "missing.pth")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "valid.py"), "--cfg",
         str(REPO_ROOT / MODEL_CFG), *tiny_opts(data, tmp_path), "TEST.MODEL_FILE",
         str(checkpoint), "RESCORE.MODEL_FILE", missing],
        capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # Log lines come first (the console shows the run's log); then one error line.
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:] == [
        f"error: RESCORE.MODEL_FILE not found: '{missing}' (train a rescore net with "
        f"tools/rescore_data.py and tools/rescore_train.py, or set RESCORE.USE False to test "
        f"without rescoring)"]
