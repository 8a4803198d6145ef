"""Shape outlines: each shape's polygon in the unit box, drawn into a box, and its anti-aliased
coverage. The renderer, the layout's overlap test and the detector's templates share them."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .vocab import DEFAULT_POINTS

SUPERSAMPLE = 4
STAR_INNER_RATIO = 0.45
CROSS_ARM = 0.36


@lru_cache(maxsize=None)
def _unit_polygon(shape: str, points: int = DEFAULT_POINTS) -> tuple[tuple[float, float], ...] | None:
    """The shape's outline in the unit box [0, 1]^2 (None for the circle, an ellipse); a star
    has `points` points, the first pointing up."""
    if shape == "circle":
        return None
    if shape == "square":
        return ((0, 0), (1, 0), (1, 1), (0, 1))
    if shape == "triangle":
        return ((0.5, 0), (1, 1), (0, 1))
    if shape == "diamond":
        return ((0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5))
    if shape == "cross":
        a, b = 0.5 - CROSS_ARM / 2, 0.5 + CROSS_ARM / 2
        return ((a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a))
    if shape == "star":
        pts = []
        for k in range(2 * points):
            r = 1.0 if k % 2 == 0 else STAR_INNER_RATIO
            angle = -math.pi / 2 + k * math.pi / points
            pts.append((r * math.cos(angle), r * math.sin(angle)))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, y0 = min(xs), min(ys)
        w, h = max(xs) - x0, max(ys) - y0
        return tuple(((x - x0) / w, (y - y0) / h) for x, y in pts)
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[float, float, float, float],
    fill,
    points: int | None = None,
) -> None:
    """Draw `shape` filling `box` (pixel coordinates, x0, y0, x1, y1); a star with `points` points."""
    x0, y0, x1, y1 = box
    poly = _unit_polygon(shape, points or DEFAULT_POINTS)
    if poly is None:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in poly], fill=fill)


def shape_mask(shape: str, width: int, height: int, pad: int = 0, points: int | None = None) -> np.ndarray:
    """Anti-aliased coverage (0..1 floats) of `shape` filling a width x height box, padded."""
    s = SUPERSAMPLE
    W, H = (width + 2 * pad) * s, (height + 2 * pad) * s
    img = Image.new("L", (W, H), 0)
    draw_shape(ImageDraw.Draw(img), shape, (pad * s, pad * s, (pad + width) * s, (pad + height) * s), 255, points)
    img = img.resize((width + 2 * pad, height + 2 * pad), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0
