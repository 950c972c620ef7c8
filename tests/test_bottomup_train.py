"""Bottom-up end to end on a tiny synthetic dataset: train, checkpoint, resume, validate."""

import json
import os

import numpy as np
import pytest
import torch

from hrpose.config import load_config
from hrpose.datasets.build import build_bottomup_dataset
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import make_loader, train, validate_model
from hrpose.losses.associative_embedding import total_bottomup_loss
from hrpose.losses.build import build_bottomup_loss
from hrpose.models import build_model
from hrpose.utils.checkpoint import load_checkpoint_file
from tiny_runs import make_tiny_dataset, run_opts

BOTTOMUP_CFG = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml"
HAE_CFG = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3_hae.yaml"
HAE_EXPERIMENTS = ["experiments/coco/higher_hrnet/w32_512_adam_lr1.5e-3_hae.yaml",
                   "experiments/coco/hrnet_bottomup/w32_512_adam_lr1.5e-3_hae.yaml",
                   "experiments/crowdpose/higher_hrnet/w32_512_adam_lr1.5e-3_hae.yaml", HAE_CFG]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory, "synthetic_bottomup", seed=5, num_val=3,
                             min_size=140, max_size=176)


def tiny_config(repo_root, data_root, output_root, *extra, cfg_file=BOTTOMUP_CFG):
    return load_config(str(repo_root / cfg_file), [
        "DATASET.ROOT", str(data_root), *run_opts(output_root),
        "DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32, 64]",
        "TRAIN.BATCH_SIZE_PER_GPU", "3", "TRAIN.END_EPOCH", "2",
        "TRAIN.LR_STEP", "[1]", "TRAIN.VAL_INTERVAL", "1",
        # The experiment starts its trunk from the top-down demo model; tests start from scratch.
        "MODEL.PRETRAINED", "", *extra])


# Two epochs leave heatmaps far below the usual threshold; a low one makes the run produce poses.
LOW_THRESHOLD = ("TEST.DETECTION_THRESHOLD", "0.001")


def test_train_then_validate_reproduces_the_ap(repo_root, tiny_data, tmp_path):
    cfg = tiny_config(repo_root, tiny_data, tmp_path, *LOW_THRESHOLD)
    paths = create_run(cfg, BOTTOMUP_CFG, "train")
    best = train(cfg, paths)
    for name in ("checkpoint.pth", "model_best.pth", "final_state.pth"):
        assert os.path.isfile(os.path.join(paths.output_dir, name)), name
    results_file = os.path.join(paths.output_dir, "results", "keypoints_val_results.json")
    with open(results_file) as f:
        results = json.load(f)
    assert results
    val_ids = {image["id"] for image in json.loads(
        (tiny_data / "annotations" / "person_keypoints_val.json").read_text())["images"]}
    for entry in results:
        assert entry["image_id"] in val_ids and len(entry["keypoints"]) == 17 * 3
    checkpoint = load_checkpoint_file(os.path.join(paths.output_dir, "checkpoint.pth"))
    assert checkpoint["epoch"] == 2 and checkpoint["best_perf"] == pytest.approx(best)

    valid_cfg = tiny_config(repo_root, tiny_data, tmp_path, "TEST.MODEL_FILE",
                            os.path.join(paths.output_dir, "model_best.pth"), *LOW_THRESHOLD)
    assert validate_model(valid_cfg, create_run(valid_cfg, BOTTOMUP_CFG, "valid")) == best
    fused = validate_model(valid_cfg, create_run(valid_cfg, BOTTOMUP_CFG, "valid"),
                           fuse_batch_norm=True)
    assert fused == pytest.approx(best, abs=1e-3)


def test_killed_run_resumes_to_the_same_weights(repo_root, tiny_data, tmp_path):
    opts = ("TRAIN.VAL_INTERVAL", "5")
    straight = tiny_config(repo_root, tiny_data, tmp_path / "a", *opts)
    train(straight, create_run(straight, BOTTOMUP_CFG, "train"))
    first_half = tiny_config(repo_root, tiny_data, tmp_path / "b", *opts, "TRAIN.END_EPOCH", "1")
    train(first_half, create_run(first_half, BOTTOMUP_CFG, "train"))
    resumed = tiny_config(repo_root, tiny_data, tmp_path / "b", *opts, "AUTO_RESUME", "True")
    train(resumed, create_run(resumed, BOTTOMUP_CFG, "train"))

    def final_state(root):
        return load_checkpoint_file(os.path.join(
            str(root), "output", "synthetic", "pose_higher_hrnet", "w16_256_adam_lr2e-3",
            "checkpoint.pth"))

    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), rtol=0, atol=1e-6), key


@pytest.mark.parametrize("cfg_file", [BOTTOMUP_CFG, HAE_CFG], ids=["ae", "hae"])
def test_training_steps_lower_the_loss_of_a_batch(repo_root, tiny_data, tmp_path, cfg_file):
    cfg = tiny_config(repo_root, tiny_data, tmp_path, cfg_file=cfg_file)
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True)
    criterion = build_bottomup_loss(cfg)
    loader = make_loader(cfg, build_bottomup_dataset(cfg, is_train=True), True,
                         torch.device("cpu"))
    images, heatmaps, masks, joints = next(iter(loader))
    assert images.shape == (3, 3, 128, 128)
    assert [h.shape[-1] for h in heatmaps] == [32, 64] and joints[0].shape[-1] == 2
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    model.train()
    for _ in range(8):
        loss = total_bottomup_loss(*criterion(model(images), heatmaps, masks, joints))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("cfg_file", HAE_EXPERIMENTS)
def test_hae_experiments_train_with_the_hierarchical_loss_and_decode_progressively(repo_root,
                                                                                   cfg_file):
    from hrpose.datasets.metadata import get_keypoint_info
    from hrpose.losses.hierarchical_ae import HierarchicalAELoss

    cfg = load_config(str(repo_root / cfg_file), [])
    criterion = build_bottomup_loss(cfg)
    assert isinstance(criterion.tag_loss, HierarchicalAELoss)
    expected = get_keypoint_info(cfg.DATASET.DATASET).get_keypoint_groups(
        cfg.DATASET.KEYPOINT_GROUPS)
    assert expected and criterion.tag_loss.groups == expected
    assert criterion.tag_loss.focal_pull and cfg.TEST.GROUPING == "progressive"
