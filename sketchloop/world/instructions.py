"""Edit instructions (`<ins>` and `<refine>` texts) as structured edits on a scene.

    instruction := "add" NEW_NP [placement]
                 | "change" REF_NP "to" (COLOUR | POINT_WORD "points")
                 | "move" REF_NP placement
                 | "swap" REF_NP "and" REF_NP
                 | "remove" REF_NP
    placement   := RELATION REF_NP ("and" RELATION REF_NP)*

An `<ins>` may open with a recall clause: a fact the step draws on, stated in the words of the
knowledge base's text corpus and ended by ";" ("a ripe banana is yellow ; add a yellow circle").
It is the planner's own note (`split_recall`); the edit is the instruction after it.

NEW_NP is an indefinite noun phrase ("a red circle", "two stars", "a star with six
points"); REF_NP names a group already on the canvas ("the red circle"). Placements take
every relation of the prompt language, depth included ("move the circle in front of the
square"). A `Scene` tracks the groups drawn so far (by
id) and the relations asked of them, and `apply` carries an edit out on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import PromptError
from .parser import ALL_PHRASES, KNOWN_WORDS, POINTED, RELATION_TOKENS, tokenize
from .scene import POINT_NAMES, ObjectGroup, Relation, SceneGraph
from .vocab import (
    COLORS,
    COUNT_WORDS,
    INVERSE_RELATION,
    PLURALS,
    POINT_WORDS,
    SHAPES,
    SINGULARS,
    vocabulary_summary,
)

VERBS = ("add", "change", "move", "swap", "remove")
RECALL_END = ";"  # ends an `<ins>`'s recall clause (format.STEP_STARTS: the image expert reads from it)
_WORDS = KNOWN_WORDS | set(VERBS) | {"to"}


@dataclass
class Scene:
    """Groups on the canvas by id, and the relations between them that hold."""

    groups: dict[int, ObjectGroup] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)  # subject/object are group ids

    def graph(self) -> SceneGraph:
        """As a scene graph, groups in id order."""
        ids = sorted(self.groups)
        index = {g: k for k, g in enumerate(ids)}
        return SceneGraph(
            tuple(self.groups[g] for g in ids),
            tuple(Relation(index[r.subject], r.relation, index[r.object]) for r in self.relations),
        )

    def copy(self) -> "Scene":
        return Scene(dict(self.groups), list(self.relations))


def split_recall(text: str) -> tuple[str, str]:
    """An `<ins>` text as (its recall clause, its instruction): ("a ripe banana is yellow", "add a
    yellow circle") for "a ripe banana is yellow ; add a yellow circle"; ("", text) without one."""
    recall, sep, instruction = text.partition(RECALL_END)
    return (recall.strip(), instruction.strip()) if sep else ("", text)


def is_add(text: str) -> bool:
    """Whether an `<ins>` text adds a group (its instruction after any recall clause opens with "add")."""
    return split_recall(text)[1].startswith("add ")


def parse_instruction(text: str, scene: Scene) -> dict[str, Any]:
    """The structured edit an instruction asks for (PromptError if it cannot be read); a recall
    clause before it (`split_recall`) is not an edit and is not read."""
    text = split_recall(text)[1]
    tokens = tokenize(text)
    if not tokens:
        raise PromptError("the instruction is empty")
    for word in tokens:
        if word not in _WORDS:
            raise PromptError(
                f"unknown word {word!r} in instruction {text!r}; known: {', '.join(VERBS)}; {vocabulary_summary()}"
            )
    r = _Reader(tokens, text, scene)
    verb = r.take()
    if verb == "add":
        group = r.new_np()
        op: dict[str, Any] = {
            "op": "add",
            "group": max(scene.groups, default=-1) + 1,
            "shape": group.shape,
            "color": group.color,
            "count": group.count,
            "relations": r.placement(optional=True),
        }
        if group.points is not None:
            op["points"] = group.points
    elif verb == "change":
        gid = r.ref_np()
        r.expect("to")
        word = r.take()
        if word in POINT_WORDS and r.peek() == "points":
            r.take()
            if scene.groups[gid].shape != "star":
                raise PromptError(f"in instruction {text!r}: only stars have points")
            op = {"op": "repoint", "group": gid, "points": POINT_WORDS[word]}
        elif word in COLORS:
            op = {"op": "recolor", "group": gid, "color": word}
        else:
            raise PromptError(f"in instruction {text!r}: expected a colour or 'N points' after 'to', found {word!r}")
    elif verb == "move":
        gid = r.ref_np()
        op = {"op": "move", "group": gid, "relations": r.placement(optional=False)}
    elif verb == "swap":
        gid = r.ref_np()
        r.expect("and")
        op = {"op": "swap", "group": gid, "other": r.ref_np()}
    elif verb == "remove":
        op = {"op": "remove", "group": r.ref_np()}
    else:
        raise PromptError(f"instruction {text!r} must start with one of: {', '.join(VERBS)}")
    if r.pos != len(tokens):
        raise PromptError(f"in instruction {text!r}: unexpected '{' '.join(tokens[r.pos :])}' at the end")
    return op


def apply(scene: Scene, op: dict[str, Any]) -> Scene:
    """The scene after an edit (relations of a moved or swapped group are the new ones)."""
    new = scene.copy()
    g = op["group"]
    kind = op["op"]
    if kind == "add":
        new.groups[g] = ObjectGroup(op["shape"], op["color"], op["count"], op.get("points"))
        new.relations += [Relation(g, rel, j) for rel, j in op["relations"]]
    elif kind == "recolor":
        old = new.groups[g]
        new.groups[g] = ObjectGroup(old.shape, op["color"], old.count, old.points)
    elif kind == "repoint":
        old = new.groups[g]
        new.groups[g] = ObjectGroup(old.shape, old.color, old.count, op["points"])
    elif kind == "remove":
        del new.groups[g]
        new.relations = [r for r in new.relations if g not in (r.subject, r.object)]
    elif kind == "move":
        new.relations = [r for r in new.relations if g not in (r.subject, r.object)]
        new.relations += [Relation(g, rel, j) for rel, j in op["relations"]]
    elif kind == "swap":
        other = op["other"]
        new.relations = [
            Relation(r.subject, INVERSE_RELATION[r.relation], r.object) if {r.subject, r.object} == {g, other} else r
            for r in new.relations
        ]
    return new


class _Reader:
    def __init__(self, tokens: list[str], text: str, scene: Scene):
        self.tokens, self.text, self.scene, self.pos = tokens, text, scene, 0

    def peek(self, k: int = 0) -> str | None:
        return self.tokens[self.pos + k] if self.pos + k < len(self.tokens) else None

    def take(self) -> str:
        word = self.peek()
        if word is None:
            raise PromptError(f"instruction {self.text!r} ends too early")
        self.pos += 1
        return word

    def expect(self, word: str) -> None:
        if self.take() != word:
            raise PromptError(f"in instruction {self.text!r}: expected '{word}'")

    def _np(self) -> tuple[bool, int | None, str | None, str, bool, int | None]:
        word = self.take()
        definite, count = word == "the", None
        if word in ("a", "an"):
            count = 1
        elif word in COUNT_WORDS:
            count = COUNT_WORDS[word]
        elif word != "the":
            raise PromptError(f"in instruction {self.text!r}: expected a noun phrase, found {word!r}")
        if self.peek() in COUNT_WORDS:
            count = COUNT_WORDS[self.take()]
        color = self.take() if self.peek() in COLORS else None
        points = POINTED[self.take()] if self.peek() in POINTED else None
        noun = self.take()
        if noun in SHAPES:
            shape, is_plural = noun, False
        elif noun in SINGULARS:
            shape, is_plural = SINGULARS[noun], True
        else:
            raise PromptError(f"in instruction {self.text!r}: expected a shape, found {noun!r}")
        if self.peek() == "with" and self.peek(1) in POINT_WORDS and self.peek(2) == "points":
            points = POINT_WORDS[self.tokens[self.pos + 1]]
            self.pos += 3
        return definite, count, color, shape, is_plural, points

    def new_np(self) -> ObjectGroup:
        definite, count, color, shape, is_plural, points = self._np()
        if definite:
            raise PromptError(f"in instruction {self.text!r}: 'add' needs a new object ('a ...'), not 'the ...'")
        count = count or 1
        if (count > 1) != is_plural:
            raise PromptError(f"in instruction {self.text!r}: {count} needs '{PLURALS[shape] if count > 1 else shape}'")
        return ObjectGroup(shape, color, count, points)

    def ref_np(self) -> int:
        definite, count, color, shape, is_plural, points = self._np()
        candidates = [
            g
            for g, grp in self.scene.groups.items()
            if grp.shape == shape
            and (grp.count > 1) == is_plural
            and (color is None or grp.color == color)
            and (count is None or grp.count == count)
            and (points is None or grp.points == points)
        ]
        exact = [g for g in candidates if self.scene.groups[g].color == color]
        if len(candidates) == 1:
            return candidates[0]
        if len(exact) == 1:
            return exact[0]
        name = " ".join(w for w in [color, PLURALS[shape] if is_plural else shape] if w)
        if not candidates:
            raise PromptError(f"in instruction {self.text!r}: there is no {name} on the canvas")
        raise PromptError(f"in instruction {self.text!r}: 'the {name}' is ambiguous")

    def placement(self, optional: bool) -> list[list[Any]]:
        rels: list[list[Any]] = []
        while True:
            rel = None
            for phrase in RELATION_TOKENS:
                if tuple(self.tokens[self.pos : self.pos + len(phrase)]) == phrase:
                    self.pos += len(phrase)
                    rel = ALL_PHRASES[" ".join(phrase)]
                    break
            if rel is None:
                if rels or optional:
                    return rels
                raise PromptError(f"in instruction {self.text!r}: expected a relation such as 'left of the circle'")
            rels.append([rel, self.ref_np()])
            if self.peek() == "and":
                self.pos += 1
            else:
                return rels


__all__ = ["INVERSE_RELATION", "Scene", "apply", "parse_instruction"]


def instruction_text(op: dict[str, Any], scene: Scene) -> str:
    """The English instruction for a structured edit on `scene` (parse_instruction's inverse)."""

    def ref(g: int) -> str:
        return scene.groups[g].noun_phrase(definite=True)

    def placement(rels: list[list[Any]]) -> str:
        return "".join((" and " if k else " ") + f"{rel} {ref(j)}" for k, (rel, j) in enumerate(rels))

    kind = op["op"]
    if kind == "add":
        group = ObjectGroup(op["shape"], op["color"], op["count"], op.get("points"))
        return f"add {group.noun_phrase()}{placement(op['relations'])}"
    if kind == "recolor":
        return f"change {ref(op['group'])} to {op['color']}"
    if kind == "repoint":
        return f"change {ref(op['group'])} to {POINT_NAMES[op['points']]} points"
    if kind == "move":
        return f"move {ref(op['group'])}{placement(op['relations'])}"
    if kind == "swap":
        return f"swap {ref(op['group'])} and {ref(op['other'])}"
    if kind == "remove":
        return f"remove {ref(op['group'])}"
    raise ValueError(f"unknown edit op {kind!r}")
