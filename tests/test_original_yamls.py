"""The originals' experiment files and default trees load unchanged and give our runs."""

import logging
import subprocess
import sys

import pytest
import yaml

from hrpose.config import ConfigError, load_config

FIXTURES = "tests/fixtures/original_yamls"

# Default trees of the originals, written down from their lib/config/default.py (tuples as
# lists). HRNet top-down: leoxiaobin/deep-high-resolution-net.pytorch lib/config/default.py.
HRNET_DEFAULTS = {
    "OUTPUT_DIR": "", "LOG_DIR": "", "DATA_DIR": "", "GPUS": [0], "WORKERS": 4,
    "PRINT_FREQ": 20, "AUTO_RESUME": False, "PIN_MEMORY": True, "RANK": 0,
    "CUDNN": {"BENCHMARK": True, "DETERMINISTIC": False, "ENABLED": True},
    "MODEL": {"NAME": "pose_hrnet", "INIT_WEIGHTS": True, "PRETRAINED": "", "NUM_JOINTS": 17,
              "TAG_PER_JOINT": True, "TARGET_TYPE": "gaussian", "IMAGE_SIZE": [256, 256],
              "HEATMAP_SIZE": [64, 64], "SIGMA": 2, "EXTRA": {}},
    "LOSS": {"USE_OHKM": False, "TOPK": 8, "USE_TARGET_WEIGHT": True,
             "USE_DIFFERENT_JOINTS_WEIGHT": False},
    "DATASET": {"ROOT": "", "DATASET": "mpii", "TRAIN_SET": "train", "TEST_SET": "valid",
                "DATA_FORMAT": "jpg", "HYBRID_JOINTS_TYPE": "", "SELECT_DATA": False,
                "FLIP": True, "SCALE_FACTOR": 0.25, "ROT_FACTOR": 30, "PROB_HALF_BODY": 0.0,
                "NUM_JOINTS_HALF_BODY": 8, "COLOR_RGB": False},
    "TRAIN": {"LR_FACTOR": 0.1, "LR_STEP": [90, 110], "LR": 0.001, "OPTIMIZER": "adam",
              "MOMENTUM": 0.9, "WD": 0.0001, "NESTEROV": False, "GAMMA1": 0.99, "GAMMA2": 0.0,
              "BEGIN_EPOCH": 0, "END_EPOCH": 140, "RESUME": False, "CHECKPOINT": "",
              "BATCH_SIZE_PER_GPU": 32, "SHUFFLE": True},
    "TEST": {"BATCH_SIZE_PER_GPU": 32, "FLIP_TEST": False, "POST_PROCESS": False,
             "SHIFT_HEATMAP": False, "USE_GT_BBOX": False, "IMAGE_THRE": 0.1, "NMS_THRE": 0.6,
             "SOFT_NMS": False, "OKS_THRE": 0.5, "IN_VIS_THRE": 0.0, "COCO_BBOX_FILE": "",
             "BBOX_THRE": 1.0, "MODEL_FILE": ""},
    "DEBUG": {"DEBUG": False, "SAVE_BATCH_IMAGES_GT": False, "SAVE_BATCH_IMAGES_PRED": False,
              "SAVE_HEATMAPS_GT": False, "SAVE_HEATMAPS_PRED": False},
}

# ilovepose/DarkPose lib/config/default.py: HRNet's tree with TEST.BLUR_KERNEL 11 in place of
# TEST.SHIFT_HEATMAP.
DARKPOSE_DEFAULTS = {
    **HRNET_DEFAULTS,
    "TEST": {**{k: v for k, v in HRNET_DEFAULTS["TEST"].items() if k != "SHIFT_HEATMAP"},
             "BLUR_KERNEL": 11},
}

