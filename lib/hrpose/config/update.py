"""Merging a YAML file and command-line overrides into the config, with checks that name the key.

One file over 500 lines on purpose: the value rules, the merge and the messages that name a key
and its source are one piece a reader checks together; the originals' keys are in originals.py.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import math
import os
import re
from typing import Any, Callable

import yaml
from yacs.config import CfgNode as CN

from ..errors import HrposeError
from .default import get_default_config
from .model_extras import MODEL_EXTRAS, get_model_extra, is_bottom_up, is_regression
from .originals import ORIGINAL_KEYS, OriginalKeyError, translate_original_keys

logger = logging.getLogger(__name__)

DEFAULTS_SOURCE = "in the defaults"
COMMAND_LINE_SOURCE = "on the command line"

# Keys whose value must be one of a fixed set.
CHOICES: dict[str, tuple] = {
    "DEVICE": ("auto", "cpu", "cuda"),
    "MODEL.NAME": tuple(MODEL_EXTRAS),
    "DATASET.DATASET": ("coco", "crowdpose", "mpii", "ochuman", "synthetic"),
    "DATASET.TEST_DATASET": ("", "coco", "crowdpose", "mpii", "ochuman", "synthetic"),
    "DATASET.COORD_CONVENTION": ("hrnet", "dark"),
    "MODEL.INIT_METHOD": ("normal", "kaiming"),
    "MODEL.TARGET_ENCODING": ("standard", "unbiased"),
    "TEST.DECODER": ("standard", "dark"),
    "TEST.DARK_STEP": ("reference", "negative_definite"),
    "TEST.GROUPING": ("fixed", "progressive"),
    "TEST.ASSIGNMENT_SOLVER": ("munkres", "scipy"),
    "TEST.GAUSSIAN_FIT": ("reference", "corrected"),
    "TEST.EVAL_BACKEND": ("auto", "pycocotools", "hotcoco"),
    "TEST.BACKEND": ("eager", "fused", "onnxruntime", "openvino"),
    "LOSS.TAG_LOSS": ("ae", "hae"),
    "TRAIN.OPTIMIZER": ("adam", "adamw", "sgd"),
    "TRAIN.LR_SCHEDULER": ("multistep", "cosine"),
    "TRAIN.AMP": ("auto", "off", "bf16", "fp16"),
    "CHANNELS_LAST": ("auto", "on", "off"),
    "MODEL.EXTRA.STAGE2.BLOCK": ("BASIC", "BOTTLENECK"),
    "MODEL.EXTRA.STAGE3.BLOCK": ("BASIC", "BOTTLENECK"),
    "MODEL.EXTRA.STAGE4.BLOCK": ("BASIC", "BOTTLENECK"),
    "MODEL.EXTRA.STAGE2.FUSE_METHOD": ("SUM",),
    "MODEL.EXTRA.STAGE3.FUSE_METHOD": ("SUM",),
    "MODEL.EXTRA.STAGE4.FUSE_METHOD": ("SUM",),
    "MODEL.EXTRA.NUM_LAYERS": (18, 34, 50, 101, 152),
    "MODEL.EXTRA.FINAL_CONV_KERNEL": (1, 3),
    "LOSS.AE_LOSS_TYPE": ("exp", "max"),
    "DATASET.SCALE_TYPE": ("short", "long"),
}


def _positive(value) -> bool:
    return value > 0


def _non_negative(value) -> bool:
    return value >= 0


def _probability(value) -> bool:
    # The originals disable half-body augmentation with -1, so negative means "never".
    return value <= 1


def _size_pair(value) -> bool:
    return len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def _non_decreasing_ints(value) -> bool:
    return all(isinstance(v, int) and v >= 0 for v in value) and list(value) == sorted(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bools(value) -> bool:
    return len(value) > 0 and all(isinstance(v, bool) for v in value)


def _non_negative_numbers(value) -> bool:
    return len(value) > 0 and all(_number(v) and v >= 0 for v in value)


def _positive_ints(value) -> bool:
    return len(value) > 0 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                  for v in value)


def _sigmas(value) -> bool:
    # Per stage one sigma, or (regression models) one per heatmap branch of the stage.
    return len(value) > 0 and all(
        (_number(v) and v != 0) or (isinstance(v, (list, tuple)) and len(v) > 0
                                    and all(_number(b) and b != 0 for b in v))
        for v in value)


def _background_weights(value) -> bool:
    return len(value) > 0 and all(
        (_number(v) and v >= 0) or (isinstance(v, (list, tuple)) and len(v) > 0
                                    and all(_number(b) and b >= 0 for b in v))
        for v in value)


def _test_scales(value) -> bool:
    return all(_number(v) and v > 0 for v in value) and 1 in value


# Keys whose value must satisfy a predicate: (check, what the value must be).
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "WORKERS": (_non_negative, "a non-negative integer"),
    "PRINT_FREQ": (_positive, "a positive integer"),
    "MODEL.NUM_JOINTS": (_positive, "a positive integer"),
    "MODEL.IMAGE_SIZE": (_size_pair, "[width, height] of positive integers"),
    "MODEL.HEATMAP_SIZE": (_size_pair, "[width, height] of positive integers"),
    "MODEL.SIGMA": (_positive, "a positive number"),
    "LOSS.TOPK": (_positive, "a positive integer"),
    "DATASET.SCALE_FACTOR": (_non_negative, "a non-negative number"),
    "DATASET.ROT_FACTOR": (_non_negative, "a non-negative number"),
    "DATASET.PROB_HALF_BODY": (_probability, "a probability (at most 1; negative disables)"),
    "TRAIN.LR": (_positive, "a positive number"),
    "TRAIN.LR_FACTOR": (_positive, "a positive number"),
    "TRAIN.LR_STEP": (_non_decreasing_ints, "a non-decreasing list of epoch numbers"),
    "TRAIN.WD": (_non_negative, "a non-negative number"),
    "TRAIN.BEGIN_EPOCH": (_non_negative, "a non-negative integer"),
    "TRAIN.END_EPOCH": (_positive, "a positive integer"),
    "TRAIN.BATCH_SIZE_PER_GPU": (_positive, "a positive integer"),
    "TRAIN.VAL_INTERVAL": (_positive, "a positive integer"),
    "TRAIN.MIN_LR_RATIO": (_non_negative, "a non-negative number"),
    "TRAIN.WARMUP_ITERS": (_non_negative, "a non-negative integer"),
    "TRAIN.BASE_BATCH_SIZE": (_non_negative, "a non-negative integer (0: BATCH_SIZE_PER_GPU x "
                                             "len(GPUS))"),
    "TRAIN.CHECKPOINT_EVERY": (_non_negative, "a non-negative number of iterations (0: at "
                                              "epoch ends only)"),
    "TRAIN.DIVERGENCE_FACTOR": (_non_negative, "a non-negative number (0: no divergence check)"),
    "TRAIN.DIVERGENCE_PATIENCE": (_non_negative, "a non-negative integer (0: no divergence check)"),
    "TRAIN.WARMUP_RATIO": (lambda value: 0 <= value <= 1, "a number from 0 to 1"),
    "TEST.BATCH_SIZE_PER_GPU": (_positive, "a positive integer"),
    "TEST.OKS_THRE": (_positive, "a positive number"),
    "TEST.BLUR_KERNEL": (lambda value: value > 0 and value % 2 == 1, "a positive odd integer"),
    # bottom-up
    "DATASET.INPUT_SIZE": (lambda value: value > 0 and value % 32 == 0,
                           "a positive multiple of 32 (the lowest HRNet branch is at 1/32)"),
    "DATASET.OUTPUT_SIZE": (_positive_ints, "a non-empty list of positive integers"),
    "DATASET.MAX_NUM_PEOPLE": (_positive, "a positive integer"),
    "DATASET.MAX_ROTATION": (_non_negative, "a non-negative number of degrees"),
    "DATASET.MIN_SCALE": (_positive, "a positive number"),
    "DATASET.MAX_SCALE": (_positive, "a positive number"),
    "DATASET.MAX_TRANSLATE": (_non_negative, "a non-negative integer"),
    "DATASET.SIGMA": (_sigmas, "a non-empty list with per stage a non-zero number (negative: "
                               "OUTPUT_SIZE / 64) or, for regression models, a list of one per "
                               "heatmap branch"),
    "DATASET.BASE_SIZE": (_positive, "a positive number"),
    "DATASET.BASE_SIGMA": (_positive, "a positive number"),
    "LOSS.NUM_STAGES": (_positive, "a positive integer"),
    "LOSS.WITH_HEATMAPS_LOSS": (_bools, "a non-empty list of booleans"),
    "LOSS.HEATMAPS_LOSS_FACTOR": (_non_negative_numbers,
                                  "a non-empty list of non-negative numbers"),
    "LOSS.WITH_AE_LOSS": (_bools, "a non-empty list of booleans"),
    "LOSS.PUSH_LOSS_FACTOR": (_non_negative_numbers, "a non-empty list of non-negative numbers"),
    "LOSS.PULL_LOSS_FACTOR": (_non_negative_numbers, "a non-empty list of non-negative numbers"),
    "TEST.SCALE_FACTOR": (_test_scales, "a list of positive scales that includes 1 (tags are "
                                        "read at scale 1)"),
    "TEST.DETECTION_THRESHOLD": (_non_negative, "a non-negative number"),
    "TEST.TAG_THRESHOLD": (_positive, "a positive number"),
    "TEST.NMS_KERNEL": (lambda value: value > 0 and value % 2 == 1, "a positive odd integer"),
    "TEST.WITH_HEATMAPS": (_bools, "a non-empty list of booleans"),
    "TEST.WITH_AE": (_bools, "a non-empty list of booleans"),
    # bottom-up regression
    "DATASET.BG_WEIGHT": (_background_weights, "a non-empty list with per stage a non-negative "
                                               "number or a list of one per heatmap branch"),
    "DATASET.CENTER_SIGMA": (_positive, "a positive number"),
    "DATASET.OFFSET_RADIUS": (_positive, "a positive integer"),
    "LOSS.WITH_OFFSETS_LOSS": (_bools, "a non-empty list of booleans"),
    "LOSS.OFFSETS_LOSS_FACTOR": (_non_negative_numbers, "a non-empty list of non-negative numbers"),
    "RESCORE.HIDDEN_LAYER": (_positive, "a positive integer"),
    "RESCORE.LR": (_positive, "a positive number"),
    "RESCORE.BATCHSIZE": (_positive, "a positive integer"),
    "RESCORE.END_EPOCH": (_positive, "a positive integer"),
}

# Bottom-up keys with one entry per LOSS.NUM_STAGES (output resolution, lowest first).
PER_STAGE_KEYS = ("DATASET.OUTPUT_SIZE", "DATASET.SIGMA", "LOSS.WITH_HEATMAPS_LOSS",
                  "LOSS.HEATMAPS_LOSS_FACTOR", "LOSS.WITH_AE_LOSS", "LOSS.PUSH_LOSS_FACTOR",
                  "LOSS.PULL_LOSS_FACTOR", "TEST.WITH_HEATMAPS", "TEST.WITH_AE")
# The same for the keypoint-regression models, and the output stages each of them has.
REGRESSION_PER_STAGE_KEYS = ("DATASET.OUTPUT_SIZE", "DATASET.SIGMA", "DATASET.BG_WEIGHT",
                             "LOSS.WITH_HEATMAPS_LOSS", "LOSS.HEATMAPS_LOSS_FACTOR",
                             "LOSS.WITH_OFFSETS_LOSS", "LOSS.OFFSETS_LOSS_FACTOR",
                             "TEST.WITH_HEATMAPS")
REGRESSION_STAGES = {"pose_hrnet_regression": 1, "pose_higher_hrnet_regression": 2}

# Paths that DATA_DIR prefixes when it is set and the path is relative.
DATA_DIR_PATHS = ("DATASET.ROOT", "DATASET.TEST_ROOT", "MODEL.PRETRAINED", "TEST.MODEL_FILE",
                  "TEST.COCO_BBOX_FILE", "RESCORE.MODEL_FILE", "RESCORE.DATA_FILE")


class ConfigError(HrposeError, ValueError):
    """A config file or override that does not fit the default tree."""


def _lookup(node: CN, full_key: str):
    for part in full_key.split("."):
        node = node[part]
    return node


def _unknown_key_message(full_key: str, node: CN, source: str) -> str:
    parent, _, leaf = full_key.rpartition(".")
    # The originals' keys of the same section are candidates too (a misspelt DATA_FORMAT).
    original_keys = [key.rpartition(".")[2] for key in ORIGINAL_KEYS
                     if key.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(leaf, list(node.keys()) + original_keys, n=3)
    candidates = ", ".join(repr(c if not parent else parent + "." + c) for c in close)
    hint = f"; did you mean {candidates}?" if close else ""
    return f"unknown config key '{full_key}' {source}{hint}"


def _coerce(value, default, full_key: str, source: str):
    """Return value converted to the type of the default, or raise a ConfigError naming the key."""
    expected = type(default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, str):
            # The originals' YAMLs write tuples as "(0,1,2,3)", which YAML reads as a string.
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        if isinstance(value, (list, tuple)):
            return expected(value)
    elif default is None:
        return value
    raise ConfigError(f"config key '{full_key}' {source} must be of type {expected.__name__} "
                      f"(default {default!r}), got {value!r} of type {type(value).__name__}")


def _is_finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_is_finite(v) for v in value)
    return True


def _check_finite(value, full_key: str, source: str) -> None:
    # inf and nan pass every ordering check (nan compares False), so they are refused up front.
    if not _is_finite(value):
        raise ConfigError(f"config key '{full_key}' {source} has value {value!r}; expected "
                          f"finite numbers (no inf or nan)")


def _foreign_extra_message(full_key: str, source: str, file_model: str, model_name: str) -> str:
    """Why a file's MODEL.EXTRA key is unknown: it is one of the file's model, not the run's."""
    try:
        _lookup(get_model_extra(file_model), full_key[len("MODEL.EXTRA."):])
    except KeyError:
        return ""
    return (f"config key '{full_key}' {source} belongs to the MODEL.EXTRA block of "
            f"{file_model!r} (the file's model), but MODEL.NAME is {model_name!r} "
            f"{COMMAND_LINE_SOURCE}, whose EXTRA has no such key; use a config file written for "
            f"{model_name!r}")


