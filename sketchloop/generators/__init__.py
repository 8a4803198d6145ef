"""Image generators the evaluator can call by name (the oracle now; models later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from ..errors import SketchloopError
from ..world.layout import sample_layout
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, render


@dataclass
class Generated:
    """An image and what it cost (flow steps, tokens, seconds: whatever the generator counts)."""

    image: Image.Image
    stats: dict[str, Any] = field(default_factory=dict)


class Generator(Protocol):
    name: str

    def generate(self, prompt: str, seed: int) -> Generated: ...


class OracleGenerator:
    """Parse the prompt, lay it out, render it: an upper bound that uses the world's teachers."""

    name = "oracle"

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size

    def generate(self, prompt: str, seed: int) -> Generated:
        graph = parse_prompt(prompt)
        layout = sample_layout(graph, np.random.default_rng(seed))
        return Generated(render(layout, self.size), {"oracle": True})


GENERATORS: dict[str, Callable[..., Generator]] = {"oracle": OracleGenerator}


def register_generator(name: str, factory: Callable[..., Generator]) -> None:
    """Make a generator available to `sketchloop eval --generator NAME`."""
    GENERATORS[name] = factory


def get_generator(name: str, **kwargs: Any) -> Generator:
    if name not in GENERATORS:
        raise SketchloopError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](**kwargs)
