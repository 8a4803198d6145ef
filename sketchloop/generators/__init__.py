"""Image generators the evaluator can call by name, one module each: the unified model in
staged or single mode (model.py), the text-to-image baseline (t2i.py), best-of-N over any of
them with the unified model's inspector choosing (best_of.py), and ORACLE upper bounds that
use ShapesWorld's teachers (oracle.py)."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import SketchloopError
from ..world.render import DEFAULT_SIZE
from .base import Generated, Generator, check_prompt, made_by, record_id
from .best_of import BestOfGenerator, candidate_seed
from .loop import LoopGenerator
from .model import model_generator
from .oracle import OracleGenerator, oracle_generator
from .t2i import TextToImageGenerator

__all__ = [
    "BestOfGenerator",
    "GENERATORS",
    "Generated",
    "Generator",
    "LoopGenerator",
    "OracleGenerator",
    "TextToImageGenerator",
    "candidate_seed",
    "check_prompt",
    "get_generator",
    "made_by",
    "model_generator",
    "oracle_generator",
    "record_id",
    "register_generator",
]


def _oracle_staged(size: int = DEFAULT_SIZE, **kwargs: Any) -> Generator:
    return oracle_generator("staged", size, **kwargs)


GENERATORS: dict[str, Callable[..., Generator]] = {
    "staged": lambda **kw: model_generator("staged", **kw),
    "single": lambda **kw: model_generator("single", **kw),
    "t2i": TextToImageGenerator,
    "oracle": OracleGenerator,
    "oracle-staged": _oracle_staged,
}


def register_generator(name: str, factory: Callable[..., Generator]) -> None:
    """Make a generator available to `sketchloop eval --generator NAME`."""
    GENERATORS[name] = factory


def get_generator(name: str, best_of: int = 1, inspector_checkpoint: Any = None, **kwargs: Any) -> Generator:
    """The generator `name` made with `kwargs`; `best_of` N > 1: best-of-N over it, the unified
    model's inspector (`inspector_checkpoint`, default the shipped one) choosing."""
    if name not in GENERATORS:
        raise SketchloopError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    base = GENERATORS[name](**kwargs)
    if best_of == 1:
        return base
    return BestOfGenerator(base, best_of, inspector_checkpoint, kwargs.get("device"))
