"""Text-side inspection: a described scene (`<des>`) against the full prompt.

A group the prompt asks for that the description lacks is "not drawn yet" (fine while
the trajectory goes on, a problem at its end); a group, colour, count or relation that
contradicts the prompt is "drawn wrong", with a critique and a corrective instruction.
"""

from __future__ import annotations

from ..format import Critique, Problem
from .scene import POINT_NAMES, ObjectGroup, SceneGraph
from .vocab import DEPTH_RELATIONS


def _np(g: ObjectGroup, definite: bool = True) -> str:
    return g.noun_phrase(definite=definite)


def inspect_description(described: SceneGraph, prompt: SceneGraph, final: bool = False) -> Critique:
    """Compare a description of the canvas with the prompt's scene graph."""
    problems: list[Problem] = []
    not_drawn_yet: list[str] = []
    match: dict[int, int] = {}  # described group -> prompt group
    free = set(range(len(prompt.groups)))
    for i, d in enumerate(described.groups):
        for t in sorted(free):
            p = prompt.groups[t]
            if (
                p.shape == d.shape
                and p.count == d.count
                and p.color in (None, d.color)
                and p.points in (None, d.points)
            ):
                match[i] = t
                free.discard(t)
                break
    for i, d in enumerate(described.groups):
        if i in match:
            continue
        same_shape = [t for t in sorted(free) if prompt.groups[t].shape == d.shape]
        colour = [t for t in same_shape if prompt.groups[t].count == d.count]
        points = [t for t in colour if prompt.groups[t].color in (None, d.color) and prompt.groups[t].points]
        if points:  # all but the points agree
            t = points[0]
            named = POINT_NAMES[prompt.groups[t].points or 0]
            drawn = f"not {POINT_NAMES[d.points]}" if d.points else "and the description does not say so"
            problems.append(
                Problem(
                    "wrong_points",
                    f"{_np(d)} should have {named} points, {drawn}",
                    f"change {_np(d)} to {named} points",
                )
            )
            match[i] = t
            free.discard(t)
        elif colour:
            t = colour[0]
            want = prompt.groups[t].color
            said = f"not {d.color}" if d.color else "and the description does not say so"
            problems.append(Problem("wrong_color", f"{_np(d)} should be {want}, {said}", f"change {_np(d)} to {want}"))
            match[i] = t
            free.discard(t)
        elif same_shape:
            t = same_shape[0]
            group = prompt.groups[t]
            if d.count < group.count and group.color in (None, d.color):
                fix = f"add {ObjectGroup(d.shape, d.color, group.count - d.count, d.points).noun_phrase()}"
            else:
                fix = f"remove {_np(d)}"
            problems.append(
                Problem("wrong_count", f"the prompt asks for {_np(group, False)}, the scene has {_np(d, False)}", fix)
            )
            free.discard(t)
        else:
            problems.append(Problem("extra_object", f"{_np(d)} is not in the prompt", f"remove {_np(d)}"))
    back = {t: i for i, t in match.items()}
    for r in prompt.relations:
        if r.subject not in back or r.object not in back:
            continue
        s, o = back[r.subject], back[r.object]
        stated = {x.relation for x in described.relations if (x.subject, x.object) == (s, o)}
        stated |= {x.inverted().relation for x in described.relations if (x.subject, x.object) == (o, s)}
        subj, obj = _np(described.groups[s]), _np(described.groups[o])
        if r.relation in stated:
            continue
        stated = {x for x in stated if (x in DEPTH_RELATIONS) == (r.relation in DEPTH_RELATIONS)}  # same axis
        kind = "wrong_relation" if stated else "missing_relation"
        found = f", not {' and '.join(sorted(stated))}" if stated else ", and the description does not say so"
        problems.append(Problem(kind, f"{subj} should be {r.relation} {obj}{found}", f"move {subj} {r.relation} {obj}"))
    for t in sorted(free):
        g = prompt.groups[t]
        if final:
            anchor = next(
                ((r.relation, back[r.object]) for r in prompt.relations if r.subject == t and r.object in back), None
            )
            where = f" {anchor[0]} {_np(described.groups[anchor[1]])}" if anchor else ""
            problems.append(
                Problem("missing_object", f"{_np(g, False)} is still missing", f"add {_np(g, False)}{where}")
            )
        else:
            not_drawn_yet.append(_np(g, False))
    return Critique.from_problems(problems, not_drawn_yet)


def describe_detections(detections, expected: SceneGraph | None = None) -> SceneGraph:
    """What an image shows, as a scene graph, with every relation that holds between all
    members of two groups (GenEval's rule, and depth as the detector found it).

    With `expected`, detections are first shared out to its groups (coloured groups take
    their colour, uncoloured ones any colour, most confident first), so that "two
    circles" of different colours read as one group; the rest group by shape and colour
    (and a star's points, when the expected scene names points).
    """
    from .layout import relative_position
    from .scene import Relation

    position = {id(d): k for k, d in enumerate(detections)}  # what `in_front_of` indexes
    pool = sorted(detections, key=lambda d: -d.confidence)
    described: list[tuple[ObjectGroup, list]] = []
    counted = expected is not None and any(g.points for g in expected.groups)
    if expected is not None:
        order = sorted(
            range(len(expected.groups)),
            key=lambda i: (expected.groups[i].color is None) + (not expected.groups[i].points),
        )
        for i in order:
            g = expected.groups[i]
            mine = [
                d for d in pool if d.shape == g.shape and g.color in (None, d.color) and g.points in (None, d.points)
            ][: g.count]
            if mine:
                pool = [d for d in pool if d not in mine]
                described.append((ObjectGroup(g.shape, g.color, len(mine), g.points), mine))
    rest: dict[tuple[str, str, int | None], list] = {}
    for d in pool:
        rest.setdefault((d.shape, d.color, d.points if counted and d.shape == "star" else None), []).append(d)
    described += [(ObjectGroup(s, c, min(len(m), 4), p), m) for (s, c, p), m in rest.items()]
    relations = []
    for i, (_, a) in enumerate(described):
        for j, (_, b) in enumerate(described):
            if i == j:
                continue
            common = None
            for da in a:
                for db in b:
                    rels = relative_position(da.box, db.box)
                    if position[id(db)] in da.in_front_of:
                        rels = rels | {"in front of"}
                    if position[id(da)] in db.in_front_of:
                        rels = rels | {"behind"}
                    common = rels if common is None else common & rels
            relations += [Relation(i, rel, j) for rel in sorted(common or ())]
    return SceneGraph(tuple(g for g, _ in described), tuple(relations))


def explain(critique: str, prompt: str, des: str) -> str:
    """A plan conflict's critique with the fact behind it: when the prompt names a group through
    a fact and the description has that group with the fact's attribute wrong, the fact's
    statement is added ("...should be black, not green; coal is black")."""
    from ..errors import PromptError
    from .knowledge import fact_fits
    from .parser import parse_prompt, parse_with_facts

    try:
        (asked, used), described = parse_with_facts(prompt), parse_prompt(des)
    except PromptError:
        return critique
    for fact, want in used:
        if want in described.groups:
            continue
        kept = {"colour": ("shape", "count"), "count": ("shape", "color"), "shape": ("color", "count")}[fact.kind]
        wrong = [
            g
            for g in described.groups
            if g not in asked.groups and all(getattr(g, a) == getattr(want, a) for a in kept)
        ]
        if any(not fact_fits(fact, g.shape, g.color, g.count) for g in wrong):
            critique += f"; {fact.statement}"
    return critique
