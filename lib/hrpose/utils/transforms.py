"""Top-down crop geometry: boxes to centre/scale, affine crops (HRNet, DARK), flips, half-body."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# A person box is measured in units of PIXEL_STD pixels ("scale"), as in the reference code.
PIXEL_STD = 200.0
# Context added around a person box before cropping.
BOX_PADDING = 1.25
# Context added around the joints selected by the half-body augmentation.
HALF_BODY_PADDING = 1.5
# A half-body crop needs more than this many visible joints on the chosen side.
HALF_BODY_MIN_SIDE_JOINTS = 2

# "hrnet": pixel u of a size-W output stands for source x = c + (u - W/2) * S/W.
# "dark":  pixel centres line up at both ends, x = c + (u - (W-1)/2) * (S-1)/(W-1); under this
#          convention mirroring the input and mirroring the heatmap commute exactly.
CONVENTIONS = ("hrnet", "dark")


def check_convention(convention: str) -> str:
    """Return ``convention`` unchanged if it is one of CONVENTIONS, else raise ValueError."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown coordinate convention '{convention}'; "
                         f"expected one of {CONVENTIONS}")
    return convention


def _similarity_scale(source_width: float, output_width: float, convention: str) -> float:
    """Output pixels per source pixel of the crop (the similarity's scale factor)."""
    if check_convention(convention) == "dark":
        return (output_width - 1.0) / (source_width - 1.0)
    return output_width / source_width


def _output_anchor(output_size: Sequence[float], convention: str) -> np.ndarray:
    """The output point (2,) that the crop centre maps to."""
    width, height = float(output_size[0]), float(output_size[1])
    if check_convention(convention) == "dark":
        return np.array([(width - 1.0) * 0.5, (height - 1.0) * 0.5])
    return np.array([width * 0.5, height * 0.5])


def get_affine_transform(center: Sequence[float], scale: Sequence[float] | float,
                         rotation_deg: float, output_size: Sequence[int],
                         convention: str = "hrnet", inverse: bool = False) -> np.ndarray:
    """The (2, 3) float64 matrix that maps source pixels into the crop (or back, if ``inverse``).

    center: (2,) crop centre in source pixels. scale: (2,) or scalar, in PIXEL_STD units; only
    the width ``scale[0]`` is used, the boxes being aspect-fixed already. rotation_deg: the crop
    is rotated by this angle (the image content turns the other way). output_size: (w, h).

    The references pass three point pairs to cv2.getAffineTransform (centre, centre plus a
    rotated half-width up-vector, and a third point perpendicular to those). That construction is
    a similarity, so it is written here in closed form; it agrees with the float64 three-point
    solve to ~1e-12. (The references round the points to float32 first, which moves the matrix
    by up to ~1e-5 relative.)
    """
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,))
    source_width = float(scale[0]) * PIXEL_STD
    zoom = _similarity_scale(source_width, float(output_size[0]), convention)
    center = np.asarray(center, dtype=np.float64).reshape(2)
    anchor = _output_anchor(output_size, convention)
    radians = np.deg2rad(rotation_deg)
    cos, sin = np.cos(radians), np.sin(radians)
    if inverse:
        # Crop -> source: undo the zoom, then turn by +rotation about the crop anchor.
        linear = np.array([[cos, -sin], [sin, cos]]) / zoom
        offset = center - linear @ anchor
    else:
        linear = zoom * np.array([[cos, sin], [-sin, cos]])
        offset = anchor - linear @ center
    return np.concatenate([linear, offset[:, None]], axis=1)


