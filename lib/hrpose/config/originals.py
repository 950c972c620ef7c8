"""Keys of the original repositories' experiment files: ignored, converted or refused, by table.

The originals are the HRNet top-down repository (leoxiaobin/deep-high-resolution-net.pytorch),
DarkPose, HigherHRNet and the 2020 heatmap-guided regression repository. Their experiment files
carry keys hrpose does not need, spell some of its keys differently and write some as scalars.
``translate_original_keys`` turns such a file into hrpose's keys before it is merged; keys that
are in no original and not in hrpose stay unknown and fail the merge.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..errors import HrposeError


class OriginalKeyError(HrposeError, ValueError):
    """An original repository's key whose value asks for something hrpose does not implement."""


@dataclass(frozen=True)
class Ignored:
    """A key with no effect in hrpose, whatever its value."""

    why: str


@dataclass(frozen=True)
class OnlyValue:
    """A key whose value in every released experiment is what hrpose always does; another value
    would change the run, so it is refused."""

    values: tuple
    why: str


@dataclass(frozen=True)
class Renamed:
    """A key that hrpose spells differently; the value moves over unchanged."""

    target: str


ORIGINAL_KEYS: dict[str, Ignored | OnlyValue | Renamed] = {
    # Top level (all originals).
    "RANK": Ignored("the process rank comes from torchrun"),
    "VERBOSE": Ignored("read by no code of the originals"),
    "DIST_BACKEND": Ignored("the backend follows the device (nccl on CUDA, gloo on the CPU)"),
    "MULTIPROCESSING_DISTRIBUTED": Ignored("distributed runs are started by torchrun"),
    "FP16.ENABLED": Ignored("mixed precision is TRAIN.AMP"),
    "FP16.STATIC_LOSS_SCALE": Ignored("mixed precision is TRAIN.AMP"),
    "FP16.DYNAMIC_LOSS_SCALE": Ignored("mixed precision is TRAIN.AMP"),
    # MODEL
    "MODEL.TARGET_TYPE": OnlyValue(("gaussian",), "hrpose's heatmap targets are Gaussians"),
    "MODEL.EXTRA.STEM_INPLANES": OnlyValue((64,), "the HRNet stem has 64 channels"),
    "MODEL.EXTRA.STAGE1.NUM_MODULES": OnlyValue((1,), "HRNet's layer1 is one module"),
    "MODEL.EXTRA.STAGE1.NUM_BRANCHES": OnlyValue((1,), "HRNet's layer1 is one branch"),
    "MODEL.EXTRA.STAGE1.FUSE_METHOD": Ignored("a single branch fuses nothing"),
    "MODEL.EXTRA.DECONV.NUM_DCONVS": Ignored("a misspelling in HigherHRNet's unused models.py"),
    # --- DATASET
    "DATASET.DATA_FORMAT": Ignored("images are read from the image folders (extract a 'zip' "
                                   "archive there)"),
    "DATASET.HYBRID_JOINTS_TYPE": Ignored("only a part of the originals' output folder name"),
    "DATASET.TRAIN": Renamed("DATASET.TRAIN_SET"),
    "DATASET.TEST": Renamed("DATASET.TEST_SET"),
    "DATASET.GET_RESCORE_DATA": OnlyValue((False,), "rescore data is written by "
                                                    "tools/rescore_data.py"),
    "DATASET.USE_MASK": OnlyValue((False,), "the regression dataset has no USE_MASK switch"),
    "DATASET.MIN_SIGMA": OnlyValue((1,), "the regression targets have no lower sigma bound"),
    # --- TRAIN
    "TRAIN.GAMMA1": Ignored("read by no code of the originals"),
    "TRAIN.GAMMA2": Ignored("read by no code of the originals"),
    "TRAIN.RESUME": Ignored("read by no code of the originals; resuming is AUTO_RESUME"),
    "TRAIN.CHECKPOINT": Ignored("read by no code of the originals; resuming is AUTO_RESUME"),
    "TRAIN.IMAGES_PER_GPU": Renamed("TRAIN.BATCH_SIZE_PER_GPU"),
    # --- TEST
    "TEST.IMAGES_PER_GPU": Renamed("TEST.BATCH_SIZE_PER_GPU"),
    "TEST.NMS_THRE": Ignored("read by no code of the originals (OKS-NMS uses TEST.OKS_THRE)"),
    "TEST.BBOX_THRE": Ignored("read by no code of the originals"),
    "TEST.LOG_PROGRESS": Ignored("progress is shown with a progress bar"),
    "TEST.IGNORE_CENTER": Ignored("hrpose's results never contain a centre joint"),
    "TEST.REG_GROUP": OnlyValue((True,), "regression results are always grouped by centre"),
    "TEST.USE_HEATMAP": OnlyValue((False,), "the regression parser has no such mode"),
    "TEST.REG_THRESHOLD": Ignored("read by no code of the regression repository"),
    "TEST.USE_DECREASE_SCORE": OnlyValue((True,), "scales other than 1 always use "
                                                  "TEST.SCALE_DECREASE"),
    "TEST.BBOX_GROUPING": OnlyValue((False,), "there is no box-guided grouping"),
    "TEST.BBOX_FILE": OnlyValue(("",), "there is no box-guided grouping"),
    # --- RESCORE, DEBUG
    "RESCORE.MODEL_ROOT": Ignored("the net is written to RESCORE.MODEL_FILE"),
    "DEBUG.SAVE_TAGMAPS_PRED": Ignored("tag maps are not written as debug images"),
}

