"""`python -m sketchloop.cli`: the same as the `sketchloop` command."""

from . import main

main()
