"""Config merging, overrides, validation and every error path of update_config."""

import argparse
import subprocess
import sys

import pytest

from hrpose.config import ConfigError, get_default_config, load_config, update_config
from hrpose.engine.cli import add_config_arguments, config_from_args


def write_yaml(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_frozen_after_update(tmp_path):
    cfg = load_config()
    assert cfg.is_frozen()
    assert cfg.MODEL.NAME == "pose_hrnet"
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [32, 64, 128, 256]


def test_yaml_then_command_line_override(tmp_path):
    path = write_yaml(tmp_path, "TRAIN:\n  LR: 0.005\n  END_EPOCH: 10\nMODEL:\n  SIGMA: 3\n")
    cfg = load_config(path, ["TRAIN.LR", "1e-4", "TEST.FLIP_TEST", "True", "GPUS", "(0,1)"])
    assert cfg.TRAIN.LR == pytest.approx(1e-4)  # the command line wins over the file
    assert cfg.TRAIN.END_EPOCH == 10
    assert cfg.MODEL.SIGMA == 3.0 and isinstance(cfg.MODEL.SIGMA, float)  # int accepted for float
    assert cfg.TEST.FLIP_TEST is True
    assert tuple(cfg.GPUS) == (0, 1)


def test_update_config_takes_argparse_namespace(tmp_path):
    path = write_yaml(tmp_path, "MODEL:\n  NUM_JOINTS: 14\n")
    cfg = update_config(get_default_config(), argparse.Namespace(cfg=path, opts=["WORKERS", "0"]))
    assert cfg.MODEL.NUM_JOINTS == 14 and cfg.WORKERS == 0


def test_model_extra_follows_model_name(tmp_path):
    path = write_yaml(tmp_path, "MODEL:\n  NAME: pose_resnet\n  EXTRA:\n    NUM_LAYERS: 101\n")
    cfg = load_config(path)
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 101
    assert "STAGE2" not in cfg.MODEL.EXTRA


def test_data_dir_prefixes_relative_paths():
    cfg = load_config("", ["DATA_DIR", "/mnt/d", "TEST.MODEL_FILE", "m.pth",
                           "TEST.COCO_BBOX_FILE", "/abs/det.json"])
    assert cfg.DATASET.ROOT == "/mnt/d/data/synthetic"
    assert cfg.TEST.MODEL_FILE == "/mnt/d/m.pth"
    assert cfg.TEST.COCO_BBOX_FILE == "/abs/det.json"


@pytest.mark.parametrize("text, fragments", [
    ("TRAIN:\n  LRR: 0.1\n", ["TRAIN.LRR", "exp.yaml", "did you mean 'TRAIN.LR'"]),
    ("TRAIN:\n  OPTIMIZER: rmsprop\n", ["TRAIN.OPTIMIZER", "exp.yaml", "'adam', 'adamw', 'sgd'"]),
    ("TRAIN:\n  LR: fast\n", ["TRAIN.LR", "exp.yaml", "float"]),
    ("TRAIN:\n  LR: -1.0\n", ["TRAIN.LR", "positive"]),
    ("TEST:\n  BLUR_KERNEL: 4\n", ["TEST.BLUR_KERNEL", "odd"]),
    ("TEST:\n  DECODER: udp\n", ["TEST.DECODER", "'standard', 'dark'"]),
    ("TRAIN:\n  LR_SCHEDULER: poly\n", ["TRAIN.LR_SCHEDULER", "'multistep', 'cosine'"]),
    ("MODEL:\n  IMAGE_SIZE: [192]\n", ["MODEL.IMAGE_SIZE", "[width, height]"]),
    ("MODEL:\n  NAME: pose_unknown\n", ["MODEL.NAME", "exp.yaml", "pose_hrnet"]),
    ("MODEL:\n  EXTRA:\n    NUM_LAYERS: 50\n", ["MODEL.EXTRA.NUM_LAYERS", "exp.yaml"]),
    ("MODEL:\n  EXTRA:\n    STAGE2:\n      BLOCK: FANCY\n", ["MODEL.EXTRA.STAGE2.BLOCK", "BASIC"]),
    ("TRAIN: 5\n", ["TRAIN", "mapping"]),
    ("TRAIN:\n  BEGIN_EPOCH: 9\n  END_EPOCH: 9\n", ["BEGIN_EPOCH", "END_EPOCH"]),
    ("- just\n- a list\n", ["must hold a mapping"]),
    ("TRAIN: [unclosed\n", ["not valid YAML"]),
])
def test_bad_yaml_names_the_key_and_file(tmp_path, text, fragments):
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize("opts, fragments", [
    (["TEST.FLIP", "True"], ["TEST.FLIP", "on the command line", "did you mean 'TEST.FLIP_TEST'"]),
    (["DEVICE", "tpu"], ["DEVICE", "on the command line", "'cpu'"]),
    (["TRAIN.END_EPOCH", "ten"], ["TRAIN.END_EPOCH", "on the command line", "int"]),
    (["TEST.USE_GT_BBOX", "1"], ["TEST.USE_GT_BBOX", "bool"]),
    (["TRAIN.LR"], ["KEY VALUE pairs", "TRAIN.LR"]),
    (["MODEL.NAME", "pose_resnet", "MODEL.EXTRA.STAGE2.NUM_MODULES", "1"],
     ["MODEL.EXTRA.STAGE2", "on the command line"]),
])
def test_bad_override_names_the_key(opts, fragments):
    with pytest.raises(ConfigError) as error:
        load_config("", opts)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_value_from_file_is_blamed_on_the_file_and_override_on_command_line(tmp_path):
    path = write_yaml(tmp_path, "TRAIN:\n  BATCH_SIZE_PER_GPU: 0\n")
    with pytest.raises(ConfigError, match="in config file .*exp.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="on the command line"):
        load_config("", ["TRAIN.BATCH_SIZE_PER_GPU", "0"])


def test_missing_config_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_every_experiment_file_loads(repo_root):
    files = sorted((repo_root / "experiments").rglob("*.yaml"))
    assert files, "no experiment files found"
    for path in files:
        load_config(str(path))


def test_train_tool_rejects_bad_key(repo_root):
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "train.py"), "--cfg",
         str(repo_root / "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"),
         "TRAIN.NOT_A_KEY", "1"],
        capture_output=True, text=True, cwd=repo_root)
    assert result.returncode != 0
    assert "TRAIN.NOT_A_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_tuple_written_as_in_the_original_yamls(tmp_path):
    path = write_yaml(tmp_path, "GPUS: (0,1,2,3)\n")
    assert tuple(load_config(path).GPUS) == (0, 1, 2, 3)
    with pytest.raises(ConfigError, match="GPUS"):
        load_config(write_yaml(tmp_path, "GPUS: zero\n", "bad.yaml"))


