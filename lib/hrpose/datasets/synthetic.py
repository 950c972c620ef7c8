"""Seeded generator of a synthetic COCO-format person-keypoint dataset small enough for a CPU."""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DataError
from .metadata import COCO

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val")
# Image ids differ between the splits, as COCO's do, so results of one split never match the other.
FIRST_IMAGE_ID = {"train": 1, "val": 1_000_001}
ANNOTATION_FILE_PATTERN = "annotations/person_keypoints_{split}.json"
IMAGE_FOLDER_PATTERN = "images/{split}"
DETECTION_FILE = "person_detection_results/synthetic_val_detections.json"
# Written last into the staging folder, so its presence means the dataset is complete.
MANIFEST_FILE = "synthetic_manifest.json"
JPEG_QUALITY = 92
PERSON_CATEGORY_ID = 1

# Streams of the per-image seed sequence: the image content, and the detector simulated on it.
SPLIT_STREAM = {"train": 0, "val": 1}
IMAGE_STREAM, DETECTION_STREAM = 0, 1

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

# Owner ids of the per-pixel owner buffer: 0 background, 1..MAX_PEOPLE people, then these two.
MAX_PEOPLE = 6
CROWD_OWNER = 254
OBJECT_OWNER = 255

PEOPLE_COUNT_PROBABILITIES = (0.3, 0.22, 0.17, 0.13, 0.1, 0.08)
CROWD_PROBABILITY = 0.05
MIN_VISIBLE_PIXELS = 64
MIN_VISIBLE_FRACTION = 0.12
MIN_CONTOUR_AREA = 4.0
MIN_CROWD_PIXELS = 64
SMALLEST_FIGURE_HEIGHT = 40.0

# cv2 drawing takes fixed-point coordinates with this many fractional bits, for sub-pixel placement.
SHIFT = 4
SUBPIXEL = 1 << SHIFT

LEFT_MARKER = (235, 235, 235)
RIGHT_MARKER = (25, 25, 25)

# Base skin tones (BGR) between which each figure's skin is interpolated.
SKIN_TONES = np.array([[196, 224, 255], [150, 195, 240], [105, 172, 224], [60, 115, 180],
                       [36, 85, 141], [37, 56, 90]], dtype=np.float64)
HAIR_COLOURS = np.array([[20, 20, 25], [30, 50, 90], [120, 190, 220], [160, 160, 160],
                         [30, 60, 150], [45, 40, 40]], dtype=np.float64)


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
# Random streams


def image_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The generator of one image's stream, independent of how many images come before it."""
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLIT_STREAM[split], index, stream))
    return np.random.default_rng(sequence)


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


# ----------------------------------------------------------------------------------------------
# Viewing: yaw/pitch of the camera around the figure, in-plane roll, scale and position.


@dataclass(frozen=True)
class View:
    """How a figure is seen: angles in radians, scale in pixels per unit of standing height."""

    yaw: float
    pitch: float
    roll: float
    height_px: float


def sample_view(rng: np.random.Generator, height_px: float) -> View:
    """Mostly frontal, sometimes from behind (left and right swap in the image) or the side."""
    direction = rng.choice(3, p=(0.5, 0.25, 0.25))
    side_yaw = math.copysign(math.pi / 2, rng.random() - 0.5)
    yaw = rng.normal(0, 0.25) + (0.0, math.pi, side_yaw)[direction]
    # Mostly upright; some figures lie, lean far over or stand on their hands.
    roll = rng.normal(0, 0.14) if rng.random() < 0.85 else rng.uniform(-math.pi, math.pi)
    return View(yaw=yaw, pitch=rng.uniform(-0.25, 0.25), roll=roll, height_px=height_px)


def view_matrix(view: View) -> np.ndarray:
    """Maps body-frame vectors to image axes: x right, y down, z towards the viewer.

    At yaw 0 the person faces the viewer, so their left side (+x) appears on the image's right.
    """
    flip_y = np.diag([1.0, -1.0, 1.0])
    c, s = math.cos(view.roll), math.sin(view.roll)
    roll = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return roll @ flip_y @ rotation_x(view.pitch) @ rotation_y(view.yaw)


@dataclass(frozen=True)
class Style:
    """Colours (BGR) and clothing of one figure."""

    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    long_pants: bool


def sample_style(rng: np.random.Generator) -> Style:
    """Skin from a range of tones, clothes in any colour."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)]
                                            - SKIN_TONES[low])
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 8, 3)
    return Style(
        skin=np.clip(skin + rng.normal(0, 6, 3), 0, 255),
        hair=np.clip(hair, 0, 255),
        shirt=rng.uniform(0, 255, 3),
        pants=rng.uniform(0, 255, 3) * rng.uniform(0.4, 1.0),
        shoes=rng.uniform(0, 120, 3),
        long_sleeves=bool(rng.random() < 0.5),
        long_pants=bool(rng.random() < 0.65),
    )


@dataclass(frozen=True)
class Figure:
    """A posed, viewed and placed figure: everything needed to draw and annotate it."""

    points: dict[str, np.ndarray]  # image pixel coordinates (x, y) of every named point
    depths: dict[str, float]  # towards the viewer, in units of standing height
    face_visible: dict[str, bool]  # whether each face keypoint is turned towards the viewer
    head_matrix: np.ndarray  # head frame to image axes
    chest_faces_viewer: bool
    scale: float  # pixels per unit of standing height
    shape: BodyShape
    style: Style

    @property
    def keypoints(self) -> np.ndarray:
        """The 17 COCO keypoints as a (17, 2) array of image coordinates."""
        return np.array([self.points[name] for name in COCO.keypoint_names])

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-left and bottom-right corners of the box around every drawn point."""
        coordinates = np.array(list(self.points.values()))
        margin = self.shape.head_radius * self.scale
        return coordinates.min(axis=0) - margin, coordinates.max(axis=0) + margin