# The EXTRA defaults of leoxiaobin/deep-high-resolution-net.pytorch lib/config/models.py
# (POSE_RESNET, POSE_HIGH_RESOLUTION_NET; its POSE_RESNEXT belongs to a model no released
# experiment uses).
HRNET_MODELS_EXTRAS = {
    "pose_resnet": {"NUM_LAYERS": 50, "DECONV_WITH_BIAS": False, "NUM_DECONV_LAYERS": 3,
                    "NUM_DECONV_FILTERS": [256, 256, 256], "NUM_DECONV_KERNELS": [4, 4, 4],
                    "FINAL_CONV_KERNEL": 1, "PRETRAINED_LAYERS": ["*"]},
    "pose_hrnet": {
        "PRETRAINED_LAYERS": ["*"], "STEM_INPLANES": 64, "FINAL_CONV_KERNEL": 1,
        "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "NUM_BLOCKS": [4, 4],
                   "NUM_CHANNELS": [32, 64], "BLOCK": "BASIC", "FUSE_METHOD": "SUM"},
        "STAGE3": {"NUM_MODULES": 1, "NUM_BRANCHES": 3, "NUM_BLOCKS": [4, 4, 4],
                   "NUM_CHANNELS": [32, 64, 128], "BLOCK": "BASIC", "FUSE_METHOD": "SUM"},
        "STAGE4": {"NUM_MODULES": 1, "NUM_BRANCHES": 4, "NUM_BLOCKS": [4, 4, 4, 4],
                   "NUM_CHANNELS": [32, 64, 128, 256], "BLOCK": "BASIC", "FUSE_METHOD": "SUM"},
    },
}

# HRNet/HigherHRNet-Human-Pose-Estimation lib/config/default.py.
HIGHER_HRNET_DEFAULTS = {
    "OUTPUT_DIR": "", "LOG_DIR": "", "DATA_DIR": "", "GPUS": [0], "WORKERS": 4,
    "PRINT_FREQ": 20, "AUTO_RESUME": False, "PIN_MEMORY": True, "RANK": 0, "VERBOSE": True,
    "DIST_BACKEND": "nccl", "MULTIPROCESSING_DISTRIBUTED": True,
    "FP16": {"ENABLED": False, "STATIC_LOSS_SCALE": 1.0, "DYNAMIC_LOSS_SCALE": False},
    "CUDNN": {"BENCHMARK": True, "DETERMINISTIC": False, "ENABLED": True},
    "MODEL": {"NAME": "pose_multi_resolution_net_v16", "INIT_WEIGHTS": True, "PRETRAINED": "",
              "NUM_JOINTS": 17, "TAG_PER_JOINT": True, "EXTRA": {}},
    "LOSS": {"NUM_STAGES": 1, "WITH_HEATMAPS_LOSS": [True], "HEATMAPS_LOSS_FACTOR": [1.0],
             "WITH_AE_LOSS": [True], "AE_LOSS_TYPE": "max", "PUSH_LOSS_FACTOR": [0.001],
             "PULL_LOSS_FACTOR": [0.001]},
    "DATASET": {"ROOT": "", "DATASET": "coco_kpt", "DATASET_TEST": "coco", "NUM_JOINTS": 17,
                "MAX_NUM_PEOPLE": 30, "TRAIN": "train2017", "TEST": "val2017",
                "DATA_FORMAT": "jpg", "MAX_ROTATION": 30, "MIN_SCALE": 0.75, "MAX_SCALE": 1.25,
                "SCALE_TYPE": "short", "MAX_TRANSLATE": 40, "INPUT_SIZE": 512,
                "OUTPUT_SIZE": [128, 256, 512], "FLIP": 0.5, "SIGMA": -1,
                "SCALE_AWARE_SIGMA": False, "BASE_SIZE": 256.0, "BASE_SIGMA": 2.0,
                "INT_SIGMA": False, "WITH_CENTER": False},
    "TRAIN": {"LR_FACTOR": 0.1, "LR_STEP": [90, 110], "LR": 0.001, "OPTIMIZER": "adam",
              "MOMENTUM": 0.9, "WD": 0.0001, "NESTEROV": False, "GAMMA1": 0.99, "GAMMA2": 0.0,
              "BEGIN_EPOCH": 0, "END_EPOCH": 140, "RESUME": False, "CHECKPOINT": "",
              "IMAGES_PER_GPU": 32, "SHUFFLE": True},
    "TEST": {"IMAGES_PER_GPU": 32, "FLIP_TEST": False, "ADJUST": True, "REFINE": True,
             "SCALE_FACTOR": [1], "DETECTION_THRESHOLD": 0.2, "TAG_THRESHOLD": 1.0,
             "USE_DETECTION_VAL": True, "IGNORE_TOO_MUCH": False, "MODEL_FILE": "",
             "IGNORE_CENTER": True, "NMS_KERNEL": 3, "NMS_PADDING": 1, "PROJECT2IMAGE": False,
             "WITH_HEATMAPS": [True], "WITH_AE": [True], "LOG_PROGRESS": False},
    "DEBUG": {"DEBUG": True, "SAVE_BATCH_IMAGES_GT": False, "SAVE_BATCH_IMAGES_PRED": False,
              "SAVE_HEATMAPS_GT": True, "SAVE_HEATMAPS_PRED": True, "SAVE_TAGMAPS_PRED": True},
}

