"""The page of an evaluation: every scored image with its prompt and verdict, linking to
the trajectory pages `eval --pages N` kept."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..io import atomic_write_text


def write_gallery(images_dir: Path, results: dict[str, Any]) -> Path:
    """Write `images_dir/index.html`; returns its path."""
    cells = []
    for r in results["images"]:
        folder = f"{r['index']:05d}"
        page = (
            Path(folder) / "trajectories" / f"{r['sample']:04d}" / "index.html"
            if isinstance(r["sample"], int)
            else None
        )
        has_page = page is not None and (images_dir / page).is_file()
        mark = "✓" if r["correct"] else "✗"
        image = (
            f'<img src="{html.escape(r["filename"])}" width="128" height="128">'
            if r["filename"]
            else '<div class="failed">generation failed</div>'
        )
        link = f' · <a href="{html.escape(str(page))}">trajectory</a>' if has_page else ""
        cells.append(
            f'<figure class="{"ok" if r["correct"] else "wrong"}">{image}<figcaption>{mark} '
            f"{html.escape(r['prompt'])}<br><small>{html.escape(r['tag'])}{link}<br>"
            f"{html.escape(str(r.get('reason', '')))}</small></figcaption></figure>"
        )
    tasks = " · ".join(f"{html.escape(t)} {s:.3f}" for t, s in results["tasks"].items())
    compute = results.get("compute", {})
    cost = " · ".join(f"{html.escape(k)} {v:.3g}" for k, v in compute.items())
    title = f"{results.get('generator') or 'images'} on {results.get('benchmark') or images_dir}"
    if results.get("oracle"):
        title += " (ORACLE: an upper bound)"
    text = (
        "<!doctype html><html><head><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
        "body{font-family:sans-serif;margin:2em} figure{display:inline-block;width:150px;margin:4px;"
        "vertical-align:top;font-size:12px} img{image-rendering:pixelated;border:2px solid #6a6} "
        ".wrong img{border-color:#c44} .failed{width:128px;height:128px;background:#fdd}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>overall <b>{results['overall']:.3f}</b> · {tasks}</p>"
        f"<p>{results['n_images']} images, {results.get('n_failed', 0)} failed · per final image: {cost}</p>"
        + "".join(cells)
        + "</body></html>"
    )
    path = Path(images_dir) / "index.html"
    atomic_write_text(path, text)
    return path
