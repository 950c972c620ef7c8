"""The keypoint-regression experiment files: each loads, builds its model, targets, loss and test
settings, and holds the reference's values (HRNet/HRNet-Bottom-Up-Pose-Estimation
lib/config/default.py and its experiment files, written out here); configs that do not fit a
regression model stop with an error that names the key."""

from pathlib import Path

import pytest

from hrpose.codecs.regression import RegressionTargetParams
from hrpose.config import ConfigError, load_config
from hrpose.losses.regression import RegressionLoss
from hrpose.models import build_model
from hrpose.postprocess.regression import RegressionTestParams

REPO_ROOT = Path(__file__).resolve().parents[1]
W32 = "w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3"
W48 = "w48_4x_reg_delaysep_bg01_stn_640_adam_lr1e-3"
HIGHER_W48 = "w48_2x_reg_delaysep_bg01_0025_stn_640_adam_lr1e-3"
# file -> (model, width, input, output sizes, joints, images per GPU, epochs, LR steps)
EXPERIMENTS = {
    f"coco/w32/{W32}_coco_x140.yaml": ("pose_hrnet_regression", 32, 512, [128], 17, 12, 140,
                                       [90, 120]),
    f"coco/w48/{W48}_coco_x140.yaml": ("pose_hrnet_regression", 48, 640, [160], 17, 12, 140,
                                       [90, 120]),
    f"coco/w48/{HIGHER_W48}_coco_x140.yaml": ("pose_higher_hrnet_regression", 48, 640,
                                              [160, 320], 17, 12, 140, [90, 120]),
    f"crowdpose/w32/{W32}_crowdpose_x300.yaml": ("pose_hrnet_regression", 32, 512, [128], 14,
                                                 10, 300, [200, 260]),
    f"crowdpose/w48/{W48}_crowdpose_x300.yaml": ("pose_hrnet_regression", 48, 640, [160], 14,
                                                 10, 300, [200, 260]),
    f"crowdpose/w48/{HIGHER_W48}_crowdpose_x300.yaml": ("pose_higher_hrnet_regression", 48, 640,
                                                        [160, 320], 14, 10, 300, [200, 260]),
    "coco/rescore_coco.yaml": ("pose_hrnet_regression", 32, 512, [128], 17, 12, 140, [90, 120]),
    "crowdpose/rescore_crowdpose.yaml": ("pose_hrnet_regression", 32, 512, [128], 14, 10, 300,
                                         [200, 260]),
}
SYNTHETIC = ["synthetic/hrnet_regression/w16_4x_reg_delaysep_bg01_stn_256_adam_lr2e-3_"
             "synthetic_x4.yaml", "synthetic/hrnet_regression/rescore_synthetic.yaml"]