def _merge_dict(node: CN, values: dict, prefix: str, source: str, provenance: dict,
                models: tuple[str, str] | None = None) -> None:
    """Merge values into node. models: (the model the values' MODEL.EXTRA was written for, the
    model the command line chose instead), when they differ."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' {source} must be a mapping of "
                          f"sub-keys, got {values!r}")
    for key, value in values.items():
        full_key = prefix + str(key)
        if key not in node:
            foreign = (_foreign_extra_message(full_key, source, *models)
                       if models and full_key.startswith("MODEL.EXTRA.") else "")
            raise ConfigError(foreign or _unknown_key_message(full_key, node, source))
        if isinstance(node[key], CN):
            _merge_dict(node[key], value, full_key + ".", source, provenance, models)
        else:
            _check_finite(value, full_key, source)
            node[key] = _coerce(value, node[key], full_key, source)
            provenance[full_key] = source


def _decode_command_line_value(text: str):
    """Literal-evaluate a command-line value ('False', '(0,1)', '1e-3'); otherwise keep the
    string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# A config key as written on the command line: upper-case dotted names, e.g. TEST.FLIP_TEST.
CONFIG_KEY_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*")


def _dangling_key(opts: list[str]) -> str:
    """The key without a value in an odd list: the first key whose value slot holds a key."""
    for index in range(0, len(opts) - 1, 2):
        if CONFIG_KEY_PATTERN.fullmatch(opts[index + 1]):
            return opts[index]
    return opts[-1]


