"""On-policy region corrections (DAgger-style): the model's own plans, relabelled by the teacher.

The model plans a prompt at its inference settings (text only: its planner never reads the
canvas), and the example is one of its own steps with the regions the exact teacher would
paint there: the model's own history and `<ins>`/`<des>` as context (no loss), then
`<img> R </img>` with R placed by ShapesWorld's layout sampler beside the objects the
model's earlier regions hold, meeting the relations the prompt gives the step's group to
them, with room left for the groups still to come: the sampler lays out the step's group and
then every group to come, as it lays out a whole scene (world/layout.py `extend_layout`:
attempts that start over with smaller objects, crowded groups aimed at their cells in the
relation tree), so a crowded canvas is corrected as the trajectories' layouts were made.
Only those regions are learned.

A step's regions are wrong when, rendered exactly, the judge fails them (too few or too many
regions, objects of a group on one spot, a relation turned round) or they leave no room for
the groups still to come (the layout sampler finds no completion beside them: a crowded
canvas that dooms a later step). The step relabelled is the rollout's first wrong one with
probability FIRST_WRONG_SHARE when there is one, else a random step (where the teacher finds no
room for the step's group and the groups to come, its other wrong steps); a rollout whose
regions are all right is used with probability CONFIRMED_SHARE only (else another prompt), so
that most examples correct a mistake. A rollout stops at the model's first wrong plan (a plan
conflict is not a region error) and at `<end>`. The scenes are the data mix's, with
COMPOSITE_SHARE of them long compositions, where the model's regions go wrong most.

With `own_samples` (`data build --own-regions N`) the label is the model's own wherever it is
right: a step whose regions are right keeps them, and a wrong step gets the first right one of N
region sets the model samples for the same words (rejection sampling of its own layouts, judged
as above); the layout sampler labels only the wrong steps for which none of the N is right. The
row's meta says which teacher labelled it.

The row holds no image: each step's regions are text (schema: data/schema.py, kind
`corrections`).

`make_plan_correction` (`data build --relabel plans`) relabels the plans instead: the model's own
history up to its first wrong plan, then the step the exact teacher writes there. With
`--relabel replans` the wrong plan stands before that step as the rejected one (`format.replan_text`),
so a replanner learns to correct a step the inspection rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.shapes import add_step, writing_order
from ..errors import PromptError, SketchloopError
from ..evaluation.process import paint_colours
from ..format import Plan, plan_text
from ..models.regions import parse_regions, placed, region_of
from ..teachers import Teachers
from ..world.instructions import is_add
from ..world.layout import Layout, PlacedObject, extend_layout, placement_order, relation_needs
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, render
from ..world.scene import SceneGraph
from .inspections import _worded
from .trajectories import Rejections, example, heldout_free_scene, text_row

FIRST_WRONG_SHARE = 0.75  # the step the example relabels: the rollout's first wrong regions, when it has some
CONFIRMED_SHARE = 0.15  # the rollouts without a wrong region that are used
COMPOSITE_SHARE = 0.8  # long compositions among the scenes (the trajectories' mix: data/trajectories.py)
TEACHER_ATTEMPTS = 30  # the layout sampler's attempts (objects shrink every 3) before the teacher gives up


def _added_group(graph: SceneGraph, drawn: list[int], plan: Plan, judge: Any) -> int | None:
    """The prompt group `plan` adds, when it is a right `add` of one new group (its `<des>` consistent
    with the prompt so far and one group more than the drawn ones); else None."""
    if not is_add(plan.ins):
        return None
    try:
        described = parse_prompt(plan.des)
    except PromptError:
        return None
    if not judge.critique(described, graph, False).consistent or len(described.groups) != len(drawn) + 1:
        return None
    index: list[int] = []  # each described group's place in the prompt
    for group in described.groups:
        same = [i for i, g in enumerate(graph.groups) if g == group and i not in index]
        if not same:
            return None
        index.append(same[0])
    new = [i for i in index if i not in drawn]
    stated = relation_needs(graph)
    if len(new) != 1 or any(
        r.relation not in stated.get((index[r.subject], index[r.object]), []) for r in described.relations
    ):
        return None  # a relation the prompt does not state: the teacher's regions would contradict the plan
    return new[0]


def _to_come(graph: SceneGraph, drawn: list[int]) -> list[int]:
    """The groups not drawn yet, in the layout sampler's order (most related first)."""
    return [i for i in placement_order(graph) if i not in drawn]


