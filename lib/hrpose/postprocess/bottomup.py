"""HigherHRNet's test-time pipeline for one image (docs/higherhrnet.md).

resize (multiples of 64, per scale) -> forward, optionally with a flipped pass -> heatmaps of all
resolutions averaged at the last (largest) output's size -> optional projection to the input
size (PROJECT2IMAGE) -> heatmaps averaged over scales, tags of scale 1 stacked on a last axis ->
associative-embedding grouping (ae_grouping) -> back-projection to image pixels -> COCO result
entries. Library code with explicit arguments; the config keys named in ``BottomUpTestParams``
map one to one onto its fields. Works on CPU and CUDA: the model's device is used throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.topdown import normalize_image
from ..utils.transforms import get_affine_transform, transform_preds
from .ae_grouping import AssignmentSolver, GroupingParams, group_keypoints

# Test-time input sides are rounded up to multiples of this (the network downsamples 64x).
SIZE_MULTIPLE = 64
# Category id of "person" in COCO and CrowdPose result files.
PERSON_CATEGORY_ID = 1

ModelCallable = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class BottomUpTestParams:
    """Test-time settings; each field names the HigherHRNet config key it stands for.

    input_size: DATASET.INPUT_SIZE. scale_factors: TEST.SCALE_FACTOR. flip_test: TEST.FLIP_TEST.
    flip_index: the joint permutation of a mirrored image (from the dataset's flip pairs, e.g.
    utils.transforms.flip_permutation); needed with flip_test. project2image:
    TEST.PROJECT2IMAGE. Per model output i (the model returns a list, output 0 at 1/4, output 1
    at 1/2 resolution): heatmaps_loss[i] = LOSS.WITH_HEATMAPS_LOSS[i] (the output starts with J
    heatmap channels; its tag channels follow them), ae_loss[i] = LOSS.WITH_AE_LOSS[i] (the
    output carries tag channels: J, or 1 shared by all joints), with_heatmaps[i] =
    TEST.WITH_HEATMAPS[i], with_ae[i] = TEST.WITH_AE[i]; an output's heatmaps (tags) are used
    when both of its flags are set. Defaults are HigherHRNet's config defaults, except that
    the per-output flags default to the two-output HigherHRNet head of its experiment files.

    backproject_with_base_scale: fix for a reference defect. The reference maps the final
    coordinates back with the centre/scale of the *last* resize of its scale loop (the smallest
    scale), while the maps it decodes sit at the scale-1 size; when size rounding makes the
    aspect ratios differ (e.g. a scale list with 0.75) this shifts the results by a fraction of
    a pixel. False (default) reproduces that; True uses the scale-1 centre/scale.
    """

    input_size: int = 512
    scale_factors: tuple[float, ...] = (1.0,)
    flip_test: bool = False
    flip_index: tuple[int, ...] | None = None
    project2image: bool = False
    heatmaps_loss: tuple[bool, ...] = (True, True)
    ae_loss: tuple[bool, ...] = (True, False)
    with_heatmaps: tuple[bool, ...] = (True, True)
    with_ae: tuple[bool, ...] = (True, False)
    backproject_with_base_scale: bool = False

    def __post_init__(self) -> None:
        for name in ("scale_factors", "heatmaps_loss", "ae_loss", "with_heatmaps", "with_ae"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.flip_index is not None:
            object.__setattr__(self, "flip_index", tuple(int(j) for j in self.flip_index))
        if self.input_size < 1:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if not self.scale_factors or min(self.scale_factors) <= 0:
            raise ValueError(f"scale_factors must be positive numbers, got {self.scale_factors}")
        if len(self.scale_factors) > 1 and 1.0 not in self.scale_factors:
            # The reference reads tags at scale 1 only and fails without it.
            raise ValueError(f"a multi-scale test needs 1.0 in the scale factors (tags are read "
                             f"at scale 1), got {self.scale_factors}")
        if self.flip_test and self.flip_index is None:
            raise ValueError("flip_test needs flip_index (the joint permutation of a mirror image)")
        if self.flip_index is not None and \
                sorted(self.flip_index) != list(range(len(self.flip_index))):
            raise ValueError(f"flip_index {self.flip_index} is not a permutation")
        lengths = {len(self.heatmaps_loss), len(self.ae_loss), len(self.with_heatmaps),
                   len(self.with_ae)}
        if len(lengths) != 1:
            raise ValueError("heatmaps_loss, ae_loss, with_heatmaps and with_ae need one entry per "
                             "model output each")
        if not any(a and b for a, b in zip(self.heatmaps_loss, self.with_heatmaps)):
            raise ValueError("no model output is used for heatmaps (heatmaps_loss and "
                             "with_heatmaps are never both true)")
        if not any(a and b for a, b in zip(self.ae_loss, self.with_ae)):
            raise ValueError("no model output is used for tags (ae_loss and with_ae are never "
                             "both true); the grouping needs tags")

    @property
    def min_scale(self) -> float:
        return min(self.scale_factors)


class MultiScaleMaps(NamedTuple):
    """What the network part of the pipeline gives the grouping.

    heatmaps (1, J, H, W) and tags, D maps (1, J or 1, H, W) (D = number of tag maps of scale
    1: 1, or 2 with flip; ``torch.stack(tags, dim=-1)`` gives (1, J or 1, H, W, D)), on the
    model's device; center (2,), scale (2,) and heatmap_size (W, H): the arguments
    get_final_preds needs to bring heatmap pixels back to the image.
    """

    heatmaps: torch.Tensor
    tags: tuple[torch.Tensor, ...]
    center: np.ndarray
    scale: np.ndarray
    heatmap_size: tuple[int, int]


class BottomUpPrediction(NamedTuple):
    """Persons of one image: poses (P, J, 3 + D) float64 rows (x, y, value, tags...) with x, y
    in original image pixels; scores (P,) float32."""

    poses: np.ndarray
    scores: np.ndarray


def round_up_to_64(value: float) -> int:
    """The reference's size rounding int((value + 63) // 64 * 64).

    For an integer value that is the next multiple of 64; for a fractional one it can round
    down (512.5 -> 512), which is kept as the reference computes it.
    """
    return int((value + SIZE_MULTIPLE - 1) // SIZE_MULTIPLE * SIZE_MULTIPLE)


def get_multi_scale_size(image_size: Sequence[int], input_size: int, current_scale: float,
                         min_scale: float) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Network input size (w, h), centre (2,) and scale (2,) of an image at one test scale.

    image_size: (w, h) of the original image. The short side at min_scale is
    round_up_to_64(min_scale * input_size), the long side round_up_to_64 of the same aspect;
    both are multiplied by current_scale / min_scale and truncated. Centre (int(w/2 + 0.5),
    int(h/2 + 0.5)); scale in units of 200 px, the short side's image length and the long side
    stretched to the padded aspect ratio (only scale[0] enters the affine maps).
    """
    width, height = int(image_size[0]), int(image_size[1])
    center = np.array([int(width / 2.0 + 0.5), int(height / 2.0 + 0.5)], dtype=np.float64)
    min_input_size = round_up_to_64(min_scale * input_size)
    factor = current_scale / min_scale
    if width < height:
        width_resized = int(min_input_size * factor)
        height_resized = int(round_up_to_64(min_input_size / width * height) * factor)
        scale_width = width / 200.0
        scale_height = height_resized / width_resized * width / 200.0
    else:
        height_resized = int(min_input_size * factor)
        width_resized = int(round_up_to_64(min_input_size / height * width) * factor)
        scale_height = height / 200.0
        scale_width = width_resized / height_resized * height / 200.0
    return (width_resized, height_resized), center, np.array([scale_width, scale_height])


