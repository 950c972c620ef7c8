"""End to end on a tiny synthetic dataset: train, checkpoint, resume, validate, the tools."""

import os
import subprocess
import sys

import pytest
import torch

from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import train, validate_model
from hrpose.utils.checkpoint import load_checkpoint_file
from tiny_runs import SYNTHETIC_CFG, make_tiny_dataset, tiny_topdown_config

SYNTHETIC_RESNET_CFG = "experiments/synthetic/resnet/res18_128x96_d64x3_adam_lr2e-3.yaml"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory, "synthetic", seed=3, num_val=3)


DARK_OPTS = ("MODEL.TARGET_ENCODING", "unbiased", "TEST.DECODER", "dark", "TEST.BLUR_KERNEL", "3",
             "DATASET.COORD_CONVENTION", "dark", "TEST.SHIFT_HEATMAP", "False")


# A narrow two-stack hourglass on the synthetic split: one list of heatmaps per stack.
HOURGLASS_CFG = "experiments/coco/hourglass/hg4_128x96_d256x3_adam_lr2.5e-4.yaml"
HOURGLASS_OPTS = ("DATASET.DATASET", "synthetic", "DATASET.TRAIN_SET", "train",
                  "DATASET.TEST_SET", "val", "TEST.USE_GT_BBOX", "False",
                  "MODEL.EXTRA.NUM_FEATURES", "32", "MODEL.EXTRA.NUM_STACKS", "2")


@pytest.mark.parametrize("cfg_file, opts", [(SYNTHETIC_CFG, ()), (SYNTHETIC_RESNET_CFG, ()),
                                            (SYNTHETIC_CFG, DARK_OPTS),
                                            (HOURGLASS_CFG, HOURGLASS_OPTS)],
                         ids=["hrnet", "simplebaseline", "hrnet-dark", "hourglass"])
def test_train_then_validate_reproduces_the_ap(repo_root, tiny_data, tmp_path, cfg_file, opts):
    cfg = tiny_topdown_config(repo_root, tiny_data, tmp_path, *opts, cfg_file=cfg_file)
    paths = create_run(cfg, cfg_file, "train")
    best = train(cfg, paths)
    for name in ("checkpoint.pth", "model_best.pth", "final_state.pth"):
        assert os.path.isfile(os.path.join(paths.output_dir, name)), name
    assert os.path.isfile(os.path.join(paths.output_dir, "results",
                                       "keypoints_val_results.json"))
    checkpoint = load_checkpoint_file(os.path.join(paths.output_dir, "checkpoint.pth"))
    assert checkpoint["epoch"] == 2 and checkpoint["best_perf"] == pytest.approx(best)

    valid_cfg = tiny_topdown_config(repo_root, tiny_data, tmp_path, "TEST.MODEL_FILE",
                                    os.path.join(paths.output_dir, "model_best.pth"), *opts,
                                    cfg_file=cfg_file)
    assert validate_model(valid_cfg, create_run(valid_cfg, cfg_file, "valid")) == best
    fused = validate_model(valid_cfg, create_run(valid_cfg, cfg_file, "valid"),
                           fuse_batch_norm=True)
    assert fused == pytest.approx(best, abs=1e-3)


def test_killed_run_resumes_to_the_same_weights(repo_root, tiny_data, tmp_path):
    straight = tiny_topdown_config(repo_root, tiny_data, tmp_path / "a")
    train(straight, create_run(straight, SYNTHETIC_CFG, "train"))

    first_half = tiny_topdown_config(repo_root, tiny_data, tmp_path / "b", "TRAIN.END_EPOCH", "1")
    paths = create_run(first_half, SYNTHETIC_CFG, "train")
    train(first_half, paths)
    resumed = tiny_topdown_config(repo_root, tiny_data, tmp_path / "b", "AUTO_RESUME", "True")
    train(resumed, create_run(resumed, SYNTHETIC_CFG, "train"))

    def final_state(root):
        return load_checkpoint_file(os.path.join(
            str(root), "output", "synthetic", "pose_hrnet", "w16_128x96_adam_lr2e-3",
            "checkpoint.pth"))

    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert a["global_step"] == b["global_step"]
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == \
        [g["lr"] for g in b["optimizer"]["param_groups"]]
    for key, value in a["state_dict"].items():
        # Same data order, optimizer state and schedule: equal up to float noise (it is exact on
        # one machine; the margin only absorbs kernel choices).
        assert torch.allclose(value.float(), b["state_dict"][key].float(), rtol=0, atol=1e-6), key


def test_valid_tool_without_a_model_says_what_is_missing(repo_root, tiny_data, tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/valid.py", "--cfg", SYNTHETIC_CFG, "DATASET.ROOT", str(tiny_data),
         "OUTPUT_DIR", str(tmp_path / "out"), "LOG_DIR", str(tmp_path / "log"),
         "TEST.MODEL_FILE", str(tmp_path / "missing.pth")],
        capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 2
    assert "missing.pth" in result.stderr and "Traceback" not in result.stderr


def test_missing_dataset_names_the_expected_file(repo_root, tmp_path):
    cfg = tiny_topdown_config(repo_root, tmp_path / "nowhere", tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere/annotations/person_keypoints_train.json"):
        train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