def teacher_regions(
    rng: np.random.Generator, graph: SceneGraph, g: int, drawn: list[int], objects: tuple[PlacedObject, ...]
) -> str | None:
    """The regions the exact teacher paints for group `g` on a canvas holding `objects` (the groups
    `drawn`): the layout sampler places `g` and then every group still to come beside them, as it
    lays out a whole scene (shrinking crowded objects, aiming them at their cells in the relation
    tree), and `g`'s objects are the answer. None when no layout is found."""
    new = extend_layout(graph, rng, objects, [g] + _to_come(graph, drawn + [g]), TEACHER_ATTEMPTS)
    if new is None:
        return None
    return " ".join(region_of(o).text for o in new[: graph.groups[g].count])


def leaves_room(
    rng: np.random.Generator, graph: SceneGraph, drawn: list[int], objects: tuple[PlacedObject, ...]
) -> bool:
    """Whether the groups of `graph` not `drawn` yet still fit beside `objects` (the layout
    sampler finds a completion)."""
    return extend_layout(graph, rng, objects, _to_come(graph, drawn), TEACHER_ATTEMPTS) is not None


KEEP_SHARE = 0.25  # replan examples whose rejected step was right (a false alarm): the label keeps it
OWN_TEMPERATURE = 0.7  # the temperature of the region sets the model samples for its own words


def objects_of(graph: SceneGraph, g: int, regions: str) -> tuple[PlacedObject, ...]:
    """The objects of group `g` that `regions` (one step's region text) place, painted as
    `paint_colours` paints the group."""
    spec, paint = graph.groups[g], paint_colours(graph)[g]
    return tuple(placed(r, spec.shape, paint, g, spec.points) for r in parse_regions(regions))


def regions_right(
    rng: np.random.Generator, judge: Any, graph: SceneGraph, state: "_State", plan: Plan, size: int
) -> tuple[bool, tuple[PlacedObject, ...]]:
    """Whether `plan`'s regions, drawn exactly as `state.group`'s objects beside `state.objects`,
    are right (as many as the group counts, the judge passes the canvas against `plan`'s `<des>`,
    and the groups still to come fit beside them); and the objects they place."""
    spec, mine = graph.groups[state.group], objects_of(graph, state.group, plan.regions)
    right = (
        len(mine) == spec.count
        and judge.judge(render(Layout(state.objects + mine), size), parse_prompt(plan.des)).consistent
        and leaves_room(rng, graph, state.drawn + [state.group], state.objects + mine)
    )
    return right, mine


def own_regions(
    rng: np.random.Generator,
    model: Any,
    prompt: str,
    history: list[Plan],
    state: "_State",
    graph: SceneGraph,
    judge: Any,
    size: int,
    samples: int,
) -> str | None:
    """The first of `samples` region sets the model samples (at OWN_TEMPERATURE) for its own words
    of step `state.step` that is right (`regions_right`); None when none is."""
    plan = history[state.step]
    for _ in range(samples):
        seed = int(rng.integers(2**31))
        candidate = model.resample_regions(prompt, history[: state.step], plan, seed, OWN_TEMPERATURE)
        if candidate.regions != plan.regions and regions_right(rng, judge, graph, state, candidate, size)[0]:
            return candidate.regions
    return None


@dataclass
class _State:
    """One step of a rollout: where it stood and whether its regions were right."""

    step: int
    drawn: list[int]  # the prompt's groups drawn before it
    objects: tuple[PlacedObject, ...]  # what the model's earlier regions hold
    group: int  # the group it adds
    right: bool


