"""The prompt language: English prompts to scene graphs.

    prompt      := ["a photo of"] clause (("," ["and"] | "and") clause)*
    clause      := noun_phrase [relation noun_phrase]
    relation    := "left of" | "above" | ... (vocab.RELATION_PHRASES) | "in front of" | "behind" | ...
    noun_phrase := ("a" | "an" | NUMBER) [COLOUR] [POINTED] noun [points] [colour_fact]
                 | "as many" [COLOUR] SHAPES "as" COUNT_FACT [colour_fact]
                 | "the" [NUMBER] [COLOUR] [POINTED] noun [points] [colour_fact]   (refers back)
    noun        := SHAPE | ("shape" | "shapes") "like" SHAPE_FACT
    POINTED     := "five-pointed" | "six-pointed" | ...   (stars only; also before the colour)
    points      := "with" (POINT_WORD | DIGIT) "points"   (stars only)
    colour_fact := [","] ("the colour of" | "coloured like") COLOUR_FACT   (or "color", "colored")

A noun phrase identical to an earlier one also refers back to that group. The facts
(COLOUR_FACT "a ripe banana", COUNT_FACT "a bicycle has wheels", SHAPE_FACT "a plus sign")
come from the knowledge base, world/knowledge.py; the scene holds their answers.
"""

from __future__ import annotations

import re

from ..errors import PromptError
from .knowledge import COLOUR_OPENERS, SHAPE_NOUNS, Fact, knowledge_words, match_fact, no_fact_error
from .scene import ObjectGroup, Relation, SceneGraph
from .vocab import (
    COLORS,
    COUNT_WORDS,
    DEPTH_PHRASES,
    MAX_COUNT,
    PLURALS,
    POINT_WORDS,
    RELATION_PHRASES,
    SHAPES,
    SINGULARS,
    vocabulary_summary,
)

_PREFIX = ("a", "photo", "of")
ALL_PHRASES = {**RELATION_PHRASES, **DEPTH_PHRASES}
RELATION_TOKENS = sorted((tuple(p.split()) for p in ALL_PHRASES), key=len, reverse=True)
NUMBERS = {
    **COUNT_WORDS,
    **POINT_WORDS,
}  # a star's points in words: any of them, so that one out of range gets its own error
POINTED = {f"{w}-pointed": n for w, n in NUMBERS.items()} | {f"{n}-pointed": n for n in NUMBERS.values()}
KNOWN_WORDS = (
    {"a", "an", "the", "photo", "of", "and", ","}
    | set(COUNT_WORDS)
    | set(COLORS)
    | set(SHAPES)
    | set(SINGULARS)
    | {w for phrase in ALL_PHRASES for w in phrase.split()}
    | {str(n) for n in range(1, MAX_COUNT + 1)}
    | {"with", "points"}
    | set(POINT_WORDS)
    | {str(n) for n in POINT_WORDS.values()}
    | set(POINTED)
    | knowledge_words()
)
_OPENER_WORDS = {"colour", "color", "coloured", "colored", "like", "many"}


def tokenize(prompt: str) -> list[str]:
    text = prompt.strip().lower()
    text = re.sub(r"[.!]+$", "", text)
    return re.sub(r",", " , ", text).split()


