"""The trajectory format, in one place: the plan and critique types every role, teacher
and pipeline exchanges, every tag string, and the builders of the text the model reads
and writes. Training (training/sequences.py), the embedded model's roles
(backends/unified.py) and the loop (loop/staged.py) all write trajectories through it.

A trajectory, as the unified model sees it:

    <bos> <prompt> P </prompt>
      <ins> I </ins> <des> D </des> <img> x3 y12 s8 </img>          a plan and the regions it paints
      ... (one such step per plan)
      <canvas> x 64 <inspect> T </inspect> [<refine> C </refine>]     the inspector reads a step: T says
                                                                     "consistent ..." or "inconsistent
                                                                     plan|image: ..."
    <end>                                                            the planner ends the trajectory
    <eos>

A plan correction (a replanning checkpoint, `replan_text`): the history, then the rejected
plan and the verdict, then the new step:

    ... <ins> I </ins> <des> D </des> <inspect> inconsistent plan </inspect> <ins> I' </ins> ...

Single mode: `<bos> <prompt> P </prompt> <img> <full> </img>` (the whole image in one flow).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

PHOTO_PREFIX = "a photo of "

# Tag strings (the tokenizer's TAGS, plus sequence bounds). An image step is `<img> regions </img>`.
BOS, EOS, END = "<bos>", "<eos>", "<end>"
PROMPT, INS, DES, IMG, INSPECT, REFINE = "prompt", "ins", "des", "img", "inspect", "refine"
CANVAS, FULL = "<canvas>", "<full>"
TAGS = [
    "<prompt>",
    "</prompt>",
    "<ins>",
    "</ins>",
    "<des>",
    "</des>",
    "<inspect>",
    "</inspect>",
    "<refine>",
    "</refine>",
    "<img>",
    "</img>",
    END,
    CANVAS,
    FULL,
]
# the image expert reads the step from the last of these; ";" ends an `<ins>`'s recall clause
# (world/instructions.py `split_recall`), which it does not read
STEP_STARTS = ("<ins>", "<refine>", "<prompt>", ";")
OBJECT_ENDS = ("</ins>", "left", "right", "above", "below")  # where the object an `<ins>` adds ends


def scene_text(prompt: str) -> str:
    """A prompt without GenEval's "a photo of " (how `<des>` and `<ins>` texts describe scenes)."""
    return prompt.removeprefix(PHOTO_PREFIX)


def tagged(tag: str, text: str) -> str:
    """`<tag> text </tag>`."""
    return f"<{tag}> {text} </{tag}>"


@dataclass
class Plan:
    """One planned change: `<ins>` the next change, `<des>` the whole scene after it, and
    what else the planner knows of it: the regions its image step paints (a model that
    grounds its plans, `x3 y12 s8 ...`), the structured edit (`op`) and the scene after it
    (an exact teacher, which an exact editor carries out and a judge checks)."""

    ins: str
    des: str
    regions: str = ""
    op: dict[str, Any] | None = None
    scene: Any = None

    @property
    def edit(self) -> dict[str, Any]:
        """The structured edit (`op`) of an exact teacher's plan; an error for a plan without one."""
        if self.op is None:
            raise ValueError(f"the plan {self.ins!r} has no structured edit: only an exact teacher's plans have one")
        return self.op


@dataclass
class Problem:
    """One thing a critique found wrong, with the instruction that fixes it."""

    kind: str  # wrong_color, wrong_count, extra_object, wrong_relation, missing_relation, missing_object, ...
    critique: str
    fix: str


@dataclass
class Critique:
    """What an inspector or a judge says: consistent or not, the `<inspect>` text, and for a
    conflict the `<refine>` command that fixes it. Symbolic critiques also list their
    problems and the prompt's groups not drawn yet; a judge may add `details`."""

    consistent: bool
    text: str = ""
    refine: str = ""
    problems: list[Problem] = field(default_factory=list)
    not_drawn_yet: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    target: str = (
        ""  # what a conflict is in: "plan" (the plan against the prompt), "image" (the canvas against the plan)
    )

    def about(self, target: str) -> "Critique":
        """This critique as a conflict in `target` ("plan" or "image"), its text saying so."""
        if self.consistent:
            return self
        return replace(self, target=target, text=conflict_text(target, self.text))

    @classmethod
    def from_problems(cls, problems: list[Problem], not_drawn_yet: list[str] | None = None) -> "Critique":
        """The critique that lists `problems` (none: consistent, so far or in full)."""
        not_drawn_yet = list(not_drawn_yet or [])
        if problems:
            text = "inconsistent: " + "; ".join(p.critique for p in problems)
        elif not_drawn_yet:
            text = "consistent so far; not drawn yet: " + ", ".join(not_drawn_yet)
        else:
            text = "consistent: the scene matches the prompt"
        return cls(not problems, text, problems[0].fix if problems else "", list(problems), not_drawn_yet)


CONFLICT_TARGETS = ("plan", "image")


def conflict_text(target: str, text: str) -> str:
    """An inspection text that names where its conflict is: "inconsistent plan: ..." or
    "inconsistent image: ..." (the loop re-plans a wrong plan and redraws a wrong image)."""
    body = text.split(":", 1)[1].strip() if text.startswith("inconsistent") and ":" in text else text
    return f"inconsistent {target}: {body}"


def text_verdict(text: str) -> tuple[bool, str]:
    """(consistent, conflict target) as an inspection text states them: the verdict is read
    from the text, so that a text can never contradict it."""
    if text.startswith("consistent"):
        return True, ""
    head = text.split(":", 1)[0].split()
    return False, head[1] if len(head) > 1 and head[1] in CONFLICT_TARGETS else ""


# ---------------------------------------------------------------- text builders
def prompt_text(prompt: str) -> str:
    return f"{BOS} {tagged(PROMPT, prompt)}"


def plan_text(ins: str, des: str) -> str:
    """`<ins> I </ins> <des> D </des>`."""
    return f"{tagged(INS, ins)} {tagged(DES, des)}"


def image_text(regions: str) -> str:
    """`<img> R </img>`: the regions an image step paints."""
    return f"<img> {regions} </img>"


def step_text(plan: Plan) -> str:
    """A plan with its image step, as the history holds it."""
    return f"{plan_text(plan.ins, plan.des)} {image_text(plan.regions)}"


def history_text(prompt: str, plans: list[Plan]) -> str:
    """The context of a trajectory: the prompt, then each plan with its regions."""
    return prompt_text(prompt) + "".join(f" {step_text(p)}" for p in plans)


REJECTION = tagged(INSPECT, "inconsistent plan")  # the verdict after a rejected plan's words


def rejected_text(rejected: Plan) -> str:
    """A step the inspection rejected (its words, no regions and no canvas) and the verdict."""
    return f"{plan_text(rejected.ins, rejected.des)} {REJECTION}"


def replan_text(prompt: str, history: list[Plan], rejected: Plan) -> str:
    """A replanner's context: the history, then `rejected_text`; the corrected step follows."""
    return f"{history_text(prompt, history)} {rejected_text(rejected)}"


def single_text(prompt: str) -> str:
    """Single mode's context: the prompt, then `<img> <full>` (the whole canvas in one flow)."""
    return f"{prompt_text(prompt)} <img> {FULL}"