def test_image_and_heatmap_sizes_must_fit_the_model():
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config("", ["MODEL.IMAGE_SIZE", "[48, 64]", "MODEL.HEATMAP_SIZE", "[12, 16]"])
    with pytest.raises(ConfigError, match=r"IMAGE_SIZE / 4 = \[64, 64\]"):
        load_config("", ["MODEL.IMAGE_SIZE", "[256, 256]", "MODEL.HEATMAP_SIZE", "[32, 32]"])


@pytest.mark.parametrize("text, value", [
    ("TRAIN:\n  LR: 1.0e+999\n", "inf"),
    ("MODEL:\n  SIGMA: .inf\n", "inf"),
    ("TRAIN:\n  WD: .nan\n", "nan"),
    ("DATASET:\n  SIGMA: [2.0, -.inf]\n", "-inf"),
])
def test_non_finite_yaml_value_is_refused(tmp_path, text, value):
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    key = text.replace(":\n  ", ".").split(":")[0]
    for fragment in (f"'{key}'", "exp.yaml", value, "finite"):
        assert fragment in str(error.value)


@pytest.mark.parametrize("opts", [["TRAIN.LR", "1e999"], ["MODEL.SIGMA", "1e999"],
                                  ["TEST.SCALE_FACTOR", "[1, 1e999]"]])
def test_non_finite_override_is_refused(opts):
    with pytest.raises(ConfigError) as error:
        load_config("", opts)
    for fragment in (f"'{opts[0]}'", "on the command line", "inf", "finite"):
        assert fragment in str(error.value)


