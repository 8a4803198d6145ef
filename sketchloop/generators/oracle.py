"""ORACLE generators: ShapesWorld's teachers (parser, layout, renderer) instead of a model.
Upper bounds, labelled as such wherever their numbers appear."""

from __future__ import annotations

import numpy as np

from ..loop.staged import DEFAULT_MAX_REFINES
from ..world.layout import sample_layout
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, render
from .base import Generated, made_by
from .loop import LoopGenerator


class OracleGenerator:
    """Parse the prompt, lay it out, render it: an upper bound that uses the world's teachers."""

    name = "oracle"

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self.record = made_by(self.name, size=size)

    def generate(self, prompt: str, seed: int) -> Generated:
        graph = parse_prompt(prompt)
        layout = sample_layout(graph, np.random.default_rng(seed))
        return Generated(render(layout, self.size), {"oracle": True})


def oracle_generator(
    mode: str = "staged",
    size: int = DEFAULT_SIZE,
    max_iters: int = 8,
    max_refines: int = DEFAULT_MAX_REFINES,
    name: str = "oracle-staged",
) -> LoopGenerator:
    """The loop with ShapesWorld's teachers in every role: an ORACLE upper bound."""
    from ..backends.wiring import oracle_roles

    return LoopGenerator(name, lambda: oracle_roles(size), mode, size, max_iters, oracle=True, max_refines=max_refines)