def _opts_to_dict(opts: list[str]) -> dict:
    if len(opts) % 2:
        raise ConfigError(f"overrides {COMMAND_LINE_SOURCE} must be KEY VALUE pairs; "
                          f"'{_dangling_key(opts)}' has no value")
    nested: dict = {}
    for full_key, text in zip(opts[0::2], opts[1::2]):
        parts = full_key.split(".")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"config key '{full_key}' {COMMAND_LINE_SOURCE} conflicts "
                                  f"with another override")
        target[parts[-1]] = _decode_command_line_value(text)
    return nested


def load_yaml(path: str) -> dict:
    """Read an experiment YAML into a dict, with clear errors for a missing or malformed file."""
    if os.path.isdir(path):
        raise ConfigError(f"config file '{path}' is a folder; expected a YAML experiment file, "
                          f"e.g. experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: '{path}' (expected a YAML experiment file, "
                          f"e.g. experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml)")
    with open(path, encoding="utf-8") as handle:
        try:
            values = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file '{path}' is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, got "
                          f"{type(values).__name__}")
    return values


def _requested_model_name(cfg: CN, file_values: dict, opts_values: dict,
                          file_source: str) -> tuple[str, str]:
    name, source = cfg.MODEL.NAME, DEFAULTS_SOURCE
    for values, where in ((file_values, file_source), (opts_values, COMMAND_LINE_SOURCE)):
        model = values.get("MODEL")
        if isinstance(model, dict) and "NAME" in model:
            name, source = model["NAME"], where
    return name, source


