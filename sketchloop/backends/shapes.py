"""ShapesWorld's exact teachers: the prompt parser as decomposer, a step writer over scene
graphs, a layout editor + renderer as the editing model, and the detector with GenEval's
rules as judge. They implement the protocols of `sketchloop.teachers`; the data pipelines
use them by default and the ORACLE roles (backends/oracle.py) play the loop with them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np
from PIL import Image

from ..errors import PromptError
from ..format import Critique, Plan, scene_text
from ..teachers import Canvas, Teachers
from ..world.critique import describe_detections, inspect_description
from ..world.detect import Detector, ShapesDetector
from ..world.judge import score_image
from ..world.layout import (
    MIN_SIZE,
    OBJECT_SIZE,
    SIZE_JITTER,
    Layout,
    PlacedObject,
    place_object,
    sample_layout,
)
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, render
from ..world.scene import (
    MAX_GROUPS,
    MAX_OBJECTS,
    ObjectGroup,
    Relation,
    SceneGraph,
    geneval_order,
)
from ..world.vocab import COLORS, DEPTH_RELATIONS, INVERSE_RELATION, RELATIONS, SHAPES, depth_colours_clash


class ParserDecomposer:
    """ShapesWorld's decomposer: the prompt parser."""

    def decompose(self, prompt: str) -> SceneGraph:
        return parse_prompt(prompt)


def relation_phrase(rels: list[tuple[str, int]], groups: list[ObjectGroup]) -> str:
    """`left of the red circle and above the star`: relations to groups, as an `add` says them."""
    return " and ".join(f"{rel} {groups[j].noun_phrase(definite=True)}" for rel, j in rels)


def writing_order(graph: SceneGraph) -> list[int]:
    """The order the step writer adds a scene's groups in: targets of relations first, and what
    is behind before what is in front of it."""
    return geneval_order(len(graph.groups), _back_first(graph.relations))


def linked_order(graph: SceneGraph) -> list[int]:
    """A walk of the scene's relations: the first group the prompt names, then each time the
    first-named group related to one already drawn (the first-named left, where none is), and
    what is behind before what is in front of it. In a tree of relations every `add` after the
    first then states exactly one relation, to a drawn group; `writing_order` where depth
    leaves no such walk."""
    before: dict[int, set[int]] = {g: set() for g in range(len(graph.groups))}
    linked: dict[int, set[int]] = {g: set() for g in range(len(graph.groups))}
    for r in _back_first(graph.relations):
        linked[r.subject].add(r.object)
        linked[r.object].add(r.subject)
        if r.relation == "in front of":
            before[r.subject].add(r.object)
    order: list[int] = []
    while len(order) < len(graph.groups):
        ready = [g for g in before if g not in order and before[g] <= set(order)]
        if not ready:
            return writing_order(graph)
        near = [g for g in ready if linked[g] & set(order)]
        order.append((near or ready)[0])
    return order


def relations_to(relations: list[Relation], g: int, present: list[int]) -> list[tuple[str, int]]:
    """Group `g`'s relations to the groups `present`, said from `g`'s side."""
    rels = []
    for r in relations:
        if r.subject == g and r.object in present:
            rels.append((r.relation, r.object))
        elif r.object == g and r.subject in present:
            rels.append((INVERSE_RELATION[r.relation], r.subject))
    return rels


def add_step(graph: SceneGraph, present: list[int], g: int) -> Plan:
    """The step writer's plain `add` of group `g` to a canvas holding the groups `present`: its
    relations to them in the `<ins>`, the sub-scene of the prompt they make in the `<des>`."""
    groups, relations = list(graph.groups), list(graph.relations)
    rels = relations_to(relations, g, present)
    where = (" " + relation_phrase(rels, groups)) if rels else ""
    scene = _describe(groups, present + [g], relations)
    return Plan(f"add {groups[g].noun_phrase()}{where}", scene_text(scene.to_text()), scene=scene)


def _describe(groups: list[ObjectGroup], present: list[int], relations: list[Relation]) -> SceneGraph:
    """The sub-graph of the groups present and the relations among them, in the prompt's
    order: a `<des>` is the prompt's text with the groups not drawn yet left out (the
    last one is the prompt's scene, word for word), so the planner copies, never reorders."""
    present = sorted(present)
    index = {g: k for k, g in enumerate(present)}
    rels = [
        Relation(index[r.subject], r.relation, index[r.object])
        for r in relations
        if r.subject in index and r.object in index
    ]
    return SceneGraph(tuple(groups[g] for g in present), tuple(rels))


