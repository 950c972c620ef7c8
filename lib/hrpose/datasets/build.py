"""Build the datasets a config asks for."""

from __future__ import annotations

import logging

from yacs.config import CfgNode

from ..errors import DataError
from . import coco_format, mpii
from .bottomup import BottomUpAugmentation, BottomUpDataset
from .metadata import get_keypoint_info
from .selection import select_records
from .topdown import Augmentation, TopDownDataset

logger = logging.getLogger(__name__)


def split_source(cfg: CfgNode, is_train: bool) -> tuple[str, str, str]:
    """(dataset name, root, image set) of the training or test split.

    The test split may come from another dataset with the same keypoints (OCHuman is tested
    after training on COCO) through DATASET.TEST_DATASET and DATASET.TEST_ROOT.
    """
    if is_train:
        return cfg.DATASET.DATASET, cfg.DATASET.ROOT, cfg.DATASET.TRAIN_SET
    return (cfg.DATASET.TEST_DATASET or cfg.DATASET.DATASET,
            cfg.DATASET.TEST_ROOT or cfg.DATASET.ROOT, cfg.DATASET.TEST_SET)


def checked_keypoint_info(cfg: CfgNode, name: str):
    """The keypoint metadata of dataset name, after checking MODEL.NUM_JOINTS fits it."""
    keypoint_info = get_keypoint_info(name)
    if keypoint_info.num_keypoints != cfg.MODEL.NUM_JOINTS:
        raise DataError(f"MODEL.NUM_JOINTS is {cfg.MODEL.NUM_JOINTS} but dataset '{name}' has "
                        f"{keypoint_info.num_keypoints} keypoints")
    return keypoint_info


def topdown_records(cfg: CfgNode, is_train: bool) -> tuple[list[dict], dict]:
    """Person records of a split and what evaluation needs to know about it."""
    name, root, image_set = split_source(cfg, is_train)
    num_joints = cfg.MODEL.NUM_JOINTS
    aspect_ratio = cfg.MODEL.IMAGE_SIZE[0] / cfg.MODEL.IMAGE_SIZE[1]
    convention = cfg.DATASET.COORD_CONVENTION
    if name == "mpii":
        records = mpii.mpii_records(root, image_set, num_joints)
        return records, {"dataset": name, "gt_file": mpii.gt_mat_file(root, image_set),
                         "image_set": image_set}
    annotation_path = coco_format.annotation_file(name, root, image_set)
    coco = coco_format.load_coco_file(annotation_path, num_joints)
    images_dir = coco_format.image_folder(name, root, image_set)
    if is_train or cfg.TEST.USE_GT_BBOX:
        records = coco_format.ground_truth_records(coco, images_dir, num_joints, aspect_ratio,
                                                   convention, annotation_path)
    else:
        records = coco_format.detection_records(coco, images_dir, cfg.TEST.COCO_BBOX_FILE,
                                                num_joints, aspect_ratio, convention,
                                                cfg.TEST.IMAGE_THRE)
    return records, {"dataset": name, "gt_file": annotation_path, "coco": coco,
                     "image_set": image_set}


def build_topdown_dataset(cfg: CfgNode, is_train: bool) -> TopDownDataset:
    """The training or test split of cfg.DATASET as a TopDownDataset with an `evaluation` dict."""
    name, root, image_set = split_source(cfg, is_train)
    keypoint_info = checked_keypoint_info(cfg, name)
    records, evaluation = topdown_records(cfg, is_train)
    if not records:
        raise DataError(f"no person samples in {name} split '{image_set}' under '{root}'")
    if is_train and cfg.DATASET.SELECT_DATA:
        records = select_records(records)
    augmentation = Augmentation(
        flip=cfg.DATASET.FLIP, scale_factor=cfg.DATASET.SCALE_FACTOR,
        rotation_factor=cfg.DATASET.ROT_FACTOR, half_body_probability=cfg.DATASET.PROB_HALF_BODY,
        half_body_min_joints=cfg.DATASET.NUM_JOINTS_HALF_BODY)
    dataset = TopDownDataset(
        records, keypoint_info, cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, cfg.MODEL.SIGMA,
        is_train, augmentation, color_rgb=cfg.DATASET.COLOR_RGB,
        convention=cfg.DATASET.COORD_CONVENTION,
        use_joint_weights=cfg.LOSS.USE_DIFFERENT_JOINTS_WEIGHT, seed=cfg.SEED,
        target_encoding=cfg.MODEL.TARGET_ENCODING)
    dataset.evaluation = evaluation
    logger.info("%s %s: %d samples", name, image_set, len(records))
    return dataset


def bottomup_augmentation(cfg: CfgNode) -> BottomUpAugmentation:
    """The whole-image random affine and flip of cfg.DATASET, for every bottom-up dataset."""
    return BottomUpAugmentation(
        max_rotation=cfg.DATASET.MAX_ROTATION, min_scale=cfg.DATASET.MIN_SCALE,
        max_scale=cfg.DATASET.MAX_SCALE, scale_type=cfg.DATASET.SCALE_TYPE,
        max_translate=cfg.DATASET.MAX_TRANSLATE,
        flip_probability=0.5 if cfg.DATASET.FLIP else 0.0)


def build_bottomup_dataset(cfg: CfgNode, is_train: bool) -> BottomUpDataset:
    """The training or test split of cfg.DATASET as whole images for a bottom-up model."""
    name, root, image_set = split_source(cfg, is_train)
    keypoint_info = checked_keypoint_info(cfg, name)
    augmentation = bottomup_augmentation(cfg)
    dataset = BottomUpDataset(
        name, root, image_set, is_train, input_size=cfg.DATASET.INPUT_SIZE,
        output_sizes=cfg.DATASET.OUTPUT_SIZE, sigma=cfg.DATASET.SIGMA,
        max_num_people=cfg.DATASET.MAX_NUM_PEOPLE, augmentation=augmentation,
        keypoint_info=keypoint_info, tag_per_joint=cfg.MODEL.TAG_PER_JOINT,
        scale_aware_sigma=cfg.DATASET.SCALE_AWARE_SIGMA, base_size=cfg.DATASET.BASE_SIZE,
        base_sigma=cfg.DATASET.BASE_SIGMA, int_sigma=cfg.DATASET.INT_SIGMA,
        color_rgb=cfg.DATASET.COLOR_RGB, seed=cfg.SEED)
    if not len(dataset):
        raise DataError(f"no images {'with people ' if is_train else ''}in {name} split "
                        f"'{image_set}' under '{root}'")
    return dataset