def resize_align_multi_scale(image: np.ndarray, input_size: int, current_scale: float,
                             min_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image warped to its test size at one scale; returns (resized, center, scale).

    image (H, W, C). The centre maps to the middle of the output and the padding is split
    evenly (bilinear, black border), as the reference's get_affine_transform + warpAffine.
    """
    size, center, scale = get_multi_scale_size((image.shape[1], image.shape[0]), input_size,
                                               current_scale, min_scale)
    matrix = get_affine_transform(center, scale, 0.0, size)
    resized = cv2.warpAffine(np.ascontiguousarray(image), matrix, size, flags=cv2.INTER_LINEAR)
    return resized, center, scale


def _as_output_list(outputs: Any) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return list(outputs)


def _resize(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners False) of (N, C, h, w) maps to size (h', w')."""
    return F.interpolate(maps, size=tuple(int(s) for s in size), mode="bilinear",
                         align_corners=False)


def _collect(outputs: list[torch.Tensor], params: BottomUpTestParams, num_joints: int,
             flipped: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Average heatmap (1, J, h, w) and the tag maps of one forward pass, at the last output's
    size; a flipped pass is mirrored back and its joint channels re-indexed."""
    if len(outputs) > len(params.heatmaps_loss):
        raise ValueError(f"the model returned {len(outputs)} outputs but the per-output flags "
                         f"(heatmaps_loss, ae_loss, with_heatmaps, with_ae) cover "
                         f"{len(params.heatmaps_loss)}")
    last_size = outputs[-1].shape[2:]
    flip_index = list(params.flip_index) if flipped else None
    heatmap_sum: torch.Tensor | int = 0
    num_heatmaps = 0
    tags = []
    for i, output in enumerate(outputs):
        output = output.float()
        if len(outputs) > 1 and i != len(outputs) - 1:
            output = _resize(output, last_size)
        if flipped:
            output = torch.flip(output, [3])
        if params.heatmaps_loss[i] and params.with_heatmaps[i]:
            heatmaps = output[:, :num_joints]
            heatmap_sum = heatmap_sum + (heatmaps[:, flip_index] if flipped else heatmaps)
            num_heatmaps += 1
        if params.ae_loss[i] and params.with_ae[i]:
            tag = output[:, num_joints if params.heatmaps_loss[i] else 0:]
            if flipped and tag.shape[1] == num_joints:
                tag = tag[:, flip_index]
            elif tag.shape[1] not in (1, num_joints):
                raise ValueError(f"model output {i} has {tag.shape[1]} tag channels; "
                                 f"expected {num_joints} (one per joint) or 1")
            tags.append(tag)
    if num_heatmaps == 0:
        raise ValueError("no model output provided heatmaps")
    return heatmap_sum / num_heatmaps, tags


def multi_stage_outputs(model: ModelCallable, image: torch.Tensor, params: BottomUpTestParams,
                        num_joints: int, size_projected: Sequence[int] | None = None
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Heatmaps and tags of one scale: ([avg] or [avg, avg_flip], [tags...]).

    image (1, 3, h, w) on the model's device; the model returns one tensor or a list of them
    (e.g. [(1, 2J, h/4, w/4), (1, J, h/2, w/2)]). Outputs before the last are resized to the
    last one's size; the heatmaps of the used outputs are averaged; with flip the mirrored
    input's outputs are flipped back (no pixel shift) and re-indexed with flip_index, tags too.
    With size_projected (w, h) every map is resized to it (PROJECT2IMAGE).
    """
    if params.flip_test and len(params.flip_index) != num_joints:
        raise ValueError(f"flip_index has {len(params.flip_index)} entries for {num_joints} joints")
    heatmaps, tags = [], []
    average, image_tags = _collect(_as_output_list(model(image)), params, num_joints, False)
    heatmaps.append(average)
    tags.extend(image_tags)
    if params.flip_test:
        flipped_outputs = _as_output_list(model(torch.flip(image, [3])))
        average, flipped_tags = _collect(flipped_outputs, params, num_joints, True)
        heatmaps.append(average)
        tags.extend(flipped_tags)
    if size_projected is not None:
        size = (int(size_projected[1]), int(size_projected[0]))
        heatmaps = [_resize(maps, size) for maps in heatmaps]
        tags = [_resize(maps, size) for maps in tags]
    return heatmaps, tags


def model_device(model: ModelCallable) -> torch.device:
    """Where the model's parameters live (CPU for a plain callable or a model without any)."""
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return torch.device("cpu")


def multi_scale_maps(model: ModelCallable, image: np.ndarray, params: BottomUpTestParams,
                     num_joints: int, device: torch.device | str | None = None,
                     transform: Callable[[np.ndarray], torch.Tensor] | None = None
                     ) -> MultiScaleMaps:
    """Run the model over all test scales of one image and aggregate as the reference.

    image: (H, W, 3) uint8 RGB. transform: resized image -> (3, h, w) tensor (default: ToTensor
    + ImageNet normalisation). device: where the input goes (default: the model's parameters'
    device, else CPU). Scales are visited largest first. Heatmaps: (orig + flip) / 2 per scale
    (averaged before any resize: the reference's values up to float rounding), resized to the
    first (largest) scale's maps unless projected, summed, divided by the number of scales.
    Tags: the maps of scale 1 (or of the only scale), a tuple of (1, J, H, W) maps: the
    reference's stack on a last axis, kept apart (image-sized, one buffer for all would be
    handed back to the system by the CPU allocator after every image).
    """
    transform = normalize_image if transform is None else transform
    device = model_device(model) if device is None else torch.device(device)
    image_size = (image.shape[1], image.shape[0])
    base_size, base_center, base_scale = get_multi_scale_size(
        image_size, params.input_size, 1.0, params.min_scale)
    projected_size = (int(base_size[1]), int(base_size[0]))
    final_heatmaps: torch.Tensor | None = None
    tag_list: list[torch.Tensor] = []
    center, scale = base_center, base_scale
    single_scale = len(params.scale_factors) == 1
    with torch.no_grad():
        for current_scale in sorted(params.scale_factors, reverse=True):
            resized, center, scale = resize_align_multi_scale(
                image, params.input_size, current_scale, params.min_scale)
            tensor = transform(resized).unsqueeze(0).to(device)
            heatmaps, tags = multi_stage_outputs(model, tensor, params, num_joints)
            # Bilinear resizing is linear, so averaging the two passes before resizing equals
            # the reference's resize-then-average up to float rounding, at half the work.
            average = (heatmaps[0] + heatmaps[1]) / 2.0 if params.flip_test else heatmaps[0]
            keep_tags = current_scale == 1 or single_scale
            if params.project2image:
                average = _resize(average, projected_size)
                if keep_tags:
                    tag_list = [_resize(maps, projected_size) for maps in tags]
            elif keep_tags:
                if final_heatmaps is not None:
                    tags = [_resize(maps, final_heatmaps.shape[2:]) for maps in tags]
                tag_list.extend(tags)
            if final_heatmaps is None:
                final_heatmaps = average
            elif params.project2image:
                final_heatmaps = final_heatmaps + average
            else:
                final_heatmaps = final_heatmaps + _resize(average, final_heatmaps.shape[2:])
        if len(params.scale_factors) > 1:    # (a division by 1 would change no value)
            final_heatmaps = final_heatmaps / float(len(params.scale_factors))
        # The tag maps stay one tensor per component (the grouping reads one at a time).
        tags = tuple(tag_list)
    if params.backproject_with_base_scale:
        center, scale = base_center, base_scale
    heatmap_size = (int(final_heatmaps.shape[3]), int(final_heatmaps.shape[2]))
    return MultiScaleMaps(final_heatmaps, tags, center, scale, heatmap_size)


def get_final_preds(poses: np.ndarray, center: Sequence[float], scale: Sequence[float],
                    heatmap_size: Sequence[int]) -> np.ndarray:
    """Poses (P, J, C) from heatmap pixels to image pixels; returns a float64 copy.

    Columns 0 and 1 go through the inverse of get_affine_transform(center, scale, 0,
    heatmap_size) (HRNet convention: heatmap pixel u is image x = c + (u - W/2) * 200 *
    scale[0] / W, the same factor on y); the other columns are copied. Every joint is mapped,
    missing ones included, as the reference.
    """
    poses = np.array(poses, dtype=np.float64, copy=True)
    if poses.size == 0:
        return poses
    flat = poses[..., :2].reshape(-1, 2)
    mapped = transform_preds(flat, np.asarray(center, dtype=np.float64),
                             np.asarray(scale, dtype=np.float64), heatmap_size)
    poses[..., :2] = mapped.reshape(poses.shape[:-1] + (2,))
    return poses


def infer_bottom_up(model: ModelCallable, image: np.ndarray, test_params: BottomUpTestParams,
                    grouping_params: GroupingParams, device: torch.device | str | None = None,
                    transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                    assignment: AssignmentSolver | None = None) -> BottomUpPrediction:
    """The whole test-time pipeline for one (H, W, 3) uint8 RGB image.

    The model should be in eval mode. Returns the persons in image pixels and their scores
    (mean joint value before refine), in the order the grouping found them. assignment: the
    grouping's Hungarian solver; None for grouping_params.assignment_solver.
    """
    maps = multi_scale_maps(model, image, test_params, grouping_params.num_joints, device,
                            transform)
    grouped = group_keypoints(maps.heatmaps, maps.tags, grouping_params, assignment)[0]
    poses = get_final_preds(grouped.poses, maps.center, maps.scale, maps.heatmap_size)
    return BottomUpPrediction(poses, grouped.scores)


def coco_keypoint_results(poses: np.ndarray, scores: Sequence[float], image_id: int,
                          category_id: int = PERSON_CATEGORY_ID) -> list[dict]:
    """COCO / CrowdPose result entries for one image's persons (plain Python numbers).

    poses (P, J, >= 3) in image pixels (x, y, value); each entry holds image_id, category_id,
    keypoints (x, y, value flattened, 3J), score and, as the reference writes it, bbox [x, y,
    w, h] spanning all J joints (the evaluators recompute the box from the keypoints).
    """
    results = []
    for pose, score in zip(np.asarray(poses, dtype=np.float64), scores):
        keypoints = pose[:, :3]
        left, top = keypoints[:, 0].min(), keypoints[:, 1].min()
        right, bottom = keypoints[:, 0].max(), keypoints[:, 1].max()
        results.append({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in keypoints.reshape(-1)],
            "score": float(score),
            "bbox": [float(left), float(top), float(right - left), float(bottom - top)],
        })
    return results
