"""Pipeline 3: image-instruction alignment and refinement.

Each example is a teacher trajectory up to a step, then that step's image judged
against its instruction: positive (the image does what `<ins>` says, with a short
reason) or negative (a flawed image, the judge's error analysis, a `<refine>` fix
and the corrected image). Flawed images come from perturbed renders (an object of the
step recoloured, moved to the wrong side, reshaped, dropped, or a distractor added)
and, given a sketcher (e.g. a checkpoint), from its own sketches that the judge fails.
Scenes with depth or counted parts also get the flaws of their own: an object of a depth
pair drawn on the wrong side of its partner ("the red circle should be in front of the blue
square, not behind"), a star drawn with the wrong number of points.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..format import Critique, Plan
from ..loop.roles import Sketcher
from ..teachers import Canvas, Teachers, blank_canvas
from ..world.layout import Layout, place_object
from ..world.render import DEFAULT_SIZE, render
from ..world.vocab import COLORS, DEPTH_RELATIONS, INVERSE_RELATION, RELATIONS, SHAPES, STAR_POINTS
from .trajectories import (
    Rejections,
    draw_trajectory,
    example,
    image_row,
    plan_rows,
    text_row,
)

POSITIVE_SHARE = 0.45
FLAWS = ("wrong_color", "wrong_position", "wrong_shape", "missing_object", "extra_object")
DEPTH_FLAW, POINTS_FLAW = "wrong_depth", "wrong_points"


def flaw_kinds(graph) -> tuple[str, ...]:
    """The flaws a scene can have: FLAWS, and the depth and points flaws when it has those."""
    kinds: tuple[str, ...] = FLAWS
    if any(r.relation in DEPTH_RELATIONS for r in graph.relations):
        kinds += (DEPTH_FLAW,)
    if any(g.points for g in graph.groups):
        kinds += (POINTS_FLAW,)
    return kinds


def _applies(kind: str, op: dict[str, Any], layout: Layout) -> bool:
    """Whether a flaw of `kind` can be made on the step `op` drew."""
    rels = op.get("relations") or []
    if kind == "wrong_position":
        return any(rel not in DEPTH_RELATIONS for rel, _ in rels)
    if kind == DEPTH_FLAW:
        return any(rel in DEPTH_RELATIONS for rel, _ in rels)
    if kind == POINTS_FLAW:
        return op.get("points") is not None
    return True


def _layout(canvas: Canvas) -> Layout:
    """The layout of an exact teacher's canvas."""
    if canvas.layout is None:
        raise ValueError("an exact teacher's canvas without a layout")
    return canvas.layout


def _flaw(layout: Layout, op: dict[str, Any], kind: str, rng: np.random.Generator) -> Layout | None:
    """`layout` with one object of the step's group made wrong, or None if `kind` does not apply."""
    mine = [i for i, o in enumerate(layout.objects) if o.group == op["group"]]
    if not mine:
        return None
    i = mine[int(rng.integers(len(mine)))]
    obj = layout.objects[i]
    if kind == "wrong_color":
        return layout.recolor(i, [c for c in COLORS if c != obj.color][int(rng.integers(len(COLORS) - 1))])
    if kind == "wrong_shape":
        shape = [s for s in SHAPES if s != obj.shape][int(rng.integers(len(SHAPES) - 1))]
        kept = obj.points if shape == "star" else None  # only a star has points
        return Layout(layout.objects[:i] + (replace(obj, shape=shape, points=kept),) + layout.objects[i + 1 :])
    if kind == "missing_object":
        return layout.remove(i)
    if kind == DEPTH_FLAW:  # drawn on the other side of its partner in depth
        rel, j = next((rel, j) for rel, j in op["relations"] if rel in DEPTH_RELATIONS)
        rest = layout.remove(i).objects
        if rel == "in front of":
            at = next(k for k, o in enumerate(rest) if o.group == j)
            return Layout(rest[:at] + (obj,) + rest[at:])
        return Layout(rest + (obj,))
    if kind == POINTS_FLAW:
        points = [p for p in STAR_POINTS if p != obj.points]
        return Layout(
            layout.objects[:i]
            + (replace(obj, points=points[int(rng.integers(len(points)))]),)
            + layout.objects[i + 1 :]
        )
    if kind == "wrong_position":
        rels = [(rel, j) for rel, j in op.get("relations") or [] if rel not in DEPTH_RELATIONS]
        if not rels:
            return None
        rest = layout.remove(i).objects
        for wrong in ([INVERSE_RELATION[rel] for rel, _ in rels],) + tuple(
            [[r for r in RELATIONS if r not in (rel, INVERSE_RELATION[rel])][int(rng.integers(2))] for rel, _ in rels]
            for _ in range(3)
        ):  # the opposite side, else another side that has room
            need = {(obj.group, j): [w] for w, (_rel, j) in zip(wrong, rels)}
            moved = place_object(rng, obj.shape, obj.color, rest, obj.group, need, size=obj.size, candidates=800)
            if moved is not None:
                return Layout(rest + (moved,))
        return None
    if kind == "extra_object":
        used = {o.shape for o in layout.objects}
        shapes = [s for s in SHAPES if s not in used]
        if not shapes:
            return None
        extra = place_object(
            rng,
            shapes[int(rng.integers(len(shapes)))],
            COLORS[int(rng.integers(len(COLORS)))],
            layout.objects,
            group=10_000,
        )
        return None if extra is None else layout.add(extra)
    raise ValueError(kind)


