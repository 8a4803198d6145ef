"""The staged loop (plan, sketch, inspect, refine until the planner ends) and single mode.

The loop knows nothing of ShapesWorld: it calls the four roles of `loop.roles` and
records every step with its text, image, flow steps, text tokens and seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..format import image_text, plan_text
from .roles import Plan, Roles, Sketcher


@dataclass
class Step:
    """One entry of a trajectory: what a role did, with its text or image and its cost."""

    type: str  # plan, sketch, inspect, refine, end
    text: str = ""
    image: Image.Image | None = field(default=None, repr=False)
    image_file: str = ""
    flow_steps: int = 0
    text_tokens: int = 0
    seconds: float = 0.0
    attempt: int = 0  # 0: the step as first planned; k > 0: its k-th correction (a new plan, a redraw)
    refine: str = ""  # an inspection's `<refine>` command, written with a conflict (acted on or not)


@dataclass
class Trajectory:
    prompt: str
    mode: str
    steps: list[Step] = field(default_factory=list)
    final: Image.Image | None = field(default=None, repr=False)
    ended: bool = False  # the planner ended it (False: the iteration cap stopped it)
    meta: dict[str, Any] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list, repr=False)  # the plan history that made `final`
    on_step: Callable[[Step], None] | None = field(default=None, repr=False, compare=False)

    def add(self, step: Step) -> None:
        """Record a step, and tell `on_step` (a live view; it may raise to stop the run)."""
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    @property
    def flow_steps(self) -> int:
        return sum(s.flow_steps for s in self.steps)

    @property
    def text_tokens(self) -> int:
        return sum(s.text_tokens for s in self.steps)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def stats(self) -> dict[str, Any]:
        return {
            "flow_steps": self.flow_steps,
            "text_tokens": self.text_tokens,
            "seconds": round(self.seconds, 4),
            "images": sum(1 for s in self.steps if s.image is not None),
            "ended": self.ended,
        }

    def to_dict(self) -> dict[str, Any]:
        """The trajectory as JSON-able data (step images by file name, once saved)."""
        return {
            "prompt": self.prompt,
            "mode": self.mode,
            "ended": self.ended,
            **self.stats(),
            **self.meta,
            "steps": [{k: v for k, v in asdict(s).items() if k != "image"} for s in self.steps],
        }


def _usage(role: Any) -> tuple[int, int]:
    usage = getattr(role, "usage", None) or {}
    return usage.get("flow_steps", 0), usage.get("text_tokens", 0)


def _timed(role: Any, fn, *args):
    f0, t0 = _usage(role)
    start = time.perf_counter()
    result = fn(*args)
    f1, t1 = _usage(role)
    return result, f1 - f0, t1 - t0, time.perf_counter() - start


# Corrections stay off by default: the loop's own wrong steps are mostly objects of one group drawn
# touching and broken relations, which the self-check cannot see, so two corrections per step gave the
# same verdict on shapes-complex-val at more flow steps (docs/design.md, "Corrections").
DEFAULT_MAX_REFINES = 0


def call_seed(seed: int, role: str, iteration: int, attempt: int = 0) -> int:
    """The seed of one role call: a pure function of the trajectory's seed and where the call is."""
    return int(np.random.SeedSequence([seed, ROLE_CODES[role], iteration, attempt]).generate_state(1)[0])


ROLE_CODES = {"plan": 1, "sketch": 2, "inspect": 3, "refine": 4}


def run_staged(
    prompt: str,
    roles: Roles,
    blank: Image.Image,
    seed: int = 0,
    max_iters: int = 8,
    max_refines: int = DEFAULT_MAX_REFINES,
    on_step: Callable[[Step], None] | None = None,
    inspect: bool = True,
) -> Trajectory:
    """Plan, sketch, inspect and refine until the planner ends the trajectory or `max_iters` plans;
    `on_step` sees each step as it is recorded. `inspect=False`: plan and sketch only (no
    inspection, so no correction either: the ablation of the report)."""
    traj = Trajectory(
        prompt, "staged", meta={"max_refines": max_refines} if inspect else {"inspect": False}, on_step=on_step
    )
    canvas = blank
    history: list[Plan] = []
    for it in range(max_iters):
        # a planner that reads the canvas (UnifiedRoles.reads_canvas) is shown the one the step is drawn on
        view = (canvas,) if getattr(roles.planner, "reads_canvas", False) else ()
        plan, f, t, s = _timed(roles.planner, roles.planner.plan, prompt, history, call_seed(seed, "plan", it), *view)
        if plan is None:
            traj.add(Step("end", "", None, "", f, t, s))
            traj.ended = True
            break
        image = _sketch(traj, roles, prompt, history, (plan, f, t, s), canvas, call_seed(seed, "sketch", it))
        planned = history + [plan]
        for r in range(max_refines + 1 if inspect else 0):
            critique, f, t, s = _timed(
                roles.inspector,
                roles.inspector.inspect,
                prompt,
                planned,
                image,
                call_seed(seed, "inspect", it, r),
                canvas,
            )
            traj.add(Step("inspect", critique.text, None, "", f, t, s, refine=critique.refine))
            if critique.consistent or r == max_refines:
                break
            if critique.target == "plan":  # a wrong plan is planned again, and drawn on the canvas before it
                plan_seed = call_seed(seed, "plan", it, r + 1)
                replan = getattr(roles.planner, "replan", None)  # a planner's own correction of a step
                again = (
                    _timed(roles.planner, replan, prompt, history, planned[-1], plan_seed, *view)
                    if replan is not None
                    else _timed(roles.planner, roles.planner.plan, prompt, history, plan_seed, *view)
                )
                if again[0] is None:  # the planner would rather end here, or has no better step: keep the step
                    break
                image = _sketch(
                    traj, roles, prompt, history, again, canvas, call_seed(seed, "sketch", it, r + 1), r + 1
                )
                planned = history + [again[0]]
            else:  # a wrong image: the refiner corrects it (the plan stands)
                image, f, t, s = _timed(
                    roles.refiner,
                    roles.refiner.refine,
                    prompt,
                    planned,
                    image,
                    critique,
                    call_seed(seed, "refine", it, r),
                    canvas,
                )
                traj.add(Step("refine", critique.refine, image, "", f, t, s, r + 1))
        canvas = image
        history = planned
    traj.final, traj.plans = canvas, history
    return traj


def _sketch(
    traj: Trajectory,
    roles: Roles,
    prompt: str,
    history: list[Plan],
    timed_plan: tuple,
    canvas: Image.Image,
    seed: int,
    attempt: int = 0,
) -> Image.Image:
    """Record a plan (with what planning it cost), then the sketcher's image of it on `canvas`."""
    plan, f, t, s = timed_plan
    text = plan_text(plan.ins, plan.des) + (f" {image_text(plan.regions)}" if plan.regions else "")
    traj.add(Step("plan", text, None, "", f, t, s, attempt))
    image, f, t, s = _timed(roles.sketcher, roles.sketcher.sketch, prompt, history + [plan], canvas, seed)
    traj.add(Step("sketch", "", image, "", f, t, s, attempt))
    return image


def run_single(
    prompt: str, sketcher: Sketcher, blank: Image.Image, seed: int = 0, on_step: Callable[[Step], None] | None = None
) -> Trajectory:
    """One image straight from the prompt: the sketcher with an empty history (the baseline)."""
    traj = Trajectory(prompt, "single", on_step=on_step)
    image, f, t, s = _timed(sketcher, sketcher.sketch, prompt, [], blank, seed)
    traj.add(Step("sketch", "", image, "", f, t, s))
    traj.final, traj.ended = image, True
    return traj
