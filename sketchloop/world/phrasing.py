"""Varied English for a scene graph, as people write it: every phrasing the prompt language
accepts, not only the canonical one (`SceneGraph.to_text`).

- "a photo of " or not;
- each relation in any of its phrasings ("left of", "to the left of", "on top of", "under",
  "beneath", "partly hiding", ...), and stated either way round ("a square below a circle"
  for "a circle above a square");
- a star's points as "with six points" or "six-pointed";
- clauses in any order, joined by ", ", " and " or ", and ";
- a group met again as "the red circle", or as a bare "the circle" when no other group has
  its shape; counts as words or digits.

Every text is checked by parsing it back to the same scene (`scene_key`); `phrase` never
returns one that does not.
"""

from __future__ import annotations

import numpy as np

from ..errors import PromptError
from .scene import POINT_NAMES, Relation, SceneGraph, scene_key
from .vocab import DEPTH_PHRASES, NUMBER_WORDS, RELATION_PHRASES, plural

PHRASINGS: dict[str, tuple[str, ...]] = {}
for _phrase, _relation in {**RELATION_PHRASES, **DEPTH_PHRASES}.items():
    PHRASINGS.setdefault(_relation, ())
    PHRASINGS[_relation] += (_phrase,)
JOINS = (", ", " and ", ", and ")
TRIES = 20


def phrase(
    graph: SceneGraph,
    rng: np.random.Generator,
    prefix: float = 0.5,
    synonyms: float = 0.5,
    bare: float = 0.5,
    digits: float = 0.2,
) -> str:
    """A random wording of `graph` that parses back to it: "a photo of " with probability
    `prefix`, a relation phrasing other than the canonical one with probability `synonyms`, a
    bare "the SHAPE" for a group met again (when its shape is unique) with probability `bare`, a
    count as a digit with probability `digits`. Falls back to the canonical text."""
    from .parser import parse_prompt

    key = scene_key(graph)
    for _ in range(TRIES):
        text = _wording(graph, rng, prefix, synonyms, bare, digits)
        try:
            if scene_key(parse_prompt(text)) == key:
                return text
        except PromptError:
            continue
    return graph.to_text()


def _wording(
    graph: SceneGraph, rng: np.random.Generator, prefix: float, synonyms: float, bare: float, digits: float
) -> str:
    groups = graph.groups
    shapes = [g.shape for g in groups]
    related = {r.subject for r in graph.relations} | {r.object for r in graph.relations}
    clauses: list[tuple[int, ...] | Relation] = [(i,) for i in range(len(groups)) if i not in related]
    for r in graph.relations:
        clauses.append(r.inverted() if rng.random() < 0.5 else r)
    order = rng.permutation(len(clauses))
    mentioned: set[int] = set()

    def noun_phrase(i: int) -> str:
        g = groups[i]
        if i in mentioned:
            if shapes.count(g.shape) == 1 and rng.random() < bare:
                return f"the {plural(g.shape, g.count)}"
            return g.noun_phrase(definite=True)
        mentioned.add(i)
        if g.points is not None and rng.random() < synonyms:  # "a red six-pointed star"
            pointed = f"{POINT_NAMES[g.points]}-pointed"
            words = [*([g.color] if g.color else []), pointed, plural(g.shape, g.count)]
            if g.count > 1:
                return " ".join([NUMBER_WORDS[g.count], *words])
            return " ".join(["a", *words])
        if g.count > 1 and rng.random() < digits:
            points = ["with", POINT_NAMES[g.points], "points"] if g.points else []
            return " ".join([str(g.count), *([g.color] if g.color else []), plural(g.shape, g.count), *points])
        return g.noun_phrase()

    def relation_words(relation: str) -> str:
        if rng.random() >= synonyms:
            return relation
        choices = [p for p in PHRASINGS[relation] if p != relation]
        return choices[int(rng.integers(len(choices)))] if choices else relation

    texts = []
    for k in order:
        clause = clauses[int(k)]
        if isinstance(clause, Relation):
            subject = noun_phrase(clause.subject)
            texts.append(f"{subject} {relation_words(clause.relation)} {noun_phrase(clause.object)}")
        else:
            texts.append(noun_phrase(clause[0]))
    body = texts[0]
    for t in texts[1:-1]:
        body += ", " + t
    if len(texts) > 1:
        body += JOINS[int(rng.integers(len(JOINS)))] + texts[-1]
    return ("a photo of " if rng.random() < prefix else "") + body


def reword_with_fact(graph, rng: np.random.Generator, splits: tuple[str, ...] = ("trajectory",)):
    """The scene's prompt with one group's colour, count or shape named through a fact of
    `splits` instead ("a circle the colour of a ripe banana" for "a yellow circle"), checked
    by parsing it back to the same scene; (text, fact, the group's index), or None when no group fits."""
    from .knowledge import fact_fits, facts, knowledge_noun_phrase
    from .parser import parse_prompt

    mentions = graph.mention_counts()
    options = [
        (i, fact)
        for i, g in enumerate(graph.groups)
        if mentions[i] == 1
        for fact in facts(None, splits)
        if fact_fits(fact, g.shape, g.color, g.count)
    ]
    key = scene_key(graph)
    for k in rng.permutation(len(options))[:10]:
        i, fact = options[int(k)]
        g = graph.groups[i]
        text = graph.to_text({i: knowledge_noun_phrase(g.shape, g.color, g.count, fact)})
        try:
            if scene_key(parse_prompt(text)) == key:
                return text, fact, i
        except PromptError:
            continue
    return None