def make_refine(
    rng: np.random.Generator,
    teachers: Teachers,
    rejections: Rejections,
    edit_ops: float = 0.25,
    size: int = DEFAULT_SIZE,
    sketcher: Sketcher | None = None,
    positive: bool | None = None,
) -> dict[str, Any]:
    """One refine example (see the module docstring)."""
    if positive is None:
        positive = bool(rng.random() < POSITIVE_SHARE)
    while True:
        graph, steps, canvases, _ = draw_trajectory(rng, teachers, edit_ops, rejections, size)
        kinds = flaw_kinds(graph)
        kind = kinds[int(rng.integers(len(kinds)))]
        usable = [
            k
            for k, s in enumerate(steps)
            if any(o.group == s.edit["group"] for o in _layout(canvases[k]).objects)
            and (kind != "wrong_position" or s.edit.get("relations"))
            and _applies(kind, s.edit, _layout(canvases[k]))
        ]
        if not usable:
            continue
        k = usable[int(rng.integers(len(usable)))]
        step, canvas = steps[k], canvases[k]
        images: list[bytes] = []
        layouts: list[str] = []
        rows = plan_rows(steps[:k], canvases[:k], images, layouts)
        rows += [text_row("ins", step.ins), text_row("des", step.des)]
        if positive:
            review = teachers.judge.analyse(canvas.image, step.scene)
            if not review.consistent:
                continue
            rows += judged_rows(step, canvas, None, review, images, layouts)
            meta: dict[str, Any] = {"source": "teacher"}
            label = "consistent"
        else:
            flawed, flawed_layout, meta = None, None, {}
            if sketcher is not None and rng.random() < 0.5:
                history = [Plan(s.ins, s.des) for s in steps[: k + 1]]
                before = canvases[k - 1].image if k else blank_canvas(size).image
                sketch = sketcher.sketch(graph.to_text(), history, before, int(rng.integers(2**31)))
                if not teachers.judge.judge(sketch, step.scene).consistent:
                    flawed, meta = sketch, {"source": "model"}
            if flawed is None:
                flawed_layout = _flaw(_layout(canvas), step.edit, kind, rng)
                if flawed_layout is None:
                    continue
                flawed, meta = render(flawed_layout, size), {"source": "perturbed", "flaw": kind}
            if teachers.judge.judge(flawed, step.scene).consistent:
                continue  # the flaw is harmless for this prompt (e.g. any colour allowed)
            review = teachers.judge.analyse(flawed, step.scene)
            if review.consistent:
                continue  # the judge's analysis must name what is wrong
            rows += judged_rows(step, canvas, Canvas(flawed, flawed_layout), review, images, layouts)
            meta["problems"] = [p.kind for p in review.problems]
            label = "inconsistent"
        return example(graph, rows, images, layouts, label, {**meta, "step": k})


def judged_rows(
    step: Plan, correct: Canvas, flawed: Canvas | None, review: Critique, images: list[bytes], layouts: list[str]
) -> list[dict[str, Any]]:
    """The end of a refine example, after the step's `<ins>`/`<des>`: the correct image and a
    short reason (positive, `flawed` None), or the flawed image, the judge's analysis, the
    `<refine>` fix and the correct image."""
    if flawed is None:
        return [
            image_row(correct.image, correct.layout, images, layouts),
            text_row("inspect", f"consistent: the image shows {step.des}, as '{step.ins}' asks"),
        ]
    return [
        image_row(flawed.image, flawed.layout, images, layouts),
        text_row("inspect", review.about("image").text),
        text_row("refine", review.refine),
        image_row(correct.image, correct.layout, images, layouts),
    ]