class ShapesStepWriter:
    """Groups in a logical order (targets of relations first, and what is behind before what
    is in front of it), one `add` step each.

    With probability `edit_ops` a group is drawn through an edit operation instead:
    modify (drawn in another colour, then recoloured), move (drawn on the wrong side of
    its target, then moved), swap (the same, fixed by swapping it with its target), or
    remove (a distractor is added first and removed after the group is drawn).

    `planned`: the layout is planned, not drawn uniformly (world/layout.py `sample_layout`).
    `linked`: the groups in `linked_order` (each related to one drawn before it) instead.
    """

    def __init__(self, planned: bool = False, linked: bool = False) -> None:
        self.planned, self.linked = planned, linked

    def write_steps(self, graph: SceneGraph, rng: np.random.Generator, edit_ops: float = 0.25) -> list[Plan]:
        groups = list(graph.groups)
        relations = list(graph.relations)
        order = linked_order(graph) if self.linked else writing_order(graph)
        plan = sample_layout(graph, rng, planned=self.planned)  # where every object ends up
        targets = {g: [asdict(o) for o in plan.objects if o.group == g] for g in range(len(groups))}
        present: list[int] = []
        steps: list[Plan] = []
        for g in order:
            rels = relations_to(relations, g, present)
            group = groups[g]
            options = []
            if rng.random() < edit_ops:
                if group.color is not None:
                    options.append("modify")
                if rels:
                    options.append("move")
                    j = rels[0][1]
                    if (
                        rels[0][0] not in DEPTH_RELATIONS  # a swap trades places, not depth
                        and g == order[-1]
                        and len(rels) == 1
                        and group.count == 1
                        and groups[j].count == 1
                        and sum(j in (r.subject, r.object) for r in relations) == 1
                    ):
                        options.append("swap")
                if graph.n_objects < MAX_OBJECTS and len(groups) < MAX_GROUPS:  # room for a distractor
                    options.append("remove")
            op = options[int(rng.integers(len(options)))] if options else "add"
            wrong_spots: list[dict[str, Any]] = []
            if op in ("move", "swap"):
                # where the group goes first: on the wrong side of its targets, clear of everything drawn
                drawn = tuple(o for o in plan.objects if o.group in present)
                for attempt in range(4):  # the opposite side first, then the other two sides
                    wrong_rels = [
                        (
                            INVERSE_RELATION[rel]
                            if attempt == 0
                            else [r for r in RELATIONS if r not in (rel, INVERSE_RELATION[rel])][attempt % 2],
                            j,
                        )
                        for rel, j in rels
                    ]
                    need = {(g, j): [rel] for rel, j in wrong_rels}
                    wrong_spots = []
                    for t in targets[g]:
                        spot = _place_shrinking(
                            rng,
                            t["shape"],
                            t["color"],
                            drawn + tuple(PlacedObject(**w) for w in wrong_spots),
                            g,
                            need,
                            size=t["size"],
                            points=t.get("points"),
                        )
                        if spot is None:
                            break
                        wrong_spots.append(asdict(spot))
                    if len(wrong_spots) == len(targets[g]):
                        if attempt > 0 and op == "swap":
                            op = "move"  # a swap only undoes the opposite side
                        break
                else:
                    op = "add"
            where = (" " + relation_phrase(rels, groups)) if rels else ""
            if op == "modify":
                taken = {x.color for x in groups if x.shape == group.shape}  # keep 'the ...' unambiguous
                partners = [groups[j].color for rel, j in rels if rel in DEPTH_RELATIONS]  # still readable
                choices = [
                    c for c in COLORS if c not in taken and not any(p and depth_colours_clash(c, p) for p in partners)
                ]
                wrong = choices[int(rng.integers(len(choices)))]
                miscoloured = ObjectGroup(group.shape, wrong, group.count, group.points)
                tmp = groups.copy()
                tmp[g] = miscoloured
                wrong_targets = [{**t, "color": wrong} for t in targets[g]]
                steps.append(
                    Plan(
                        f"add {miscoloured.noun_phrase()}{where}",
                        "",
                        op=_add_op(g, miscoloured, rels, wrong_targets),
                        scene=_describe(tmp, present + [g], relations),
                    )
                )
                steps.append(
                    Plan(
                        f"change {miscoloured.noun_phrase(definite=True)} to {group.color}",
                        "",
                        op={"op": "recolor", "group": g, "color": group.color},
                        scene=_describe(groups, present + [g], relations),
                    )
                )
            elif op in ("move", "swap"):
                flipped = wrong_rels
                wrong_where = " " + relation_phrase(flipped, groups)
                tmp_rel = [
                    r
                    for r in relations
                    if not ({r.subject, r.object} <= set(present + [g]) and g in (r.subject, r.object))
                ]
                tmp_rel += [Relation(g, rel, j) for rel, j in flipped]
                steps.append(
                    Plan(
                        f"add {group.noun_phrase()}{wrong_where}",
                        "",
                        op=_add_op(g, group, flipped, wrong_spots),
                        scene=_describe(groups, present + [g], tmp_rel),
                    )
                )
                if op == "swap":
                    j = rels[0][1]
                    text = f"swap {group.noun_phrase(definite=True)} and {groups[j].noun_phrase(definite=True)}"
                    steps.append(
                        Plan(
                            text,
                            "",
                            op={"op": "swap", "group": g, "other": j},
                            scene=_describe(groups, present + [g], relations),
                        )
                    )
                else:
                    text = f"move {group.noun_phrase(definite=True)}{where}"
                    steps.append(
                        Plan(
                            text,
                            "",
                            op={"op": "move", "group": g, "relations": [list(r) for r in rels], "targets": targets[g]},
                            scene=_describe(groups, present + [g], relations),
                        )
                    )
            elif op == "remove":
                used = {x.shape for x in groups}
                shapes = [s for s in SHAPES if s not in used] or list(SHAPES)
                extra = ObjectGroup(shapes[int(rng.integers(len(shapes)))], COLORS[int(rng.integers(len(COLORS)))])
                d = len(groups) + len(steps)  # a group id no scene group uses
                ext_groups = groups + [extra] * (d - len(groups) + 1)
                steps.append(
                    Plan(
                        f"add {extra.noun_phrase()}",
                        "",
                        op={**_add_op(d, extra, []), "avoid": targets[g]},
                        scene=_describe(ext_groups, present + [d], relations),
                    )
                )
                steps.append(
                    Plan(
                        f"add {group.noun_phrase()}{where}",
                        "",
                        op=_add_op(g, group, rels, targets[g]),
                        scene=_describe(ext_groups, present + [d, g], relations),
                    )
                )
                steps.append(
                    Plan(
                        f"remove {extra.noun_phrase(definite=True)}",
                        "",
                        op={"op": "remove", "group": d},
                        scene=_describe(groups, present + [g], relations),
                    )
                )
            else:
                steps.append(replace(add_step(graph, present, g), op=_add_op(g, group, rels, targets[g])))
            present.append(g)
        for step in steps:
            step.des = scene_text(step.scene.to_text())
        return steps


