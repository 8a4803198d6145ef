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

from PIL import Image, ImageDraw

from .layout import Layout, sample_layout
from .outline import SUPERSAMPLE, draw_shape, shape_mask
from .scene import SceneGraph
from .vocab import BACKGROUND, PALETTE

DEFAULT_SIZE = 64
__all__ = ["DEFAULT_SIZE", "SUPERSAMPLE", "blank_image", "draw_shape", "render", "render_scene", "shape_mask"]


def render(layout: Layout, size: int = DEFAULT_SIZE, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Render a layout as a size x size RGB image, objects in order (a later one over an earlier one)."""
    if size < 16:
        raise ValueError(f"canvas size {size} is too small; use at least 16 px")
    s = size * SUPERSAMPLE
    img = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(img)
    for obj in layout.objects:
        x0, y0, x1, y1 = obj.box
        draw_shape(draw, obj.shape, (x0 * s, y0 * s, x1 * s, y1 * s), PALETTE[obj.color], obj.points)
    return img.resize((size, size), Image.Resampling.BOX)


def blank_image(size: int = DEFAULT_SIZE) -> Image.Image:
    """The empty canvas (what `render` draws for an empty layout), without the renderer."""
    return Image.new("RGB", (size, size), BACKGROUND)


def render_scene(graph: SceneGraph, seed: int = 0, size: int = DEFAULT_SIZE) -> tuple[Image.Image, Layout]:
    """Lay out and render a scene graph; returns the image and its layout."""
    layout = sample_layout(graph, seed)
    return render(layout, size), layout
