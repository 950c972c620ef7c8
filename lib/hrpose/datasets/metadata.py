"""Keypoint metadata of every dataset: names, flip pairs, skeleton, OKS sigmas, joint weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils.lookup import lookup

# The keypoint grouping HAE's paper uses; datasets may define alternatives under other names.
DEFAULT_GROUP_SCHEME = "default"


@dataclass(frozen=True)
class KeypointInfo:
    """Everything about a dataset's keypoints that the code needs; one instance per dataset.

    Indices are 0-based. ``skeleton`` lists the limbs drawn by the visualiser;
    ``sigmas`` are the per-keypoint OKS constants (already divided by 10).
    ``keypoint_groups`` holds HAE's prior keypoint groupings as (scheme name, groups) pairs; each
    scheme's groups partition the keypoints, and the scheme named ``DEFAULT_GROUP_SCHEME`` is the
    one the paper uses. Empty (the default) means the dataset has no groups: HAE's loss falls back
    to plain associative embedding there.
    ``rescore_limbs`` are the (a, b) joint pairs whose vectors p[a] - p[b] and lengths make the
    pose feature of the rescore net (postprocess/rescore.py), and ``rescore_torso_limbs`` the two
    indices into them whose mean length normalises the feature. Empty: the dataset cannot be
    rescored.
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    joint_weights: tuple[float, ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    keypoint_groups: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...] = ()
    rescore_limbs: tuple[tuple[int, int], ...] = ()
    rescore_torso_limbs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.keypoint_names)
        for field_name in ("sigmas", "joint_weights"):
            if len(getattr(self, field_name)) != count:
                raise ValueError(f"{self.name}: {field_name} has {len(getattr(self, field_name))} "
                                 f"entries, expected {count} (one per keypoint)")
        used = [i for pair in self.flip_pairs + self.skeleton + self.rescore_limbs for i in pair]
        used += list(self.upper_body_ids) + list(self.lower_body_ids)
        if any(not 0 <= i < count for i in used):
            raise ValueError(f"{self.name}: a keypoint index is outside 0..{count - 1}")
        if self.rescore_limbs and (len(self.rescore_torso_limbs) != 2 or not all(
                0 <= i < len(self.rescore_limbs) for i in self.rescore_torso_limbs)):
            raise ValueError(f"{self.name}: rescore_torso_limbs must be two indices into the "
                             f"{len(self.rescore_limbs)} rescore limbs, got "
                             f"{self.rescore_torso_limbs}")
        schemes = [scheme for scheme, _ in self.keypoint_groups]
        if len(set(schemes)) != len(schemes):
            raise ValueError(f"{self.name}: keypoint group scheme names repeat: {schemes}")
        if self.keypoint_groups and DEFAULT_GROUP_SCHEME not in schemes:
            raise ValueError(f"{self.name}: keypoint groups need a '{DEFAULT_GROUP_SCHEME}' "
                             f"scheme; got {schemes}")
        for scheme, groups in self.keypoint_groups:
            members = sorted(i for group in groups for i in group)
            if any(len(group) == 0 for group in groups) or members != list(range(count)):
                raise ValueError(f"{self.name}: keypoint group scheme '{scheme}' {groups} does not "
                                 f"partition the keypoints 0..{count - 1} into non-empty groups")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_index(self) -> np.ndarray:
        """Permutation that maps each keypoint to its mirror image (identity for centre joints)."""
        index = np.arange(self.num_keypoints)
        for left, right in self.flip_pairs:
            index[left], index[right] = right, left
        return index

    @property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    @property
    def keypoint_group_schemes(self) -> tuple[str, ...]:
        """Names of the keypoint groupings this dataset defines, in order; empty without groups."""
        return tuple(scheme for scheme, _ in self.keypoint_groups)

    def get_keypoint_groups(self,
                            scheme: str = DEFAULT_GROUP_SCHEME) -> tuple[tuple[int, ...], ...]:
        """The groups of a scheme (DATASET.KEYPOINT_GROUPS); () for 'default' without groups."""
        for name, groups in self.keypoint_groups:
            if name == scheme:
                return groups
        if scheme == DEFAULT_GROUP_SCHEME:
            return ()
        raise KeyError(f"dataset '{self.name}' has no keypoint group scheme '{scheme}'; known: "
                       f"{list(self.keypoint_group_schemes) or [DEFAULT_GROUP_SCHEME + ' (none)']}")