# MODEL.EXTRA keys of one model only (another model has the same key as an hrpose key).
ORIGINAL_EXTRA_KEYS: dict[str, dict[str, Ignored | OnlyValue | Renamed]] = {
    "pose_resnet": {
        "MODEL.EXTRA.PRETRAINED_LAYERS": OnlyValue((["*"],), "the whole ImageNet ResNet is "
                                                             "loaded"),
    },
}

# The originals' dataset names (class names) and hrpose's.
DATASET_NAMES = {"coco": "coco", "coco_kpt": "coco", "mpii": "mpii", "crowd_pose": "crowdpose",
                 "crowd_pose_kpt": "crowdpose", "crowdpose": "crowdpose",
                 "crowdpose_kpt": "crowdpose"}
# MODEL.NAME of DarkPose's hourglass.
MODEL_NAMES = {"hourglass": "pose_hourglass"}
# The regression repository names its models after the trunk; hrpose after the system.
REGRESSION_MODEL_NAMES = {"pose_hrnet": "pose_hrnet_regression",
                          "pose_higher_hrnet": "pose_higher_hrnet_regression"}
# Keys only HigherHRNet and the regression repository write; both always read images as RGB.
BOTTOM_UP_ORIGINAL_KEYS = ("TRAIN.IMAGES_PER_GPU", "TEST.IMAGES_PER_GPU", "DATASET.TRAIN",
                           "DATASET.TEST", "DATASET.NUM_JOINTS", "DATASET.DATASET_TEST")
# What DarkPose always does, which hrpose makes explicit.
DARKPOSE_SETTINGS = {"MODEL.TARGET_ENCODING": "unbiased", "DATASET.COORD_CONVENTION": "dark",
                     "TEST.DECODER": "dark", "TEST.SHIFT_HEATMAP": False}


def _get(values: dict, full_key: str, default=None):
    node = values
    for part in full_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _has(values: dict, full_key: str) -> bool:
    sentinel = object()
    return _get(values, full_key, sentinel) is not sentinel


def _pop(values: dict, full_key: str):
    *parents, leaf = full_key.split(".")
    node = values
    for part in parents:
        node = node[part]
    value = node.pop(leaf)
    # An emptied section (FP16 after its keys went) must not remain as an unknown key.
    if not node and parents:
        _pop(values, ".".join(parents))
    return value


def _set(values: dict, full_key: str, value) -> None:
    *parents, leaf = full_key.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _same(value, allowed) -> bool:
    if isinstance(value, bool) or isinstance(allowed, bool):
        return value is allowed
    return value == allowed


def _refuse(full_key: str, source: str, value, expected: str) -> OriginalKeyError:
    return OriginalKeyError(f"config key '{full_key}' {source} has value {value!r}; {expected}")


def _move(values: dict, full_key: str, target: str, source: str) -> None:
    value = _pop(values, full_key)
    if _has(values, target) and not _same(_get(values, target), value):
        raise _refuse(full_key, source, value,
                      f"it is the originals' name of {target}, which is also given, as "
                      f"{_get(values, target)!r}; keep one of the two")
    _set(values, target, value)