def pose_figure(rng: np.random.Generator, height_px: float) -> Figure:
    """A random figure of about ``height_px`` pixels, centred on the image origin."""
    shape = sample_body_shape(rng)
    pose = sample_pose(rng)
    view = sample_view(rng, height_px)
    style = sample_style(rng)
    skeleton, head_rotation = build_skeleton(shape, pose)
    matrix = view_matrix(view)
    names = list(skeleton)
    image_axes = np.array([skeleton[name] for name in names]) @ matrix.T
    xy = image_axes[:, :2] * view.height_px
    xy -= (xy.min(axis=0) + xy.max(axis=0)) / 2
    head_matrix = matrix @ head_rotation
    face_visible = {
        name: bool((head_matrix @ unit(direction))[2] > FACE_VISIBLE_MIN_Z[name])
        for name, (direction, _) in FACE_DIRECTIONS.items()
    }
    return Figure(
        points={name: xy[i] for i, name in enumerate(names)},
        depths={name: float(image_axes[i, 2]) for i, name in enumerate(names)},
        face_visible=face_visible,
        head_matrix=head_matrix,
        chest_faces_viewer=bool((matrix @ rotation_x(pose.lean_forward))[2, 2] > 0.2),
        scale=view.height_px,
        shape=shape,
        style=style,
    )


def moved_figure(figure: Figure, offset: np.ndarray) -> Figure:
    """The same figure translated by ``offset`` pixels."""
    return Figure(
        points={name: point + offset for name, point in figure.points.items()},
        depths=figure.depths, face_visible=figure.face_visible, head_matrix=figure.head_matrix,
        chest_faces_viewer=figure.chest_faces_viewer, scale=figure.scale, shape=figure.shape,
        style=figure.style,
    )


# ----------------------------------------------------------------------------------------------
# Drawing. A Canvas holds the image and, pixel for pixel, who owns it and which body part.


@dataclass
class Canvas:
    """The image being drawn and, pixel for pixel, a label of who owns it and which body part.

    One uint16 label per pixel, owner id * PART_LABELS + part id, so every shape is drawn into
    the labels with a single extra cv2 call.
    """

    image: np.ndarray  # (H, W, 3) uint8 BGR
    labels: np.ndarray  # (H, W) uint16

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


PART_LABELS = 32  # more than len(PART_NAMES), so that a label splits into owner and part


def pixel_label(owner_id: int, part_id: int) -> int:
    return owner_id * PART_LABELS + part_id


def fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates as cv2's fixed-point int32 coordinates (SHIFT fractional bits)."""
    return np.round(np.asarray(points, dtype=np.float64) * SUBPIXEL).astype(np.int32)


def fixed_xy(point: np.ndarray) -> tuple[int, int]:
    """One point in cv2's fixed-point coordinates, as the tuple cv2.line and cv2.circle take."""
    x, y = point.tolist()
    return round(x * SUBPIXEL), round(y * SUBPIXEL)


def as_colour(colour) -> tuple[int, int, int]:
    """A BGR colour as the tuple of ints cv2 takes (tuples pass through unchanged)."""
    if isinstance(colour, tuple):
        return colour
    blue, green, red = colour.tolist()
    return (min(255, max(0, round(blue))), min(255, max(0, round(green))),
            min(255, max(0, round(red))))


def lighter(colour: np.ndarray, amount: float = 0.35) -> np.ndarray:
    return colour + (255.0 - colour) * amount


def darker(colour: np.ndarray, amount: float = 0.38) -> np.ndarray:
    return colour * (1.0 - amount)


def side_shade(colour: np.ndarray, side: str) -> np.ndarray:
    """The figure's left side is drawn lighter and its right side darker, so left and right can
    be told apart even when the figure faces away and they appear swapped in the image."""
    return lighter(colour) if side == "left" else darker(colour)


def draw_capsule(canvas: Canvas, start: np.ndarray, end: np.ndarray, width_px: float,
                 colour: np.ndarray, owner_id: int, part_id: int) -> None:
    """A limb: a thick segment with round ends, outlined when large enough to show it."""
    thickness = max(1, int(round(width_px)))
    p0, p1 = fixed_xy(start), fixed_xy(end)
    outer = thickness + 2 if thickness >= 5 else thickness
    if outer > thickness:
        cv2.line(canvas.image, p0, p1, as_colour(darker(colour, 0.55)), outer, cv2.LINE_AA, SHIFT)
    cv2.line(canvas.image, p0, p1, as_colour(colour), thickness, cv2.LINE_AA, SHIFT)
    cv2.line(canvas.labels, p0, p1, pixel_label(owner_id, part_id), outer, cv2.LINE_8, SHIFT)


def draw_polygon(canvas: Canvas, polygon: np.ndarray, colour: np.ndarray, owner_id: int,
                 part_id: int, outline: bool) -> None:
    """A filled convex polygon (a torso half)."""
    hull = cv2.convexHull(fixed_point(polygon))
    cv2.fillPoly(canvas.image, [hull], as_colour(colour), cv2.LINE_AA, SHIFT)
    if outline:
        cv2.polylines(canvas.image, [hull], True, as_colour(darker(colour, 0.55)), 1, cv2.LINE_AA,
                      SHIFT)
    cv2.fillPoly(canvas.labels, [hull], pixel_label(owner_id, part_id), cv2.LINE_8, SHIFT)


