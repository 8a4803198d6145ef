"""A chat / vision model as the data pipelines' teachers: decomposer (prompt -> open-vocabulary
scene graph), step writer (`<ins>`/`<des>` steps, and flawed steps for negatives) and judge
(image vs description, description vs prompt, image analysed with a fix). They implement the
protocols of `data.teachers`, so the pipelines run unchanged with them; prompts are the
template files `decomposer.md`, `step_writer.md`, `flaw.md`, `judge.md`, `critique.md`,
`analyse.md` (overridable like the loop's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from ..errors import SketchloopError
from ..format import Critique, Plan, Problem
from .chat import ChatClient


# ---------------------------------------------------------------- open-vocabulary scenes
class OpenObject(BaseModel):
    name: str = Field(description="the object, e.g. 'apple', 'wooden chair'")
    count: int = Field(1, ge=1, le=20)
    attributes: list[str] = Field(default_factory=list, description="colours, materials, ... e.g. ['red']")

    def phrase(self) -> str:
        words = " ".join([*self.attributes, self.name])
        return words if self.count == 1 else f"{self.count} x {words}"


class OpenRelation(BaseModel):
    subject: int = Field(description="index into objects")
    relation: str = Field(description="e.g. 'left of', 'above', 'on top of', 'holding'")
    object: int = Field(description="index into objects")


class OpenScene(BaseModel):
    """What a prompt asks for, in any vocabulary. `to_text` is the prompt itself."""

    prompt: str = ""
    objects: list[OpenObject]
    relations: list[OpenRelation] = Field(default_factory=list)

    def to_text(self) -> str:
        return self.prompt or "; ".join(
            [", ".join(o.phrase() for o in self.objects)]
            + [f"{self.objects[r.subject].name} {r.relation} {self.objects[r.object].name}" for r in self.relations]
        )

    def to_json(self) -> str:
        return self.model_dump_json()


@dataclass(frozen=True)
class Described:
    """A scene known only by its description (a step's `<des>`)."""

    text: str

    def to_text(self) -> str:
        return self.text


def _text(scene) -> str:
    return scene if isinstance(scene, str) else scene.to_text()


# ---------------------------------------------------------------- answers
class SceneAnswer(BaseModel):
    objects: list[OpenObject]
    relations: list[OpenRelation] = Field(default_factory=list)


class StepAnswer(BaseModel):
    op: Literal["add", "modify", "move", "swap", "remove"] = "add"
    ins: str = Field(description="one instruction for an image-editing model")
    des: str = Field(description="the whole scene after this step")


class StepsAnswer(BaseModel):
    steps: list[StepAnswer] = Field(min_length=1)


class VerdictAnswer(BaseModel):
    consistent: bool
    reason: str = ""


class ProblemAnswer(BaseModel):
    critique: str
    fix: str = Field(description="one instruction for an image-editing model that fixes it")


class InspectionAnswer(BaseModel):
    not_drawn_yet: list[str] = Field(default_factory=list, description="objects of the prompt still to be drawn")
    problems: list[ProblemAnswer] = Field(default_factory=list, description="what contradicts the prompt")


def _inspection(answer: InspectionAnswer) -> Critique:
    return Critique.from_problems(
        [Problem("teacher", p.critique, p.fix) for p in answer.problems], list(answer.not_drawn_yet)
    )


# ---------------------------------------------------------------- the teachers
class ChatDecomposer:
    def __init__(self, client: ChatClient):
        self.client = client

    def decompose(self, prompt: str) -> OpenScene:
        answer = self.client.ask(self.client.template("decomposer").format(prompt=prompt), SceneAnswer)
        if not answer.objects:
            raise SketchloopError(f"the decomposer found no objects in {prompt!r}")
        n = len(answer.objects)
        relations = [r for r in answer.relations if 0 <= r.subject < n and 0 <= r.object < n]
        return OpenScene(prompt=prompt, objects=answer.objects, relations=relations)


class ChatStepWriter:
    """Steps in drawing order; with probability `edit_ops` the teacher is asked to draw one
    object wrong first and correct it with a modify / move / swap / remove step."""

    def __init__(self, client: ChatClient):
        self.client = client

    def write_steps(self, graph: OpenScene, rng: np.random.Generator, edit_ops: float = 0.25) -> list[Plan]:
        edit = bool(rng.random() < edit_ops)
        text = self.client.template("step_writer").format(
            prompt=graph.to_text(),
            scene=graph.model_dump_json(exclude={"prompt"}),
            edit=(
                "Include exactly one correction: draw one object wrong first (wrong colour, wrong place, or an "
                "extra object), then fix it with a modify, move, swap or remove step."
                if edit
                else "Only add objects; every step is an 'add'."
            ),
        )
        answer = self.client.ask(text, StepsAnswer)
        return [Plan(s.ins, s.des, op={"op": s.op}, scene=Described(s.des)) for s in answer.steps]

    def flaw(self, graph: OpenScene, steps: list[Plan], k: int) -> Plan:
        """Plan `k` rewritten so that it contradicts the prompt in one way (for negatives)."""
        listing = "\n".join(f"{i + 1}. ins: {s.ins} | des: {s.des}" for i, s in enumerate(steps))
        text = self.client.template("flaw").format(prompt=graph.to_text(), steps=listing, k=k + 1)
        s = self.client.ask(text, StepAnswer)
        return Plan(s.ins, s.des, op={"op": s.op, "flawed": True}, scene=Described(s.des))


class ChatJudge:
    """data.teachers.Judge played by a vision chat model."""

    def __init__(self, client: ChatClient):
        self.client = client

    def judge(self, image: Image.Image, scene) -> Critique:
        text = self.client.template("judge").format(description=_text(scene))
        answer = self.client.ask(text, VerdictAnswer, (image,))
        return Critique(answer.consistent, answer.reason)

    def critique(self, described, prompt, final: bool = False) -> Critique:
        text = self.client.template("critique").format(
            prompt=_text(prompt),
            description=_text(described),
            final="This is the final picture: anything missing is a problem."
            if final
            else "More steps follow: objects not drawn yet are not problems.",
        )
        return _inspection(self.client.ask(text, InspectionAnswer))

    def analyse(self, image: Image.Image, scene) -> Critique:
        text = self.client.template("analyse").format(description=_text(scene))
        return _inspection(self.client.ask(text, InspectionAnswer, (image,)))
