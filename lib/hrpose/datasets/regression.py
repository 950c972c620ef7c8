"""Whole-image samples for the keypoint-regression models: centre joint, tradeoff heatmaps, offsets.

The 2020 heatmap-guided regression paper's COCOKeypoints (docs/regression.md, training data), on top
of the bottom-up dataset's reading, ignore masks and random affine + flip
(``datasets.bottomup.BottomUpDataset``). Per training image:

1. the people kept for targets (non-crowd ones, and crowds with keypoints) get a centre joint
   appended (``codecs.regression.with_center_joint``: the mean of the labelled joints, or the box
   centre; a person whose annotated area is below 32^2 gets none, except on CrowdPose, whose
   annotations have no segmentation areas);
2. image, masks and joints (centre included; the flip index maps the centre to itself) go
   through the random affine and flip at the input and every output size;
3. each person's box area w * h is carried into input pixels (``areas_in_input_pixels``) to
   weight its offsets;
4. ``encode_regression_targets`` encodes every stage.

A training item, and a batch of them (``collate_regression_batch``), is

    (image (3, In, In) float32,
     heatmaps [[(J + 1, S_k, S_k) float32 per heatmap branch] per stage],
     masks [[(1, S_k, S_k) float32, crowd mask x background weights, per branch] per stage],
     offsets [(2J, S_k, S_k) float32, or None for a stage without offset loss],
     offset_weights [the same layout as offsets])

with a leading batch dimension on every tensor of a batch. A stage whose branches share sigma and
background weight has one heatmap and one mask for all of them. Test items are the bottom-up
dataset's (image (H, W, 3) uint8, meta).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from yacs.config import CfgNode

from ..codecs.regression import (
    RegressionTargetParams,
    areas_in_input_pixels,
    encode_regression_targets,
    with_center_joint,
)
from ..errors import DataError
from .bottomup import BottomUpAugmentation, BottomUpDataset, bottomup_affine_matrix, people_joints
from .build import bottomup_augmentation, checked_keypoint_info, split_source
from .metadata import KeypointInfo
from .topdown import normalize_image

logger = logging.getLogger(__name__)

# Datasets without segmentation areas: every person gets a centre, whatever its size (the
# reference skips the area test for CrowdPose).
NO_AREA_TEST_DATASETS = ("crowdpose",)


def person_boxes(people: Sequence[dict]) -> np.ndarray:
    """The people's boxes (P, 4) float64 as x, y, w, h; zeros for an annotation without one."""
    boxes = np.zeros((len(people), 4), dtype=np.float64)
    for row, person in enumerate(people):
        if person.get("bbox") is not None:
            boxes[row] = np.asarray(person["bbox"], dtype=np.float64).reshape(4)
    return boxes


def annotated_areas(people: Sequence[dict], boxes: np.ndarray) -> np.ndarray:
    """The annotations' ``area`` (segmentation area) (P,); box w * h for one without it."""
    return np.array([float(person["area"]) if person.get("area") is not None
                     else boxes[row, 2] * boxes[row, 3] for row, person in enumerate(people)],
                    dtype=np.float64)