def _prompts(rng: np.random.Generator, teachers: Teachers, knowledge: float, tries: int):
    """Up to `tries` prompts of the data mix's scenes (COMPOSITE_SHARE long compositions), each
    with its scene as the prompt states it; a scene whose text names two groups alike is skipped."""
    for _ in range(tries):
        text = _worded(heldout_free_scene(rng, COMPOSITE_SHARE, teachers.scene_mix), rng, knowledge)
        try:
            yield text, parse_prompt(text)
        except PromptError:
            continue


def make_correction(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    rejections: Rejections,
    size: int = DEFAULT_SIZE,
    max_steps: int = 8,
    knowledge: float = 0.0,
    tries: int = 50,
    own_samples: int = 0,
) -> dict[str, Any]:
    """One region-correction example (see the module docstring). `model`: the embedded model's
    roles (backends/unified.py UnifiedRoles), planning at its inference settings. `own_samples`
    > 0: the label is the model's own where it is right (its regions, or the first right one of
    `own_samples` region sets it samples for the step's words), the layout sampler's only where
    none is."""
    judge = teachers.judge
    for text, graph in _prompts(rng, teachers, knowledge, tries):
        history: list[Plan] = []
        drawn: list[int] = []
        objects: tuple[PlacedObject, ...] = ()
        states: list[_State] = []
        for k in range(max_steps):
            plan = model.plan(text, history, int(rng.integers(2**31)))
            if plan is None:
                break
            g = _added_group(graph, drawn, plan, judge)
            if g is None:
                break
            state = _State(k, list(drawn), objects, g, False)
            state.right, mine = regions_right(rng, judge, graph, state, plan, size)
            states.append(state)
            history.append(plan)
            drawn, objects = drawn + [g], objects + mine
        wrong = [s for s in states if not s.right]
        if not states or (not wrong and rng.random() >= CONFIRMED_SHARE):
            continue
        pick = wrong[0] if wrong and rng.random() < FIRST_WRONG_SHARE else states[int(rng.integers(len(states)))]
        regions, source = None, "layout"
        for candidate in [pick] + [s for s in wrong if s is not pick]:
            if own_samples and candidate.right:  # the model's own regions are the label
                regions, source = history[candidate.step].regions, "own"
            elif own_samples:
                regions, source = (
                    own_regions(rng, model, text, history, candidate, graph, judge, size, own_samples),
                    "own",
                )
            if regions is None:
                regions, source = (
                    teacher_regions(rng, graph, candidate.group, candidate.drawn, candidate.objects),
                    "layout",
                )
            if regions is not None:
                break
        if regions is None:  # the model's earlier regions left no room for what is still to come
            rejections.trajectories_dropped += 1
            continue
        k, right = candidate.step, candidate.right
        rows: list[dict[str, Any]] = []
        for p in history[:k]:
            rows += [text_row("ins", p.ins), text_row("des", p.des), text_row("sketch", p.regions)]
        step = history[k]
        rows += [text_row("ins", step.ins), text_row("des", step.des), text_row("sketch", regions)]
        meta = {
            "source": "model",
            "step": k,
            "model_regions": step.regions,
            "model_right": right,
            "teacher": source,
            "history_right": all(s.right for s in states[:k]),  # the canvas it corrects holds no earlier mistake
        }
        row = example(graph, rows, [], [], "corrected" if not right else "confirmed", meta)
        return {**row, "prompt": text}
    raise SketchloopError(
        f"the model wrote no right `add` plan in {tries} prompts: corrections relabel a trained planner's regions"
    )


