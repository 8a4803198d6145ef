"""Image generators the evaluator can call by name: the unified model in staged or single
mode, and ORACLE upper bounds that use ShapesWorld's teachers."""

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
    record: dict[str, Any]  # what makes its images (name, checkpoint identity, options): JSON-able

    def generate(self, prompt: str, seed: int) -> Generated: ...


def _made_by(name: str, **options: Any) -> dict[str, Any]:
    from .. import __version__

    return {"generator": name, **options, "sketchloop": __version__}


def record_id(record: dict[str, Any]) -> str:
    """A short name for a generator record (used for default image folders)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]


class OracleGenerator:
    """Parse the prompt, lay it out, render it: an upper bound that uses the world's teachers."""

    name = "oracle"

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self.record = _made_by(self.name, size=size)

    def generate(self, prompt: str, seed: int) -> Generated:
        graph = parse_prompt(prompt)
        layout = sample_layout(graph, np.random.default_rng(seed))
        return Generated(render(layout, self.size), {"oracle": True})


class LoopGenerator:
    """The staged loop (or single mode) over a set of roles; stats carry its compute."""

    def __init__(self, name: str, roles_factory: Callable[[], tuple], mode: str = "staged", size: int = DEFAULT_SIZE,
                 max_iters: int = 8, oracle: bool = False, max_refines: int = 2,
                 roles_record: dict[str, Any] | None = None):
        self.name, self.roles_factory, self.mode, self.size = name, roles_factory, mode, size
        self.max_iters, self.oracle, self.max_refines = max_iters, oracle, max_refines
        options = {"mode": mode, "size": size} if mode == "single" else \
            {"mode": mode, "size": size, "max_iters": max_iters, "max_refines": max_refines}
        self.record = _made_by(name, **options, **(roles_record or {}))

    def run(self, prompt: str, seed: int):
        from ..loop.staged import run_single, run_staged
        from ..world.layout import Layout

        planner, sketcher, inspector, refiner = self.roles_factory()
        for role in {id(r): r for r in (planner, sketcher, inspector, refiner)}.values():
            if hasattr(role, "reseed"):
                role.reseed(seed)  # the same prompt and seed give the same trajectory
        blank = render(Layout(), self.size)
        if self.mode == "single":
            return run_single(prompt, sketcher, blank, seed)
        return run_staged(prompt, planner, sketcher, inspector, refiner, blank, seed, self.max_iters,
                          self.max_refines)

    def generate(self, prompt: str, seed: int) -> Generated:
        traj = self.run(prompt, seed)
        return Generated(traj.final, {**traj.stats(), "oracle": self.oracle})


def oracle_roles(size: int = DEFAULT_SIZE) -> tuple:
    """ShapesWorld's teachers as planner, sketcher, inspector and refiner (an ORACLE)."""
    from ..backends.oracle import OracleCanvas, OracleInspector, OraclePlanner

    canvas = OracleCanvas(size)
    return OraclePlanner(), canvas, OracleInspector(), canvas


def model_generator(mode: str, size: int = DEFAULT_SIZE, checkpoint=None, flow_steps: int = 16,
                    guidance: float = 1.0, max_iters: int = 8, temperature: float = 0.3,
                    max_refines: int = 0, separate: bool = True) -> LoopGenerator:
    """The unified model (the shipped checkpoint unless `checkpoint`) in `mode` staged or single;
    `separate`: the planner's regions of one step are sampled apart (see backends/unified.py)."""
    from ..backends.unified import SHIPPED_CHECKPOINT, SingleSketcher, UnifiedRoles
    from ..models.unified import checkpoint_sha256

    roles = UnifiedRoles.from_pretrained(checkpoint, flow_steps=flow_steps, guidance=guidance,
                                         temperature=temperature, separate=separate)
    sketcher = SingleSketcher(roles) if mode == "single" else roles
    model = {"checkpoint": str(checkpoint or "shipped"),
             "checkpoint_sha256": checkpoint_sha256(checkpoint or SHIPPED_CHECKPOINT),
             "flow_steps": flow_steps, "guidance": guidance}
    if mode == "staged":
        model.update({"temperature": temperature, "regions_apart": separate})
    return LoopGenerator(mode, lambda: (roles, sketcher, roles, roles), mode, size, max_iters,
                         max_refines=max_refines, roles_record=model)


GENERATORS: dict[str, Callable[..., Generator]] = {
    "staged": lambda **kw: model_generator("staged", **kw),
    "single": lambda **kw: model_generator("single", **kw),
    "oracle": OracleGenerator,
    "oracle-staged": lambda size=DEFAULT_SIZE: LoopGenerator("oracle-staged", lambda: oracle_roles(size),
                                                             "staged", size, oracle=True),
}


def register_generator(name: str, factory: Callable[..., Generator]) -> None:
    """Make a generator available to `sketchloop eval --generator NAME`."""
    GENERATORS[name] = factory


def get_generator(name: str, **kwargs: Any) -> Generator:
    if name not in GENERATORS:
        raise SketchloopError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](**kwargs)
