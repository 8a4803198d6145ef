"""The `sketchloop` command line: one module per command, the options they share in options.py."""

from __future__ import annotations

import sys

import typer

from ..errors import SketchloopError
from .common import console
from .data import data_app
from .eval import eval_command
from .generate import generate
from .serve import serve
from .train import train
from .world import detect, render

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Process-driven image generation: plan, sketch, inspect, refine.",
)
app.command()(render)
app.command()(detect)
app.command("eval")(eval_command)
app.command()(generate)
app.command()(serve)
app.command()(train)
app.add_typer(data_app, name="data")


def main() -> None:
    """Entry point: user errors print one line and exit 2, without a traceback."""
    try:
        app()
    except SketchloopError as exc:
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
