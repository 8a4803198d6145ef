"""Per-stage metrics of a staged trajectory, measured after the loop by the exact
ShapesWorld judge (`DetectorJudge.inspect_step`: a step's `<des>` against the prompt, then
its image against the `<des>`), never inside it:

- plan copy rate: the trajectory's last `<des>` is the prompt's scene graph (scene_key);
- sketch fidelity: of the inspected steps whose plan fits the prompt, the share whose
  image shows the plan;
- inspector, on every inspection: recall on plan conflicts and on image conflicts (the
  model's text says "inconsistent"), false alarms on consistent steps, precision (of
  the steps it flags, the share really wrong);
- critiques, on every wrong step the inspection flags: the share whose text names one of the
  judge's errors (the same kind about the same object: evaluation/critiques.py), the share
  that names an object one of them is about, the same share of every wrong step, and of the
  `<refine>` commands written with them, the share doing what one of the judge's fixes does;
- refine: each correction (a new plan after a plan conflict, a redraw after an image
  conflict), judged before and after: wrong -> right (fixed), right -> wrong (broken);
- where a wrong final image went wrong (`failure_stage`): its plan (the last `<des>` is not
  the prompt's scene, or an earlier one contradicts the prompt: a step drawn for a relation or
  an attribute the prompt does not give, which the last `<des>` may state right), its regions
  (the plan is right, but its regions, each drawn exactly as one object of its group, fail the
  judge: too few or too many, on one spot, a relation not met) or its drawing (the regions are
  right, the image is not); of those wrong in their regions, the share whose regions overlap
  (`regions_overlap`) where the prompt puts no pair in depth, so that an object is painted over
  another;
- one step's regions, given the teacher's history (`region_error`): too many or too few, overlapping
  each other or what is drawn, or a relation to a drawn group turned round (scripts/region_errors.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import numpy as np

from ..backends.shapes import DetectorJudge
from ..errors import PromptError
from ..format import text_verdict
from ..models.regions import Region, parse_regions, placed, spaced
from ..world.layout import Layout, PlacedObject, box_overlap, relative_position
from ..world.parser import parse_prompt
from ..world.render import render
from ..world.scene import SceneGraph, scene_key
from ..world.vocab import COLORS, DEPTH_RELATIONS
from .critiques import acts_on, names_error, names_object

DES = re.compile(r"<des> (.*?) </des>")


def _des(plan_text: str) -> str:
    """The `<des>` of a plan step's text."""
    found = DES.search(plan_text)
    if found is None:
        raise ValueError(f"a plan step without a <des>: {plan_text!r}")
    return found.group(1)


def copies(des: str, prompt_key: str) -> bool:
    try:
        return scene_key(parse_prompt(des)) == prompt_key
    except PromptError:
        return False


def states(des: str, graph: SceneGraph, judge: DetectorJudge) -> bool:
    """Whether a step's `<des>` can be read and contradicts nothing the prompt `graph` says (the
    judge's critique of a plan so far: groups not drawn yet are no problem)."""
    try:
        return judge.critique(parse_prompt(des), graph, final=False).consistent
    except PromptError:
        return False


def paint_colours(graph: SceneGraph) -> dict[int, str]:
    """A colour for every group: its own, or for an uncoloured one a colour the prompt never names."""
    free = [c for c in COLORS if c not in {g.color for g in graph.groups}]
    return {i: g.color or free[0] for i, g in enumerate(graph.groups)}


def plan_layout(graph: SceneGraph, plans: list[tuple[str, str]]) -> Layout | None:
    """The layout add-only plans (`<des>`, regions) for the prompt `graph` stand for: each step's
    regions, in order, as one object each of the groups its `<des>` adds (painted as
    `paint_colours` says); None when a step's regions are not as many as those objects, or a
    `<des>` does not parse, drops a group or names one the prompt does not."""
    paint = paint_colours(graph)
    objects: list = []
    before: list = []
    for des, regions in plans:
        try:
            groups = list(parse_prompt(des).groups)
        except PromptError:
            return None
        new = list(groups)
        for g in before:
            if g not in new:
                return None
            new.remove(g)
        spots = parse_regions(regions)
        if len(spots) != sum(g.count for g in new) or any(g not in graph.groups for g in new):
            return None
        for g in new:
            i = graph.groups.index(g)
            objects += [placed(spots.pop(0), g.shape, paint[i], i, g.points) for _ in range(g.count)]
        before = groups
    return Layout(tuple(objects))