def _teacher_step(
    rng: np.random.Generator, graph: SceneGraph, drawn: list[int], objects: tuple[PlacedObject, ...]
) -> Plan | None:
    """The exact teacher's next step on the model's canvas: `<end>` (None) when every group is
    drawn, else the step writer's `add` of the first group of its order not drawn yet, with the
    layout sampler's regions beside `objects`. A Plan with no regions when none are found."""
    to_add = [g for g in writing_order(graph) if g not in drawn]
    if not to_add:
        return None
    step = add_step(graph, drawn, to_add[0])
    regions = teacher_regions(rng, graph, to_add[0], drawn, objects)
    return Plan(step.ins, step.des, regions or "")


def make_plan_correction(
    rng: np.random.Generator,
    model: Any,
    teachers: Teachers,
    rejections: Rejections,
    max_steps: int = 8,
    knowledge: float = 0.0,
    tries: int = 1000,
    replan: bool = False,
) -> dict[str, Any]:
    """One plan-correction example (DAgger on the plans): the model plans a prompt at its inference
    settings until its first wrong plan (an `add` whose `<des>` is not the prompt's scene so far
    plus one group with the relations the prompt states, an `<end>` with groups still to draw, or
    a step after the scene is complete), and the example is its own right history with that step
    as the exact teacher writes it there (`_teacher_step`): `<ins>`, `<des>` and regions, or
    `<end>`. Only that step is learned. A rollout with no wrong plan is skipped.

    `replan`: examples for a replanner (`format.replan_text`): the wrong plan stands before the
    teacher's step as the rejected one (rollouts whose first wrong plan is an `<end>`, or whose
    teacher step is one, are skipped: a replan corrects an `add`). With probability KEEP_SHARE
    a right step of the rollout is the rejected one instead, and the label is that step again:
    a replanner keeps what a false alarm rejected."""
    judge = teachers.judge
    for text, graph in _prompts(rng, teachers, knowledge, tries):
        history: list[Plan] = []
        drawn: list[int] = []
        objects: tuple[PlacedObject, ...] = ()
        wrong: Plan | None = None
        ended_early = False
        for _ in range(max_steps):
            plan = model.plan(text, history, int(rng.integers(2**31)))
            complete = len(drawn) == len(graph.groups)
            if plan is None:
                ended_early = not complete
                break
            g = None if complete else _added_group(graph, drawn, plan, judge)
            if g is None:
                wrong = plan
                break
            history.append(plan)
            drawn, objects = drawn + [g], objects + objects_of(graph, g, plan.regions)
        if wrong is None and not ended_early:
            continue
        keep = bool(replan and history) and rng.random() < KEEP_SHARE
        label: Plan | None
        if keep:  # a right step rejected: the label is the step itself
            k = int(rng.integers(len(history)))
            history, wrong, label = history[:k], history[k], history[k]
        else:
            if replan and wrong is None:
                continue
            label = _teacher_step(rng, graph, drawn, objects)
            if replan and label is None:
                continue
            if label is not None and not label.regions:  # no room beside the model's regions
                rejections.trajectories_dropped += 1
                continue
        rows: list[dict[str, Any]] = []
        for p in history:
            rows += [text_row("ins", p.ins), text_row("des", p.des), text_row("sketch", p.regions)]
        if replan:
            assert wrong is not None
            rows.append(text_row("rejected", plan_text(wrong.ins, wrong.des)))
        if label is None:
            rows.append(text_row("end"))
        else:
            rows += [text_row("ins", label.ins), text_row("des", label.des), text_row("sketch", label.regions)]
        meta = {
            "source": "model",
            "step": len(history),
            "teacher": "replan" if replan else "plan",
            "model_plan": "<end>" if wrong is None else f"{wrong.ins} | {wrong.des}",
            **({"kept": keep} if replan else {}),
        }
        row = example(graph, rows, [], [], "corrected", meta)
        return {**row, "prompt": text}
    raise SketchloopError(f"the model planned {tries} prompts without a wrong plan to correct")


__all__ = [
    "leaves_room",
    "make_correction",
    "make_plan_correction",
    "own_regions",
    "regions_right",
    "teacher_regions",
]
