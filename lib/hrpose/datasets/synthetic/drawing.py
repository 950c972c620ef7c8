"""Drawing of figures, backgrounds and occluding objects onto a canvas that labels every pixel."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .body import KEYPOINT_INDEX, PART_ID, SIDES, unit
from .views import Figure

# Owner ids of the per-pixel owner buffer: 0 background, 1..MAX_PEOPLE people, then these two.
MAX_PEOPLE = 6
CROWD_OWNER = 254
OBJECT_OWNER = 255

# cv2 drawing takes fixed-point coordinates with this many fractional bits, for sub-pixel placement.
SHIFT = 4
SUBPIXEL = 1 << SHIFT

LEFT_MARKER = (235, 235, 235)
RIGHT_MARKER = (25, 25, 25)


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
