"""The exact renderer: layouts to anti-aliased RGB images (ShapesWorld's 'editing model').

Shapes are drawn at SUPERSAMPLE times the target resolution and box-filtered down, so
edges are anti-aliased and an object's pixels depend only on that object: editing one
object of a layout leaves every other pixel of the canvas as it was.

Default canvas: 64 px on mid-grey (128, 128, 128). Mid-grey is the one background on
which all ten GenEval colours, black and white included, stand out; 64 px gives
objects of about 16 px, where a star's points and a cross's arms are legible at a
glance, while 32 px was too small for six shapes and cost grows with pixels (the
numbers are in docs/shapesworld.md, from scripts/bench_detector.py).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .layout import Layout, sample_layout
from .scene import SceneGraph
from .vocab import BACKGROUND, PALETTE

DEFAULT_SIZE = 64
SUPERSAMPLE = 4
STAR_INNER_RATIO = 0.45
CROSS_ARM = 0.36


@lru_cache(maxsize=None)
def _unit_polygon(shape: str) -> tuple[tuple[float, float], ...] | None:
    """The shape's outline in the unit box [0, 1]^2 (None for the circle, an ellipse)."""
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
        for k in range(10):
            r = 1.0 if k % 2 == 0 else STAR_INNER_RATIO
            angle = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(angle), r * math.sin(angle)))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, y0 = min(xs), min(ys)
        w, h = max(xs) - x0, max(ys) - y0
        return tuple(((x - x0) / w, (y - y0) / h) for x, y in pts)
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill) -> None:
    """Draw `shape` filling `box` (pixel coordinates, x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    poly = _unit_polygon(shape)
    if poly is None:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in poly], fill=fill)


def shape_mask(shape: str, width: int, height: int, pad: int = 0) -> np.ndarray:
    """Anti-aliased coverage (0..1 floats) of `shape` filling a width x height box, padded."""
    s = SUPERSAMPLE
    W, H = (width + 2 * pad) * s, (height + 2 * pad) * s
    img = Image.new("L", (W, H), 0)
    draw_shape(ImageDraw.Draw(img), shape, (pad * s, pad * s, (pad + width) * s, (pad + height) * s), 255)
    img = img.resize((width + 2 * pad, height + 2 * pad), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def render(layout: Layout, size: int = DEFAULT_SIZE, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Render a layout as a size x size RGB image."""
    if size < 16:
        raise ValueError(f"canvas size {size} is too small; use at least 16 px")
    s = size * SUPERSAMPLE
    img = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(img)
    for obj in layout.objects:
        x0, y0, x1, y1 = obj.box
        draw_shape(draw, obj.shape, (x0 * s, y0 * s, x1 * s, y1 * s), PALETTE[obj.color])
    return img.resize((size, size), Image.Resampling.BOX)


def blank_image(size: int = DEFAULT_SIZE) -> Image.Image:
    """The empty canvas (what `render` draws for an empty layout), without the renderer."""
    return Image.new("RGB", (size, size), BACKGROUND)


def render_scene(graph: SceneGraph, seed: int = 0, size: int = DEFAULT_SIZE) -> tuple[Image.Image, Layout]:
    """Lay out and render a scene graph; returns the image and its layout."""
    layout = sample_layout(graph, seed)
    return render(layout, size), layout
