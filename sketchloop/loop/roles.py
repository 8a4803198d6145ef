"""The roles of the staged loop. A model (the embedded one, a chat model, a diffusers
pipeline) plays a role by implementing its protocol; data pipelines use them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass
class PlanStep:
    """One plan: `<ins>` the next change, `<des>` the whole scene after it, and (for
    models that ground their plans) the regions the image step paints, `x3 y12 s8 ...`."""

    ins: str
    des: str
    regions: str = ""


class Planner(Protocol):
    def plan(self, prompt: str, history: list[PlanStep]) -> PlanStep | None:
        """The next step, or None when the model ends the trajectory."""


class Sketcher(Protocol):
    def sketch(self, prompt: str, history: list[PlanStep], canvas: Image.Image, seed: int) -> Image.Image:
        """The next image: `canvas` changed as `history[-1]` says."""


@dataclass
class Critique:
    """What an inspector says of the canvas: the `<inspect>` text and, when it found a
    conflict, the `<refine>` command that fixes it."""

    consistent: bool
    text: str
    refine: str = ""


class Inspector(Protocol):
    def inspect(self, prompt: str, history: list[PlanStep], canvas: Image.Image) -> Critique:
        """Check the last plan against the prompt and the canvas against the last plan."""


class Refiner(Protocol):
    def refine(self, prompt: str, history: list[PlanStep], canvas: Image.Image, command: str,
               seed: int) -> Image.Image:
        """The canvas corrected as the `<refine>` command says."""


# Roles may keep running totals of what they spent in a `usage` dict ("flow_steps",
# "text_tokens"); the loop reads the difference around each call.
