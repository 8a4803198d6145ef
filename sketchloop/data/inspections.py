"""Pipeline 2: inspection of plans (text-side conflicts), self-sampled or symbolic.

- Symbolic: a correct teacher trajectory, and with probability `INCONSISTENT_SHARE` one
  of its steps perturbed (wrong colour, wrong count, wrong relation, an extra object)
  or the trajectory ended early (a missing object). The judge's critique of the step's
  `<des>` against the prompt is the label, critique and corrective `<refine>`.
- Self-sampled: a planner (any `loop.roles.Planner`, e.g. a checkpoint) plans step by
  step; each `<ins>` is carried out by the editor, each `<des>` checked against the
  prompt and against what the `<ins>` does, each image against its `<ins>`; the first
  conflict ends the example. When the planner yields too few consistent examples for
  the target balance, consistent ones come from teacher trajectories (meta.source says).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import PromptError
from ..loop.roles import Planner
from ..world.instructions import Scene, apply, instruction_text, parse_instruction
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE
from ..world.scene import MAX_OBJECTS
from ..world.vocab import COLORS, INVERSE_RELATION, RELATIONS, SHAPES
from ..teachers import Teachers, blank_canvas
from ..trajectory import Plan, scene_text
from .trajectories import (Rejections, heldout_free_scene, _json, draw_trajectory, example, image_row,
                           plan_rows, text_row)

INCONSISTENT_SHARE = 0.55  # the paper: about 6.9K consistent, 8.3K inconsistent
PERTURBATIONS = ("wrong_color", "wrong_count", "wrong_relation", "extra_object", "missing_object")


def _scenes(steps: list[Plan]) -> list[Scene]:
    """The scene before each step and after the last (writer ops carry group ids)."""
    scenes = [Scene()]
    for step in steps:
        scenes.append(apply(scenes[-1], step.op))
    return scenes


def _perturb(op: dict[str, Any], kind: str, scene: Scene, graph, rng: np.random.Generator) -> dict[str, Any] | None:
    """A wrong version of an `add` edit, or None if `kind` does not apply to it."""
    new = {k: v for k, v in op.items() if k != "targets"}
    if kind == "wrong_color":
        taken = {g.color for g in scene.groups.values() if g.shape == op["shape"]} | {op["color"]}
        if op["color"] is None:
            return None
        choices = [c for c in COLORS if c not in taken]
        new["color"] = choices[int(rng.integers(len(choices)))]
    elif kind == "wrong_count":
        room = MAX_OBJECTS - sum(g.count for g in scene.groups.values())
        choices = [n for n in range(1, min(4, room) + 1) if n != op["count"]]
        if not choices:
            return None
        new["count"] = choices[int(rng.integers(len(choices)))]
    elif kind == "wrong_relation":
        if not op["relations"]:
            return None
        # the opposite side most of the time, another side when that has no room
        others = {rel: [INVERSE_RELATION[rel]] * 3 + [r for r in RELATIONS if r not in (rel, INVERSE_RELATION[rel])]
                  for rel, _ in op["relations"]}
        new["relations"] = [[others[rel][int(rng.integers(len(others[rel])))], j] for rel, j in op["relations"]]
    elif kind == "extra_object":
        used = {g.shape for g in graph.groups} | {g.shape for g in scene.groups.values()}
        shapes = [s for s in SHAPES if s not in used]
        if not shapes or sum(g.count for g in scene.groups.values()) >= MAX_OBJECTS:
            return None
        new.update(shape=shapes[int(rng.integers(len(shapes)))], color=COLORS[int(rng.integers(len(COLORS)))],
                   count=1, relations=[])
    return new


def make_inspect_symbolic(rng: np.random.Generator, teachers: Teachers, rejections: Rejections,
                          edit_ops: float = 0.25, size: int = DEFAULT_SIZE,
                          inconsistent: bool | None = None) -> dict[str, Any]:
    """One inspect example from a (possibly perturbed) teacher trajectory."""
    if inconsistent is None:
        inconsistent = bool(rng.random() < INCONSISTENT_SHARE)
    while True:
        graph, steps, canvases = draw_trajectory(rng, teachers, edit_ops, rejections, size)
        scenes = _scenes(steps)
        last = len(steps) - 1
        images: list[bytes] = []
        layouts: list[str] = []
        meta: dict[str, Any] = {"source": "symbolic"}
        if not inconsistent:
            reviews = {k: teachers.judge.critique(scenes[k + 1].graph(), graph, k == last) for k in range(len(steps))}
            ok = [k for k, r in reviews.items() if r.consistent]
            k = ok[int(rng.integers(len(ok)))]
            review = reviews[k]
            rows = plan_rows(steps[: k + 1], canvases[: k + 1], images, layouts)
            if k == last:
                rows.append(text_row("end"))
            rows.append(text_row("inspect", review.text))
            meta["step"] = k
        else:
            kind = PERTURBATIONS[int(rng.integers(len(PERTURBATIONS)))]
            meta["perturbation"] = kind
            if kind == "missing_object":
                ends = [k for k in range(last)  # complete so far, but ended before the rest is drawn
                        if teachers.judge.critique(scenes[k + 1].graph(), graph, False).consistent
                        and not teachers.judge.critique(scenes[k + 1].graph(), graph, True).consistent]
                if not ends:
                    continue
                k = ends[int(rng.integers(len(ends)))]
                review = teachers.judge.critique(scenes[k + 1].graph(), graph, True)
                rows = plan_rows(steps[: k + 1], canvases[: k + 1], images, layouts) + [text_row("end")]
            else:
                adds = [k for k, s in enumerate(steps) if s.op["op"] == "add" and s.op["group"] < len(graph.groups)
                        and (kind != "wrong_relation" or s.op["relations"])
                        and (kind != "wrong_color" or s.op["color"])]
                if not adds:
                    continue
                k = adds[int(rng.integers(len(adds)))]
                canvas = None
                for _attempt in range(4):  # a perturbed object may find no room: perturb again
                    op = _perturb(steps[k].op, kind, scenes[k], graph, rng)
                    if op is None:
                        break
                    after = apply(scenes[k], op)
                    text = instruction_text(op, scenes[k])
                    step = Plan(text, scene_text(after.graph().to_text()), op=op, scene=after.graph())
                    canvas = teachers.editor.edit(canvases[k - 1] if k else blank_canvas(size), step, rng)
                    if canvas is not None:
                        break
                if canvas is None:
                    continue
                review = teachers.judge.critique(after.graph(), graph, False)  # mid-trajectory: no <end> yet
                rows = plan_rows(steps[:k], canvases[:k], images, layouts) + plan_rows([step], [canvas], images, layouts)
            meta["step"] = k
            rows += [text_row("inspect", review.text)]
            if review.consistent:
                continue
            rows.append(text_row("refine", review.refine))
        label = "consistent" if review.consistent else "inconsistent"
        return example(graph, rows, images, layouts, label, {**meta, "problems": [p.kind for p in review.problems]})


def make_inspect_self_sampled(rng: np.random.Generator, planner: Planner, teachers: Teachers,
                              rejections: Rejections, size: int = DEFAULT_SIZE, max_steps: int = 6,
                              inconsistent: bool | None = None, tries: int = 3) -> dict[str, Any]:
    """One inspect example from the planner's own plans (teacher fallback for balance)."""
    if inconsistent is None:
        inconsistent = bool(rng.random() < INCONSISTENT_SHARE)
    for _ in range(tries):
        row = _rollout(rng, planner, teachers, size, max_steps)
        if (row["label"] == "inconsistent") == inconsistent:
            return row
    row = make_inspect_symbolic(rng, teachers, rejections, size=size, inconsistent=inconsistent)
    meta = {**json.loads(row["meta"]), "source": "teacher"}
    return {**row, "meta": _json(meta)}