class RegressionDataset(BottomUpDataset):
    """A COCO-format split (COCO, CrowdPose, OCHuman, synthetic) as regression training samples.

    target_params: the codec's settings (output sizes, sigmas, background weights, centre sigma,
    offset radius, offset stages; ``RegressionTargetParams.from_config``). center_area_test:
    whether people with an annotated area below 32^2 get no centre; None chooses per dataset
    (all but CrowdPose). Reading, masks and augmentation as ``BottomUpDataset`` (whose other
    arguments this takes); test items are its (image, meta).
    """

    def __init__(self, dataset: str, root: str, image_set: str, is_train: bool,
                 target_params: RegressionTargetParams = RegressionTargetParams(),
                 input_size: int = 512, max_num_people: int = 30,
                 augmentation: BottomUpAugmentation = BottomUpAugmentation(),
                 keypoint_info: KeypointInfo | None = None,
                 center_area_test: bool | None = None, use_ignore_mask: bool | None = None,
                 color_rgb: bool = True, seed: int = 0):
        # with_center only extends the flip index so that it maps the appended centre joint to
        # itself; the centre itself comes from with_center_joint in training_item.
        super().__init__(dataset, root, image_set, is_train, input_size=input_size,
                         output_sizes=target_params.output_sizes, sigma=None,
                         max_num_people=max_num_people, augmentation=augmentation,
                         keypoint_info=keypoint_info, with_center=True,
                         use_ignore_mask=use_ignore_mask, color_rgb=color_rgb, seed=seed)
        self.target_params = target_params
        self.center_area_test = (dataset not in NO_AREA_TEST_DATASETS
                                 if center_area_test is None else center_area_test)

    def training_item(self, index: int, image: np.ndarray, info: dict):
        """Augment image ``index`` (already read) and encode its regression targets."""
        people, mask = self.people_and_mask(index, *image.shape[:2])
        keypoints = people_joints(people, self.num_keypoints, False, self.image_ids[index])
        boxes = person_boxes(people)
        areas = annotated_areas(people, boxes) if self.center_area_test else None
        joints = with_center_joint(keypoints, boxes, areas,
                                   use_bbox_center=self.target_params.use_bbox_center)
        image, masks, joints_list, draw = self.augment(index, image, mask, joints)
        to_input = bottomup_affine_matrix(draw.center, draw.scale, self.input_size, draw.rotation)
        box_areas = areas_in_input_pixels(boxes[:, 2] * boxes[:, 3], to_input)
        targets = encode_regression_targets(joints_list, box_areas, self.target_params, masks)

        def tensor(array):
            return None if array is None else torch.from_numpy(array)

        return (normalize_image(image),
                [[tensor(t) for t in stage] for stage in targets.heatmaps],
                [[tensor(m) for m in stage] for stage in targets.heatmap_masks],
                [tensor(o) for o in targets.offsets],
                [tensor(w) for w in targets.offset_weights])


def _stack(tensors: Sequence[torch.Tensor | None], what: str) -> torch.Tensor | None:
    present = [t is not None for t in tensors]
    if not any(present):
        return None
    if not all(present):
        raise DataError(f"some samples of a batch have {what} and others do not")
    return torch.stack(list(tensors))


def collate_regression_batch(samples: Sequence[tuple]) -> tuple:
    """A batch of regression training items (see the module docstring); a stage without offset
    targets stays None instead of stopping the default collate."""
    if not samples:
        raise DataError("cannot make a batch of no samples")
    images = torch.stack([sample[0] for sample in samples])
    first = samples[0]
    heatmaps = [[_stack([s[1][stage][branch] for s in samples], "heatmaps")
                 for branch in range(len(first[1][stage]))] for stage in range(len(first[1]))]
    masks = [[_stack([s[2][stage][branch] for s in samples], "heatmap masks")
              for branch in range(len(first[2][stage]))] for stage in range(len(first[2]))]
    offsets = [_stack([s[3][stage] for s in samples], f"offsets at stage {stage}")
               for stage in range(len(first[3]))]
    weights = [_stack([s[4][stage] for s in samples], f"offset weights at stage {stage}")
               for stage in range(len(first[4]))]
    return images, heatmaps, masks, offsets, weights


def build_regression_dataset(cfg: CfgNode, is_train: bool,
                             training_split: bool | None = None) -> RegressionDataset:
    """A split of cfg.DATASET as regression samples: training items (augmented, with targets)
    when is_train, test items otherwise. training_split picks DATASET.TRAIN_SET (True) or the
    test split (False); by default the split that goes with is_train (tools/rescore_data.py
    reads the training split as test items)."""
    name, root, image_set = split_source(cfg, is_train if training_split is None
                                         else training_split)
    keypoint_info = checked_keypoint_info(cfg, name)
    augmentation = bottomup_augmentation(cfg)
    dataset = RegressionDataset(
        name, root, image_set, is_train, target_params=RegressionTargetParams.from_config(cfg),
        input_size=cfg.DATASET.INPUT_SIZE, max_num_people=cfg.DATASET.MAX_NUM_PEOPLE,
        augmentation=augmentation, keypoint_info=keypoint_info,
        color_rgb=cfg.DATASET.COLOR_RGB, seed=cfg.SEED)
    if not len(dataset):
        raise DataError(f"no images {'with people ' if is_train else ''}in {name} split "
                        f"'{image_set}' under '{root}'")
    return dataset
