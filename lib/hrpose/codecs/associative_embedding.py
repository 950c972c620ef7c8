"""Associative-embedding targets (HigherHRNet): integer-centred Gaussian heatmaps and tag indices.

Layout shared with the AE loss and the AE grouping decoder:

* joints of one image, at one output resolution: (P, J, 3) float as (x, y, v) in output pixels of
  a square S x S map; a joint takes part when v > 0 and its truncated position lies in the map.
* heatmaps: (J, S, S) float32, per pixel the maximum over people of a Gaussian centred on the
  joint's truncated pixel (int(x), int(y)), peak 1 (for a whole-number 3 sigma + 1).
* tags: (MAX_NUM_PEOPLE, J, 2) int64; slot (i, j) is person i's joint j as (flat index, 1)
  when usable, the flat index addressing the flattened (J, S, S) tag map (j * S^2 + y * S + x),
  or the single (S, S) map (y * S + x) without per-joint tags; other slots are (0, 0).

The window arithmetic is HigherHRNet's: a patch of side 6 sigma + 3 centred at 3 sigma + 1,
window [round(x - 3 sigma - 1), round(x + 3 sigma + 2)) with NumPy's half-to-even rounding, and
coordinates truncated toward zero (so x in (-1, 0) counts as column 0). Everything is vectorised
over people and joints; the values are bit-equal to pasting the reference patch person by person.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# sigma < 0 asks for output_size / AUTO_SIGMA_DIVISOR (HigherHRNet's DATASET.SIGMA -1).
AUTO_SIGMA_DIVISOR = 64.0


def resolve_sigma(sigma: float, output_size: int) -> float:
    """The Gaussian sigma used at an output resolution: ``sigma``, or output_size / 64 if < 0."""
    sigma = float(sigma)
    return float(output_size) / AUTO_SIGMA_DIVISOR if sigma < 0 else sigma


def sigmas_per_resolution(sigma: float | Sequence[float],
                          output_sizes: Sequence[int]) -> list[float]:
    """One sigma per output resolution from a scalar (shared, as HigherHRNet) or a per-size list."""
    if np.ndim(sigma) == 0:
        values = [float(sigma)] * len(output_sizes)
    else:
        values = [float(s) for s in sigma]
        if len(values) != len(output_sizes):
            raise ValueError(f"got {len(values)} sigmas for {len(output_sizes)} output sizes "
                             f"{list(output_sizes)}")
    return [resolve_sigma(s, size) for s, size in zip(values, output_sizes)]


def higherhrnet_gaussian_patch(sigma: float) -> np.ndarray:
    """HigherHRNet's float64 patch: side ceil(6 sigma + 3), centre 3 sigma + 1 (15 x 15 at 2).

    The peak is 1 when 3 sigma + 1 is a whole number; otherwise it falls between pixels.
    """
    sigma = float(sigma)
    size = 6 * sigma + 3
    x = np.arange(0, size, 1, dtype=np.float64)
    y = x[:, None]
    centre = 3 * sigma + 1
    return np.exp(-((x - centre) ** 2 + (y - centre) ** 2) / (2 * sigma ** 2))


def scale_aware_sigmas(boxes: np.ndarray, base_size: float = 256.0, base_sigma: float = 2.0,
                       int_sigma: bool = False) -> np.ndarray:
    """Per-person sigma (P,) from boxes (P, 4) x, y, w, h: max(w, h) / base_size * base_sigma.

    With ``int_sigma`` the value becomes int(round(sigma + 0.5)) (half-to-even, as the reference).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sigmas = np.maximum(boxes[:, 2], boxes[:, 3]) / float(base_size) * float(base_sigma)
    if int_sigma:
        sigmas = np.round(sigmas + 0.5).astype(np.int64).astype(np.float64)
    if np.any(sigmas <= 0):
        raise ValueError("scale-aware sigma needs boxes with a positive width or height")
    return sigmas


def _truncated_positions(joints: np.ndarray, output_size: int) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """Truncated (x, y) int64 (P, J) and the mask of joints that take part (v > 0, inside)."""
    with np.errstate(invalid="ignore"):
        x = np.trunc(joints[..., 0])
        y = np.trunc(joints[..., 1])
        usable = ((joints[..., 2] > 0) & (x >= 0) & (y >= 0)
                  & (x < output_size) & (y < output_size))
    x = np.where(usable, x, 0).astype(np.int64)
    y = np.where(usable, y, 0).astype(np.int64)
    return x, y, usable


