"""Teachers: the models that make training data, as protocols. ShapesWorld's exact
teachers (backends/shapes.py) and real models (backends/chat_teachers.py,
backends/diffusers_editor.py) implement them; the data pipelines (data/) call them.

A teacher plan is a `trajectory.Plan` with its structured edit (`op`) and the scene after
it (`scene`); judges answer with a `trajectory.Critique`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from PIL import Image

from .errors import SketchloopError
from .format import Critique, Plan
from .world.layout import Layout
from .world.render import DEFAULT_SIZE, render
from .world.scene import SceneGraph


@dataclass
class Canvas:
    """The current picture; `layout` is known only in ShapesWorld."""

    image: Image.Image
    layout: Layout | None = None


def blank_canvas(size: int = DEFAULT_SIZE) -> Canvas:
    return Canvas(render(Layout(), size), Layout())


class Decomposer(Protocol):
    def decompose(self, prompt: str) -> Any:
        """The prompt's scene: a SceneGraph in ShapesWorld, an open-vocabulary scene with real teachers."""


class StepWriter(Protocol):
    def write_steps(self, graph: Any, rng: np.random.Generator, edit_ops: float) -> list[Plan]:
        """The scene as incremental plans (each with `op` and `scene`), in a logical order."""


class FlawWriter(StepWriter, Protocol):
    def flaw(self, graph: Any, steps: list[Plan], k: int) -> Plan:
        """Plan `k` rewritten so that it contradicts the prompt in one way (for negatives)."""


class Editor(Protocol):
    def edit(self, canvas: Canvas, step: Plan, rng: np.random.Generator) -> Canvas | None:
        """The canvas changed as `step` says (None: it could not)."""


class Judge(Protocol):
    def judge(self, image: Image.Image, scene: SceneGraph) -> Critique:
        """Image side: does the image show exactly `scene`?"""

    def critique(self, described: SceneGraph, prompt: SceneGraph, final: bool) -> Critique:
        """Text side: is a described scene consistent with the prompt (not drawn yet vs drawn wrong)?"""

    def analyse(self, image: Image.Image, scene: SceneGraph) -> Critique:
        """Image side, explained: what the image gets wrong about `scene`, with a fix."""


class ExactJudge(Judge, Protocol):
    def inspect_step(self, prompt: SceneGraph, des: str, image: Image.Image) -> Critique:
        """A step as an exact inspector sees it: its `<des>` against the prompt, then the image against it."""


@dataclass
class Teachers:
    """The teachers a pipeline uses (backends/shapes.py `shapes_teachers`, or real models
    from backends/wiring.py). With a `decomposer`, scenes come from prompts (`prompts`,
    else ShapesWorld's random prompts) decomposed into open-vocabulary graphs."""

    writer: StepWriter
    editor: Editor
    judge: Judge
    decomposer: Decomposer | None = None
    prompts: list[str] | None = None
    scene_mix: dict[str, float] | None = None  # ShapesWorld: shares of depth and counted-parts scenes

    @property
    def open_world(self) -> bool:
        return self.decomposer is not None

    @property
    def exact_judge(self) -> ExactJudge:
        """The judge, when it inspects steps exactly (ShapesWorld's): self-sampled inspect data need one."""
        if not hasattr(self.judge, "inspect_step"):
            raise SketchloopError("self-sampled inspect data need ShapesWorld's exact judge, not a chat judge")
        return cast(ExactJudge, self.judge)

    @property
    def flaw_writer(self) -> FlawWriter:
        """The step writer, when it can also rewrite a plan wrong (a chat teacher's)."""
        if not hasattr(self.writer, "flaw"):
            raise SketchloopError("open-world inspect and refine data need a teacher that rewrites plans wrong")
        return cast(FlawWriter, self.writer)
