"""Pipeline 2: inspection, in the form the loop's inspector reads it (after a step's
`<img> R </img>`, the canvas, then `<inspect>`), self-sampled or symbolic.

- Self-sampled (`make_inspect_own`, given a checkpoint): the model's own plans and
  sketches at its inference settings; conflicts of the plan against the prompt and of
  the sketch against the plan, and consistent steps, balanced; labelled by the exact judge.
- Symbolic (`make_inspect_symbolic`): a correct teacher trajectory, and with probability
  `INCONSISTENT_SHARE` one of its steps perturbed (wrong colour, wrong count, wrong
  relation, an extra object). The judge's critique of the step's `<des>` against the
  prompt is the label, critique and corrective `<refine>` (plan conflicts only).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from ..errors import PromptError
from ..format import Plan, scene_text
from ..teachers import Teachers, blank_canvas
from ..world.instructions import Scene, apply, instruction_text, is_add
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE
from ..world.scene import MAX_OBJECTS, ObjectGroup, Relation, SceneGraph
from ..world.vocab import COLORS, INVERSE_RELATION, RELATIONS, SHAPES, STAR_POINTS
from .trajectories import (
    Rejections,
    _json,
    draw_trajectory,
    example,
    fact_wording,
    heldout_free_scene,
    image_row,
    plan_rows,
    text_row,
)

INCONSISTENT_SHARE = 0.55  # the paper: about 6.9K consistent, 8.3K inconsistent
PERTURBATIONS = ("wrong_color", "wrong_count", "wrong_relation", "extra_object")


def _with_points(kinds: tuple[str, ...], scene: SceneGraph) -> tuple[str, ...]:
    """`kinds`, and a star's points made wrong when the scene states a star's points."""
    return kinds + (("wrong_points",) if any(g.points for g in scene.groups) else ())


def _scenes(steps: list[Plan]) -> list[Scene]:
    """The scene before each step and after the last (writer ops carry group ids)."""
    scenes = [Scene()]
    for step in steps:
        scenes.append(apply(scenes[-1], step.edit))
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
        counts = [n for n in range(1, min(4, room) + 1) if n != op["count"]]
        if not counts:
            return None
        new["count"] = counts[int(rng.integers(len(counts)))]
    elif kind == "wrong_relation":
        if not op["relations"]:
            return None
        # the opposite side most of the time, another side when that has no room
        others = {
            rel: [INVERSE_RELATION[rel]] * 3 + [r for r in RELATIONS if r not in (rel, INVERSE_RELATION[rel])]
            for rel, _ in op["relations"]
        }
        new["relations"] = [[others[rel][int(rng.integers(len(others[rel])))], j] for rel, j in op["relations"]]
    elif kind == "extra_object":
        used = {g.shape for g in graph.groups} | {g.shape for g in scene.groups.values()}
        shapes = [s for s in SHAPES if s not in used]
        if not shapes or sum(g.count for g in scene.groups.values()) >= MAX_OBJECTS:
            return None
        new.update(
            shape=shapes[int(rng.integers(len(shapes)))],
            color=COLORS[int(rng.integers(len(COLORS)))],
            count=1,
            relations=[],
            points=None,
        )
    elif kind == "wrong_points":
        if op.get("points") is None:
            return None
        numbers = [p for p in STAR_POINTS if p != op["points"]]
        new["points"] = numbers[int(rng.integers(len(numbers)))]
    return new


def make_inspect_symbolic(
    rng: np.random.Generator,
    teachers: Teachers,
    rejections: Rejections,
    edit_ops: float = 0.25,
    size: int = DEFAULT_SIZE,
    inconsistent: bool | None = None,
) -> dict[str, Any]:
    """One inspect example from a (possibly perturbed) teacher trajectory."""
    if inconsistent is None:
        inconsistent = bool(rng.random() < INCONSISTENT_SHARE)
    while True:
        graph, steps, canvases, _ = draw_trajectory(rng, teachers, edit_ops, rejections, size)
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
            rows.append(text_row("inspect", review.text))
            meta["step"] = k
        else:
            kinds = _with_points(PERTURBATIONS, graph)
            kind = kinds[int(rng.integers(len(kinds)))]
            meta["perturbation"] = kind
            adds = [
                k
                for k, s in enumerate(steps)
                if s.edit["op"] == "add"
                and s.edit["group"] < len(graph.groups)
                and (kind != "wrong_relation" or s.edit["relations"])
                and (kind != "wrong_color" or s.edit["color"])
                and (kind != "wrong_points" or s.edit.get("points"))
            ]
            if not adds:
                continue
            k = adds[int(rng.integers(len(adds)))]
            canvas = None
            for _attempt in range(4):  # a perturbed object may find no room: perturb again
                op = _perturb(steps[k].edit, kind, scenes[k], graph, rng)
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
            if review.consistent:
                continue
            review = review.about("plan")
            rows += [text_row("inspect", review.text)]
            rows.append(text_row("refine", review.refine))
        label = "consistent" if review.consistent else "inconsistent"
        return example(graph, rows, images, layouts, label, {**meta, "problems": [p.kind for p in review.problems]})


OWN_TARGETS = ("consistent", "plan", "image")
OWN_SHARES = (0.5, 0.25, 0.25)  # balanced: as many consistent steps as conflicts, the conflicts half of each kind
IMAGE_FLAWS = ("wrong_color", "wrong_shape", "wrong_relation", "missing_object")


def make_inspect_own(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    rejections: Rejections,
    size: int = DEFAULT_SIZE,
    max_steps: int = 8,
    target: str | None = None,
    tries: int = 12,
    prompt: str | None = None,
    knowledge: float = 0.0,
    own_conflicts: bool = False,
) -> dict[str, Any]:
    """One inspect example in the exact form the loop's inspector meets: the model's own plans
    (at its inference settings) and its own sketches of them, up to a step, then
    `<img> R </img> <canvas> <inspect> T </inspect> [<refine> C </refine>]`, labelled by the
    exact judge (the step's `<des>` against the prompt, then the sketch against the `<des>`).

    `target` (drawn with OWN_SHARES when None) keeps the three kinds balanced: a
    consistent step; a plan conflict (the model's own mistake when it makes one there, else
    its plan for that step perturbed, then sketched by the model); an image conflict (its
    own, else the model's sketch of a perturbed plan kept under the true one, or nothing
    drawn). `target="rephrased"` (never drawn by default): a right plan worded as a perturbed
    plan is (`_rephrased_plan`), the control that a plan check judges content, not wording.
    `model`: the embedded model's roles (backends/unified.py UnifiedRoles). A model
    that finds no such step in `tries` rollouts (an untrained one) gives its first conflict
    of any kind, else a consistent teacher example (meta.source says which). `prompt`: this
    prompt in every rollout instead of a random held-out scene (scripts/inspector_benchmark.py
    builds such examples on a benchmark's prompts, to measure the inspector). `own_conflicts`: a
    conflict is only ever the model's own, found anywhere in its rollouts (never a perturbed plan
    or image; the errors the loop's inspector meets on the model's own steps)."""
    target = target or OWN_TARGETS[int(rng.choice(len(OWN_TARGETS), p=OWN_SHARES))]
    own_only = own_conflicts and target != "consistent"  # no early stop, no perturbed last step
    fallback = None
    for _ in range(tries):
        text = prompt or _worded(heldout_free_scene(rng, mix=teachers.scene_mix), rng, knowledge)
        try:
            graph = parse_prompt(text)  # as the prompt reads: the judge words its conflicts in that order
        except PromptError:  # a random scene whose text names two groups alike ("the blue circles"): another
            continue
        stop = int(rng.integers(len(graph.groups)))
        history: list[Plan] = []
        sketches: list[Image.Image] = []
        canvas = blank_canvas(size).image
        found = None
        for k in range(max_steps):
            view = (canvas,) if getattr(model, "reads_canvas", False) else ()  # a planner that reads the canvas
            plan = model.plan(text, history, int(rng.integers(2**31)), *view)
            if plan is None:
                break
            sketch = model.sketch(text, history + [plan], canvas, int(rng.integers(2**31)))
            verdict = teachers.exact_judge.inspect_step(graph, plan.des, sketch)
            if not verdict.consistent:
                if verdict.target == target:
                    found = (plan, sketch, verdict, "model")
                elif fallback is None:
                    fallback = (graph, list(history), list(sketches), (plan, sketch, verdict, "model"), text)
                break
            history.append(plan)
            sketches.append(sketch)
            canvas = sketch
            if k >= stop and not own_only:
                break
        if found is None and history and not own_only:
            before = sketches[-2] if len(history) > 1 else blank_canvas(size).image
            *history, plan = history
            sketch = sketches.pop()
            if target == "consistent":
                found = (plan, sketch, teachers.exact_judge.inspect_step(graph, plan.des, sketch), "model")
            elif target == "plan":
                found = _wrong_plan(rng, model, teachers, graph, history, plan, before, text)
            elif target == "rephrased":
                found = _rephrased_plan(rng, model, teachers, graph, history, plan, before, text)
            else:
                found = _wrong_image(rng, model, teachers, graph, history, plan, before, text)
        if found is not None:
            return _own_row(graph, history, sketches, found, text, target)
    if fallback is not None:
        return _own_row(*fallback, target)
    row = make_inspect_symbolic(rng, teachers, rejections, size=size, inconsistent=False)
    return {**row, "meta": _json({**json.loads(row["meta"]), "source": "teacher", "target": target})}


def _worded(graph: SceneGraph, rng: np.random.Generator, knowledge: float) -> str:
    """The scene's canonical text, or with probability `knowledge` one naming an attribute through
    a trajectory-split fact (world/knowledge.py)."""
    found = fact_wording(graph, rng, knowledge)
    return found[0] if found is not None else graph.to_text()


def _own_row(
    graph, history: list[Plan], sketches: list[Image.Image], found: tuple, text: str, target: str
) -> dict[str, Any]:
    """The example: the model's steps with their sketches (each sketch row names its regions),
    the judged step, its inspection (a wrong plan for a group the prompt names through a fact
    says the fact too: "...; coal is black") and, for a conflict, the fix."""
    plan, sketch, verdict, source = found
    if not verdict.consistent and verdict.target == "plan":
        from ..world.critique import explain

        verdict = replace(verdict, text=explain(verdict.text, text, plan.des))
    images: list[bytes] = []
    rows: list[dict[str, Any]] = []
    for p, image in zip(history + [plan], sketches[: len(history)] + [sketch]):
        rows += [text_row("ins", p.ins), text_row("des", p.des), image_row(image, None, images, [])]
        rows[-1]["text"] = p.regions
    rows.append(text_row("inspect", verdict.text))
    if not verdict.consistent:
        rows.append(text_row("refine", verdict.refine))
    meta = {"source": source, "target": target, "step": len(history), "problems": [p.kind for p in verdict.problems]}
    label = "consistent" if verdict.consistent else "inconsistent"
    row = example(graph, rows, images, [""] * len(images), label, meta)
    return {**row, "prompt": text}


def _wrong_plan(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    graph,
    history: list[Plan],
    plan: Plan,
    before: Image.Image,
    text: str,
):
    """The model's plan for this step made wrong (one group's colour, count or relation, or an
    object the prompt does not ask for), grounded and sketched by the model."""
    described = parse_prompt(plan.des)
    kinds = _with_points(PERTURBATIONS, described)
    for _ in range(6):
        kind = kinds[int(rng.integers(len(kinds)))]
        wrong = _perturb_graph(described, kind, rng)
        if wrong is None:
            continue
        verdict = teachers.judge.critique(wrong, graph, False)
        if verdict.consistent:
            continue
        wrong_plan, sketch = _said_and_drawn(
            rng, model, graph, history, plan, wrong, _changed_group(described, wrong), before, text
        )
        return wrong_plan, sketch, verdict.about("plan"), f"perturbed-plan:{kind}"
    return None


def _said_and_drawn(
    rng: np.random.Generator,
    model: Any,
    graph,
    history: list[Plan],
    plan: Plan,
    scene: SceneGraph,
    g: int,
    before: Image.Image,
    text: str,
) -> tuple[Plan, Image.Image]:
    """`plan`'s step said as a perturbed plan is said (an `add` names group `g` of `scene` with
    all its relations; an edit step keeps its instruction; the `<des>` is `scene` in canonical
    order), grounded and sketched by the model on `before`."""
    ins = f"add {scene.groups[g].noun_phrase()}{_where(scene, g)}" if is_add(plan.ins) else plan.ins
    said = model.ground(text, history + [Plan(ins, scene_text(scene.to_text()))], int(rng.integers(2**31)))
    return said, model.sketch(text, history + [said], before, int(rng.integers(2**31)))


def _rephrased_plan(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    graph,
    history: list[Plan],
    plan: Plan,
    before: Image.Image,
    text: str,
):
    """The model's plan for this step worded as `_wrong_plan` words a perturbed one (the step's
    group with all its relations in `_where`'s order, the scene in its canonical order), its
    content unchanged; grounded and sketched by the model. None when the judge finds a conflict."""
    described = parse_prompt(plan.des)
    drawn = parse_prompt(history[-1].des).groups if history else ()
    new = [i for i, g in enumerate(described.groups) if g not in drawn]
    said, sketch = _said_and_drawn(
        rng, model, graph, history, plan, described, new[0] if new else len(described.groups) - 1, before, text
    )
    verdict = teachers.exact_judge.inspect_step(graph, said.des, sketch)
    return (said, sketch, verdict, "rephrased-plan") if verdict.consistent else None


def _wrong_image(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    graph,
    history: list[Plan],
    plan: Plan,
    before: Image.Image,
    text: str,
):
    """The right plan for this step, under a wrong picture: the model's sketch of a perturbed
    plan (its colour or shape, drawn in the plan's regions; a relation, drawn where the model
    puts the wrong one), or nothing drawn."""
    described = parse_prompt(plan.des)
    prompt = text
    flaws = _with_points(IMAGE_FLAWS, described)
    for _ in range(6):
        kind = flaws[int(rng.integers(len(flaws)))]
        if kind == "missing_object":
            sketch = before
        else:
            wrong = _perturb_graph(described, kind, rng)
            if wrong is None:
                continue
            g = _changed_group(described, wrong)
            regions = plan.regions if kind != "wrong_relation" else ""
            drawn = Plan(f"add {wrong.groups[g].noun_phrase()}{_where(wrong, g)}", scene_text(wrong.to_text()), regions)
            drawn = model.ground(prompt, history + [drawn], int(rng.integers(2**31)))
            sketch = model.sketch(prompt, history + [drawn], before, int(rng.integers(2**31)))
        verdict = teachers.exact_judge.inspect_step(graph, plan.des, sketch)
        if not verdict.consistent and verdict.target == "image":
            return plan, sketch, verdict, f"perturbed-image:{kind}"
    return None


def _perturb_graph(scene: SceneGraph, kind: str, rng: np.random.Generator) -> SceneGraph | None:
    """`scene` with its last-drawn group (the last group a relation or the order names) made
    wrong in one way, or an extra group; None when `kind` does not apply."""
    groups, relations = list(scene.groups), list(scene.relations)
    if not groups:
        return None
    g = int(rng.integers(len(groups)))
    group = groups[g]
    if kind == "wrong_color":
        taken = {x.color for x in groups if x.shape == group.shape}
        choices = [c for c in COLORS if c not in taken]
        groups[g] = replace(group, color=choices[int(rng.integers(len(choices)))])
    elif kind == "wrong_shape":
        used = {x.shape for x in groups}
        choices = [s for s in SHAPES if s not in used]
        if not choices:
            return None
        groups[g] = ObjectGroup(choices[int(rng.integers(len(choices)))], group.color, group.count)  # no points
    elif kind == "wrong_count":
        room = MAX_OBJECTS - scene.n_objects + group.count
        counts = [n for n in range(1, min(4, room) + 1) if n != group.count]
        if not counts:
            return None
        groups[g] = replace(group, count=counts[int(rng.integers(len(counts)))])
    elif kind == "wrong_relation":
        mine = [i for i, r in enumerate(relations) if g in (r.subject, r.object)]
        if not mine:
            return None
        i = mine[int(rng.integers(len(mine)))]
        r = relations[i]
        relations[i] = Relation(r.subject, INVERSE_RELATION[r.relation], r.object)
    elif kind == "wrong_points":
        if group.points is None:
            return None
        others = [p for p in STAR_POINTS if p != group.points]
        groups[g] = replace(group, points=others[int(rng.integers(len(others)))])
    elif kind == "extra_object":
        used = {x.shape for x in groups}
        shapes = [s for s in SHAPES if s not in used]
        if not shapes or scene.n_objects >= MAX_OBJECTS:
            return None
        groups.append(ObjectGroup(shapes[int(rng.integers(len(shapes)))], COLORS[int(rng.integers(len(COLORS)))]))
    try:
        return SceneGraph(tuple(groups), tuple(relations)).validate()
    except PromptError:
        return None


def _changed_group(before: SceneGraph, after: SceneGraph) -> int:
    """The index of the group `after` changed or added (the last group when none differs)."""
    for i, g in enumerate(after.groups):
        if i >= len(before.groups) or g != before.groups[i]:
            return i
    changed = {r.subject for r in after.relations if r not in before.relations}
    return min(changed) if changed else len(after.groups) - 1


def _where(scene: SceneGraph, g: int) -> str:
    """` left of the red circle and above the star`: group `g`'s relations, as an `add` says them."""
    from ..backends.shapes import relation_phrase

    rels = [(r.relation, r.object) for r in scene.relations if r.subject == g] + [
        (INVERSE_RELATION[r.relation], r.subject) for r in scene.relations if r.object == g
    ]
    return " " + relation_phrase(rels, list(scene.groups)) if rels else ""


__all__ = ["INCONSISTENT_SHARE", "make_inspect_own", "make_inspect_symbolic"]