def _apply_table(values: dict, source: str, ignored: list[str]) -> None:
    rules = dict(ORIGINAL_KEYS)
    rules.update(ORIGINAL_EXTRA_KEYS.get(_get(values, "MODEL.NAME"), {}))
    for full_key, rule in rules.items():
        if not _has(values, full_key):
            continue
        if isinstance(rule, Renamed):
            _move(values, full_key, rule.target, source)
            continue
        value = _pop(values, full_key)
        if isinstance(rule, OnlyValue) and not any(_same(value, v) for v in rule.values):
            raise _refuse(full_key, source, value,
                          f"hrpose implements only {', '.join(repr(v) for v in rule.values)} "
                          f"({rule.why})")
        ignored.append(full_key)


def _convert_flip(values: dict, source: str) -> None:
    # HigherHRNet writes the flip probability; hrpose flips with probability 0.5 or not at all.
    flip = _get(values, "DATASET.FLIP")
    if isinstance(flip, bool) or not isinstance(flip, (int, float)):
        return
    if flip not in (0, 0.5):
        raise _refuse("DATASET.FLIP", source, flip,
                      "hrpose flips with probability 0.5 (true) or never (false)")
    values["DATASET"]["FLIP"] = flip == 0.5


def _convert_per_stage_scalars(values: dict, num_stages: int) -> None:
    # HigherHRNet's update_config wraps a scalar OUTPUT_SIZE; its SIGMA applies to every stage.
    output_size = _get(values, "DATASET.OUTPUT_SIZE")
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        values["DATASET"]["OUTPUT_SIZE"] = [output_size]
        num_stages = 1
    elif isinstance(output_size, (list, tuple)):
        num_stages = len(output_size)
    sigma = _get(values, "DATASET.SIGMA")
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        values["DATASET"]["SIGMA"] = [sigma] * num_stages


def _dataset_name(full_key: str, name, source: str) -> str:
    if name not in DATASET_NAMES:
        raise _refuse(full_key, source, name,
                      f"hrpose knows the originals' datasets "
                      f"{', '.join(repr(n) for n in DATASET_NAMES)}")
    return DATASET_NAMES[name]


def _convert_datasets(values: dict, source: str, ignored: list[str]) -> None:
    name = _get(values, "DATASET.DATASET")
    if isinstance(name, str) and name in DATASET_NAMES:
        values["DATASET"]["DATASET"] = DATASET_NAMES[name]
    if not _has(values, "DATASET.DATASET_TEST"):
        return
    test_name = _pop(values, "DATASET.DATASET_TEST")
    if test_name == "":
        ignored.append("DATASET.DATASET_TEST")
        return
    test_name = _dataset_name("DATASET.DATASET_TEST", test_name, source)
    if test_name != _get(values, "DATASET.DATASET", test_name):
        _set(values, "DATASET.TEST_DATASET", test_name)


def _convert_num_joints(values: dict, source: str) -> None:
    # The bottom-up originals keep the joint count twice; hrpose once, in MODEL.
    if not _has(values, "DATASET.NUM_JOINTS"):
        return
    count = _pop(values, "DATASET.NUM_JOINTS")
    model_count = _get(values, "MODEL.NUM_JOINTS")
    if model_count is None:
        _set(values, "MODEL.NUM_JOINTS", count)
    elif count != model_count:
        raise _refuse("DATASET.NUM_JOINTS", source, count,
                      f"it must equal MODEL.NUM_JOINTS ({model_count!r})")


def is_regression_file(values: dict) -> bool:
    """Whether a YAML is one of the regression repository's: offsets on, or its STN heads."""
    return (_get(values, "DATASET.OFFSET_REG") is True
            or _has(values, "MODEL.EXTRA.MULTI_LEVEL_OUTPUT_HEATMAP"))


def is_darkpose_file(values: dict) -> bool:
    """Whether a YAML is one of DarkPose's: the originals' TARGET_TYPE with DarkPose's
    TEST.BLUR_KERNEL in place of HRNet's TEST.SHIFT_HEATMAP."""
    return (_has(values, "MODEL.TARGET_TYPE") and _has(values, "TEST.BLUR_KERNEL")
            and not _has(values, "TEST.SHIFT_HEATMAP"))


