"""Synthetic scenes: a background, an occasional crowd, people and occluding objects in layers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metadata import COCO
from .body import unit
from .drawing import (
    CROWD_OWNER,
    MAX_PEOPLE,
    PART_LABELS,
    Canvas,
    draw_background,
    draw_figure,
    draw_occluder,
    finish_image,
)
from .views import Figure, moved_figure, pose_figure

PEOPLE_COUNT_PROBABILITIES = (0.3, 0.22, 0.17, 0.13, 0.1, 0.08)
CROWD_PROBABILITY = 0.05
SMALLEST_FIGURE_HEIGHT = 40.0


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
