"""How a synthetic figure is seen and dressed: view, style, and the posed figure in image pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metadata import COCO
from .body import (
    FACE_DIRECTIONS,
    FACE_VISIBLE_MIN_Z,
    BodyShape,
    build_skeleton,
    rotation_x,
    rotation_y,
    sample_body_shape,
    sample_pose,
    unit,
)

# Base skin tones (BGR) between which each figure's skin is interpolated.
SKIN_TONES = np.array([[196, 224, 255], [150, 195, 240], [105, 172, 224], [60, 115, 180],
                       [36, 85, 141], [37, 56, 90]], dtype=np.float64)
HAIR_COLOURS = np.array([[20, 20, 25], [30, 50, 90], [120, 190, 220], [160, 160, 160],
                         [30, 60, 150], [45, 40, 40]], dtype=np.float64)


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