def draw_disc(image: np.ndarray, center: np.ndarray, radius: float, colour) -> None:
    cv2.circle(image, fixed_xy(center), max(1, round(radius * SUBPIXEL)), as_colour(colour), -1,
               cv2.LINE_AA, SHIFT)


def draw_joint_marker(canvas: Canvas, center: np.ndarray, radius: float, side: str) -> None:
    """A round marker on a joint: light on the left side of the body, dark on the right."""
    fill, ring = (LEFT_MARKER, RIGHT_MARKER) if side == "left" else (RIGHT_MARKER, LEFT_MARKER)
    if radius >= 3.0:
        draw_disc(canvas.image, center, radius + 1.0, ring)
    draw_disc(canvas.image, center, max(radius, 1.0), fill)


def draw_head(canvas: Canvas, figure: Figure, owner_id: int, light: np.ndarray) -> None:
    """A shaded sphere, skin in front and hair on top and at the back, then the face features."""
    radius = figure.shape.head_radius * figure.scale
    center = figure.points["head_center"]
    x0 = max(0, int(math.floor(center[0] - radius - 1)))
    x1 = min(canvas.width, int(math.ceil(center[0] + radius + 2)))
    y0 = max(0, int(math.floor(center[1] - radius - 1)))
    y1 = min(canvas.height, int(math.ceil(center[1] + radius + 2)))
    if x0 < x1 and y0 < y1:
        dx = (np.arange(x0, x1) - center[0])[None, :] / radius
        dy = (np.arange(y0, y1) - center[1])[:, None] / radius
        dx, dy = np.broadcast_arrays(dx, dy)
        distance = np.sqrt(dx * dx + dy * dy)
        coverage = np.clip((1.0 - distance) * radius + 0.5, 0.0, 1.0)
        normal = np.stack([dx, dy, np.sqrt(np.clip(1.0 - distance * distance, 0.0, 1.0))], axis=-1)
        hair_direction = figure.head_matrix @ unit(np.array([0.0, 0.75, -1.0]))
        is_hair = (normal @ hair_direction) > 0.12
        base = np.where(is_hair[..., None], figure.style.hair, figure.style.skin)
        shade = 0.55 + 0.45 * np.clip(normal @ light, 0.0, 1.0)
        colour = base * shade[..., None]
        patch = canvas.image[y0:y1, x0:x1].astype(np.float64)
        blended = patch + (colour - patch) * coverage[..., None]
        canvas.image[y0:y1, x0:x1] = to_uint8(blended)
        inside = coverage >= 0.5
        canvas.labels[y0:y1, x0:x1][inside] = pixel_label(owner_id, PART_ID["head"])
    draw_face(canvas, figure, radius, owner_id)


def draw_face(canvas: Canvas, figure: Figure, head_radius: float, owner_id: int) -> None:
    """Ears, eyes and nose where they face the viewer, each centred on its keypoint."""
    skin = figure.style.skin
    features = {
        "left_ear": (0.3, lighter(skin, 0.3)), "right_ear": (0.3, darker(skin, 0.3)),
        "nose": (0.2, darker(skin, 0.2)),
        "left_eye": (0.17, LEFT_MARKER),
        "right_eye": (0.17, RIGHT_MARKER),
    }
    for name, (relative_radius, colour) in features.items():
        if not figure.face_visible[name]:
            continue
        center = figure.points[name]
        radius = max(0.8, relative_radius * head_radius)
        draw_disc(canvas.image, center, radius, colour)
        if name.endswith("eye") and radius >= 2.0:
            draw_disc(canvas.image, center, radius * 0.5, (10, 10, 10))  # pupil
        cv2.circle(canvas.labels, fixed_xy(center), max(1, round(radius * SUBPIXEL)),
                   pixel_label(owner_id, PART_ID["head"]), -1, cv2.LINE_8, SHIFT)


@dataclass(frozen=True)
class PartDrawing:
    """One body part to draw, with its depth for the painter's algorithm."""

    depth: float
    part: str
    kind: str  # "capsule", "polygon" or "head"
    points: tuple[str, ...]
    width: float  # pixels (capsules)
    colour: np.ndarray
    markers: tuple[str, ...]  # keypoints whose joint marker is drawn on top of this part


# Small depth offsets (units of standing height) that settle ties between parts meeting at a
# joint: in a frontal view arms hang in front of the torso and the torso covers the thigh tops.
DEPTH_BIAS = {"torso": 0.0, "neck": 0.005, "head": 0.02, "upper_arm": 0.03, "forearm": 0.03,
              "hand": 0.03, "thigh": -0.02, "shin": -0.01, "foot": 0.0}


