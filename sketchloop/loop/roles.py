"""The roles of the staged loop. A model (the embedded one, a chat model, a diffusers
pipeline) plays a role by implementing its protocol; data pipelines use them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass
class PlanStep:
    """One plan: `<ins>` the next change, `<des>` the whole scene after it."""

    ins: str
    des: str


class Planner(Protocol):
    def plan(self, prompt: str, history: list[PlanStep]) -> PlanStep | None:
        """The next step, or None when the model ends the trajectory."""


class Sketcher(Protocol):
    def sketch(self, prompt: str, history: list[PlanStep], canvas: Image.Image, seed: int) -> Image.Image:
        """The next image: `canvas` changed as `history[-1]` says."""