def validate_config(cfg: CN, provenance: dict | None = None) -> None:
    """Check allowed sets and value rules; the error names the key and where its value came from."""
    provenance = provenance or {}
    for full_key, allowed in CHOICES.items():
        try:
            value = _lookup(cfg, full_key)
        except KeyError:
            continue
        if value not in allowed:
            source = provenance.get(full_key, DEFAULTS_SOURCE)
            raise ConfigError(f"config key '{full_key}' {source} has value {value!r}; "
                              f"allowed: {', '.join(repr(a) for a in allowed)}")
    for full_key, (check, description) in RULES.items():
        value = _lookup(cfg, full_key)
        if not check(value):
            source = provenance.get(full_key, DEFAULTS_SOURCE)
            raise ConfigError(f"config key '{full_key}' {source} has value {value!r}; "
                              f"expected {description}")
    if is_regression(cfg.MODEL.NAME):
        _validate_regression(cfg, provenance)
    elif is_bottom_up(cfg.MODEL.NAME):
        _validate_bottom_up(cfg, provenance)
    else:
        if cfg.TEST.GROUPING != "fixed":
            raise ConfigError(f"config key 'TEST.GROUPING' "
                              f"{provenance.get('TEST.GROUPING', DEFAULTS_SOURCE)} has value "
                              f"{cfg.TEST.GROUPING!r}, but {cfg.MODEL.NAME} is a top-down model, "
                              f"which does not group keypoints; only bottom-up models take it")
        image_size, heatmap_size = list(cfg.MODEL.IMAGE_SIZE), list(cfg.MODEL.HEATMAP_SIZE)
        # Both top-down families reduce the input 32 times and predict at a quarter of it.
        if any(side % 32 for side in image_size):
            raise ConfigError(f"MODEL.IMAGE_SIZE {image_size} "
                              f"{provenance.get('MODEL.IMAGE_SIZE', DEFAULTS_SOURCE)} "
                              f"must be a multiple of 32 in both sides for {cfg.MODEL.NAME}")
        if heatmap_size != [side // 4 for side in image_size]:
            raise ConfigError(f"MODEL.HEATMAP_SIZE {heatmap_size} must be MODEL.IMAGE_SIZE / 4 = "
                              f"{[side // 4 for side in image_size]} for {cfg.MODEL.NAME}")
    if cfg.TRAIN.BEGIN_EPOCH >= cfg.TRAIN.END_EPOCH:
        raise ConfigError(f"TRAIN.BEGIN_EPOCH ({cfg.TRAIN.BEGIN_EPOCH}) must be smaller than "
                          f"TRAIN.END_EPOCH ({cfg.TRAIN.END_EPOCH})")


def _check_one_entry_per_stage(cfg: CN, keys, where) -> None:
    """Each of the per-stage list keys has LOSS.NUM_STAGES entries."""
    num_stages = cfg.LOSS.NUM_STAGES
    for full_key in keys:
        value = list(_lookup(cfg, full_key))
        if len(value) != num_stages:
            raise ConfigError(f"config key '{full_key}' {where(full_key)} has {len(value)} "
                              f"entries {value} but LOSS.NUM_STAGES is {num_stages} "
                              f"({where('LOSS.NUM_STAGES')}); give one per stage")


def _validate_bottom_up(cfg: CN, provenance: dict) -> None:
    """Cross-key checks of a bottom-up experiment: per-stage lists, resolutions, tag stages."""
    def where(full_key: str) -> str:
        return provenance.get(full_key, DEFAULTS_SOURCE)

    num_stages = cfg.LOSS.NUM_STAGES
    _check_one_entry_per_stage(cfg, PER_STAGE_KEYS, where)
    if cfg.MODEL.NAME == "pose_higher_hrnet":
        num_deconvs = cfg.MODEL.EXTRA.DECONV.NUM_DECONVS
        if num_stages != num_deconvs + 1:
            raise ConfigError(f"config key 'LOSS.NUM_STAGES' {where('LOSS.NUM_STAGES')} is "
                              f"{num_stages} but pose_higher_hrnet with MODEL.EXTRA.DECONV."
                              f"NUM_DECONVS {num_deconvs} has {num_deconvs + 1} output stages")
    _validate_resolutions(cfg, provenance)
    nested = [entry for entry in cfg.DATASET.SIGMA if isinstance(entry, (list, tuple))]
    if nested:
        raise ConfigError(f"config key 'DATASET.SIGMA' {where('DATASET.SIGMA')} is "
                          f"{list(cfg.DATASET.SIGMA)}; per-branch lists are for the regression "
                          f"models, {cfg.MODEL.NAME} takes one number per stage")
    without_tags = [k for k, (read, trained) in
                    enumerate(zip(cfg.TEST.WITH_AE, cfg.LOSS.WITH_AE_LOSS, strict=True))
                    if read and not trained]
    if without_tags:
        raise ConfigError(f"config key 'TEST.WITH_AE' {where('TEST.WITH_AE')} reads tags of "
                          f"stage(s) {without_tags}, which have none: LOSS.WITH_AE_LOSS is "
                          f"{list(cfg.LOSS.WITH_AE_LOSS)}")
    if cfg.LOSS.TAG_LOSS == "hae":
        if not cfg.MODEL.TAG_PER_JOINT:
            raise ConfigError(f"config key 'LOSS.TAG_LOSS' {where('LOSS.TAG_LOSS')} is 'hae', "
                              f"which needs one tag map per joint: set MODEL.TAG_PER_JOINT True")
        weights = list(cfg.LOSS.HAE_PULL_WEIGHTS)
        if len(weights) != 3 or min(weights) < 0:
            raise ConfigError(f"config key 'LOSS.HAE_PULL_WEIGHTS' "
                              f"{where('LOSS.HAE_PULL_WEIGHTS')} is {weights}; give three "
                              f"non-negative weights [keypoint-to-instance, keypoint-to-group, "
                              f"group-to-instance]")
        if cfg.LOSS.FOCAL_FENCE < 0 or cfg.LOSS.FOCAL_WEIGHT < 0:
            raise ConfigError(f"LOSS.FOCAL_FENCE ({cfg.LOSS.FOCAL_FENCE}) and LOSS.FOCAL_WEIGHT "
                              f"({cfg.LOSS.FOCAL_WEIGHT}) must not be negative")
    if cfg.TEST.NMS_PADDING != (cfg.TEST.NMS_KERNEL - 1) // 2:
        raise ConfigError(f"config key 'TEST.NMS_PADDING' {where('TEST.NMS_PADDING')} is "
                          f"{cfg.TEST.NMS_PADDING}; it must be (TEST.NMS_KERNEL - 1) / 2 = "
                          f"{(cfg.TEST.NMS_KERNEL - 1) // 2} so that the pooled map keeps its size")


def _validate_resolutions(cfg: CN, provenance: dict) -> None:
    """Output sizes 1/4, 1/2, ... of the input, one per stage; a scale range in order."""
    num_stages = cfg.LOSS.NUM_STAGES
    input_size = cfg.DATASET.INPUT_SIZE
    expected = [input_size // 4 * 2 ** k for k in range(num_stages)]
    if list(cfg.DATASET.OUTPUT_SIZE) != expected:
        raise ConfigError(f"config key 'DATASET.OUTPUT_SIZE' "
                          f"{provenance.get('DATASET.OUTPUT_SIZE', DEFAULTS_SOURCE)} is "
                          f"{list(cfg.DATASET.OUTPUT_SIZE)}; with DATASET.INPUT_SIZE {input_size} "
                          f"and {num_stages} stages it must be {expected} (1/4, 1/2, ... of the "
                          f"input)")
    if cfg.DATASET.MIN_SCALE > cfg.DATASET.MAX_SCALE:
        raise ConfigError(f"DATASET.MIN_SCALE ({cfg.DATASET.MIN_SCALE}) must not exceed "
                          f"DATASET.MAX_SCALE ({cfg.DATASET.MAX_SCALE})")


def _validate_regression(cfg: CN, provenance: dict) -> None:
    """Cross-key checks of a keypoint-regression experiment: stages, per-stage lists, offsets."""
    def where(full_key: str) -> str:
        return provenance.get(full_key, DEFAULTS_SOURCE)

    name = cfg.MODEL.NAME
    num_stages = cfg.LOSS.NUM_STAGES
    if num_stages != REGRESSION_STAGES[name]:
        resolutions = ["1/4", "1/2"][:REGRESSION_STAGES[name]]
        raise ConfigError(f"config key 'LOSS.NUM_STAGES' {where('LOSS.NUM_STAGES')} is "
                          f"{num_stages} but {name} has {REGRESSION_STAGES[name]} output "
                          f"stage(s) ({', '.join(resolutions)} resolution)")
    _check_one_entry_per_stage(cfg, REGRESSION_PER_STAGE_KEYS, where)
    if any(cfg.LOSS.WITH_OFFSETS_LOSS[1:]):
        raise ConfigError(f"config key 'LOSS.WITH_OFFSETS_LOSS' {where('LOSS.WITH_OFFSETS_LOSS')} "
                          f"is {list(cfg.LOSS.WITH_OFFSETS_LOSS)}; {name} regresses offsets at "
                          f"1/4 resolution only, so only the first entry may be true")
    _validate_resolutions(cfg, provenance)
    if cfg.TEST.GROUPING != "fixed":
        raise ConfigError(f"config key 'TEST.GROUPING' {where('TEST.GROUPING')} has value "
                          f"{cfg.TEST.GROUPING!r}, but {name} finds people by their centres and "
                          f"offsets; tag grouping is for the associative-embedding models")


def _prefix_data_dir(cfg: CN) -> None:
    if not cfg.DATA_DIR:
        return
    for full_key in DATA_DIR_PATHS:
        section, leaf = full_key.split(".")
        path = cfg[section][leaf]
        if path and not os.path.isabs(path):
            cfg[section][leaf] = os.path.join(cfg.DATA_DIR, path)


def _stage_count(*sources: dict) -> int:
    """Stages a scalar DATASET.SIGMA of an original's file spreads over: the OUTPUT_SIZE of the
    first source that gives one (a list or a scalar), else the defaults'."""
    for values in sources:
        dataset = values.get("DATASET")
        output_size = dataset.get("OUTPUT_SIZE") if isinstance(dataset, dict) else None
        if isinstance(output_size, (list, tuple)):
            return len(output_size)
        if output_size is not None:
            return 1
    return len(get_default_config().DATASET.OUTPUT_SIZE)


def _translate(file_values: dict, opts_values: dict, file_source: str) -> tuple[dict, dict]:
    """Both dicts in hrpose's keys; one warning names the originals' keys that were dropped."""
    num_stages = _stage_count(opts_values, file_values)
    file_values, file_ignored = translate_original_keys(file_values, file_source, num_stages)
    opts_values, opts_ignored = translate_original_keys(
        opts_values, COMMAND_LINE_SOURCE, num_stages, whole_file=False,
        regression=is_regression(_file_model(file_values)))
    if file_ignored or opts_ignored:
        where = ([f"{file_source}: {', '.join(file_ignored)}"] if file_ignored else []) + (
            [f"{COMMAND_LINE_SOURCE}: {', '.join(opts_ignored)}"] if opts_ignored else [])
        logger.warning("ignoring keys of the original repositories that have no effect in "
                       "hrpose (see docs/design.md, 'Using the originals' YAML files') %s",
                       "; ".join(where))
    return file_values, opts_values


def _file_model(file_values: dict) -> str:
    """The model a file was written for: its MODEL.NAME, else the defaults'."""
    model = file_values.get("MODEL")
    name = model.get("NAME") if isinstance(model, dict) else None
    return name or get_default_config().MODEL.NAME


def update_config(cfg: CN, args: argparse.Namespace) -> CN:
    """Merge ``args.cfg`` (YAML) then ``args.opts`` (KEY VALUE list) into cfg, check it, freeze it.

    Mirrors the originals' update_config, and reads their experiment files (config/originals.py);
    unlike them, an unknown key, a wrong type or a value outside its allowed set stops here with
    a message naming the key and its source.
    """
    cfg.defrost()
    cfg_path = getattr(args, "cfg", "") or ""
    file_source = f"in config file '{cfg_path}'"
    file_values = load_yaml(cfg_path) if cfg_path else {}
    opts_values = _opts_to_dict(list(getattr(args, "opts", None) or []))
    try:
        file_values, opts_values = _translate(file_values, opts_values, file_source)
    except OriginalKeyError as error:
        raise ConfigError(str(error)) from None

    model_name, name_source = _requested_model_name(cfg, file_values, opts_values, file_source)
    if model_name not in MODEL_EXTRAS:
        raise ConfigError(f"config key 'MODEL.NAME' {name_source} has value {model_name!r}; "
                          f"allowed: {', '.join(repr(n) for n in MODEL_EXTRAS)}")
    cfg.MODEL.EXTRA = get_model_extra(model_name)

    provenance: dict[str, str] = {}
    file_model = _file_model(file_values)
    models = ((file_model, model_name) if name_source == COMMAND_LINE_SOURCE
              and file_model != model_name else None)
    _merge_dict(cfg, file_values, "", file_source, provenance, models)
    _merge_dict(cfg, opts_values, "", COMMAND_LINE_SOURCE, provenance)
    validate_config(cfg, provenance)
    _prefix_data_dir(cfg)
    cfg.freeze()
    return cfg


def load_config(cfg_path: str = "", opts: list[str] | None = None) -> CN:
    """A frozen config from a YAML path and overrides, starting from a fresh default tree."""
    return update_config(get_default_config(), argparse.Namespace(cfg=cfg_path, opts=opts or []))