def figure_parts(figure: Figure) -> list[PartDrawing]:
    """Every part of a figure, in drawing order: farthest from the viewer first."""
    shape, style = figure.shape, figure.style
    scale = figure.scale
    parts = []

    def add(part, kind, points, width, colour, markers=(), bias_key=None):
        depth = sum(figure.depths[name] for name in points) / len(points)
        depth += DEPTH_BIAS[bias_key or part]
        parts.append(PartDrawing(depth, part, kind, tuple(points), width * scale, colour,
                                 tuple(markers)))

    add("neck", "capsule", ("neck_base", "neck_top"), shape.neck_width, darker(style.skin, 0.1))
    add("head", "head", ("head_center",), 0.0, style.skin)
    for side in SIDES:
        sleeve = style.shirt if style.long_sleeves else style.skin
        legging = style.pants if style.long_pants else style.skin
        limbs = (
            ("upper_arm", ("shoulder", "elbow"), shape.upper_arm_width, style.shirt),
            ("forearm", ("elbow", "wrist"), shape.forearm_width, sleeve),
            ("hand", ("wrist", "hand"), shape.hand_width, style.skin),
            ("thigh", ("hip", "knee"), shape.thigh_width, style.pants),
            ("shin", ("knee", "ankle"), shape.shin_width, legging),
            ("foot", ("ankle", "toe"), shape.foot_width, style.shoes),
        )
        for limb, joints, width, colour in limbs:
            points = tuple(f"{side}_{joint}" for joint in joints)
            markers = tuple(name for name in points if name in KEYPOINT_INDEX)
            add(f"{side}_{limb}", "capsule", points, width, side_shade(colour, side), markers,
                bias_key=limb)
        for level_pair, colour in ((("shoulder", "waist"), style.shirt),
                                   (("waist", "crotch"), style.pants)):
            outline = tuple(f"torso_{column}_{level}_{face}" for column in (side, "mid")
                            for level in level_pair for face in ("front", "back"))
            markers = (f"{side}_shoulder",) if level_pair[0] == "shoulder" else (f"{side}_hip",)
            add("torso", "polygon", outline, 0.0, side_shade(colour, side), markers)
    if figure.chest_faces_viewer:
        # A neckline on the chest tells front from back even where the face is too small to see.
        add("torso", "polygon", ("collar_left", "collar_right", "collar_tip"), 0.0,
            darker(style.skin, 0.1))
    return sorted(parts, key=lambda part: part.depth)


def marker_radius(figure: Figure, keypoint: str) -> float:
    """Joint markers scale with the limb they sit on."""
    joint = keypoint.split("_")[1]
    width = {"shoulder": figure.shape.upper_arm_width, "elbow": figure.shape.upper_arm_width,
             "wrist": figure.shape.forearm_width, "hip": figure.shape.thigh_width,
             "knee": figure.shape.thigh_width, "ankle": figure.shape.shin_width}[joint]
    return 0.2 * width * figure.scale


def draw_figure(canvas: Canvas, figure: Figure, owner_id: int, light: np.ndarray) -> None:
    """Draw a figure part by part, back to front, recording ownership pixel by pixel."""
    outline = figure.scale >= 60
    for part in figure_parts(figure):
        part_id = PART_ID[part.part]
        if part.kind == "head":
            draw_head(canvas, figure, owner_id, light)
        elif part.kind == "capsule":
            draw_capsule(canvas, figure.points[part.points[0]], figure.points[part.points[1]],
                         part.width, part.colour, owner_id, part_id)
        else:
            polygon = np.array([figure.points[name] for name in part.points])
            draw_polygon(canvas, polygon, part.colour, owner_id, part_id, outline)
        for keypoint in part.markers:
            draw_joint_marker(canvas, figure.points[keypoint], marker_radius(figure, keypoint),
                              keypoint.split("_")[0])


# ----------------------------------------------------------------------------------------------
# Backgrounds and occluding objects


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def texture_patch(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 texture of two colours: striped, checked or speckled."""
    colours = rng.uniform(0, 255, (2, 3)).astype(np.uint8)
    kind = rng.integers(3)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    if kind == 0:
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 16)
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) * np.float32(1 / period)
        first = (phase - np.floor(phase)) < 0.5
    elif kind == 1:
        cell = int(rng.integers(3, 12))
        first = ((xs // cell + ys // cell) % 2).astype(bool)
    else:
        first = grain(rng, height, width)[..., 0] > 0
    return np.where(first[..., None], colours[0], colours[1])


def fill_polygon(image: np.ndarray, polygon: np.ndarray, rng: np.random.Generator) -> None:
    """Fill a polygon with a flat colour or a random two-colour texture."""
    if rng.random() < 0.4:
        cv2.fillPoly(image, [fixed_point(polygon)], as_colour(random_colour(rng)), cv2.LINE_AA,
                     SHIFT)
        return
    height, width = image.shape[:2]
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    x1 = min(width, int(math.ceil(polygon[:, 0].max())) + 1)
    y1 = min(height, int(math.ceil(polygon[:, 1].max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    inside = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(inside, [fixed_point(polygon - [x0, y0])], 1, cv2.LINE_8, SHIFT)
    np.copyto(image[y0:y1, x0:x1], texture_patch(rng, y1 - y0, x1 - x0),
              where=inside[..., None].astype(bool))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and saturate a float image to uint8."""
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


GRAIN_SIZE = 512


@functools.cache
def grain_table() -> np.ndarray:
    """A fixed table of unit Gaussian noise; images crop it instead of drawing fresh noise, which
    would cost more than everything else in an image. Its seed is fixed, so it is the same in
    every process."""
    rng = np.random.default_rng(20240229)
    return rng.standard_normal((GRAIN_SIZE, GRAIN_SIZE, 3), dtype=np.float32)


def grain(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) unit Gaussian noise: a random crop of the grain table, tiled if needed."""
    table = grain_table()
    table = table[::int(rng.choice((-1, 1))), ::int(rng.choice((-1, 1)))]
    reps = (-(-height // GRAIN_SIZE), -(-width // GRAIN_SIZE), 1)
    tiled = np.tile(table, reps) if reps != (1, 1, 1) else table
    y0 = int(rng.integers(0, tiled.shape[0] - height + 1))
    x0 = int(rng.integers(0, tiled.shape[1] - width + 1))
    return tiled[y0:y0 + height, x0:x0 + width]


def random_shape_polygon(rng: np.random.Generator, center: np.ndarray, size: float) -> np.ndarray:
    """A rotated rectangle, a long bar, an ellipse or an irregular polygon around ``center``."""
    kind = rng.integers(4)
    angle = rng.uniform(0, 180)
    if kind == 0:
        box = ((float(center[0]), float(center[1])),
               (size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)), angle)
        return cv2.boxPoints(box).astype(np.float64)
    if kind == 1:
        box = ((float(center[0]), float(center[1])),
               (size * rng.uniform(1.5, 4.0), size * rng.uniform(0.12, 0.3)), angle)
        return cv2.boxPoints(box).astype(np.float64)
    if kind == 2:
        axes = size * rng.uniform(0.25, 0.55, 2)
        t = np.linspace(0, 2 * math.pi, 36, endpoint=False)
        ellipse = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        return ellipse @ np.array([[c, s], [-s, c]]) + center
    count = rng.integers(3, 8)
    t = np.sort(rng.uniform(0, 2 * math.pi, count))
    radii = size * rng.uniform(0.25, 0.6, count)
    return np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1) + center


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A gradient, low-frequency colour noise and random shapes, sometimes out of focus."""
    colours = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    # The gradient and the colour noise are both smooth, so they are made on a coarse grid and
    # enlarged; a linear ramp survives the interpolation exactly.
    grid_height, grid_width = (int(v) for v in rng.integers(3, 12, 2))
    ys = np.linspace(0, height, grid_height, dtype=np.float32)[:, None]
    xs = np.linspace(0, width, grid_width, dtype=np.float32)[None, :]
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    coarse = colours[0] + ramp[..., None] * (colours[1] - colours[0])
    coarse += rng.normal(0, rng.uniform(5, 30), coarse.shape).astype(np.float32)
    image = to_uint8(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))
    for _ in range(rng.integers(3, 18)):
        center = rng.uniform([0, 0], [width, height])
        size = rng.uniform(0.05, 0.5) * min(width, height)
        if rng.random() < 0.25:
            # Limb-like strokes, so that the model does not take every thick line for a limb.
            end = center + rng.normal(0, size, 2)
            # max(): on images under ~134 px a stroke can be thinner than one pixel.
            thickness = max(1, int(rng.uniform(1, max(1.0, 0.15 * size))))
            cv2.line(image, fixed_xy(center), fixed_xy(end), as_colour(random_colour(rng)),
                     thickness, cv2.LINE_AA, SHIFT)
        else:
            fill_polygon(image, random_shape_polygon(rng, center, size), rng)
    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 2.0))
    return image