# HRNet/HigherHRNet-Human-Pose-Estimation lib/config/models.py (POSE_HIGHER_RESOLUTION_NET,
# unused by its code; its DECONV.NUM_DCONVS is spelt so there).
HIGHER_HRNET_MODELS_EXTRA = {
    "PRETRAINED_LAYERS": ["*"], "STEM_INPLANES": 64, "FINAL_CONV_KERNEL": 1,
    "STAGE1": {"NUM_MODULES": 1, "NUM_BRANCHES": 1, "NUM_BLOCKS": [4], "NUM_CHANNELS": [64],
               "BLOCK": "BOTTLENECK", "FUSE_METHOD": "SUM"},
    "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "NUM_BLOCKS": [4, 4],
               "NUM_CHANNELS": [24, 48], "BLOCK": "BOTTLENECK", "FUSE_METHOD": "SUM"},
    "STAGE3": {"NUM_MODULES": 1, "NUM_BRANCHES": 3, "NUM_BLOCKS": [4, 4, 4],
               "NUM_CHANNELS": [24, 48, 92], "BLOCK": "BOTTLENECK", "FUSE_METHOD": "SUM"},
    "STAGE4": {"NUM_MODULES": 1, "NUM_BRANCHES": 4, "NUM_BLOCKS": [4, 4, 4, 4],
               "NUM_CHANNELS": [24, 48, 92, 192], "BLOCK": "BOTTLENECK", "FUSE_METHOD": "SUM"},
    "DECONV": {"NUM_DCONVS": 2, "NUM_CHANNELS": [32, 32], "NUM_BASIC_BLOCKS": 4,
               "KERNEL_SIZE": [2, 2], "CAT_OUTPUT": [True, True]},
}

