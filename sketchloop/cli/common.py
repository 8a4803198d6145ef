"""What the commands share: the console they report on and the checks of their arguments."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..errors import SketchloopError

console = Console(stderr=True)


def check_png_path(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise SketchloopError(f"--out {out}: images are written as PNG; give a path ending in .png")