COCO = KeypointInfo(
    name="coco",
    keypoint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # The skeleton of COCO's person category, converted to 0-based indices.
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=tuple(s / 10.0 for s in (
        .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)),
    joint_weights=(1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5),
    upper_body_ids=tuple(range(11)),
    lower_body_ids=tuple(range(11, 17)),
    # HAE's COCO scheme: face and shoulders; hips; each elbow, wrist, knee and ankle alone.
    keypoint_groups=(
        (DEFAULT_GROUP_SCHEME, ((0, 1, 2, 3, 4, 5, 6), (11, 12), (7,), (8,), (9,), (10,), (13,),
                                (14,), (15,), (16,))),
    ),
    # The 2020 regression paper's rescore limbs, in its order (the official rescore nets read
    # the feature in this order); limbs 9 and 11 are left shoulder-hip and right shoulder-hip.
    rescore_limbs=(
        (0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 6), (5, 7), (5, 11), (6, 8),
        (6, 12), (7, 9), (8, 10), (11, 12), (11, 13), (12, 14), (13, 15), (14, 16),
    ),
    rescore_torso_limbs=(9, 11),
)

CROWDPOSE = KeypointInfo(
    name="crowdpose",
    keypoint_names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
        "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle", "head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7),
        (6, 8), (8, 10), (7, 9), (9, 11),
    ),
    # crowdposetools hard-codes these as an array divided by 10.0 (not the literals .079, ...).
    sigmas=tuple(s / 10.0 for s in (
        .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79)),
    joint_weights=(1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1.),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    keypoint_groups=(
        # HAE's paper scheme: shoulders, head and neck; hips; each elbow, wrist, knee, ankle alone.
        (DEFAULT_GROUP_SCHEME, ((0, 1, 12, 13), (6, 7), (2,), (3,), (4,), (5,), (8,), (9,), (10,),
                                (11,))),
        # Spatial prior: head and neck; torso (shoulders, hips); left arm; right arm; left leg;
        # right leg.
        ("spatial_prior", ((12, 13), (0, 1, 6, 7), (2, 4), (3, 5), (8, 10), (9, 11))),
        # Mutual information: shoulders, head and neck; hips; the four limbs (elbow + wrist,
        # knee + ankle).
        ("mutual_information", ((0, 1, 12, 13), (6, 7), (2, 4), (3, 5), (8, 10), (9, 11))),
    ),
    # The 2020 regression paper's CrowdPose rescore limbs, in its order. It normalises by limbs
    # 9 and 11 as for COCO, which here are left hip-knee and left knee-ankle, not the torso;
    # kept so that the official CrowdPose rescore net reads the feature it was trained on.
    rescore_limbs=(
        (12, 13), (13, 0), (13, 1), (0, 2), (1, 3), (2, 4), (3, 5), (0, 6), (1, 7), (6, 8),
        (7, 9), (8, 10), (9, 11), (6, 7), (0, 1),
    ),
    rescore_torso_limbs=(9, 11),
)

MPII = KeypointInfo(
    name="mpii",
    keypoint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
        "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    # MPII is scored by PCKh, not OKS; these sigmas only serve OKS-NMS and are uniform.
    sigmas=(0.089,) * 16,
    joint_weights=(1.,) * 16,
    upper_body_ids=tuple(range(7, 16)),
    lower_body_ids=tuple(range(0, 7)),
)

# OCHuman uses COCO's 17 keypoints in COCO's order (and COCO's keypoint groups and rescore limbs).
OCHUMAN = KeypointInfo(**{**COCO.__dict__, "name": "ochuman"})

# The synthetic dataset draws COCO's 17 keypoints so that it runs through the COCO code path
# (COCO's keypoint groups and rescore limbs included: its figures have the same face, shoulder-hip
# torso and limbs, so COCO's shoulder-hip normaliser fits them).
SYNTHETIC = KeypointInfo(**{**COCO.__dict__, "name": "synthetic"})

KEYPOINT_INFO: dict[str, KeypointInfo] = {
    info.name: info for info in (COCO, CROWDPOSE, MPII, OCHUMAN, SYNTHETIC)
}


def get_keypoint_info(dataset_name: str) -> KeypointInfo:
    """Return the metadata registered for a dataset name, with a clear error for unknown names."""
    return lookup(KEYPOINT_INFO, dataset_name, "no keypoint metadata for dataset {!r}", KeyError)
