"""The roles of the staged loop. A model (the embedded one, a chat model, a diffusers
pipeline) plays a role by implementing its protocol; data pipelines use them too.

Every call gets all it needs as arguments (the prompt, the plan history, the canvas, a
seed): a role keeps no state between calls that changes what it answers. Roles may keep
running totals of what they spent in a `usage` dict ("flow_steps", "text_tokens"); the
loop reads the difference around each call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from PIL import Image

from ..format import Critique, Plan

__all__ = ["Critique", "Inspector", "Plan", "Planner", "Refiner", "Roles", "Sketcher"]


class Planner(Protocol):
    def plan(self, prompt: str, history: list[Plan], seed: int) -> Plan | None:
        """The next step, or None when the model ends the trajectory.

        A planner may also offer `replan(prompt, history, rejected, seed) -> Plan | None`: its
        correction of `rejected`, the step after `history` that an inspection found wrong (None:
        keep it). The loop calls it on a plan conflict where it exists, else `plan` again.

        A planner whose `reads_canvas` is true is passed one more argument, to `plan` and
        `replan`: the canvas the step is drawn on (a Pillow image; blank before the first step)."""


class Sketcher(Protocol):
    def sketch(self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int) -> Image.Image:
        """The next image: `canvas` changed as `history[-1]` says."""


class Inspector(Protocol):
    def inspect(
        self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int, before: Image.Image | None = None
    ) -> Critique:
        """Check the last plan against the prompt and the canvas against the last plan (`before`:
        the canvas that step was drawn on, for an inspector that compares the two)."""


class Refiner(Protocol):
    def refine(
        self,
        prompt: str,
        history: list[Plan],
        canvas: Image.Image,
        critique: Critique,
        seed: int,
        before: Image.Image | None = None,
    ) -> Image.Image:
        """The canvas corrected as the critique says: `canvas` edited by its `<refine>` command,
        or the last step drawn again on `before` (the canvas before that step)."""


@dataclass(frozen=True)
class Roles:
    """The four roles one loop runs with (one object may play several)."""

    planner: Planner
    sketcher: Sketcher
    inspector: Inspector
    refiner: Refiner

    def with_roles(self, **roles: Any) -> "Roles":
        """These roles with some replaced (`planner=...`, ...); None keeps a role."""
        return replace(self, **{k: v for k, v in roles.items() if v is not None})

    def fork(self) -> "Roles":
        """Roles for one trajectory: each object that can `fork` (own counters, shared weights)
        is forked once; the others are shared."""
        forked: dict[int, Any] = {id(r): r.fork() if hasattr(r, "fork") else r for r in self.distinct()}
        return Roles(*(forked[id(r)] for r in (self.planner, self.sketcher, self.inspector, self.refiner)))

    def distinct(self) -> list[object]:
        """Each object that plays a role, once."""
        return list({id(r): r for r in (self.planner, self.sketcher, self.inspector, self.refiner)}.values())