def draw_occluder(canvas: Canvas, rng: np.random.Generator, center: np.ndarray,
                  size: float) -> None:
    """An object in front of whatever is drawn already; it owns the pixels it covers."""
    polygon = random_shape_polygon(rng, center, size)
    fill_polygon(canvas.image, polygon, rng)
    cv2.fillPoly(canvas.labels, [fixed_point(polygon)], pixel_label(OBJECT_OWNER, 0), cv2.LINE_8,
                 SHIFT)


def finish_image(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera effects over the whole picture: contrast, brightness, sensor noise, slight blur."""
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-20, 20)
    height, width = image.shape[:2]
    # In place, because this runs over every pixel of every image.
    finished = image.astype(np.float32)
    finished *= np.float32(contrast)
    noise_level = np.float32(rng.uniform(2, 7))
    finished += grain(rng, height, width) * noise_level + np.float32(brightness + 0.5)
    np.clip(finished, 0, 255, out=finished)
    finished = finished.astype(np.uint8)
    if rng.random() < 0.2:
        finished = cv2.GaussianBlur(finished, (3, 3), 0)
    return finished


# ----------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class Scene:
    """A rendered image with its ownership buffers and the people drawn in it."""

    image: np.ndarray
    owner: np.ndarray  # (H, W) uint8: 0 background, person index + 1, CROWD_OWNER or OBJECT_OWNER
    part: np.ndarray  # (H, W) uint8: PART_ID of the body part drawn there, 0 elsewhere
    figures: tuple[Figure, ...]  # person i owns pixels with owner id i + 1
    drawn_areas: tuple[int, ...]  # pixels each person owned right after it was drawn
    has_crowd: bool


def sample_figure_height(rng: np.random.Generator, image_height: int, num_people: int) -> float:
    """Log-uniform from small (about 40 px) to most of the image height."""
    largest = image_height * (0.95 if num_people <= 2 else 0.75)
    smallest = min(SMALLEST_FIGURE_HEIGHT, 0.5 * largest)
    return float(math.exp(rng.uniform(math.log(smallest), math.log(largest))))


def place_figures(rng: np.random.Generator, width: int, height: int,
                  num_people: int) -> list[Figure]:
    """Figures spread over the image; some are pushed against others so that they overlap, and
    some hang over the border so that parts of them are cut off."""
    figures: list[Figure] = []
    for _ in range(num_people):
        figure = pose_figure(rng, sample_figure_height(rng, height, num_people))
        if figures and rng.random() < 0.4:
            neighbour = figures[rng.integers(len(figures))]
            low, high = neighbour.extent()
            target = (low + high) / 2 + rng.normal(0, 0.35, 2) * (high - low)
        elif rng.random() < 0.2:
            # Anywhere in the image: near the border part of the figure is cut off.
            target = rng.uniform([0.0, 0.0], [width, height])
        else:
            target = rng.uniform([0.15 * width, 0.15 * height], [0.85 * width, 0.85 * height])
        figures.append(moved_figure(figure, target))
    return figures


def draw_crowd(canvas: Canvas, rng: np.random.Generator, light: np.ndarray) -> None:
    """A cluster of small figures far away, annotated later as one crowd region."""
    center = rng.uniform([0.2 * canvas.width, 0.2 * canvas.height],
                         [0.8 * canvas.width, 0.6 * canvas.height])
    half_size = rng.uniform([0.1, 0.04], [0.25, 0.1]) * [canvas.width, canvas.height]
    figures = []
    for _ in range(rng.integers(10, 26)):
        figure = pose_figure(rng, rng.uniform(14, min(34, 0.3 * canvas.height)))
        figures.append(moved_figure(figure, center + rng.uniform(-half_size, half_size)))
    # Figures lower in the picture stand nearer, so they are drawn over those behind them.
    for figure in sorted(figures, key=lambda f: float(f.extent()[1][1])):
        draw_figure(canvas, figure, CROWD_OWNER, light)


def occluder_placements(rng: np.random.Generator, figures: list[Figure], width: int,
                        height: int) -> list[tuple[int, np.ndarray, float]]:
    """(layer, centre, size) of each occluding object; layer k draws it after the first k people.

    Most objects are put over a joint of a person and drawn after that person, so they hide it.
    """
    placements = []
    for _ in range(min(4, rng.poisson(1.0))):
        if figures and rng.random() < 0.75:
            target = int(rng.integers(len(figures)))
            figure = figures[target]
            joint = figure.keypoints[rng.integers(COCO.num_keypoints)]
            center = joint + rng.normal(0, 0.05, 2) * figure.scale
            size = rng.uniform(0.12, 0.45) * figure.scale
            layer = int(rng.integers(target + 1, len(figures) + 1))
        else:
            center = rng.uniform([0, 0], [width, height])
            size = rng.uniform(0.05, 0.3) * min(width, height)
            layer = int(rng.integers(0, len(figures) + 1))
        placements.append((layer, center, float(size)))
    return placements


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Background, an occasional crowd, 1 to 6 people and occluding objects, in layers."""
    canvas = Canvas(draw_background(rng, height, width), np.zeros((height, width), np.uint16))
    light = unit(np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.9, -0.2), 1.0]))
    has_crowd = bool(rng.random() < CROWD_PROBABILITY)
    if has_crowd:
        draw_crowd(canvas, rng, light)
    num_people = int(rng.choice(np.arange(1, MAX_PEOPLE + 1), p=PEOPLE_COUNT_PROBABILITIES))
    figures = place_figures(rng, width, height, num_people)
    occluders = occluder_placements(rng, figures, width, height)
    drawn_areas = []
    for layer in range(num_people + 1):
        for occluder_layer, center, size in occluders:
            if occluder_layer == layer:
                draw_occluder(canvas, rng, center, size)
        if layer < num_people:
            draw_figure(canvas, figures[layer], layer + 1, light)
            drawn_areas.append(int(np.count_nonzero(canvas.labels // PART_LABELS == layer + 1)))
    owner = (canvas.labels // PART_LABELS).astype(np.uint8)
    part = (canvas.labels % PART_LABELS).astype(np.uint8)
    return Scene(finish_image(rng, canvas.image), owner, part, tuple(figures),
                 tuple(drawn_areas), has_crowd)


# ----------------------------------------------------------------------------------------------
# Annotations


def keypoint_annotation(keypoints: np.ndarray, face_visible: dict[str, bool], owner: np.ndarray,
                        part: np.ndarray, owner_id: int) -> list:
    """COCO's flat [x, y, v, ...]: v=2 visible, v=1 in the image but hidden, v=0 (at 0, 0) outside.

    A keypoint is visible when the pixel under it belongs to this person and to one of the parts
    that meet at the keypoint; anything else drawn over it hides it.
    """
    height, width = owner.shape
    flat = []
    for index, name in enumerate(COCO.keypoint_names):
        x, y = round(float(keypoints[index, 0]), 2), round(float(keypoints[index, 1]), 2)
        if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
            flat += [0.0, 0.0, 0]
            continue
        column, row = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        turned_away = name in face_visible and not face_visible[name]
        seen = (not turned_away and owner[row, column] == owner_id
                and int(part[row, column]) in KEYPOINT_PARTS[index])
        flat += [x, y, 2 if seen else 1]
    return flat


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a binary mask, without the tiny ones."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [contour for contour in contours
            if len(contour) >= 3 and cv2.contourArea(contour) >= MIN_CONTOUR_AREA]


def polygons_area(polygons: list[list[float]], height: int, width: int) -> float:
    """The area of COCO polygons as pycocotools computes it (by rasterising them)."""
    return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))))