def parse_tool_arguments(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


@pytest.mark.parametrize("model_dir, log_dir, data_dir", [
    ("--model-dir", "--log-dir", "--data-dir"),
    ("--modelDir", "--logDir", "--dataDir"),   # the originals' spellings
])
def test_folder_options_after_the_overrides_are_options(tmp_path, model_dir, log_dir, data_dir):
    cfg = parse_tool_arguments(["--cfg", write_yaml(tmp_path, ""), "TRAIN.LR", "0.01",
                                model_dir, "/runs/out", f"{log_dir}=/runs/log", "WORKERS", "0",
                                data_dir, "/mnt/data"])
    assert (cfg.OUTPUT_DIR, cfg.LOG_DIR, cfg.DATA_DIR) == ("/runs/out", "/runs/log", "/mnt/data")
    assert cfg.TRAIN.LR == pytest.approx(0.01) and cfg.WORKERS == 0


@pytest.mark.parametrize("tokens, dangling", [
    (["TRAIN.LR", "--modelDir", "out"], "TRAIN.LR"),
    (["TRAIN.LR", "TEST.FLIP_TEST", "False"], "TRAIN.LR"),
    (["WORKERS", "0", "TRAIN.LR", "--logDir", "log", "TEST.FLIP_TEST", "False"], "TRAIN.LR"),
    (["WORKERS", "0", "TRAIN.LR"], "TRAIN.LR"),
])
def test_odd_override_count_names_the_dangling_key(tmp_path, tokens, dangling):
    with pytest.raises(ConfigError) as error:
        parse_tool_arguments(["--cfg", write_yaml(tmp_path, "")] + tokens)
    assert f"'{dangling}' has no value" in str(error.value)


@pytest.mark.parametrize("option", ["--data-dir", "--dataDir"])
def test_folder_option_without_a_folder(tmp_path, option):
    with pytest.raises(ConfigError, match=option):
        parse_tool_arguments(["--cfg", write_yaml(tmp_path, ""), "WORKERS", "0", option])


@pytest.mark.parametrize("options", [
    ["--model-dir", "/runs/out", "--logDir", "/runs/log"],
    ["--modelDir=/runs/out", "--log-dir=/runs/log"],
])
def test_folder_options_before_the_overrides_in_either_spelling(tmp_path, options):
    cfg = parse_tool_arguments(["--cfg", write_yaml(tmp_path, ""), *options, "WORKERS", "0"])
    assert (cfg.OUTPUT_DIR, cfg.LOG_DIR, cfg.WORKERS) == ("/runs/out", "/runs/log", 0)


def test_extra_of_the_files_model_is_explained_when_the_name_changes(tmp_path):
    path = write_yaml(tmp_path, "MODEL:\n  NAME: pose_hrnet\n  EXTRA:\n    STAGE2:\n"
                                "      NUM_MODULES: 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, ["MODEL.NAME", "pose_resnet"])
    for fragment in ("'MODEL.EXTRA.STAGE2'", "exp.yaml", "'pose_hrnet'", "'pose_resnet'",
                     "on the command line"):
        assert fragment in str(error.value)


@pytest.mark.parametrize("tool, overrides, fragments", [
    ("train.py", ["MODEL.SIGMA", "1e999"], ["'MODEL.SIGMA'", "inf", "on the command line"]),
    ("valid.py", ["TRAIN.LR", "--modelDir", "OUT"], ["'TRAIN.LR' has no value"]),
    ("train.py", ["MODEL.NAME", "pose_resnet"],
     ["'MODEL.EXTRA.PRETRAINED_LAYERS'", "'pose_hrnet'", "'pose_resnet'"]),
])
def test_tool_reports_one_line(repo_root, tmp_path, tool, overrides, fragments):
    result = subprocess.run(
        [sys.executable, str(repo_root / "tools" / tool), "--cfg",
         str(repo_root / "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml")] + overrides,
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_misspelt_extra_key_stays_unknown_when_the_name_changes(tmp_path):
    path = write_yaml(tmp_path, "MODEL:\n  NAME: pose_hrnet\n  EXTRA:\n    STAGE22: {}\n")
    with pytest.raises(ConfigError, match="unknown config key 'MODEL.EXTRA.STAGE22'"):
        load_config(path, ["MODEL.NAME", "pose_resnet"])


def test_a_config_path_that_is_a_folder_or_missing_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'.*' is a folder; expected a YAML experiment file"):
        load_config(str(tmp_path))
    with pytest.raises(ConfigError, match=r"config file not found: '.*missing.yaml'"):
        load_config(str(tmp_path / "missing.yaml"))
