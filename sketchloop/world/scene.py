"""Scene graphs: object groups and the relations between them.

A scene graph is what a prompt asks for. It converts to and from JSON, to and from
GenEval metadata lines, and to canonical English (which `parse_prompt` reads back).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PromptError
from .vocab import (
    ALL_RELATIONS,
    COLORS,
    DEPTH_RELATIONS,
    INVERSE_RELATION,
    MAX_COUNT,
    NUMBER_WORDS,
    POINT_WORDS,
    SHAPES,
    STAR_POINTS,
    depth_colours_clash,
    plural,
)

MAX_OBJECTS = 8
"""The most objects a ShapesWorld canvas holds (see world/layout.py for why)."""
MAX_GROUPS = 5

GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class ObjectGroup:
    """`count` objects of one shape and, optionally, one colour and (stars) a number of points."""

    shape: str
    color: str | None = None
    count: int = 1
    points: int | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise PromptError(f"unknown shape {self.shape!r}; known shapes: {', '.join(SHAPES)}")
        if self.color is not None and self.color not in COLORS:
            raise PromptError(f"unknown colour {self.color!r}; known colours: {', '.join(COLORS)}")
        if not 1 <= self.count <= MAX_COUNT:
            raise PromptError(f"count {self.count} out of range; counts go from 1 to {MAX_COUNT}")
        if self.points is not None:
            if self.shape != "star":
                raise PromptError(f"only stars have points; drop the points of the {self.shape}")
            if self.points not in STAR_POINTS:
                raise PromptError(
                    f"a star with {self.points} points; stars have {STAR_POINTS[0]} to {STAR_POINTS[-1]} points"
                )

    def noun_phrase(self, definite: bool = False) -> str:
        """'a red circle', 'three stars', 'a star with six points', or with `definite` 'the red
        circle', 'the stars'."""
        words = [self.color] if self.color else []
        words.append(plural(self.shape, self.count))
        if self.points is not None:
            words += ["with", POINT_NAMES[self.points], "points"]
        if definite:
            return " ".join(["the", *words])
        if self.count == 1:
            article = "an" if words[0][0] in "aeiou" else "a"
            return " ".join([article, *words])
        return " ".join([NUMBER_WORDS[self.count], *words])


POINT_NAMES = {n: w for w, n in POINT_WORDS.items()}


def group_dict(group: ObjectGroup) -> dict[str, Any]:
    """A group as JSON (points only when named, so that older scenes read the same)."""
    d = asdict(group)
    if d["points"] is None:
        del d["points"]
    return d


@dataclass(frozen=True)
class Relation:
    """Group `subject` is `relation` group `object`: GenEval's left of, right of, above, below,
    or in depth, in front of and behind."""

    subject: int
    relation: str
    object: int

    def __post_init__(self) -> None:
        if self.relation not in ALL_RELATIONS:
            raise PromptError(f"unknown relation {self.relation!r}; known: {', '.join(ALL_RELATIONS)}")

    def inverted(self) -> "Relation":
        return Relation(self.object, INVERSE_RELATION[self.relation], self.subject)