# HRNet/HRNet-Bottom-Up-Pose-Estimation lib/config/default.py (the 2020 regression code).
REGRESSION_DEFAULTS = {
    "OUTPUT_DIR": "", "LOG_DIR": "", "DATA_DIR": "", "GPUS": [0], "WORKERS": 4,
    "PRINT_FREQ": 20, "AUTO_RESUME": False, "PIN_MEMORY": True, "RANK": 0, "VERBOSE": True,
    "DIST_BACKEND": "nccl", "MULTIPROCESSING_DISTRIBUTED": True,
    "CUDNN": {"BENCHMARK": True, "DETERMINISTIC": False, "ENABLED": True},
    "MODEL": {"NAME": "pose_hrnet", "INIT_WEIGHTS": True, "PRETRAINED": "", "NUM_JOINTS": 17,
              "EXTRA": {}},
    "LOSS": {"NUM_STAGES": 1, "WITH_HEATMAPS_LOSS": [True], "HEATMAPS_LOSS_FACTOR": [1.0],
             "WITH_OFFSETS_LOSS": [True], "OFFSETS_LOSS_FACTOR": [1.0]},
    "DATASET": {"ROOT": "", "DATASET": "coco_kpt", "DATASET_TEST": "", "NUM_JOINTS": 17,
                "MAX_NUM_PEOPLE": 30, "TRAIN": "train2017", "TEST": "val2017",
                "GET_RESCORE_DATA": False, "DATA_FORMAT": "jpg", "USE_MASK": False,
                "USE_BBOX_CENTER": False, "OFFSET_REG": False, "OFFSET_RADIUS": 4,
                "BG_WEIGHT": [1.0], "MAX_ROTATION": 30, "MIN_SCALE": 0.75, "MAX_SCALE": 1.25,
                "SCALE_TYPE": "short", "MAX_TRANSLATE": 40, "INPUT_SIZE": 512,
                "OUTPUT_SIZE": [128, 256, 512], "FLIP": 0.5, "SIGMA": [2.0], "CENTER_SIGMA": 4,
                "BASE_SIZE": 256.0, "BASE_SIGMA": 2.0, "MIN_SIGMA": 1, "WITH_CENTER": False},
    "TRAIN": {"LR_FACTOR": 0.1, "LR_STEP": [90, 110], "LR": 0.001, "OPTIMIZER": "adam",
              "MOMENTUM": 0.9, "WD": 0.0001, "NESTEROV": False, "GAMMA1": 0.99, "GAMMA2": 0.0,
              "BEGIN_EPOCH": 0, "END_EPOCH": 140, "RESUME": False, "CHECKPOINT": "",
              "IMAGES_PER_GPU": 32, "SHUFFLE": True},
    "TEST": {"IMAGES_PER_GPU": 32, "FLIP_TEST": True, "SCALE_FACTOR": [1], "MODEL_FILE": "",
             "IGNORE_CENTER": False, "NMS_KERNEL": 3, "NMS_PADDING": 1, "BBOX_GROUPING": False,
             "BBOX_FILE": "", "REG_GROUP": True, "USE_HEATMAP": False, "REG_THRESHOLD": 0.98,
             "DIST_THRESHOLD": 10, "OVERLAP_THRESHOLD": 10, "USE_DECREASE_SCORE": True,
             "SCALE_DECREASE": 0.001, "KEYPOINT_THRESHOLD": 0.01, "ADJUST_THRESHOLD": 0.05,
             "MAX_ABSORB_DISTANCE": 75, "POOL_THRESHOLD1": 300, "POOL_THRESHOLD2": 200,
             "GUASSIAN_KERNEL": 6, "GUASSIAN_SIGMA": 2.0, "WITH_HEATMAPS": [True],
             "LOG_PROGRESS": True},
    "RESCORE": {"USE": True, "END_EPOCH": 20, "LR": 0.001, "HIDDEN_LAYER": 256,
                "BATCHSIZE": 1024, "MODEL_ROOT": "model/rescore/",
                "MODEL_FILE": "model/rescore/final_rescore_coco_kpt.pth",
                "DATA_FILE": "data/rescore_data/rescore_dataset_train_coco_kpt"},
    "DEBUG": {"DEBUG": True, "SAVE_BATCH_IMAGES_GT": False, "SAVE_BATCH_IMAGES_PRED": False,
              "SAVE_HEATMAPS_GT": True, "SAVE_HEATMAPS_PRED": True, "SAVE_TAGMAPS_PRED": True},
}


def merged(base: dict, patch: dict) -> dict:
    result = dict(base)
    for key, value in patch.items():
        result[key] = merged(base[key], value) if isinstance(value, dict) and key in base \
            else value
    return result