def moved_to(new: list[PlacedObject], regions: list[Region]) -> list[PlacedObject]:
    """Each of `new` where the region written for it (in order) puts it: its centre and size."""
    return [replace(o, x=r.center[0], y=r.center[1], size=r.size) for o, r in zip(new, regions)]


def region_error(
    new: list[PlacedObject],
    earlier: list[PlacedObject],
    need: dict[tuple[int, int], list[str]],
    regions: list[Region],
) -> str | None:
    """What is wrong with `regions` written for one step's new objects `new` (in order) beside the
    objects `earlier` steps drew, `need` the prompt's relations (world/layout.py `relation_needs`):
    "count" (not one region per new object), "overlap in step" / "overlap earlier" (a new object's box
    meets another new one's / an earlier one's; pairs in depth may), "relation" (a stated relation
    to an earlier group fails GenEval's rule), the first that applies; None when right
    (scripts/region_errors.py)."""
    if len(regions) != len(new):
        return "count"
    moved = moved_to(new, regions)
    for i, a in enumerate(moved):
        for others, error in ((moved[i + 1 :], "overlap in step"), (earlier, "overlap earlier")):
            for b in others:
                in_depth = a.group != b.group and any(r in DEPTH_RELATIONS for r in need.get((a.group, b.group), ()))
                if not in_depth and box_overlap([a.x, a.y], a.size, b)[0] > 0:
                    return error
    for a in moved:
        for b in earlier:
            for rel in need.get((a.group, b.group), ()):
                if rel not in DEPTH_RELATIONS and rel not in relative_position(a.box, b.box):
                    return "relation"
    return None


def regions_overlap(regions: list[str]) -> bool:
    """Whether two of the regions written in `regions` (each step's region text) share area: not
    `spaced` at gap 0 (the sampler's non-overlap rule without its margin)."""
    spots = [r for text in regions for r in parse_regions(text)]
    apart = spaced(spots, spots, gap=0.0)
    return bool((~apart)[np.triu_indices(len(spots), k=1)].any())


def failure_stage(traj, judge: DetectorJudge) -> str:
    """Where the trajectory's final image went: "right", or wrong in its "plan", its "regions"
    or its "drawing" (see the module docstring)."""
    graph = parse_prompt(traj.prompt)
    if traj.final is not None and judge.judge(traj.final, graph).consistent:
        return "right"
    plans = traj.plans
    if not plans or not copies(plans[-1].des, scene_key(graph)) or not all(states(p.des, graph, judge) for p in plans):
        return "plan"
    layout = plan_layout(graph, [(p.des, p.regions) for p in plans])
    if layout is None or not judge.judge(render(layout), graph).consistent:
        return "regions"
    return "drawing"


def measure(traj, judge: DetectorJudge, counts: Counter) -> None:
    """Add one trajectory's per-stage outcomes to `counts`."""
    graph = parse_prompt(traj.prompt)
    des, image = "", None
    last_right: bool | None = None  # the judge's verdict at the last inspection
    pending: bool | None = None  # a correction is under way; was the step right before it?
    for step in traj.steps:
        if step.type in ("plan", "refine") and step.attempt > 0:  # a correction of the step just inspected
            pending = last_right
        if step.type == "plan":
            des = _des(step.text)
        if step.type in ("sketch", "refine"):
            image = step.image
        if step.type == "inspect" and image is not None:
            truth = judge.inspect_step(graph, des, image)
            if pending is not None:
                counts["refined_right" if pending else "refined_wrong"] += 1
                counts["broken"] += pending and not truth.consistent
                counts["fixed"] += not pending and truth.consistent
                pending = None
            says_ok, _ = text_verdict(step.text)
            kind = "consistent" if truth.consistent else truth.target
            counts[f"{kind}_steps"] += 1
            counts[f"{kind}_flagged"] += not says_ok
            if not truth.consistent and not says_ok:  # a wrong step found: does its critique say what is wrong?
                judged = [p.critique for p in truth.problems]
                named = names_error(step.text, judged)
                counts["named_error"] += named
                counts[f"{kind}_named_error"] += named
                counts["named_object"] += names_object(step.text, judged)
                if step.refine:
                    counts["refines"] += 1
                    counts["refines_acting"] += acts_on(step.refine, [p.fix for p in truth.problems])
            last_right = truth.consistent
    plans = [_des(s.text) for s in traj.steps if s.type == "plan"]
    stage = failure_stage(traj, judge)
    counts[f"final_{stage}"] += 1
    if stage == "regions" and not any(r.relation in DEPTH_RELATIONS for r in graph.relations):
        counts["final_regions_overlap"] += regions_overlap([p.regions for p in traj.plans])
    counts["trajectories"] += 1
    counts["copied"] += bool(plans) and copies(plans[-1], scene_key(graph))