def _rollout(rng: np.random.Generator, planner: Planner, teachers: Teachers, size: int, max_steps: int) -> dict[str, Any]:
    graph = heldout_free_scene(rng)
    prompt = graph.to_text()
    scene, canvas = Scene(), blank_canvas(size)
    history: list[Plan] = []
    images: list[bytes] = []
    layouts: list[str] = []
    rows: list[dict[str, Any]] = []
    problem, fix, where = "", "", ""
    review = None
    for _ in range(max_steps):
        plan = planner.plan(prompt, history, int(rng.integers(2**31)))
        if plan is None:
            rows.append(text_row("end"))
            review = teachers.judge.critique(scene.graph(), graph, True)
            where = "end"
            break
        rows += [text_row("ins", plan.ins), text_row("des", plan.des)]
        try:
            op = parse_instruction(plan.ins, scene)
        except PromptError as exc:
            problem, where = f"the instruction cannot be carried out: {exc}", "ins"
            break
        after = apply(scene, op)
        try:
            described = parse_prompt(plan.des)
        except PromptError as exc:
            problem, where = f"the description cannot be read: {exc}", "des"
            break
        if described.normalized() != after.graph().normalized():
            problem, where = (f"the description does not match the instruction, which leads to "
                              f"'{scene_text(after.graph().to_text())}'"), "des"
            break
        review = teachers.judge.critique(described, graph, False)
        if not review.consistent:
            where = "des"
            break
        new = teachers.editor.edit(canvas, Plan(plan.ins, plan.des, op=op, scene=after.graph()), rng)
        if new is None:
            problem, where = "the instruction cannot be drawn: there is no room for it", "ins"
            break
        rows.append(image_row(new.image, new.layout, images, layouts))
        image_review = teachers.judge.analyse(new.image, after.graph())
        if not image_review.consistent:
            review, where = image_review, "image"
            break
        history.append(plan)
        scene, canvas = after, new
        review = None
    else:
        where = "cap"
        problem = "the plan did not end within the step limit"
    if problem:
        fix = teachers.judge.critique(scene.graph(), graph, True).refine or "end the trajectory"
        text, label = f"inconsistent: {problem}", "inconsistent"
        kinds = [where]
    else:
        assert review is not None
        text, label = review.text, "consistent" if review.consistent else "inconsistent"
        fix = review.refine
        kinds = [p.kind for p in review.problems]
    rows.append(text_row("inspect", text))
    if label == "inconsistent":
        rows.append(text_row("refine", fix))
    return example(graph, rows, images, layouts, label, {"source": "self-sampled", "where": where, "problems": kinds})


__all__ = ["INCONSISTENT_SHARE", "make_inspect_self_sampled", "make_inspect_symbolic"]