def contours_bbox(contours: list[np.ndarray]) -> list[float]:
    """Tight [x, y, w, h] around contours of pixel positions, counting pixels inclusively."""
    points = np.concatenate([contour.reshape(-1, 2) for contour in contours])
    low, high = points.min(axis=0), points.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0] + 1), float(high[1] - low[1] + 1)]


def person_annotation(scene: Scene, index: int) -> dict | None:
    """The annotation of one person (without ids), or None if too little of it shows."""
    owner_id = index + 1
    mask = scene.owner == owner_id
    visible = int(np.count_nonzero(mask))
    if visible < MIN_VISIBLE_PIXELS or visible < MIN_VISIBLE_FRACTION * scene.drawn_areas[index]:
        return None
    # Stray specks of a few pixels are left out of both the segmentation and the box.
    contours = mask_polygons(mask)
    if not contours:
        return None
    height, width = mask.shape
    segmentation = [contour.reshape(-1).astype(np.float64).tolist() for contour in contours]
    area = polygons_area(segmentation, height, width)
    if area <= 0:
        return None
    figure = scene.figures[index]
    keypoints = keypoint_annotation(figure.keypoints, figure.face_visible, scene.owner, scene.part,
                                    owner_id)
    return {
        "area": area,
        "bbox": contours_bbox(contours),
        "category_id": PERSON_CATEGORY_ID,
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        "segmentation": segmentation,
    }


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed run-length encoding (column-major runs, starting with background)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return {"counts": [int(run) for run in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def crowd_annotation(scene: Scene) -> dict | None:
    """One iscrowd=1 annotation covering every visible pixel of the crowd, as COCO marks crowds."""
    mask = scene.owner == CROWD_OWNER
    area = int(np.count_nonzero(mask))
    if area < MIN_CROWD_PIXELS:
        return None
    rows, columns = np.nonzero(mask)
    return {
        "area": float(area),
        "bbox": [float(columns.min()), float(rows.min()),
                 float(columns.max() - columns.min() + 1), float(rows.max() - rows.min() + 1)],
        "category_id": PERSON_CATEGORY_ID,
        "iscrowd": 1,
        "keypoints": [0] * (3 * COCO.num_keypoints),
        "num_keypoints": 0,
        "segmentation": uncompressed_rle(mask),
    }


def scene_annotations(scene: Scene) -> list[dict]:
    """Annotations (without ids) of every person who shows enough, then the crowd region."""
    annotations = [person_annotation(scene, index) for index in range(len(scene.figures))]
    if scene.has_crowd:
        annotations.append(crowd_annotation(scene))
    return [annotation for annotation in annotations if annotation is not None]


# ----------------------------------------------------------------------------------------------
# Simulated person detector (the role of COCO_val2017_detections_AP_H_56_person.json)


def simulated_detections(rng: np.random.Generator, annotations: list[dict], image_id: int,
                         width: int, height: int) -> list[dict]:
    """A noisy box for most people, a few misses, and low-scoring false positives."""
    detections = []
    for annotation in annotations:
        if annotation["iscrowd"] or rng.random() < 0.05:
            continue
        x, y, w, h = annotation["bbox"]
        center = np.array([x + w / 2, y + h / 2]) + rng.normal(0, 0.06, 2) * [w, h]
        size = np.array([w, h]) * np.exp(rng.normal(0, 0.1, 2))
        score = 0.5 + 0.5 * rng.beta(4.0, 1.3) if rng.random() < 0.9 else rng.uniform(0.2, 0.5)
        detections.append(clipped_detection(center, size, score, image_id, width, height))
    for _ in range(rng.poisson(0.7)):
        size = rng.uniform(0.05, 0.5, 2) * [width, height]
        center = rng.uniform([0, 0], [width, height])
        score = rng.uniform(0.02, 0.45) if rng.random() < 0.9 else rng.uniform(0.45, 0.8)
        detections.append(clipped_detection(center, size, score, image_id, width, height))
    return [d for d in detections if d is not None]


def clipped_detection(center: np.ndarray, size: np.ndarray, score: float, image_id: int,
                      width: int, height: int) -> dict | None:
    """A COCO detection result with its box clipped to the image, or None if nothing is left."""
    x0, y0 = np.maximum(center - size / 2, 0.0)
    x1, y1 = min(center[0] + size[0] / 2, width - 1.0), min(center[1] + size[1] / 2, height - 1.0)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return {
        "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                 round(float(y1 - y0), 2)],
        "category_id": PERSON_CATEGORY_ID,
        "image_id": int(image_id),
        "score": round(float(min(score, 0.999)), 4),
    }


# ----------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class ImageSample:
    """One generated image with everything written about it."""

    image_id: int
    file_name: str
    image: np.ndarray
    annotations: list[dict]  # without ids
    detections: list[dict]


def make_image_sample(seed: int, split: str, index: int, min_size: int,
                      max_size: int) -> ImageSample:
    """Image ``index`` of a split; it depends only on these arguments."""
    rng = image_rng(seed, split, index, IMAGE_STREAM)
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    scene = render_scene(rng, width, height)
    annotations = scene_annotations(scene)
    image_id = FIRST_IMAGE_ID[split] + index
    detections = []
    if split == "val":
        detections = simulated_detections(image_rng(seed, split, index, DETECTION_STREAM),
                                          annotations, image_id, width, height)
    return ImageSample(image_id, f"{image_id:012d}.jpg", scene.image, annotations, detections)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write a JPEG with a fixed quality, so that the same pixels give the same bytes."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def write_json(path: Path, content) -> None:
    """Compact JSON with sorted keys: the same content always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
                    + "\n", encoding="utf-8")


def person_category() -> dict:
    """COCO's person category, keypoint names and 1-based skeleton included."""
    return {
        "id": PERSON_CATEGORY_ID,
        "keypoints": list(COCO.keypoint_names),
        "name": "person",
        "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
        "supercategory": "person",
    }


def split_statistics(annotations: list[dict], num_images: int) -> dict:
    """Counts reported in the manifest and the summary."""
    people = [a for a in annotations if not a["iscrowd"]]
    visibilities = [v for a in people for v in a["keypoints"][2::3]]
    return {
        "images": num_images,
        "people": len(people),
        "crowd_regions": len(annotations) - len(people),
        "keypoints_visible": visibilities.count(2),
        "keypoints_occluded": visibilities.count(1),
        "keypoints_outside": visibilities.count(0),
    }


def image_samples(split: str, options: dict,
                  pool: concurrent.futures.Executor | None) -> Iterator[ImageSample]:
    """The samples of a split in index order, made here or by the worker processes of ``pool``."""
    count = options[f"num_{split}"]
    arguments = (itertools.repeat(options["seed"], count), itertools.repeat(split, count),
                 range(count), itertools.repeat(options["min_size"], count),
                 itertools.repeat(options["max_size"], count))
    if pool is None:
        return map(make_image_sample, *arguments)
    return pool.map(make_image_sample, *arguments, chunksize=4)


def generate_split(directory: Path, split: str, options: dict, show_progress: bool,
                   pool: concurrent.futures.Executor | None) -> tuple[dict, list[dict]]:
    """Write a split's images and annotation file; return its statistics and detections."""
    num_images = options[f"num_{split}"]
    image_folder = directory / IMAGE_FOLDER_PATTERN.format(split=split)
    image_folder.mkdir(parents=True, exist_ok=True)
    samples = image_samples(split, options, pool)
    if show_progress:
        from tqdm import tqdm
        samples = tqdm(samples, total=num_images, desc=f"synthetic {split}", unit="image")
    images, annotations, detections = [], [], []
    for sample in samples:
        write_image(image_folder / sample.file_name, sample.image)
        height, width = sample.image.shape[:2]
        images.append({"file_name": sample.file_name, "height": height, "id": sample.image_id,
                       "width": width})
        for annotation in sample.annotations:
            annotations.append({**annotation, "id": len(annotations) + 1,
                                "image_id": sample.image_id})
        detections += sample.detections
    document = {
        "annotations": annotations,
        "categories": [person_category()],
        "images": images,
        "info": {"description": "hrpose synthetic person keypoints", "seed": options["seed"],
                 "version": FORMAT_VERSION},
        "licenses": [],
    }
    write_json(directory / ANNOTATION_FILE_PATTERN.format(split=split), document)
    return split_statistics(annotations, num_images), detections


def write_dataset(directory: Path, options: dict, show_progress: bool, num_workers: int) -> dict:
    """Generate every file into ``directory``; the manifest goes last and is returned."""
    # Spawned rather than forked workers: forking a process that runs threads (a PyTorch
    # training process does) can deadlock.
    pool = (concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=multiprocessing.get_context("spawn")) if num_workers > 0 else None)
    try:
        splits, detections = {}, []
        for split in SPLITS:
            splits[split], split_detections = generate_split(directory, split, options,
                                                             show_progress, pool)
            detections += split_detections
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    write_json(directory / DETECTION_FILE, detections)
    manifest = {"detections": len(detections), "format_version": FORMAT_VERSION,
                "options": options, "splits": splits}
    write_json(directory / MANIFEST_FILE, manifest)
    return manifest


def synthetic_dataset_exists(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a complete generated dataset (manifest, annotations, images)."""
    root = Path(root)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        image_counts = {split: manifest["splits"][split]["images"] for split in SPLITS}
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    for split in SPLITS:
        folder = root / IMAGE_FOLDER_PATTERN.format(split=split)
        annotation_file = root / ANNOTATION_FILE_PATTERN.format(split=split)
        if not annotation_file.is_file() or not folder.is_dir():
            return False
        if sum(1 for _ in folder.glob("*.jpg")) != image_counts[split]:
            return False
    return (root / DETECTION_FILE).is_file()


def unique_sibling(path: Path, purpose: str) -> Path:
    """A hidden, not yet existing path next to ``path``, on the same file system for os.replace."""
    return path.with_name(f".{path.name}.{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def remove_stale_staging(root: Path) -> None:
    """Delete staging folders that killed runs left next to ``root`` (their process is gone)."""
    if not root.parent.is_dir():
        return
    for folder in root.parent.glob(f".{root.name}.partial-*"):
        pid = folder.name.rsplit("-", 2)[-2]
        if folder.is_dir() and pid.isdigit() and not process_is_running(int(pid)):
            logger.info("removing %s, left by an interrupted run", folder)
            shutil.rmtree(folder, ignore_errors=True)


def replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    trash = unique_sibling(target, "old")
    trash.mkdir()
    os.replace(target, trash / "previous")
    os.replace(new, target)
    shutil.rmtree(trash)


def validate_options(num_train: int, num_val: int, seed: int, min_size: int, max_size: int,
                     num_workers: int) -> None:
    """Reject options that cannot give a dataset, with a message that says why."""
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got num_train={num_train}, num_val={num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 64 <= min_size <= max_size:
        raise ValueError(f"need 64 <= min_size <= max_size, got {min_size} and {max_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")


def generate_synthetic_dataset(root: str | os.PathLike, num_train: int = 1000, num_val: int = 200,
                               seed: int = 0, min_size: int = 256, max_size: int = 384,
                               show_progress: bool = False, overwrite: bool = False,
                               num_workers: int = 0) -> dict:
    """Generate the synthetic dataset under ``root`` and return a summary of what it holds.

    Everything is written into a temporary sibling folder that is renamed to ``root`` at the end,
    so an interrupted run leaves nothing at ``root``. A complete dataset already at ``root`` is
    kept as it is (and summarised) unless ``overwrite`` is set. The summary has the options, per
    split the numbers of images, people, crowd regions and visible/occluded/outside keypoints,
    the number of detections, whether this call generated the data, and the root.
    ``num_workers`` > 0 renders images in that many processes; the files are the same either way.
    """
    validate_options(num_train, num_val, seed, min_size, max_size, num_workers)
    root = Path(root)
    options = {"max_size": int(max_size), "min_size": int(min_size), "num_train": int(num_train),
               "num_val": int(num_val), "seed": int(seed)}
    if root.exists() and not overwrite:
        if synthetic_dataset_exists(root):
            manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
            if manifest["options"] != options:
                logger.warning("%s already holds a synthetic dataset made with %s, not %s; "
                               "keeping it (pass overwrite=True to regenerate)", root,
                               manifest["options"], options)
            return {**manifest, "generated": False, "root": str(root)}
        if not root.is_dir() or any(root.iterdir()):
            raise DataError(f"'{root}' exists but is not a complete synthetic dataset; "
                            f"pass overwrite=True (--overwrite) to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root)
    staging = unique_sibling(root, "partial")
    staging.mkdir()
    try:
        manifest = write_dataset(staging, options, show_progress, num_workers)
        replace_directory(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**manifest, "generated": True, "root": str(root)}