class _Parser:
    def __init__(self, prompt: str):
        self.prompt = prompt
        self.tokens = tokenize(prompt)
        self.pos = 0
        self.groups: list[ObjectGroup] = []
        self.relations: list[Relation] = []
        self.facts: list[Fact] = []
        self.fact_groups: list[int] = []  # the group each fact names an attribute of

    # ------------------------------------------------------------ helpers
    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.tokens[i] if i < len(self.tokens) else None

    def where(self) -> str:
        before = " ".join(self.tokens[: self.pos]) or "the start"
        return f"after '{before}'" if self.pos else "at the start"

    def fail(self, expected: str) -> PromptError:
        found = self.peek()
        got = f"'{found}'" if found is not None else "the end of the prompt"
        return PromptError(f"in prompt {self.prompt!r}: expected {expected} {self.where()}, found {got}")

    # ------------------------------------------------------------ grammar
    def parse(self) -> SceneGraph:
        if not self.tokens:
            raise PromptError(
                "the prompt is empty; describe a scene, e.g. 'a photo of a red circle above a blue square'"
            )
        for word in self.tokens:
            if word not in KNOWN_WORDS and not _OPENER_WORDS & set(self.tokens):  # else: the fact's error
                raise PromptError(
                    f"unknown word {word!r} in prompt {self.prompt!r}; ShapesWorld knows {vocabulary_summary()}"
                )
        if tuple(self.tokens[:3]) == _PREFIX:
            self.pos = 3
        self.clause()
        while self.peek() is not None:
            if self.peek() == ",":
                self.pos += 1
                if self.peek() == "and":
                    self.pos += 1
            elif self.peek() == "and":
                self.pos += 1
            else:
                raise self.fail("',' or 'and' between clauses")
            self.clause()
        graph = SceneGraph(tuple(self.groups), tuple(self.relations))
        return graph.validate()

    def clause(self) -> None:
        subject = self.noun_phrase()
        relation = self.relation()
        if relation is None:
            return
        obj = self.noun_phrase()
        rel = Relation(subject, relation, obj)
        if rel not in self.relations:
            self.relations.append(rel)

    def relation(self) -> str | None:
        for phrase in RELATION_TOKENS:
            if tuple(self.tokens[self.pos : self.pos + len(phrase)]) == phrase:
                self.pos += len(phrase)
                return ALL_PHRASES[" ".join(phrase)]
        return None

    def noun_phrase(self) -> int:
        known = len(self.facts)
        index = self._noun_phrase()
        self.fact_groups += [index] * (len(self.facts) - known)
        return index

    def _noun_phrase(self) -> int:
        word = self.peek()
        definite = word == "the"
        count: int | None = None
        if word == "as" and self.peek(1) == "many":
            return self.as_many()
        if word in ("a", "an"):
            count = 1
            self.pos += 1
        elif word == "the":
            self.pos += 1
        elif word is not None and (word in COUNT_WORDS or word.isdigit()):
            pass
        else:
            raise self.fail("a noun phrase such as 'a red circle', 'two stars' or 'the square'")
        word = self.peek()
        if word is not None and (word in COUNT_WORDS or word.isdigit()):
            count = COUNT_WORDS.get(word) or int(word)
            self.pos += 1
        points = self.pointed()
        color = self.colour_word()
        points = self.pointed(points)
        noun = self.peek()
        if noun in SHAPES:
            shape, is_plural = noun, False
        elif noun in SINGULARS:
            shape, is_plural = SINGULARS[noun], True
        elif noun in SHAPE_NOUNS and self.peek(1) == "like":
            shape, is_plural = "", noun == "shapes"
        else:
            raise self.fail(f"a shape ({', '.join(SHAPES)})")
        if count is not None and (count > 1) != is_plural:
            right = (PLURALS[shape] if count > 1 else shape) if shape else SHAPE_NOUNS[count > 1]
            raise PromptError(f"in prompt {self.prompt!r}: {count} needs '{right}', not '{noun}'")
        self.pos += 1
        if not shape:
            self.pos += 1  # "like"
            shape = str(self.fact("shape").value)
        points = self.with_points(points)
        if points is not None and shape != "star":
            raise PromptError(f"in prompt {self.prompt!r}: only stars have points, not the {noun}")
        color = self.colour_fact(color)
        return self.finish(definite, shape, color, count, is_plural, points)

    def pointed(self, points: int | None = None) -> int | None:
        """An optional 'six-pointed' at the current word (`points`: one read already)."""
        word = self.peek()
        if word in POINTED:
            if points is not None:
                raise self.fail("one number of points")
            self.pos += 1
            return POINTED[word]
        return points

    def with_points(self, points: int | None) -> int | None:
        """An optional 'with six points' after a noun."""
        if self.peek() != "with":
            return points
        number = self.peek(1)
        if points is not None:
            raise self.fail("one number of points")
        if self.peek(2) != "points" or not (number in NUMBERS or (number or "").isdigit()):
            self.pos += 1
            raise self.fail("a number of points and 'points', e.g. 'with six points'")
        self.pos += 3
        return NUMBERS.get(str(number)) or int(str(number))

    def as_many(self) -> int:
        """'as many [COLOUR] SHAPES as COUNT_FACT [colour_fact]': a group counted by a fact."""
        self.pos += 2
        color = self.colour_word()
        noun = self.peek()
        if noun not in SINGULARS:
            raise self.fail(f"a plural shape ({', '.join(PLURALS.values())})")
        self.pos += 1
        if self.peek() != "as":
            raise self.fail("'as' and a thing to count, e.g. 'as many stars as a bicycle has wheels'")
        self.pos += 1
        count = int(self.fact("count").value)
        color = self.colour_fact(color)
        return self.finish(False, SINGULARS[noun], color, count, True, None)

    def colour_word(self) -> str | None:
        """An optional colour name at the current word."""
        word = self.peek()
        if word in COLORS:
            self.pos += 1
            return word
        return None

    def fact(self, kind: str) -> Fact:
        found = match_fact(self.tokens, self.pos, kind)
        if found is None:
            raise no_fact_error(self.prompt, kind, self.tokens, self.pos)
        self.pos += found[1]
        self.facts.append(found[0])
        return found[0]

    def colour_fact(self, color: str | None) -> str | None:
        """An optional '[,] the colour of COLOUR_FACT' after a noun; the colour it names."""
        start = self.pos + (1 if self.peek() == "," else 0)
        for opener in COLOUR_OPENERS:
            if tuple(self.tokens[start : start + len(opener)]) == opener:
                self.pos = start + len(opener)
                named = str(self.fact("colour").value)
                if color is not None and color != named:
                    raise PromptError(
                        f"in prompt {self.prompt!r}: one group is both {color} and {named} "
                        f"({self.facts[-1].statement}); name one colour"
                    )
                return named
        return color

    def finish(
        self, definite: bool, shape: str, color: str | None, count: int | None, is_plural: bool, points: int | None
    ) -> int:
        if definite:
            return self.refer(shape, color, count, is_plural, points)
        group = ObjectGroup(shape, color, count if count is not None else 1, points)
        if group in self.groups:
            return self.groups.index(group)
        self.groups.append(group)
        return len(self.groups) - 1

    def refer(self, shape: str, color: str | None, count: int | None, is_plural: bool, points: int | None) -> int:
        """Resolve 'the ...' to the earlier group it names."""
        phrase = " ".join(
            t
            for t in [
                "the",
                str(count) if count else "",
                color or "",
                PLURALS[shape] if is_plural else shape,
                f"with {points} points" if points else "",
            ]
            if t
        )
        candidates = [
            i
            for i, g in enumerate(self.groups)
            if g.shape == shape
            and (g.count > 1) == is_plural
            and (count is None or g.count == count)
            and (color is None or g.color == color)
            and (points is None or g.points == points)
        ]
        exact = [i for i in candidates if self.groups[i].color == color]
        if len(candidates) == 1:
            return candidates[0]
        if len(exact) == 1:
            return exact[0]
        if not candidates:
            raise PromptError(
                f"in prompt {self.prompt!r}: '{phrase}' refers to no earlier object; "
                f"introduce it first, e.g. '{'two' if is_plural else 'a'} {PLURALS[shape] if is_plural else shape}'"
            )
        raise PromptError(f"in prompt {self.prompt!r}: '{phrase}' is ambiguous; name its colour")


def parse_prompt(prompt: str) -> SceneGraph:
    """Parse an English prompt into a validated scene graph (PromptError on bad input)."""
    return _Parser(prompt).parse()


def prompt_facts(prompt: str) -> list[Fact]:
    """The knowledge-base facts a prompt uses (world/knowledge.py), in order; PromptError on bad input."""
    return [fact for fact, _ in parse_with_facts(prompt)[1]]


def parse_with_facts(prompt: str) -> tuple[SceneGraph, list[tuple[Fact, ObjectGroup]]]:
    """`parse_prompt`'s scene graph, and each fact the prompt uses with the group (plain
    attributes) it helps name."""
    parser = _Parser(prompt)
    graph = parser.parse()
    return graph, [(fact, graph.groups[i]) for fact, i in zip(parser.facts, parser.fact_groups)]
