"""Pictures of datasets: a contact sheet for the card and a page per trajectory."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw

from ..format import scene_text
from ..io import save_png

CELL = 96


def contact_sheet(table: pa.Table, path: Path, rows: int = 6, max_images: int = 7) -> None:
    """The first `rows` examples, one per row: their images in order, the prompt beneath."""
    n = min(rows, table.num_rows)
    sheet = Image.new("RGB", (CELL * max_images, (CELL + 14) * n), "white")
    draw = ImageDraw.Draw(sheet)
    for r in range(n):
        example = table.slice(r, 1).to_pylist()[0]
        for c, png in enumerate(example["images"][:max_images]):
            img = Image.open(io.BytesIO(png)).convert("RGB").resize((CELL - 4, CELL - 4), Image.Resampling.NEAREST)
            sheet.paste(img, (c * CELL + 2, r * (CELL + 14) + 2))
        caption = scene_text(example["prompt"])
        if example.get("label"):
            caption = f"[{example['label']}] {caption}"
        draw.text((2, r * (CELL + 14) + CELL), caption[:110], fill="black")
    save_png(path, sheet)


def _img_tag(png: bytes, label: str = "") -> str:
    data = base64.b64encode(png).decode()
    return (
        f'<img src="data:image/png;base64,{data}" width="192" height="192" '
        f'style="image-rendering:pixelated" alt="{html.escape(label)}">'
    )


def example_html(example: dict[str, Any]) -> str:
    """A page that reads like the trajectory: prompt, then each step's text and image."""
    parts = [
        f"<h1>{html.escape(example['prompt'])}</h1>",
        f"<p class=meta>{html.escape(example['id'])} · kind {html.escape(example['kind'])}"
        + (f" · label {html.escape(example['label'])}" if example.get("label") else "")
        + "</p>",
        "<ol>",
    ]
    item: list[str] = []
    for step in example["steps"]:
        kind, text = step["type"], step["text"]
        if kind in ("ins", "des", "inspect", "refine"):
            item.append(f"<div class={kind}><b>&lt;{kind}&gt;</b> {html.escape(text)}</div>")
        elif kind == "sketch" and step["image"] < 0:  # an image step named by its regions alone
            item.append(f"<div class=regions><b>&lt;img&gt;</b> {html.escape(text)} <b>&lt;/img&gt;</b></div>")
            parts.append("<li>" + "".join(item) + "</li>")
            item = []
        elif kind == "sketch":
            item.append(_img_tag(example["images"][step["image"]], "sketch"))
            parts.append("<li>" + "".join(item) + "</li>")
            item = []
        elif kind == "end":
            item.append("<div class=end><b>&lt;end&gt;</b> the model ends the trajectory</div>")
    if item:
        parts.append("<li>" + "".join(item) + "</li>")
    parts.append("</ol>")
    style = (
        "body{font-family:sans-serif;max-width:900px;margin:2em auto} li{margin:1em 0;padding:.5em;"
        "border-left:4px solid #ccc} .ins{color:#1a5} .des{color:#555} .inspect{color:#a50} "
        ".refine{color:#b12} .regions{color:#36c;font-family:monospace} .meta{color:#888} "
        "img{display:block;margin-top:.4em;border:1px solid #999}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(example['prompt'])}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