@dataclass(frozen=True)
class SceneGraph:
    """Object groups and relations between them (indices into `groups`)."""

    groups: tuple[ObjectGroup, ...]
    relations: tuple[Relation, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "relations", tuple(self.relations))

    # ----------------------------------------------------------------- checks
    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)

    def validate(self) -> "SceneGraph":
        """Raise PromptError if the graph is empty, too big, or contradicts itself."""
        if not self.groups:
            raise PromptError("the scene has no objects; name at least one shape, e.g. 'a red circle'")
        if len(self.groups) > MAX_GROUPS:
            raise PromptError(f"{len(self.groups)} object groups; at most {MAX_GROUPS} are supported")
        if self.n_objects > MAX_OBJECTS:
            raise PromptError(f"{self.n_objects} objects do not fit the canvas; at most {MAX_OBJECTS} are supported")
        for r in self.relations:
            if not (0 <= r.subject < len(self.groups) and 0 <= r.object < len(self.groups)):
                raise PromptError(f"relation {r} refers to a group that does not exist")
            if r.subject == r.object:
                raise PromptError(
                    f"contradiction: {self.groups[r.subject].noun_phrase(True)} cannot be {r.relation} itself"
                )
        for r in self.relations:
            if r.relation in DEPTH_RELATIONS:
                a, b = self.groups[r.subject], self.groups[r.object]
                if a.color is not None and b.color is not None and depth_colours_clash(a.color, b.color):
                    why = "the same colour" if a.color == b.color else "colours whose seam reads as background"
                    raise PromptError(
                        f"{a.noun_phrase(True)} and {b.noun_phrase(True)} overlap in depth but have {why}, so no "
                        f"one could tell them apart; choose other colours"
                    )
        hidden_by = [0] * len(self.groups)
        for r in self.relations:
            if r.relation in DEPTH_RELATIONS:
                front, back = (r.subject, r.object) if r.relation == "in front of" else (r.object, r.subject)
                hidden_by[back] += self.groups[front].count
        for i, n in enumerate(hidden_by):
            if n > 1:
                raise PromptError(
                    f"{self.groups[i].noun_phrase(True)} would be partly hidden by {n} objects; in ShapesWorld "
                    f"one object at most stands in front of another"
                )
        axes = {"horizontal": ("left of", "right of"), "vertical": ("above", "below"), "depth": DEPTH_RELATIONS}
        for axis, (before, after) in axes.items():
            cycle = _find_cycle(
                len(self.groups),
                [
                    (r.subject, r.object) if r.relation == before else (r.object, r.subject)
                    for r in self.relations
                    if r.relation in (before, after)
                ],
            )
            if cycle:
                names = " -> ".join(self.groups[i].noun_phrase(True) for i in cycle)
                raise PromptError(f"contradiction: the {axis} relations form a cycle ({names})")
        return self

    # ------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [group_dict(g) for g in self.groups],
            "relations": [asdict(r) for r in self.relations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneGraph":
        try:
            groups = [
                ObjectGroup(g["shape"], g.get("color"), int(g.get("count", 1)), _points(g.get("points")))
                for g in data["groups"]
            ]
            relations = [
                Relation(int(r["subject"]), r["relation"], int(r["object"])) for r in data.get("relations", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(f"malformed scene graph JSON: {exc!r}") from None
        return cls(tuple(groups), tuple(relations))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SceneGraph":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptError(f"scene graph is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------- English
    def to_text(self, introductions: dict[int, str] | None = None) -> str:
        """Canonical English: GenEval's phrasing for GenEval-shaped graphs.

        Each group is introduced with an indefinite noun phrase (or `introductions[i]`) and
        referred to again with 'the'; clauses are joined with commas and a final 'and'.
        """
        mentioned: set[int] = set()
        introductions = introductions or {}

        def np(i: int) -> str:
            if i not in mentioned and i in introductions:
                phrase = introductions[i]
            else:
                phrase = self.groups[i].noun_phrase(definite=i in mentioned)
            mentioned.add(i)
            return phrase

        in_relation = {r.subject for r in self.relations} | {r.object for r in self.relations}
        clauses: list[str] = []
        for i in range(len(self.groups)):
            if i not in in_relation:
                clauses.append(np(i))
            for r in self.relations:
                if r.subject == i:
                    subject = np(r.subject)
                    clauses.append(f"{subject} {r.relation} {np(r.object)}")
        if not clauses:
            return "an empty canvas"
        if len(clauses) == 1:
            body = clauses[0]
        else:
            body = ", ".join(clauses[:-1]) + " and " + clauses[-1]
        return f"a photo of {body}"

    def mention_counts(self) -> list[int]:
        """How many times `to_text()` names each group."""
        in_relation = {r.subject for r in self.relations} | {r.object for r in self.relations}
        counts = [0 if i in in_relation else 1 for i in range(len(self.groups))]
        for r in self.relations:
            counts[r.subject] += 1
            counts[r.object] += 1
        return counts

    def mention_order(self) -> list[int]:
        """The groups in the order `to_text()` first names them."""
        order: list[int] = []
        in_relation = {r.subject for r in self.relations} | {r.object for r in self.relations}
        for i in range(len(self.groups)):
            if i not in in_relation and i not in order:
                order.append(i)
            for r in self.relations:
                if r.subject == i:
                    for j in (r.subject, r.object):
                        if j not in order:
                            order.append(j)
        return order

    def normalized(self) -> "SceneGraph":
        """The same scene with groups in order of first mention in `to_text()`.

        Two graphs describe the same scene exactly when their normalized forms are equal.
        """
        order = self.mention_order()
        new_index = {old: new for new, old in enumerate(order)}
        relations = []
        for r in self.relations:
            rel = Relation(new_index[r.subject], r.relation, new_index[r.object])
            if rel not in relations:
                relations.append(rel)
        return SceneGraph(tuple(self.groups[i] for i in order), tuple(relations))

    # ------------------------------------------------------------- GenEval
    def task_tag(self) -> str:
        """GenEval's task for a graph of that shape, or 'composite' for anything richer."""
        gs, rs = self.groups, self.relations
        coloured = [g.color is not None for g in gs]
        counts = [g.count for g in gs]
        if len(gs) == 1 and not rs:
            if counts[0] > 1 and not coloured[0]:
                return "counting"
            if counts[0] == 1:
                return "colors" if coloured[0] else "single_object"
        if len(gs) == 2 and counts == [1, 1] and gs[0].shape != gs[1].shape:
            if not rs and not any(coloured):
                return "two_object"
            if not rs and all(coloured):
                return "color_attr"
            if len(rs) == 1 and not any(coloured):
                return "position"
        return "composite"

    def to_geneval(self, tag: str | None = None) -> dict[str, Any]:
        """A GenEval metadata line. Relation targets come before their subjects.

        A group that is the subject of several relations carries a list of
        [relation, index] pairs in `position` (an extension; GenEval has one pair).
        """
        order = geneval_order(len(self.groups), self.relations)
        index = {old: new for new, old in enumerate(order)}
        positions: dict[int, list[list[Any]]] = {i: [] for i in range(len(order))}
        for r in self.relations:
            s, o = index[r.subject], index[r.object]
            rel = r.relation
            if o > s:
                s, o, rel = o, s, INVERSE_RELATION[rel]
            if [rel, o] not in positions[s]:
                positions[s].append([rel, o])
        include = []
        for new, old in enumerate(order):
            g = self.groups[old]
            entry: dict[str, Any] = {"class": g.shape, "count": g.count}
            if g.color:
                entry["color"] = g.color
            if g.points is not None:
                entry["points"] = g.points
            if len(positions[new]) == 1:
                entry["position"] = positions[new][0]
            elif positions[new]:
                entry["position"] = positions[new]
            include.append(entry)
        tag = tag or self.task_tag()
        meta: dict[str, Any] = {"tag": tag, "include": include}
        if tag == "counting":
            meta["exclude"] = [{"class": g.shape, "count": g.count + 1} for g in self.groups]
        meta["prompt"] = self.to_text()
        return meta

    @classmethod
    def from_geneval(cls, meta: dict[str, Any]) -> "SceneGraph":
        """The scene a GenEval metadata line asks for (excludes are implied by counts)."""
        groups, relations = [], []
        try:
            for i, req in enumerate(meta["include"]):
                groups.append(
                    ObjectGroup(req["class"], req.get("color"), int(req.get("count", 1)), _points(req.get("points")))
                )
                for rel, target in position_pairs(req):
                    relations.append(Relation(i, rel, int(target)))
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(f"malformed GenEval metadata line: {exc!r}") from None
        return cls(tuple(groups), tuple(relations))


def scene_key(graph: "SceneGraph") -> str:
    """The identity of a scene whatever its phrasing: its groups, and each relation stated
    both ways ("A above B" is "B below A"). Two graphs are the same scene exactly when
    their keys are equal (groups of one scene are distinct noun phrases)."""
    name = [f"{g.count}/{g.color or '-'}/{g.shape}" + (f"/{g.points}" if g.points else "") for g in graph.groups]
    relations = set()
    for r in graph.relations:
        relations.add((name[r.subject], r.relation, name[r.object]))
        inv = r.inverted()
        relations.add((name[inv.subject], inv.relation, name[inv.object]))
    return "|".join(sorted(name)) + "#" + "|".join(" ".join(t) for t in sorted(relations))


def _points(value: Any) -> int | None:
    return None if value is None else int(value)


def position_pairs(req: dict[str, Any]) -> list[tuple[str, int]]:
    """The (relation, target index) pairs of a GenEval include entry (none, one or several)."""
    pos = req.get("position")
    if not pos:
        return []
    if isinstance(pos[0], str):
        return [(pos[0], int(pos[1]))]
    return [(p[0], int(p[1])) for p in pos]


def geneval_order(n: int, relations: tuple[Relation, ...]) -> list[int]:
    """Group order with relation objects before subjects where possible (ties: mention order)."""
    remaining = list(range(n))
    order: list[int] = []
    while remaining:
        ready = [
            i
            for i in remaining
            if not any(r.subject == i and r.object in remaining and r.object != i for r in relations)
        ]
        pick = ready[0] if ready else remaining[0]
        order.append(pick)
        remaining.remove(pick)
    return order


def _find_cycle(n: int, edges: list[tuple[int, int]]) -> list[int] | None:
    """A directed cycle in the graph, as a list of nodes ending where it starts, or None."""
    adjacency: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in edges:
        adjacency[a].append(b)
    state = [0] * n  # 0 new, 1 on stack, 2 done
    stack: list[int] = []

    def visit(u: int) -> list[int] | None:
        state[u] = 1
        stack.append(u)
        for v in adjacency[u]:
            if state[v] == 1:
                return stack[stack.index(v) :] + [v]
            if state[v] == 0 and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for start in range(n):
        if state[start] == 0 and (found := visit(start)):
            return found
    return None