def affine_transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points (..., 2); returns float64 (..., 2)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {points.shape}")
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def box_to_center_scale(box: Sequence[float] | np.ndarray, aspect_ratio: float,
                        convention: str = "hrnet",
                        padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre (..., 2) and scale (..., 2) in PIXEL_STD units of boxes (..., 4) given as x, y, w, h.

    The shorter side is grown to the crop's aspect ratio (w / h) and both sides are padded.
    HRNet puts the centre at x + w/2; DARK at x + (w-1)/2, i.e. on the middle pixel of a box whose
    w pixels start at x (DARK's COCO loader also adds 1 to the cleaned ground-truth w and h, which
    is the caller's business). float64; the references store float32.
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(f"box must have shape (..., 4) as x, y, w, h; got {box.shape}")
    x, y, width, height = np.moveaxis(box, -1, 0)
    if check_convention(convention) == "dark":
        center = np.stack([x + (width - 1.0) * 0.5, y + (height - 1.0) * 0.5], axis=-1)
    else:
        center = np.stack([x + width * 0.5, y + height * 0.5], axis=-1)
    size = _fix_aspect_ratio(width, height, aspect_ratio)
    return center, size / PIXEL_STD * padding


def _fix_aspect_ratio(width: np.ndarray, height: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side of w x h boxes to the aspect ratio w/h; returns (..., 2)."""
    too_wide = width > aspect_ratio * height
    too_tall = width < aspect_ratio * height
    fixed_width = np.where(too_tall, height * aspect_ratio, width)
    fixed_height = np.where(too_wide, width / aspect_ratio, height)
    return np.stack([fixed_width, fixed_height], axis=-1)


def flip_permutation(flip_pairs: Sequence[Sequence[int]], num_joints: int) -> np.ndarray:
    """Index array (num_joints,) that sends every joint to its mirror (identity off the pairs)."""
    index = np.arange(num_joints)
    pairs = np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2)
    index[pairs[:, 0]] = pairs[:, 1]
    index[pairs[:, 1]] = pairs[:, 0]
    return index


def fliplr_joints(joints: np.ndarray, joints_vis: np.ndarray, image_width: int,
                  flip_pairs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror joints (K, 2 or 3) of an image ``image_width`` wide; returns new (joints, joints_vis).

    x becomes width - x - 1 (pixel-index mirror), left/right pairs swap rows in both arrays, and
    the joints are multiplied by their visibility, which zeroes invisible ones as the references
    do. joints_vis is (K,) or (K, 3) and keeps its shape.
    """
    joints = np.array(joints, dtype=np.float64)
    joints_vis = np.array(joints_vis, dtype=np.float64)
    index = flip_permutation(flip_pairs, joints.shape[0])
    joints[:, 0] = image_width - joints[:, 0] - 1
    joints, joints_vis = joints[index], joints_vis[index]
    weight = joints_vis[:, None] if joints_vis.ndim == 1 else joints_vis[:, :joints.shape[1]]
    return joints * weight, joints_vis


def half_body_transform(joints: np.ndarray, joints_vis: np.ndarray,
                        upper_body_ids: Sequence[int], aspect_ratio: float,
                        rng: np.random.Generator,
                        convention: str = "hrnet") -> tuple[np.ndarray, np.ndarray] | None:
    """Centre (2,) and scale (2,) of a crop around the upper or lower body, or None.

    joints: (K, 2 or 3); joints_vis: (K,) or (K, 3), a joint counts as visible when its first
    entry is > 0. Draws exactly one standard normal from ``rng``. The centre is the mean of the
    selected joints, the size is their extent (+1 under the DARK convention), aspect-fixed and
    padded by HALF_BODY_PADDING.
    """
    joints = np.asarray(joints, dtype=np.float64)[:, :2]
    joints_vis = np.asarray(joints_vis, dtype=np.float64)
    visible = (joints_vis if joints_vis.ndim == 1 else joints_vis[:, 0]) > 0
    is_upper = np.zeros(joints.shape[0], dtype=bool)
    is_upper[np.asarray(upper_body_ids, dtype=np.int64)] = True
    upper, lower = joints[visible & is_upper], joints[visible & ~is_upper]
    # The references compare a standard normal (not a uniform) with 0.5, so the upper body is
    # preferred with probability ~0.69; kept for parity.
    prefer_upper = rng.standard_normal() < 0.5
    if prefer_upper and len(upper) > HALF_BODY_MIN_SIDE_JOINTS:
        selected = upper
    else:
        selected = lower if len(lower) > HALF_BODY_MIN_SIDE_JOINTS else upper
    if len(selected) < 2:
        return None
    center = selected.mean(axis=0)
    width, height = selected.max(axis=0) - selected.min(axis=0)
    if check_convention(convention) == "dark":
        width, height = width + 1.0, height + 1.0
    size = _fix_aspect_ratio(np.float64(width), np.float64(height), aspect_ratio)
    return center, size / PIXEL_STD * HALF_BODY_PADDING


def _heatmap_to_image(coords, center, scale, heatmap_size: Sequence[int], convention: str):
    """Closed-form inverse crop at rotation 0; plain arithmetic, so NumPy and torch agree."""
    heatmap_width, heatmap_height = float(heatmap_size[0]), float(heatmap_size[1])
    source_width = scale[..., 0:1] * PIXEL_STD
    if check_convention(convention) == "dark":
        pixels_per_unit = (source_width - 1.0) / (heatmap_width - 1.0)
        anchor = ((heatmap_width - 1.0) * 0.5, (heatmap_height - 1.0) * 0.5)
    else:
        pixels_per_unit = source_width / heatmap_width
        anchor = (heatmap_width * 0.5, heatmap_height * 0.5)
    # (..., 1) and (..., 2) -> (..., 1, 1) and (..., 1, 2) to broadcast over the joint axis.
    pixels_per_unit = pixels_per_unit[..., None, :]
    center = center[..., None, :]
    x = center[..., 0] + (coords[..., 0] - anchor[0]) * pixels_per_unit[..., 0]
    y = center[..., 1] + (coords[..., 1] - anchor[1]) * pixels_per_unit[..., 0]
    return x, y


def transform_preds(coords: np.ndarray, center: np.ndarray, scale: np.ndarray,
                    heatmap_size: Sequence[int], convention: str = "hrnet") -> np.ndarray:
    """Map heatmap coordinates (N, K, 2) back to image pixels; returns float64 (N, K, 2).

    center, scale: (N, 2) crop centre (pixels) and scale (PIXEL_STD units); heatmap_size (w, h).
    The inverse of get_affine_transform(center, scale, 0, heatmap_size, convention), so any
    rotation of the crop is ignored (test crops have none). Also accepts (K, 2) with (2,).
    """
    coords = np.asarray(coords, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    x, y = _heatmap_to_image(coords, center, scale, heatmap_size, convention)
    return np.stack([x, y], axis=-1)


def transform_preds_torch(coords: torch.Tensor, center: torch.Tensor | np.ndarray,
                          scale: torch.Tensor | np.ndarray, heatmap_size: Sequence[int],
                          convention: str = "hrnet") -> torch.Tensor:
    """transform_preds on coords' device: (N, K, 2), (N, 2), (N, 2) -> float64 (N, K, 2).

    Computed in float64, like the NumPy version, so both give the same numbers.
    """
    device = coords.device
    coords = coords.to(torch.float64)
    center = torch.as_tensor(center, device=device).to(torch.float64)
    scale = torch.as_tensor(scale, device=device).to(torch.float64)
    x, y = _heatmap_to_image(coords, center, scale, heatmap_size, convention)
    return torch.stack([x, y], dim=-1)
