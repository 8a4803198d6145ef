"""`sketchloop render` and `sketchloop detect`: ShapesWorld's renderer and detector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from PIL import Image, UnidentifiedImageError

from ..errors import SketchloopError
from .common import check_png_path, console


def render(
    prompt: str = typer.Argument(..., help="e.g. 'a photo of a red circle above a blue square'"),
    out: Path = typer.Option(..., "--out", help="PNG file to write"),
    seed: int = typer.Option(0, help="layout seed"),
    size: int = typer.Option(64, help="canvas side in pixels"),
    layout: Optional[Path] = typer.Option(None, help="also write the layout as JSON here"),
) -> None:
    """Render a prompt exactly (parse, lay out, draw): ShapesWorld's ground truth."""
    from ..io import atomic_write_text, save_png
    from ..world.layout import sample_layout
    from ..world.parser import parse_prompt
    from ..world.render import render as render_layout

    check_png_path(out)
    if not 16 <= size <= 4096:
        raise SketchloopError(f"--size {size}: use a canvas between 16 and 4096 pixels")
    graph = parse_prompt(prompt)
    placed = sample_layout(graph, seed)
    save_png(out, render_layout(placed, size))
    if layout:
        atomic_write_text(layout, json.dumps({"scene": graph.to_dict(), "layout": placed.to_dict()}, indent=2))
    console.print(f"wrote {out} ({graph.to_text()})")


def detect(image: Path = typer.Argument(..., help="image file to read")) -> None:
    """Print the objects the ShapesWorld detector finds in an image, as JSON."""
    from ..world.detect import ShapesDetector

    detector = ShapesDetector()
    try:
        with Image.open(image) as img:
            detections = detector.detect(img.convert("RGB"))
    except FileNotFoundError:
        raise SketchloopError(f"image {image} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SketchloopError(f"cannot read image {image}: {exc}") from None
    rows = [json.dumps(d.to_dict()) for d in detections]
    print("[\n  " + ",\n  ".join(rows) + "\n]" if rows else "[]")