def summary(counts: Counter) -> dict:
    def share(n: int, of: int) -> float | None:
        return round(n / of, 4) if of else None

    def rate(a: str, b: str) -> float | None:
        return share(counts[a], counts[b])

    wrong_flagged = counts["plan_flagged"] + counts["image_flagged"]
    wrong_steps = counts["plan_steps"] + counts["image_steps"]
    flagged = wrong_flagged + counts["consistent_flagged"]

    return {
        "trajectories": counts["trajectories"],
        "plan_copy_rate": rate("copied", "trajectories"),
        "inspections": counts["consistent_steps"] + counts["plan_steps"] + counts["image_steps"],
        "plan_conflicts": counts["plan_steps"],
        "image_conflicts": counts["image_steps"],
        "sketch_fidelity": round(counts["consistent_steps"] / (counts["consistent_steps"] + counts["image_steps"]), 4)
        if counts["consistent_steps"] + counts["image_steps"]
        else None,
        "inspector_precision": round((counts["plan_flagged"] + counts["image_flagged"]) / flagged, 4)
        if flagged
        else None,
        "recall_plan_conflicts": rate("plan_flagged", "plan_steps"),
        "recall_image_conflicts": rate("image_flagged", "image_steps"),
        "false_alarm_rate": rate("consistent_flagged", "consistent_steps"),
        "critique_names_error": share(counts["named_error"], wrong_flagged),
        "critique_names_object": share(counts["named_object"], wrong_flagged),
        "critique_names_error_plan": rate("plan_named_error", "plan_flagged"),
        "critique_names_error_image": rate("image_named_error", "image_flagged"),
        "wrong_steps_named": share(counts["named_error"], wrong_steps),
        "refine_acts_on_error": rate("refines_acting", "refines"),
        "refined_wrong": counts["refined_wrong"],
        "refined_right": counts["refined_right"],
        "fix_rate": rate("fixed", "refined_wrong"),
        "break_rate": rate("broken", "refined_right"),
        "final_right": rate("final_right", "trajectories"),
        "wrong_in_plan": rate("final_plan", "trajectories"),
        "wrong_in_regions": rate("final_regions", "trajectories"),
        "wrong_in_regions_overlapping": rate("final_regions_overlap", "trajectories"),
        "wrong_in_drawing": rate("final_drawing", "trajectories"),
    }


def flag_rates(steps: list[dict], flagged) -> dict[str, float]:
    """Of judged steps (each with "kind": consistent, plan or image), the share `flagged(step)`
    calls a conflict: recall on wrong plans and on wrong sketches, false alarms on right steps."""

    def share(kind: str) -> float:
        chosen = [s for s in steps if s["kind"] == kind]
        return sum(map(flagged, chosen)) / max(1, len(chosen))

    return {"recall_plan": share("plan"), "recall_image": share("image"), "false_alarms": share("consistent")}


def doubt_auc(steps: list[dict], key: str = "doubt", kind: str | None = None) -> float | None:
    """How often the inspector's doubt (`step[key]`) ranks a wrong step (of `kind`, or of either
    kind) above a right one (ties count half; 0.5: no better than chance); None without both."""
    wrong = [s[key] for s in steps if s["kind"] != "consistent" and kind in (None, s["kind"])]
    right = [s[key] for s in steps if s["kind"] == "consistent"]
    if not wrong or not right:
        return None
    return sum((w > c) + 0.5 * (w == c) for w in wrong for c in right) / (len(wrong) * len(right))
