"""Body model of the synthetic figures: proportions, pose, 3-D skeleton, keypoints' body parts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metadata import COCO

KEYPOINT_INDEX = {name: index for index, name in enumerate(COCO.keypoint_names)}
FACE_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
SIDES = {"left": 1.0, "right": -1.0}  # sign of the body-frame x axis, which points to the left

# Every drawn pixel of a person records which body part covers it, so that a keypoint hidden by
# the person's own limb (self-occlusion) is told apart from one hidden by a different part.
PART_NAMES = (
    "torso", "neck", "head",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot",
)
PART_ID = {name: index + 1 for index, name in enumerate(PART_NAMES)}  # 0: no body part


def _keypoint_parts(name: str) -> frozenset[int]:
    """The body parts a keypoint belongs to: the keypoint is visible when one of them covers it."""
    if name in FACE_KEYPOINTS:
        return frozenset({PART_ID["head"]})
    side, joint = name.split("_")
    parts = {
        "shoulder": ("torso", f"{side}_upper_arm"),
        "elbow": (f"{side}_upper_arm", f"{side}_forearm"),
        "wrist": (f"{side}_forearm", f"{side}_hand"),
        "hip": ("torso", f"{side}_thigh"),
        "knee": (f"{side}_thigh", f"{side}_shin"),
        "ankle": (f"{side}_shin", f"{side}_foot"),
    }[joint]
    return frozenset(PART_ID[part] for part in parts)


KEYPOINT_PARTS = tuple(_keypoint_parts(name) for name in COCO.keypoint_names)


# ----------------------------------------------------------------------------------------------
# Body model: proportions, pose and 3-D skeleton in a body frame (x to the person's left, y up,
# z the way the person faces), with the pelvis at the origin and a standing height of about 1.


@dataclass(frozen=True)
class BodyShape:
    """Segment lengths and widths of one figure, in units of its standing height."""

    head_radius: float
    neck_length: float
    torso_length: float
    shoulder_half_width: float
    hip_half_width: float
    torso_half_depth: float
    upper_arm_length: float
    forearm_length: float
    hand_length: float
    thigh_length: float
    shin_length: float
    foot_length: float
    neck_width: float
    upper_arm_width: float
    forearm_width: float
    hand_width: float
    thigh_width: float
    shin_width: float
    foot_width: float


@dataclass(frozen=True)
class LimbPose:
    """Angles (radians) of one arm or leg; the bend direction only matters for arms."""

    elevation: float  # arm: 0 hangs down, pi points up; leg: hip flexion, positive forwards
    azimuth: float  # arm: 0 out to the side, pi/2 forwards; leg: abduction, outwards
    bend: float  # elbow or knee flexion, 0 straight
    bend_direction: tuple[float, float, float]  # arms only: (medial, up, forward) weights


@dataclass(frozen=True)
class Pose:
    """Joint angles of a whole figure (radians)."""

    arms: dict[str, LimbPose]
    legs: dict[str, LimbPose]
    lean_forward: float
    lean_side: float
    torso_twist: float
    head_yaw: float
    head_pitch: float


def sample_body_shape(rng: np.random.Generator) -> BodyShape:
    """Average adult proportions, each varied by about ten percent, with a shared build factor."""
    def vary(value: float) -> float:
        return value * rng.uniform(0.9, 1.1)

    build = rng.uniform(0.8, 1.3)  # thin to heavy: scales every width together
    return BodyShape(
        head_radius=vary(0.075), neck_length=vary(0.03), torso_length=vary(0.3),
        shoulder_half_width=vary(0.11) * math.sqrt(build), hip_half_width=vary(0.07) * build,
        torso_half_depth=vary(0.065) * build,
        upper_arm_length=vary(0.17), forearm_length=vary(0.15), hand_length=vary(0.06),
        thigh_length=vary(0.24), shin_length=vary(0.23), foot_length=vary(0.085),
        neck_width=vary(0.05) * build, upper_arm_width=vary(0.058) * build,
        forearm_width=vary(0.048) * build, hand_width=vary(0.05) * build,
        thigh_width=vary(0.085) * build, shin_width=vary(0.065) * build,
        foot_width=vary(0.045) * build,
    )


def sample_arm_pose(rng: np.random.Generator) -> LimbPose:
    """Relaxed, raised, reaching forward or anything in the shoulder's range."""
    style = rng.random()
    # (low, high) of elevation, azimuth and elbow bend for each style.
    if style < 0.4:
        ranges = ((0.05, 0.5), (-0.3, 1.2), (0.0, 0.7))
    elif style < 0.6:
        ranges = ((1.6, 2.9), (-0.3, 1.6), (0.0, 1.0))
    elif style < 0.8:
        ranges = ((0.6, 1.7), (0.8, 1.8), (0.4, 2.3))
    else:
        ranges = ((0.0, 2.9), (-0.7, 1.9), (0.0, 2.5))
    elevation, azimuth, bend = (rng.uniform(low, high) for low, high in ranges)
    bend_direction = (rng.uniform(0, 0.8), rng.uniform(-0.3, 1.0), rng.uniform(0.2, 1.0))
    return LimbPose(elevation, azimuth, bend, bend_direction)