def _check_joints(joints: np.ndarray, num_joints: int | None) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[2] < 3:
        raise ValueError(f"joints must have shape (people, joints, 3 or more) as x, y, v; "
                         f"got {joints.shape}")
    if num_joints is not None and joints.shape[1] != num_joints:
        raise ValueError(f"joints have {joints.shape[1]} keypoints, expected {num_joints}")
    return joints


def encode_ae_heatmaps(joints: np.ndarray, output_size: int, sigma: float | np.ndarray,
                       num_joints: int | None = None) -> np.ndarray:
    """HigherHRNet heatmap targets (J, S, S) float32 for joints (P, J, >=3) in output pixels.

    sigma: a scalar (HeatmapGenerator; < 0 means output_size / 64) or one value per person (P,)
    (the scale-aware generator, which reads the person's own sigma). Each usable joint gets the
    patch of ``higherhrnet_gaussian_patch(sigma)`` pasted with its centre on (int(x), int(y)),
    clipped to the map, and overlapping people are combined by a per-pixel maximum.
    """
    joints = _check_joints(joints, num_joints)
    num_people, count = joints.shape[:2]
    size = int(output_size)
    heatmaps = np.zeros((count, size, size), dtype=np.float32)
    if np.ndim(sigma) == 0:
        person_sigma = np.full(num_people, resolve_sigma(float(sigma), size))
    else:
        person_sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
        if person_sigma.shape[0] != num_people:
            raise ValueError(f"got {person_sigma.shape[0]} sigmas for {num_people} people")
    x, y, usable = _truncated_positions(joints, size)
    person, joint = np.nonzero(usable)
    if person.size == 0:
        return heatmaps
    x, y, s = x[person, joint], y[person, joint], person_sigma[person]
    if np.any(s <= 0):
        raise ValueError("heatmap sigma must be positive")
    side = np.ceil(6 * s + 3).astype(np.int64)  # len(np.arange(0, 6 sigma + 3))
    offsets = np.arange(int(side.max()))
    # Window [round(x - 3s - 1), round(x + 3s + 2)) cut to the map and to the patch's own side.
    left = np.round(x - 3 * s - 1).astype(np.int64)
    top = np.round(y - 3 * s - 1).astype(np.int64)
    right = np.minimum(np.round(x + 3 * s + 2).astype(np.int64), size)
    bottom = np.minimum(np.round(y + 3 * s + 2).astype(np.int64), size)
    columns = left[:, None] + offsets  # (n, K)
    rows = top[:, None] + offsets
    in_patch = offsets < side[:, None]
    column_ok = in_patch & (columns >= 0) & (columns < right[:, None])
    row_ok = in_patch & (rows >= 0) & (rows < bottom[:, None])
    # Patch values computed as higherhrnet_gaussian_patch does, element for element (same
    # float64 operations).
    centre = (3 * s + 1)[:, None]
    column_term = (offsets.astype(np.float64) - centre) ** 2  # (n, K)
    row_term = (offsets.astype(np.float64) - centre) ** 2
    values = np.exp(-(column_term[:, None, :] + row_term[:, :, None])
                    / (2 * s ** 2)[:, None, None]).astype(np.float32)
    keep = row_ok[:, :, None] & column_ok[:, None, :]
    flat = (joint[:, None, None] * size + rows[:, :, None]) * size + columns[:, None, :]
    np.maximum.at(heatmaps.reshape(-1), flat[keep], values[keep])
    return heatmaps


def encode_ae_tags(joints: np.ndarray, output_size: int, max_num_people: int,
                   tag_per_joint: bool = True, num_joints: int | None = None) -> np.ndarray:
    """HigherHRNet's JointsGenerator: (max_num_people, J, 2) int64 of (flat tag index, visible).

    Person i's joint j, when usable (v > 0, truncated position inside the S x S map), is slot
    (i, j): j * S^2 + y * S + x (per-joint tag maps) or y * S + x (one shared map), and 1; other
    slots are (0, 0). The reference packs the usable joints into the first slots instead; the AE
    losses read only the visible slots, so their values do not change, and keeping slot j for
    joint j lets HAE's loss know each slot's keypoint type without decoding the index. People
    beyond ``max_num_people`` are left out (the reference raises IndexError there).
    """
    joints = _check_joints(joints, num_joints)
    count = joints.shape[1]
    size = int(output_size)
    tags = np.zeros((int(max_num_people), count, 2), dtype=np.int64)
    joints = joints[:int(max_num_people)]
    x, y, usable = _truncated_positions(joints, size)
    index = y * size + x
    if tag_per_joint:
        index = index + np.arange(count)[None, :] * size * size
    people = joints.shape[0]
    tags[:people, :, 0] = np.where(usable, index, 0)
    tags[:people, :, 1] = usable
    return tags