def is_bottom_up_original_file(values: dict) -> bool:
    """Whether a YAML is HigherHRNet's or the regression repository's (their key names)."""
    return any(_has(values, full_key) for full_key in BOTTOM_UP_ORIGINAL_KEYS)


def _convert_regression_file(values: dict, source: str, ignored: list[str],
                             whole_file: bool) -> None:
    """The regression repository's centre joint and offsets are what hrpose's regression models
    always have; its MODEL.NAME names the trunk (pose_hrnet when a file gives none)."""
    for full_key in ("DATASET.WITH_CENTER", "DATASET.OFFSET_REG"):
        value = _pop(values, full_key) if _has(values, full_key) else True
        if value is not True:
            raise _refuse(full_key, source, value,
                          "hrpose's regression models always predict a centre and offsets "
                          "(true)")
    name = _get(values, "MODEL.NAME", "pose_hrnet" if whole_file else None)
    if name in REGRESSION_MODEL_NAMES:
        _set(values, "MODEL.NAME", REGRESSION_MODEL_NAMES[name])
    deconvs = _get(values, "MODEL.EXTRA.DECONV.NUM_DECONVS")
    if _get(values, "MODEL.NAME") == "pose_hrnet_regression" and deconvs is not None:
        if deconvs != 0:
            raise _refuse("MODEL.EXTRA.DECONV.NUM_DECONVS", source, deconvs,
                          "pose_hrnet has no deconvolution step in the regression repository "
                          "(0); its 2x models are pose_higher_hrnet")
        _pop(values, "MODEL.EXTRA.DECONV")
        ignored.append("MODEL.EXTRA.DECONV")


def _convert_center_keys(values: dict, source: str, ignored: list[str]) -> None:
    """HigherHRNet's optional centre joint (off in all its experiments) is not implemented."""
    for full_key in ("DATASET.WITH_CENTER", "DATASET.OFFSET_REG"):
        if _has(values, full_key):
            value = _pop(values, full_key)
            if value is not False:
                raise _refuse(full_key, source, value,
                              "hrpose implements only False for the associative-embedding "
                              "models (centre joints and offsets are the regression models')")
            ignored.append(full_key)


def translate_original_keys(values: dict, source: str, num_stages: int, whole_file: bool = True,
                            regression: bool | None = None) -> tuple[dict, list[str]]:
    """hrpose's keys for a YAML (or override) dict written for an original repository.

    Returns the translated copy and the original keys it dropped as without effect. num_stages
    is the stage count a scalar DATASET.SIGMA is spread over when the dict has no OUTPUT_SIZE.
    whole_file adds what a file's repository always does and hrpose makes a key of (DarkPose's
    DARK pipeline; the bottom-up originals' RGB images) when the dict is such a file, and reads
    HigherHRNet's flip probability; single command-line overrides get only the key-by-key
    conversions. regression says whether the run
    is a regression repository's (default: whether the dict is one of its files), whose model
    names and centre keys differ. Raises OriginalKeyError for a value hrpose does not implement.
    """
    values = copy.deepcopy(values)
    ignored: list[str] = []
    if whole_file and is_darkpose_file(values):
        for full_key, value in DARKPOSE_SETTINGS.items():
            if not _has(values, full_key):
                _set(values, full_key, value)
    if whole_file and is_bottom_up_original_file(values) and not _has(values,
                                                                      "DATASET.COLOR_RGB"):
        _set(values, "DATASET.COLOR_RGB", True)
    name = _get(values, "MODEL.NAME")
    if isinstance(name, str) and name in MODEL_NAMES:
        values["MODEL"]["NAME"] = MODEL_NAMES[name]
    if regression is None:
        regression = is_regression_file(values)
    if regression:
        _convert_regression_file(values, source, ignored, whole_file)
    else:
        _convert_center_keys(values, source, ignored)
    _apply_table(values, source, ignored)
    if whole_file:
        # A flip probability on the command line is refused as a non-boolean.
        _convert_flip(values, source)
    _convert_per_stage_scalars(values, num_stages)
    _convert_datasets(values, source, ignored)
    _convert_num_joints(values, source)
    return values, ignored