def _add_op(
    group_id: int, group: ObjectGroup, rels: list[tuple[str, int]], targets: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An `add` edit; with `targets` the exact objects to draw, else any spot meeting `relations`."""
    op = {
        "op": "add",
        "group": group_id,
        "shape": group.shape,
        "color": group.color,
        "count": group.count,
        "relations": [list(r) for r in rels],
    }
    if group.points is not None:
        op["points"] = group.points
    if targets is not None:
        op["targets"] = targets
    return op


class LayoutEditor:
    """ShapesWorld's editor: apply the structured edit to the layout and re-render, so
    objects already drawn stay exactly where they were."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size

    def edit(self, canvas: Canvas, step: Plan, rng: np.random.Generator) -> Canvas | None:
        new = self.edit_layout(canvas.layout if canvas.layout is not None else Layout(), step, rng)
        return Canvas(render(new, self.size), new) if new is not None else None

    def edit_layout(self, layout: Layout, step: Plan, rng: np.random.Generator) -> Layout | None:
        """The layout after `step`, without rendering it (None: the edit found no room)."""
        op = step.edit
        kind = op["op"]
        if kind == "add" and "targets" in op:
            new = _stacked(layout.objects, [PlacedObject(**t) for t in op["targets"]], op)
        elif kind == "add":
            objs = list(layout.objects)
            avoid = tuple(PlacedObject(**t) for t in op.get("avoid", []))
            added: list[PlacedObject] = []
            for _ in range(op["count"]):
                color = op["color"] or COLORS[int(rng.integers(len(COLORS)))]
                obj = _place_shrinking(
                    rng,
                    op["shape"],
                    color,
                    tuple(objs + added) + avoid,
                    op["group"],
                    _need(op),
                    points=op.get("points"),
                )
                if obj is None:
                    return None
                added.append(obj)
            new = _stacked(tuple(objs), added, op)
        elif kind in ("recolor", "repoint"):
            change = {"color": op["color"]} if kind == "recolor" else {"points": op["points"]}
            new = Layout(tuple(replace(o, **change) if o.group == op["group"] else o for o in layout.objects))
        elif kind == "remove":
            new = Layout(tuple(o for o in layout.objects if o.group != op["group"]))
        elif kind == "move" and "targets" in op:
            keep = tuple(o for o in layout.objects if o.group != op["group"])
            new = _stacked(keep, [PlacedObject(**t) for t in op["targets"]], op)
        elif kind == "move":
            keep = tuple(o for o in layout.objects if o.group != op["group"])
            moved_objs: list[PlacedObject] = []
            for o in (o for o in layout.objects if o.group == op["group"]):
                moved = _place_shrinking(
                    rng, o.shape, o.color, keep + tuple(moved_objs), o.group, _need(op), size=o.size, points=o.points
                )
                if moved is None:
                    return None
                moved_objs.append(moved)
            new = _stacked(keep, moved_objs, op)
        elif kind == "swap":
            a = next(o for o in layout.objects if o.group == op["group"])
            b = next(o for o in layout.objects if o.group == op["other"])
            new = Layout(
                tuple(
                    replace(o, x=b.x, y=b.y) if o is a else replace(o, x=a.x, y=a.y) if o is b else o
                    for o in layout.objects
                )
            )
        else:
            raise ValueError(f"unknown edit op {kind!r}")
        return new


def _stacked(objects: tuple[PlacedObject, ...], new: list[PlacedObject], op: dict[str, Any]) -> Layout:
    """The layout with `new` drawn over everything, or, when the edit puts them behind a group,
    drawn just before that group's first object (so that it stays in front)."""
    behind = {j for rel, j in op.get("relations", []) if rel == "behind"}
    at = next((k for k, o in enumerate(objects) if o.group in behind), len(objects))
    return Layout(objects[:at] + tuple(new) + objects[at:])


def _back_first(relations) -> tuple[Relation, ...]:
    """The relations with each depth pair stated as 'front in front of back', so that
    `geneval_order` (relation targets first) draws what is behind first."""
    return tuple(r.inverted() if r.relation == "behind" else r for r in relations)


def _place_shrinking(
    rng: np.random.Generator,
    shape: str,
    color: str,
    placed,
    group: int,
    need,
    size: float | None = None,
    points: int | None = None,
) -> PlacedObject | None:
    """A free spot meeting `need`, trying smaller sizes (down to MIN_SIZE) when the canvas is crowded."""
    base = size if size is not None else OBJECT_SIZE * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))
    for scale in (1.0, 0.85, 0.72):
        obj = place_object(
            rng, shape, color, placed, group, need, size=max(MIN_SIZE, base * scale), candidates=800, points=points
        )
        if obj is not None:
            return obj
    return None