def test_the_regression_experiments_are_all_here():
    found = {str(path.relative_to(REPO_ROOT / "experiments"))
             for path in (REPO_ROOT / "experiments").rglob("*.yaml")
             if "_reg_" in path.name or path.name.startswith("rescore_")}
    assert found == set(EXPERIMENTS) | set(SYNTHETIC)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_reference_experiment_values_and_build(name):
    model, width, input_size, outputs, joints, batch, epochs, steps = EXPERIMENTS[name]
    cfg = load_config(str(REPO_ROOT / "experiments" / name))
    higher = model == "pose_higher_hrnet_regression"
    assert cfg.MODEL.NAME == model and cfg.MODEL.NUM_JOINTS == joints
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [width, 2 * width, 4 * width, 8 * width]
    assert cfg.MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.DILATION_RATE == [1, 2, 3]
    assert cfg.MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP.NUM_CHANNELS == [width] * 3
    assert cfg.MODEL.EXTRA.MULTI_LEVEL_OUTPUT_REGRESSION.NUM_CHANNELS == [256]
    assert cfg.DATASET.INPUT_SIZE == input_size and cfg.DATASET.OUTPUT_SIZE == outputs
    assert cfg.DATASET.MAX_SCALE == 1.5 and cfg.DATASET.CENTER_SIGMA == 4.0
    assert cfg.DATASET.OFFSET_RADIUS == 4 and not cfg.DATASET.USE_BBOX_CENTER
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == batch and cfg.TRAIN.END_EPOCH == epochs
    assert cfg.TRAIN.LR_STEP == steps and cfg.TRAIN.LR == 0.001 and cfg.TRAIN.OPTIMIZER == "adam"
    assert cfg.TEST.FLIP_TEST and cfg.TEST.DIST_THRESHOLD == 10 and cfg.TEST.OVERLAP_THRESHOLD == 10
    assert cfg.RESCORE.HIDDEN_LAYER == 256
    assert cfg.RESCORE.MODEL_FILE.endswith("final_rescore_" + (
        "coco_kpt.pth" if joints == 17 else "crowd_pose_kpt.pth"))
    if higher:
        assert cfg.DATASET.SIGMA == [[2, 2, 2], [2]]
        assert cfg.DATASET.BG_WEIGHT == [[0.1, 0.1, 0.1], [0.025]]
        assert list(cfg.LOSS.WITH_OFFSETS_LOSS) == [True, False]
        assert cfg.LOSS.OFFSETS_LOSS_FACTOR == [0.01, 0.01]
        assert cfg.MODEL.EXTRA.DECONV.NUM_CHANNELS == [width]
        assert cfg.MODEL.EXTRA.DECONV.NUM_BASIC_BLOCKS == 1
    else:
        assert cfg.DATASET.SIGMA == [[2, 2, 2]] and cfg.DATASET.BG_WEIGHT == [[0.1, 0.1, 0.1]]
        assert list(cfg.LOSS.WITH_OFFSETS_LOSS) == [True]
        assert cfg.LOSS.OFFSETS_LOSS_FACTOR == [0.01]
    if name.endswith(("rescore_coco.yaml", "rescore_crowdpose.yaml")):
        # Data generation runs without rescoring; the net's training recipe.
        assert not cfg.RESCORE.USE and cfg.TEST.MODEL_FILE and cfg.RESCORE.DATA_FILE
        assert (cfg.RESCORE.BATCHSIZE, cfg.RESCORE.END_EPOCH, cfg.RESCORE.LR) == (1024, 20,
                                                                                  0.001)
    else:
        assert cfg.RESCORE.USE
    targets = RegressionTargetParams.from_config(cfg)
    assert targets.branch_settings(0) == [(2.0, 0.1)] * 3
    assert RegressionLoss.from_config(cfg).num_stages == len(outputs)
    assert RegressionTestParams.from_config(cfg).num_joints == joints
    network = build_model(cfg, is_train=False)
    assert type(network).__name__ == ("PoseHigherHRNetRegression" if higher
                                      else "PoseHRNetRegression")
    assert network.final_layers[1].out_channels == 2 * joints + 1


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_experiments_load_and_build(name):
    cfg = load_config(str(REPO_ROOT / "experiments" / name))
    assert cfg.MODEL.NAME == "pose_hrnet_regression" and cfg.DATASET.INPUT_SIZE == 256
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [16, 32, 64, 128]
    # The trunk starts from the top-down synthetic demo model, as the HigherHRNet demo does.
    assert cfg.MODEL.PRETRAINED.endswith("pose_hrnet/w16_128x96_adam_lr2e-3/model_best.pth")
    assert "transition3" in cfg.MODEL.EXTRA.PRETRAINED_LAYERS
    assert cfg.TRAIN.END_EPOCH == 4
    build_model(cfg, is_train=False)


BAD = [
    (["MODEL.NAME", "pose_hrnet_regression", "LOSS.NUM_STAGES", "2"], "LOSS.NUM_STAGES"),
    (["MODEL.NAME", "pose_higher_hrnet_regression", "LOSS.NUM_STAGES", "2",
      "DATASET.OUTPUT_SIZE", "[128, 256]", "LOSS.WITH_OFFSETS_LOSS", "[True, True]",
      "TEST.WITH_HEATMAPS", "[True, True]"], "LOSS.WITH_OFFSETS_LOSS"),
    (["MODEL.NAME", "pose_hrnet_regression", "LOSS.NUM_STAGES", "1", "DATASET.OUTPUT_SIZE",
      "[128]", "DATASET.SIGMA", "[2.0]", "LOSS.WITH_HEATMAPS_LOSS", "[True]",
      "LOSS.HEATMAPS_LOSS_FACTOR", "[1.0]", "LOSS.WITH_OFFSETS_LOSS", "[True]",
      "LOSS.OFFSETS_LOSS_FACTOR", "[0.01]", "TEST.WITH_HEATMAPS", "[True]"], "DATASET.BG_WEIGHT"),
    (["DATASET.BG_WEIGHT", "[[0.1, -1.0], 0.025]"], "DATASET.BG_WEIGHT"),
    (["MODEL.NAME", "pose_higher_hrnet", "DATASET.SIGMA", "[[2.0, 2.0, 2.0], [2.0]]"],
     "DATASET.SIGMA"),
    (["RESCORE.BATCHSIZE", "0"], "RESCORE.BATCHSIZE"),
]


@pytest.mark.parametrize("opts, key", BAD, ids=[key for _, key in BAD])
def test_configs_that_do_not_fit_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("", opts)


def test_regression_models_do_not_take_tag_grouping():
    w32 = str(REPO_ROOT / "experiments" / f"coco/w32/{W32}_coco_x140.yaml")
    with pytest.raises(ConfigError, match="TEST.GROUPING"):
        load_config(w32, ["TEST.GROUPING", "progressive"])
