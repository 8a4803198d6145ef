"""ShapesWorld's teachers playing the loop's roles: an ORACLE upper bound, never a model.

They use the parser, the step writer, the layout editor + renderer and the detector
judge, which honest inference must not call; every result they produce says oracle.
The sketcher and refiner carry out instructions through the instruction grammar on a
layout they keep for the current trajectory (reset when the history restarts); an
`add` of a group the prompt names goes where a layout of the whole prompt put it, so
objects drawn first leave room for the relations that come later.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from PIL import Image

from ..errors import PromptError
from ..loop.roles import Critique, Plan
from ..teachers import blank_canvas
from ..world.instructions import Scene, apply, parse_instruction
from ..world.layout import sample_layout
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, render
from .shapes import DetectorJudge, LayoutEditor, ShapesStepWriter


class OraclePlanner:
    """Plans from the prompt's parsed scene graph (additive steps)."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._cache: dict[str, list[Plan]] = {}

    def plan(self, prompt: str, history: list[Plan], seed: int = 0) -> Plan | None:
        """The prompt's steps in order (a function of the prompt alone: `seed` is not used)."""
        if prompt not in self._cache:
            rng = np.random.default_rng([self.seed, len(prompt)])
            self._cache = {prompt: ShapesStepWriter().write_steps(parse_prompt(prompt), rng, edit_ops=0.0)}
        steps = self._cache[prompt]
        if len(history) >= len(steps):
            return None
        return Plan(steps[len(history)].ins, steps[len(history)].des)


class OracleCanvas:
    """The sketcher and refiner: instructions carried out exactly on a tracked layout."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self.editor = LayoutEditor(size)
        self.scene, self.canvas = Scene(), blank_canvas(size)
        self._depth = 0
        self._prompt = ""

    def _reset(self, prompt: str, seed: int) -> None:
        """A fresh canvas, and a layout of the whole prompt that `add` steps draw from."""
        self.scene, self.canvas = Scene(), blank_canvas(self.size)
        graph = parse_prompt(prompt)
        layout = sample_layout(graph, seed)
        self._planned = [(g, [o for o in layout.objects if o.group == i]) for i, g in enumerate(graph.groups)]

    def _targets(self, op: dict) -> list[dict] | None:
        """Planned objects for an `add` of a prompt group, so later relations have room."""
        for k, (g, objs) in enumerate(self._planned):
            if g.shape == op["shape"] and g.count == op["count"] and g.color in (None, op["color"]):
                self._planned.pop(k)
                return [{**asdict(o), "group": op["group"], "color": op["color"] or o.color} for o in objs]
        return None

    def _carry_out(self, text: str, seed: int) -> Image.Image:
        try:
            op = parse_instruction(text, self.scene)
        except PromptError:
            return self.canvas.image  # an instruction it cannot read leaves the canvas as it was
        if op["op"] == "add" and (targets := self._targets(op)) is not None:
            op["targets"] = targets
        rng = np.random.default_rng(seed)
        after = apply(self.scene, op)
        new = self.editor.edit(self.canvas, Plan(text, "", op=op, scene=after.graph()), rng)
        if new is not None:
            self.scene, self.canvas = after, new
        return self.canvas.image

    def sketch(self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int) -> Image.Image:
        if not history:  # single mode: the whole prompt at once
            return render(sample_layout(parse_prompt(prompt), seed), self.size)
        if prompt != self._prompt or len(history) <= self._depth:  # a new trajectory
            self._reset(prompt, seed)
        self._prompt, self._depth = prompt, len(history)
        return self._carry_out(history[-1].ins, seed)

    def refine(
        self,
        prompt: str,
        history: list[Plan],
        canvas: Image.Image,
        critique: Critique,
        seed: int,
        before: Image.Image | None = None,
    ) -> Image.Image:
        """`canvas` edited by the critique's `<refine>` command (`before` is not needed)."""
        return self._carry_out(critique.refine, seed)


class OracleInspector:
    """The judge: the plan's description against the prompt, the canvas against the plan."""

    def __init__(self):
        self.judge = DetectorJudge()

    def inspect(
        self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int = 0, before: Image.Image | None = None
    ) -> Critique:
        return self.judge.inspect_step(parse_prompt(prompt), history[-1].des, canvas)