def write_yaml(tmp_path, values, name="original.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_hrnet_default_tree_loads(tmp_path):
    cfg = load_config(write_yaml(tmp_path, HRNET_DEFAULTS))
    assert cfg.MODEL.NAME == "pose_hrnet" and cfg.DATASET.DATASET == "mpii"
    assert cfg.TEST.DECODER == "standard" and cfg.MODEL.TARGET_ENCODING == "standard"


def test_darkpose_default_tree_loads_as_dark(tmp_path):
    cfg = load_config(write_yaml(tmp_path, DARKPOSE_DEFAULTS))
    # DarkPose always encodes unbiased, decodes with DARK and does not shift flipped heatmaps.
    assert (cfg.MODEL.TARGET_ENCODING, cfg.DATASET.COORD_CONVENTION, cfg.TEST.DECODER,
            cfg.TEST.SHIFT_HEATMAP) == ("unbiased", "dark", "dark", False)
    assert cfg.TEST.BLUR_KERNEL == 11


@pytest.mark.parametrize("name", sorted(HRNET_MODELS_EXTRAS))
def test_hrnet_models_extras_load(tmp_path, name):
    values = merged(HRNET_DEFAULTS, {"MODEL": {"NAME": name,
                                               "EXTRA": HRNET_MODELS_EXTRAS[name]}})
    cfg = load_config(write_yaml(tmp_path, values))
    assert cfg.MODEL.EXTRA.FINAL_CONV_KERNEL == 1


def test_higher_hrnet_default_tree_loads(tmp_path):
    # Its MODEL.NAME default names a model no released experiment uses (they all give
    # pose_higher_hrnet), and its OUTPUT_SIZE has three entries for one loss stage; the
    # patch makes it the one-stage model that the defaults' per-stage lists describe.
    values = merged(HIGHER_HRNET_DEFAULTS, {
        "MODEL": {"NAME": "pose_higher_hrnet",
                  "EXTRA": {"DECONV": {"NUM_DECONVS": 0, "NUM_CHANNELS": [],
                                       "KERNEL_SIZE": [], "CAT_OUTPUT": []}}},
        "DATASET": {"OUTPUT_SIZE": [128]}})
    cfg = load_config(write_yaml(tmp_path, values))
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 32 and cfg.TEST.BATCH_SIZE_PER_GPU == 32
    assert (cfg.DATASET.TRAIN_SET, cfg.DATASET.TEST_SET) == ("train2017", "val2017")
    assert cfg.DATASET.DATASET == "coco" and cfg.DATASET.TEST_DATASET == ""
    assert cfg.DATASET.FLIP is True
    assert list(cfg.DATASET.SIGMA) == [-1.0]  # the scalar, one per stage
    assert cfg.DATASET.COLOR_RGB is True  # HigherHRNet always converts to RGB


def test_higher_hrnet_models_extra_loads(tmp_path):
    extra = merged(HIGHER_HRNET_MODELS_EXTRA, {"DECONV": {"NUM_DECONVS": 1,
                                                           "NUM_CHANNELS": [32],
                                                           "KERNEL_SIZE": [4],
                                                           "CAT_OUTPUT": [True]}})
    cfg = load_config(write_yaml(tmp_path, {"MODEL": {"NAME": "pose_higher_hrnet",
                                                      "EXTRA": extra}}))
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [24, 48, 92, 192]


def test_regression_default_tree_loads(tmp_path):
    # Its defaults leave offsets and the centre off; each of its experiments turns them on.
    values = merged(REGRESSION_DEFAULTS, {"DATASET": {"OFFSET_REG": True, "WITH_CENTER": True,
                                                      "OUTPUT_SIZE": [128]}})
    cfg = load_config(write_yaml(tmp_path, values))
    assert cfg.MODEL.NAME == "pose_hrnet_regression" and cfg.MODEL.NUM_JOINTS == 17
    assert cfg.RESCORE.HIDDEN_LAYER == 256


# Each original experiment file and hrpose's own file for the same experiment.
SAME_EXPERIMENT = {
    "deep-high-resolution-net/experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml":
        "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
    "deep-high-resolution-net/experiments/coco/hrnet/w48_384x288_adam_lr1e-3.yaml":
        "experiments/coco/hrnet/w48_384x288_adam_lr1e-3.yaml",
    "deep-high-resolution-net/experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml":
        "experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml",
    "deep-high-resolution-net/experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml":
        "experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml",
    "HigherHRNet/experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml":
        "experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml",
    "HigherHRNet/experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml":
        "experiments/crowdpose/higher_hrnet/w32_512_adam_lr1e-3.yaml",
    "DarkPose/experiments/coco/hourglass/hg4_128x96_d256x3_adam_lr2.5e-4.yaml":
        "experiments/coco/hourglass/hg4_128x96_d256x3_adam_lr2.5e-4_dark.yaml",
    "DarkPose/experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml":
        "experiments/coco/hrnet/w32_256x192_adam_lr1e-3_dark.yaml",
    "HRNet-Bottom-Up/experiments/coco/w32/"
    "w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3_coco_x140.yaml":
        "experiments/coco/w32/w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3_coco_x140.yaml",
}
# Keys that do not change what is trained or tested: where files are (each user's own layout),
# the machine (GPU ids, loader workers, log frequency) and debug images.
NOT_THE_RUN = ("DATASET.ROOT", "MODEL.PRETRAINED", "TEST.MODEL_FILE", "TEST.COCO_BBOX_FILE",
               "RESCORE.MODEL_FILE", "RESCORE.DATA_FILE", "GPUS", "WORKERS", "PRINT_FREQ")


def leaves(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def the_run(cfg) -> dict:
    return {key: value for key, value in leaves(cfg)
            if key not in NOT_THE_RUN and not key.startswith("DEBUG.")}


@pytest.mark.parametrize("original", sorted(SAME_EXPERIMENT))
def test_original_file_gives_our_run(repo_root, original):
    ours = load_config(str(repo_root / SAME_EXPERIMENT[original]))
    theirs = load_config(str(repo_root / FIXTURES / original))
    assert the_run(theirs) == the_run(ours)


def test_one_warning_names_the_ignored_keys(repo_root, caplog):
    path = repo_root / FIXTURES / "deep-high-resolution-net/experiments/coco/hrnet/" \
                                  "w32_256x192_adam_lr1e-3.yaml"
    with caplog.at_level(logging.WARNING):
        load_config(str(path), ["TRAIN.RESUME", "True"])
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    # The keys of that file that HRNet's own code does not read or that hrpose does by itself.
    for key in ("MODEL.TARGET_TYPE", "DATASET.DATA_FORMAT", "TRAIN.GAMMA1", "TRAIN.GAMMA2",
                "TEST.NMS_THRE", "TEST.BBOX_THRE"):
        assert key in message
    assert "on the command line: TRAIN.RESUME" in message


def test_hrpose_file_logs_no_warning(repo_root, caplog):
    with caplog.at_level(logging.WARNING):
        load_config(str(repo_root / SAME_EXPERIMENT[sorted(SAME_EXPERIMENT)[0]]))
    assert not caplog.records


def test_originals_key_names_work_on_the_command_line(repo_root):
    path = repo_root / FIXTURES / "HigherHRNet/experiments/coco/higher_hrnet/" \
                                  "w32_512_adam_lr1e-3.yaml"
    cfg = load_config(str(path), ["TRAIN.IMAGES_PER_GPU", "4", "DATASET.TEST", "test-dev2017",
                                  "DATASET.SIGMA", "3"])
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 4
    assert cfg.DATASET.TEST_SET == "test-dev2017"
    assert list(cfg.DATASET.SIGMA) == [3.0, 3.0]


@pytest.mark.parametrize("original, replace, fragments", [
    ("deep-high-resolution-net/experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
     ("TARGET_TYPE: gaussian", "TARGET_TYPE: coordinate"),
     ["MODEL.TARGET_TYPE", "'coordinate'", "only 'gaussian'"]),
    ("deep-high-resolution-net/experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
     ("DATA_FORMAT: jpg", "DATA_FORMT: jpg"),
     ["DATASET.DATA_FORMT", "did you mean 'DATASET.DATA_FORMAT'"]),
    ("deep-high-resolution-net/experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
     ("SHIFT_HEATMAP: true", "SHIFT_HEATMAPS: true"),
     ["TEST.SHIFT_HEATMAPS", "did you mean 'TEST.SHIFT_HEATMAP'"]),
    ("HigherHRNet/experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml",
     ("FLIP: 0.5", "FLIP: 0.3"), ["DATASET.FLIP", "0.3", "probability 0.5"]),
    ("HigherHRNet/experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml",
     ("NUM_JOINTS: 17\n  ROOT", "NUM_JOINTS: 14\n  ROOT"),
     ["DATASET.NUM_JOINTS", "14", "MODEL.NUM_JOINTS (17)"]),
    ("HigherHRNet/experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml",
     ("DATASET: coco_kpt", "DATASET: coco_kpt\n  WITH_CENTER: True"),
     ["DATASET.WITH_CENTER", "True"]),
    ("HigherHRNet/experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml",
     ("DATASET_TEST: crowd_pose", "DATASET_TEST: rescore_crowd_pose"),
     ["DATASET.DATASET_TEST", "'rescore_crowd_pose'"]),
    ("HRNet-Bottom-Up/experiments/coco/w32/"
     "w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3_coco_x140.yaml",
     ("WITH_CENTER: True", "WITH_CENTER: False"), ["DATASET.WITH_CENTER", "False"]),
    ("HRNet-Bottom-Up/experiments/coco/w32/"
     "w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3_coco_x140.yaml",
     ("NUM_DECONVS: 0", "NUM_DECONVS: 1"), ["MODEL.EXTRA.DECONV.NUM_DECONVS", "1"]),
])
def test_what_hrpose_does_not_implement_is_refused(repo_root, tmp_path, original, replace,
                                                   fragments):
    text = (repo_root / FIXTURES / original).read_text()
    assert replace[0] in text
    path = tmp_path / "changed.yaml"
    path.write_text(text.replace(replace[0], replace[1], 1))
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    for fragment in fragments + ["changed.yaml"]:
        assert fragment in str(error.value)


def test_regression_command_line_value_refused(repo_root):
    path = repo_root / FIXTURES / "HRNet-Bottom-Up/experiments/coco/w32/" \
                                  "w32_4x_reg_delaysep_bg01_stn_512_adam_lr1e-3_coco_x140.yaml"
    with pytest.raises(ConfigError, match="'TEST.REG_GROUP' on the command line has value "
                                          "False; hrpose implements only True"):
        load_config(str(path), ["TEST.REG_GROUP", "False"])


@pytest.mark.parametrize("tool", ["train.py", "valid.py"])
def test_tools_read_an_original_file(repo_root, tmp_path, tool):
    """The config passes: the one warning, then the run stops only for a missing file (the
    ImageNet weights to train from, the model to test)."""
    path = repo_root / FIXTURES / "deep-high-resolution-net/experiments/coco/hrnet/" \
                                  "w32_256x192_adam_lr1e-3.yaml"
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools" / tool), "--cfg", str(path),
         "--model-dir", str(tmp_path / "output"), "--log-dir", str(tmp_path / "log"),
         "--data-dir", str(tmp_path), "WORKERS", "0"],
        capture_output=True, text=True, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in lines if "original repositories" in line]
    assert len(warnings) == 1 and warnings[0] == lines[0], result.stderr
    assert "MODEL.TARGET_TYPE" in lines[0] and "DATASET.DATA_FORMAT" in lines[0]
    assert lines[-1].startswith("error: ") and "config key" not in lines[-1]
    assert str(tmp_path) in lines[-1]  # the missing file is one under this run's folders


def test_fp16_block_of_the_640_experiments_is_ignored(repo_root, tmp_path, caplog):
    # HigherHRNet's 640 experiments add this block (experiments/coco/higher_hrnet/
    # w32_640_adam_lr1e-3.yaml); hrpose's mixed precision is TRAIN.AMP.
    text = (repo_root / FIXTURES / "HigherHRNet/experiments/coco/higher_hrnet/"
                                   "w32_512_adam_lr1e-3.yaml").read_text()
    path = tmp_path / "w32_640.yaml"
    path.write_text(text.replace("PRINT_FREQ: 100\n",
                                 "PRINT_FREQ: 100\nFP16:\n  ENABLED: True\n"
                                 "  DYNAMIC_LOSS_SCALE: True\n"))
    with caplog.at_level(logging.WARNING):
        cfg = load_config(str(path))
    assert "FP16.ENABLED, FP16.DYNAMIC_LOSS_SCALE" in caplog.records[0].getMessage()
    assert cfg.TRAIN.AMP == "auto"