def sample_leg_poses(rng: np.random.Generator) -> tuple[dict[str, LimbPose], float]:
    """Both legs from one activity (standing, walking, sitting, ...), and the lean it implies."""
    def legs(flexion, abduction, knee):
        return LimbPose(rng.uniform(*flexion), rng.uniform(*abduction), rng.uniform(*knee),
                        (0.0, 0.0, 0.0))

    activity = rng.choice(8, p=(0.3, 0.22, 0.1, 0.1, 0.07, 0.05, 0.08, 0.08))
    extra_lean = 0.0
    if activity == 0:  # standing
        first = legs((-0.1, 0.15), (0, 0.2), (0, 0.2))
        second = legs((-0.1, 0.15), (0, 0.2), (0, 0.2))
    elif activity == 1:  # walking
        first = legs((0.2, 0.6), (0, 0.1), (0, 0.3))
        second = legs((-0.45, -0.1), (0, 0.1), (0.1, 0.8))
    elif activity == 2:  # running
        first = legs((0.5, 1.2), (0, 0.15), (0.5, 1.6))
        second = legs((-0.6, -0.2), (0, 0.15), (0.6, 1.9))
        extra_lean = rng.uniform(0.1, 0.3)
    elif activity == 3:  # sitting
        first = legs((1.2, 1.7), (0, 0.3), (1.2, 1.8))
        second = legs((1.2, 1.7), (0, 0.3), (1.2, 1.8))
    elif activity == 4:  # squatting
        first = legs((1.4, 2.0), (0.1, 0.45), (1.8, 2.4))
        second = legs((1.4, 2.0), (0.1, 0.45), (1.8, 2.4))
        extra_lean = rng.uniform(0.2, 0.6)
    elif activity == 5:  # kneeling on one knee
        first = legs((-0.1, 0.3), (0, 0.15), (1.4, 1.7))
        second = legs((1.3, 1.6), (0, 0.15), (1.4, 1.7))
    elif activity == 6:  # wide stance
        first = legs((-0.1, 0.3), (0.25, 0.6), (0, 0.4))
        second = legs((-0.1, 0.3), (0.25, 0.6), (0, 0.4))
    else:  # kicking, dancing: anything the hip and knee allow
        first = legs((-0.5, 1.6), (0, 0.7), (0, 2.2))
        second = legs((-0.5, 1.6), (0, 0.7), (0, 2.2))
    if rng.random() < 0.5:
        first, second = second, first
    return {"left": first, "right": second}, extra_lean


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random but anatomically plausible pose."""
    legs, extra_lean = sample_leg_poses(rng)
    return Pose(
        arms={"left": sample_arm_pose(rng), "right": sample_arm_pose(rng)},
        legs=legs,
        lean_forward=rng.uniform(-0.15, 0.35) + extra_lean,
        lean_side=rng.normal(0, 0.08),
        torso_twist=rng.normal(0, 0.15),
        head_yaw=rng.uniform(-0.6, 0.6),
        head_pitch=rng.uniform(-0.3, 0.4),
    )


def rotation_x(angle: float) -> np.ndarray:
    """Rotation about x; a positive angle tilts +y towards +z (a forward bend of the body)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle: float) -> np.ndarray:
    """Rotation about the vertical axis (turning round)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle: float) -> np.ndarray:
    """Rotation about z; a positive angle tilts +y towards -x (a bend to the person's right)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def perpendicular_direction(vector: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The unit component of ``vector`` across the unit ``axis`` (any direction across if none)."""
    remainder = vector - np.dot(vector, axis) * axis
    if np.linalg.norm(remainder) < 1e-6:
        remainder = np.cross(axis, [1.0, 0.0, 0.0])
        if np.linalg.norm(remainder) < 1e-6:
            remainder = np.cross(axis, [0.0, 0.0, 1.0])
    return unit(remainder)


def arm_direction(arm: LimbPose, side_sign: float) -> np.ndarray:
    """Upper-arm direction in the upper-body frame from elevation and azimuth."""
    return np.array([side_sign * math.sin(arm.elevation) * math.cos(arm.azimuth),
                     -math.cos(arm.elevation),
                     math.sin(arm.elevation) * math.sin(arm.azimuth)])


def bent_direction(proximal: np.ndarray, bend: float, towards: np.ndarray) -> np.ndarray:
    """Direction of the distal segment: the proximal one turned by ``bend`` towards ``towards``."""
    return math.cos(bend) * proximal + math.sin(bend) * perpendicular_direction(towards, proximal)


def thigh_direction(leg: LimbPose, side_sign: float) -> np.ndarray:
    """Thigh direction in the body frame from hip flexion (elevation) and abduction (azimuth)."""
    return np.array([side_sign * math.sin(leg.azimuth),
                     -math.cos(leg.azimuth) * math.cos(leg.elevation),
                     math.cos(leg.azimuth) * math.sin(leg.elevation)])


def build_skeleton(shape: BodyShape, pose: Pose) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Named 3-D points of a figure in its body frame, and the head's rotation matrix.

    Besides the 17 keypoints (with their COCO names) the points include the ends of the neck,
    hands and feet and the outline of the torso, all that the renderer needs.
    """
    upper_body = (rotation_z(pose.lean_side) @ rotation_x(pose.lean_forward)
                  @ rotation_y(pose.torso_twist))
    head_rotation = upper_body @ rotation_y(pose.head_yaw) @ rotation_x(pose.head_pitch)
    points: dict[str, np.ndarray] = {}
    shoulder_height = shape.torso_length * 0.93
    points["neck_base"] = upper_body @ np.array([0.0, shape.torso_length, 0.0])
    points["neck_top"] = upper_body @ np.array([0.0, shape.torso_length + shape.neck_length, 0.0])
    points["head_center"] = points["neck_top"] + head_rotation @ np.array(
        [0.0, shape.head_radius * 0.85, 0.0])
    points.update(face_points(points["head_center"], shape.head_radius, head_rotation))

    for side, sign in SIDES.items():
        arm = pose.arms[side]
        shoulder = upper_body @ np.array([sign * shape.shoulder_half_width, shoulder_height, 0.0])
        upper_arm = upper_body @ arm_direction(arm, sign)
        medial, up, forward = arm.bend_direction
        towards = upper_body @ np.array([-sign * medial, up, forward])
        forearm = bent_direction(upper_arm, arm.bend, towards)
        points[f"{side}_shoulder"] = shoulder
        points[f"{side}_elbow"] = shoulder + shape.upper_arm_length * upper_arm
        points[f"{side}_wrist"] = points[f"{side}_elbow"] + shape.forearm_length * forearm
        points[f"{side}_hand"] = points[f"{side}_wrist"] + shape.hand_length * forearm

        leg = pose.legs[side]
        hip = np.array([sign * shape.hip_half_width, 0.0, 0.0])
        thigh = thigh_direction(leg, sign)
        # The knee bends the shin towards the back of the thigh.
        back_of_thigh = np.array([0.0, -math.sin(leg.elevation), -math.cos(leg.elevation)])
        shin = bent_direction(thigh, leg.bend, back_of_thigh)
        foot = perpendicular_direction(np.array([0.0, -0.25, 1.0]), shin)
        points[f"{side}_hip"] = hip
        points[f"{side}_knee"] = hip + shape.thigh_length * thigh
        points[f"{side}_ankle"] = points[f"{side}_knee"] + shape.shin_length * shin
        points[f"{side}_toe"] = points[f"{side}_ankle"] + shape.foot_length * foot
    points.update(torso_outline(shape, upper_body))
    for name, local in (("collar_left", [shape.neck_width * 0.9, shape.torso_length, 0.0]),
                        ("collar_right", [-shape.neck_width * 0.9, shape.torso_length, 0.0]),
                        ("collar_tip", [0.0, shape.torso_length * 0.8, 0.0])):
        local[2] = shape.torso_half_depth
        points[name] = upper_body @ np.array(local)
    return points, head_rotation


# Directions of the face keypoints on the head sphere, in the head frame, and how far out they sit.
FACE_DIRECTIONS = {
    "nose": (np.array([0.0, -0.2, 1.0]), 1.08),
    "left_eye": (np.array([0.4, 0.2, 0.9]), 1.0),
    "right_eye": (np.array([-0.4, 0.2, 0.9]), 1.0),
    "left_ear": (np.array([1.0, 0.0, -0.15]), 1.0),
    "right_ear": (np.array([-1.0, 0.0, -0.15]), 1.0),
}
# A face feature is seen when its surface normal points at least this much towards the viewer;
# ears sit on the silhouette in a frontal view, so they stay visible slightly past it.
FACE_VISIBLE_MIN_Z = {"nose": 0.0, "left_eye": 0.15, "right_eye": 0.15,
                      "left_ear": -0.35, "right_ear": -0.35}


def face_points(head_center: np.ndarray, head_radius: float,
                head_rotation: np.ndarray) -> dict[str, np.ndarray]:
    """The five face keypoints on the head sphere."""
    return {name: head_center + head_rotation @ unit(direction) * head_radius * distance
            for name, (direction, distance) in FACE_DIRECTIONS.items()}


def torso_outline(shape: BodyShape, upper_body: np.ndarray) -> dict[str, np.ndarray]:
    """Front and back outline points of the torso at shoulder, waist and crotch level.

    Named torso_{left|mid|right}_{shoulder|waist|crotch}_{front|back}; the shoulder level leans
    with the upper body, the waist half as much and the crotch not at all.
    """
    half_lean = np.eye(3) + 0.5 * (upper_body - np.eye(3))
    levels = {
        "shoulder": (upper_body, shape.torso_length * 0.97, shape.shoulder_half_width + 0.015),
        "waist": (half_lean, shape.torso_length * 0.4, shape.hip_half_width + 0.025),
        "crotch": (np.eye(3), -0.07, shape.hip_half_width + 0.035),
    }
    outline = {}
    for level, (rotation, height, half_width) in levels.items():
        for side, sign in (("left", 1.0), ("mid", 0.0), ("right", -1.0)):
            # The crotch sits lower in the middle than at the sides.
            drop = -0.03 if level == "crotch" and side == "mid" else 0.0
            for face, depth_sign in (("front", 1.0), ("back", -1.0)):
                local = np.array([sign * half_width, height + drop,
                                  depth_sign * shape.torso_half_depth])
                outline[f"torso_{side}_{level}_{face}"] = rotation @ local
    return outline