def _need(op: dict[str, Any]) -> dict[tuple[int, int], list[str]]:
    need: dict[tuple[int, int], list[str]] = {}
    for rel, j in op.get("relations", []):
        need.setdefault((op["group"], j), []).append(rel)
    return need


class DetectorJudge:
    """ShapesWorld's judge: the detector and GenEval's rules, plus an exact object count
    (an intermediate image must hold what its description says and nothing more)."""

    def __init__(self, detector: Detector | None = None):
        self.detector = detector or ShapesDetector()

    def judge(self, image: Image.Image, scene: SceneGraph) -> Critique:
        detections = [d for d in self.detector.detect(image) if d.confidence >= self.detector.threshold]
        ok, reason = score_image(
            detections, scene.to_geneval("composite"), self.detector.threshold, self.detector.counting_threshold
        )
        if ok and len(detections) != scene.n_objects:
            ok, reason = False, f"expected {scene.n_objects} objects, found {len(detections)}"
        return Critique(ok, reason, details={"detections": [d.to_dict() for d in detections]})

    def critique(self, described: SceneGraph, prompt: SceneGraph, final: bool = False) -> Critique:
        return inspect_description(described, prompt, final)

    def analyse(self, image: Image.Image, scene: SceneGraph) -> Critique:
        detections = [d for d in self.detector.detect(image) if d.confidence >= self.detector.threshold]
        return inspect_description(describe_detections(detections, scene), scene, final=True)

    def inspect_step(self, prompt: SceneGraph, des: str, image: Image.Image) -> Critique:
        """An exact inspection of one step: its `<des>` against the prompt (a "plan" conflict),
        then the image against the `<des>` (an "image" conflict)."""
        try:
            described = parse_prompt(des)
        except PromptError as exc:
            return Critique(False, f"inconsistent: the description cannot be read: {exc}").about("plan")
        text_side = self.critique(described, prompt, final=False)
        if not text_side.consistent:
            return text_side.about("plan")
        image_side = self.analyse(image, described)
        if not image_side.consistent:
            return image_side.about("image")
        return text_side


def shapes_teachers(size: int = DEFAULT_SIZE) -> Teachers:
    """ShapesWorld's exact teachers: the step writer, the layout editor and the detector judge."""
    return Teachers(writer=ShapesStepWriter(), editor=LayoutEditor(size), judge=DetectorJudge())
