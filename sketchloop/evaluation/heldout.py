"""Held-out evaluation for ShapesWorld: benchmarks no data build may contain.

- `shapes-complex` (300 prompts, tag `complex`): 3-5 groups, 2-4 relations (chains and
  several relations to one anchor), every object coloured, some counted.
- `shapes-complex-val` (300 prompts, other scenes of the same kind): the validation set
  every tuning choice is made on, so that `shapes-complex` stays a test.
- `shapes-generalise` (150 prompts, tag `generalise`): 2-4 groups with relations, each
  scene holding at least one of `HELDOUT_PAIRS`, colour-shape pairs that no training
  scene contains anywhere (systematic generalisation: seen words, unseen combinations).
- `shapes-trees` (300 prompts, tag `trees`) and `shapes-trees-val` (300): 4-5 coloured
  groups related in a tree (chains and several relations to one anchor), many counted,
  each worded in a random phrasing the parser accepts (world/phrasing.py).
- `shapes-phrasing` (200 prompts, tag `phrasing`) and `shapes-phrasing-val` (100): 2-4
  related groups worded as people write: relation synonyms, relations stated either way
  round, bare back-references ("the square" for the one square), "a photo of" or not.
- `shapes-wise` (300 prompts) and `shapes-wise-val` (100): 1-3 groups, one of them named
  through a fact of the knowledge base (world/knowledge.py) instead of its colour, count or
  shape ("a circle the colour of a ripe banana"). Tag `wise-SPLIT` says which facts: seen in
  trajectories (`wise-trajectory`, 40%), only in the text corpus (`wise-text`, 40%), or in no
  data at all (`wise-heldout`, 20%, for a chat planner); `category` says which attribute.
- `shapes-depth` (300 prompts, tag `depth`) and `shapes-depth-val` (100): 2-4 groups, at
  least one pair in depth ("a red circle in front of a blue square", "partly hiding",
  "partly behind"), mixed with the planar relations, colours and counts, in varied wording.
- `shapes-parts` (300 prompts, tag `parts`) and `shapes-parts-val` (100): 1-4 groups, at
  least one a star with a number of points ("a red star with seven points left of a blue
  six-pointed star"), bound inside compositions with colours, counts and relations.
- `shapes-counting-val` (100 prompts, tag `counting`): the validation split for counting, in
  GenEval's wording ("a photo of three red circles", "a photo of two stars and four
  crosses"): 60 single counted groups with a colour and 40 pairs of counted groups. GenEval's
  own counting prompts (`shapes-geneval`, uncoloured single groups) are only 18 scenes, all
  of them in the test, so the split counts groups of other scenes.
- `shapes-counted-val` (200 prompts, tag `counted`): counted groups inside compositions, in
  GenEval's wording ("a photo of three circles left of a red square and a blue star above
  the circles"): three groups related in a tree, the first counted (two to four) and the
  others now and then, any group uncoloured with probability 0.4 (GenEval's counting prompts
  name no colour). It sees what `shapes-counting-val` and `shapes-complex-val` do not: the
  objects of a counted group kept apart beside other groups, and uncoloured counted groups.

Data builds reject a ShapesWorld scene whose `scene_key` is any shipped benchmark's
(`shapes-geneval` and all of the above) or that holds a held-out pair (`data_allows`).
Regenerate the files with `python scripts/make_heldout_benchmarks.py` (fixed seeds).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np

from ..world.scene import ObjectGroup, Relation, SceneGraph, scene_key
from ..world.vocab import COLORS, DEPTH_RELATIONS, RELATIONS, SHAPES, STAR_POINTS

HELDOUT_PAIRS = frozenset(
    {
        ("red", "star"),
        ("blue", "cross"),
        ("green", "triangle"),
        ("yellow", "circle"),
        ("purple", "square"),
        ("white", "diamond"),
    }
)
SHAPES_WORLD_BENCHMARKS = (
    "shapes-geneval",
    "shapes-complex",
    "shapes-complex-val",
    "shapes-generalise",
    "shapes-trees",
    "shapes-trees-val",
    "shapes-phrasing",
    "shapes-phrasing-val",
    "shapes-wise",
    "shapes-wise-val",
    "shapes-depth",
    "shapes-depth-val",
    "shapes-parts",
    "shapes-parts-val",
    "shapes-counting-val",
    "shapes-counted-val",
)


def holds_heldout_pair(graph: SceneGraph) -> bool:
    return any((g.color, g.shape) in HELDOUT_PAIRS for g in graph.groups)


@lru_cache(maxsize=1)
def heldout_keys() -> frozenset[str]:
    """The scene keys of every shipped ShapesWorld benchmark prompt."""
    from ..world.parser import parse_prompt
    from .benchmark import load_benchmark

    return frozenset(
        scene_key(parse_prompt(m["prompt"])) for name in SHAPES_WORLD_BENCHMARKS for m in load_benchmark(name)
    )


def _pair_pattern():
    import re

    from ..world.vocab import PLURALS

    words = "|".join(f"{c} (?:{s}|{PLURALS[s]})" for c, s in sorted(HELDOUT_PAIRS))
    return re.compile(rf"\b(?:{words})\b")


PAIR_PATTERN = _pair_pattern()


def row_allows(row: dict[str, Any]) -> bool:
    """Whether a dataset row may be kept: its scene is allowed, no text of it (a
    distractor, a wrong colour, a critique) names a held-out colour-shape pair, and its
    prompt uses only facts of the trajectory split (facts rows: no held-out fact)."""
    from ..errors import PromptError
    from ..world.knowledge import facts
    from ..world.parser import prompt_facts

    if not row["scene"]:  # a facts row
        allowed = {f.statement for f in facts(None, ("trajectory", "text"))}
        return json.loads(row["meta"]).get("fact") in allowed
    try:
        used = prompt_facts(row["prompt"])
    except PromptError:  # a canonical text that reads two groups alike: it names no fact
        used = []
    if any(f.split != "trajectory" for f in used):
        return False
    return (
        data_allows(SceneGraph.from_json(row["scene"]))
        and not any(PAIR_PATTERN.search(step["text"]) for step in row["steps"])
        and not PAIR_PATTERN.search(row["prompt"])
    )


def data_allows(graph: SceneGraph) -> bool:
    """Whether a data build may use this scene: not a benchmark's, no held-out pair."""
    return not holds_heldout_pair(graph) and scene_key(graph) not in heldout_keys()


def _group(rng: np.random.Generator, used: set[str], heldout: bool | None, count_prob: float) -> ObjectGroup:
    """A coloured group of an unused shape; `heldout` True: a held-out pair, False: never one."""
    while True:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        if shape in used:
            continue
        if heldout:
            colours = [c for c in COLORS if (c, shape) in HELDOUT_PAIRS]
            if not colours:
                continue
            colour = colours[0]
        else:
            colour = COLORS[int(rng.integers(len(COLORS)))]
            if heldout is False and (colour, shape) in HELDOUT_PAIRS:
                continue
        count = int(rng.integers(2, 4)) if rng.random() < count_prob else 1
        return ObjectGroup(shape, colour, count)


def _relations(rng: np.random.Generator, n: int, n_relations: int) -> list[Relation]:
    """A tree (each group after the first related to an earlier one; several to the first,
    or chains), plus extra relations up to `n_relations` when they are consistent."""
    relations = []
    for i in range(1, n):
        j = 0 if rng.random() < 0.5 else int(rng.integers(0, i))
        relations.append(Relation(i, RELATIONS[int(rng.integers(len(RELATIONS)))], j))
    while len(relations) < n_relations:
        i, j = (int(v) for v in rng.choice(n, 2, replace=False))
        candidate = Relation(max(i, j), RELATIONS[int(rng.integers(len(RELATIONS)))], min(i, j))
        if all({r.subject, r.object} != {candidate.subject, candidate.object} for r in relations):
            relations.append(candidate)
    return relations


def _in_random_order(rng: np.random.Generator, groups: list[ObjectGroup], n_relations: int) -> SceneGraph:
    """`groups` in a random order, related as `_relations` draws for them in the order given: the
    first group drawn is not always the anchor."""
    order = [int(i) for i in rng.permutation(len(groups))]
    return SceneGraph(
        tuple(groups[i] for i in order),
        tuple(
            Relation(order.index(r.subject), r.relation, order.index(r.object))
            for r in _relations(rng, len(groups), n_relations)
        ),
    )


def _unworded_line(graph: SceneGraph, tag: str, taken: set[str]) -> dict[str, Any] | None:
    """The benchmark line of `graph` in its canonical text (it joins `taken`), or None when it is
    taken, holds too many objects, or cannot be drawn for every seed."""
    from ..world.scene import MAX_OBJECTS

    key = scene_key(graph)
    if graph.n_objects > MAX_OBJECTS or key in taken or not _drawable(graph):
        return None
    taken.add(key)
    return graph.to_geneval(tag)


def _drawable(graph: SceneGraph) -> bool:
    """Valid and laid out for any seed, not just by luck: the oracle must score 1.0."""
    from ..errors import LayoutError, PromptError
    from ..world.layout import sample_layout

    try:
        graph.validate()
        for seed in range(8):
            sample_layout(graph, seed)
    except (PromptError, LayoutError):
        return False
    return True


def _make(
    rng: np.random.Generator,
    n: int,
    tag: str,
    groups: tuple[int, int],
    relations: tuple[int, int],
    heldout: bool,
    taken: set[str],
    count_prob: float = 0.2,
    worded: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """`n` benchmark lines of scenes not in `taken` (which grows); `worded`: each prompt in a
    random phrasing with these `world.phrasing.phrase` probabilities (else the canonical text)."""
    from ..world.scene import MAX_OBJECTS

    lines: list[dict[str, Any]] = []
    while len(lines) < n:
        k = int(rng.integers(groups[0], groups[1] + 1))
        used: set[str] = set()
        gs = []
        for i in range(k):
            g = _group(rng, used, True if heldout and i == 0 else (None if heldout else False), count_prob)
            used.add(g.shape)
            gs.append(g)
        if sum(g.count for g in gs) > MAX_OBJECTS:
            continue
        n_rel = min(int(rng.integers(relations[0], relations[1] + 1)), k * (k - 1) // 2)
        graph = _in_random_order(rng, gs, n_rel)  # the held-out group is not always the anchor
        if not _drawable(graph):
            continue
        key = scene_key(graph)
        if key in taken:
            continue
        line = graph.to_geneval(tag)
        if worded is not None:
            from ..world.parser import parse_prompt
            from ..world.phrasing import phrase

            line["prompt"] = phrase(graph, rng, **worded)
            if not _drawable(parse_prompt(line["prompt"])):  # the wording orders the groups its own way
                continue
        taken.add(key)
        lines.append(line)
    return lines


# how `shapes-phrasing` and `shapes-trees` are worded (counts as words: the model has no digit tokens)
PEOPLE = {"prefix": 0.5, "synonyms": 0.7, "bare": 0.7, "digits": 0.0}
TREES = {"prefix": 0.5, "synonyms": 0.5, "bare": 0.5, "digits": 0.0}


def make_heldout_benchmarks(seed: int = 2605) -> dict[str, list[dict[str, Any]]]:
    """The held-out benchmarks, disjoint from each other and from shapes-geneval (see the
    module docstring). Later benchmarks draw from random streams of their own, so adding one
    never changes the earlier ones."""
    from ..world.parser import parse_prompt
    from .benchmark import load_benchmark

    taken = {scene_key(parse_prompt(m["prompt"])) for m in load_benchmark("shapes-geneval")}
    rng = np.random.default_rng(seed)
    sets = {
        "shapes-complex": _make(rng, 300, "complex", (3, 5), (2, 4), False, taken),
        "shapes-complex-val": _make(rng, 100, "complex", (3, 5), (2, 4), False, taken),
        "shapes-generalise": _make(rng, 150, "generalise", (2, 4), (1, 3), True, taken),
        **_trees_and_phrasing(seed, taken),
        **_wise(seed, taken),
        **_depth_and_parts(seed, taken),
        "shapes-counting-val": _counting(seed, taken),
        "shapes-counted-val": _counted(seed, taken),
    }
    for name, more in _more_validation(seed, taken).items():
        sets[name] = sets[name] + more
    return sets


def _more_validation(seed: int, taken: set[str], n: int = 200) -> dict[str, list[dict[str, Any]]]:
    """`n` more prompts for the validation splits of long compositions, drawn as their first 100
    were, each from a stream of its own (a split's first 100 prompts stay what they were): 100
    prompts could not tell checkpoints apart that differ by less than about 0.05. The splits of
    shorter scenes stay at 100: their scene space is small enough that the shipped recipe's
    builds, made before these prompts were held out, hold some of any new ones (of 200 new
    `shapes-depth-val` scenes, 27 were in 37K rows of such builds; of the long ones, none)."""
    complex_, trees = (np.random.default_rng([seed, 8, i]) for i in range(2))
    return {
        "shapes-complex-val": _make(complex_, n, "complex", (3, 5), (2, 4), False, taken),
        "shapes-trees-val": _make(trees, n, "trees", (4, 5), (0, 0), False, taken, 0.4, TREES),
    }


def _trees_and_phrasing(seed: int, taken: set[str]) -> dict[str, list[dict[str, Any]]]:
    trees = np.random.default_rng([seed, 1])
    people = np.random.default_rng([seed, 2])
    return {
        # relations (0, 0): the tree's own k - 1 relations and no more
        "shapes-trees": _make(trees, 300, "trees", (4, 5), (0, 0), False, taken, 0.4, TREES),
        "shapes-trees-val": _make(trees, 100, "trees", (4, 5), (0, 0), False, taken, 0.4, TREES),
        "shapes-phrasing": _make(people, 200, "phrasing", (2, 4), (1, 3), False, taken, 0.3, PEOPLE),
        "shapes-phrasing-val": _make(people, 100, "phrasing", (2, 4), (1, 3), False, taken, 0.3, PEOPLE),
    }


WISE_SPLITS = {"trajectory": 0.4, "text": 0.4, "heldout": 0.2}
WISE_KINDS = {"colour": 0.5, "count": 0.25, "shape": 0.25}


def _wise_line(rng: np.random.Generator, split: str, taken: set[str]) -> dict[str, Any] | None:
    """One `shapes-wise` line whose fact is of `split`, or None when this draw does not fit."""
    from ..format import scene_text
    from ..world.knowledge import facts, knowledge_noun_phrase
    from ..world.parser import parse_with_facts
    from ..world.scene import MAX_OBJECTS

    kind = str(rng.choice(list(WISE_KINDS), p=list(WISE_KINDS.values())))
    pool = facts(kind, (split,))
    fact = pool[int(rng.integers(len(pool)))]
    shape = fact.answer if kind == "shape" else SHAPES[int(rng.integers(len(SHAPES)))]
    color = (
        fact.answer if kind == "colour" else (COLORS[int(rng.integers(len(COLORS)))] if rng.random() < 0.5 else None)
    )
    count = int(fact.answer) if kind == "count" else (1 if rng.random() < 0.75 else int(rng.integers(2, 4)))
    target = ObjectGroup(shape, color, count)
    if (color, shape) in HELDOUT_PAIRS:
        return None
    k = 1 + int(rng.choice(3, p=[0.4, 0.4, 0.2]))
    used = {shape}
    others = []
    for _ in range(k - 1):
        g = _group(rng, used, False, 0.2)
        used.add(g.shape)
        others.append(g)
    if target.count + sum(g.count for g in others) > MAX_OBJECTS:
        return None
    at = int(rng.integers(k))
    groups = others[:at] + [target] + others[at:]
    relations: list[Relation] = []
    for i in range(1, k):  # a chain or star of relations in which the target takes part once at most
        if rng.random() < 0.7:
            j = int(rng.integers(0, i))
            if at in (i, j) and any(at in (r.subject, r.object) for r in relations):
                continue
            relations.append(Relation(i, RELATIONS[int(rng.integers(len(RELATIONS)))], j))
    graph = SceneGraph(tuple(groups), tuple(relations))
    if graph.mention_counts()[at] != 1 or not _drawable(graph):
        return None
    key = scene_key(graph)
    if key in taken:
        return None
    text = graph.to_text({at: knowledge_noun_phrase(shape, color, count, fact)})
    if rng.random() < 0.3:
        text = scene_text(text)
    parsed, named = parse_with_facts(text)
    if scene_key(parsed) != key or [f for f, _ in named] != [fact]:
        return None
    taken.add(key)
    line = graph.to_geneval(f"wise-{split}")
    line["prompt"] = text
    line["category"] = kind
    line["fact"] = fact.statement
    return line


def _wise_set(rng: np.random.Generator, n: int, taken: set[str]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for split, share in WISE_SPLITS.items():
        want = len(lines) + round(n * share)
        while len(lines) < want:
            line = _wise_line(rng, split, taken)
            if line is not None:
                lines.append(line)
    return lines


def _wise(seed: int, taken: set[str]) -> dict[str, list[dict[str, Any]]]:
    """`shapes-wise` and its validation split, on scenes of their own."""
    rng = np.random.default_rng([seed, 3])
    return {"shapes-wise": _wise_set(rng, 300, taken), "shapes-wise-val": _wise_set(rng, 100, taken)}


DEPTH_WORDING = {"prefix": 0.5, "synonyms": 0.5, "bare": 0.5, "digits": 0.0}


def _depth_line(rng: np.random.Generator, taken: set[str]) -> dict[str, Any] | None:
    """One `shapes-depth` line: 2-4 groups related in a tree, each relation in depth with
    probability 1/2 (at least one), or None when this draw does not fit."""
    k = int(rng.integers(2, 5))
    used: set[str] = set()
    groups = []
    for _ in range(k):
        g = _group(rng, used, False, 0.25)
        if rng.random() < 0.15:  # now and then a group of any colour
            g = ObjectGroup(g.shape, None, g.count)
        used.add(g.shape)
        groups.append(g)
    relations = []
    for i in range(1, k):
        j = 0 if rng.random() < 0.5 else int(rng.integers(0, i))
        pool = DEPTH_RELATIONS if rng.random() < 0.5 else RELATIONS
        relations.append(Relation(i, pool[int(rng.integers(len(pool)))], j))
    if not any(r.relation in DEPTH_RELATIONS for r in relations):
        r = relations[int(rng.integers(len(relations)))]
        relations[relations.index(r)] = Relation(r.subject, DEPTH_RELATIONS[int(rng.integers(2))], r.object)
    return _worded_line(rng, SceneGraph(tuple(groups), tuple(relations)), "depth", taken)


def _parts_line(rng: np.random.Generator, taken: set[str]) -> dict[str, Any] | None:
    """One `shapes-parts` line: 1-4 groups, one to three of them stars with a number of points
    (stars of one scene differ in colour or points), related in a tree."""
    k = int(rng.integers(1, 5))
    n_stars = min(k, int(rng.integers(1, 4)))
    groups: list[ObjectGroup] = []
    for _ in range(n_stars):
        colour = COLORS[int(rng.integers(len(COLORS)))]
        count = int(rng.integers(2, 4)) if rng.random() < 0.2 else 1
        groups.append(ObjectGroup("star", colour, count, STAR_POINTS[int(rng.integers(len(STAR_POINTS)))]))
    used = {"star"}
    while len(groups) < k:
        g = _group(rng, used, False, 0.2)
        used.add(g.shape)
        groups.append(g)
    if (
        len({(g.color, g.points) for g in groups[:n_stars]}) < n_stars
        or len({g.color for g in groups[:n_stars]}) < n_stars
    ):
        return None  # one colour per star group keeps 'the red star' unambiguous
    order = [int(i) for i in rng.permutation(k)]
    groups = [groups[i] for i in order]
    relations = [
        Relation(i, RELATIONS[int(rng.integers(len(RELATIONS)))], 0 if rng.random() < 0.5 else int(rng.integers(0, i)))
        for i in range(1, k)
        if rng.random() < 0.85
    ]
    return _worded_line(rng, SceneGraph(tuple(groups), tuple(relations)), "parts", taken)


def _worded_line(rng: np.random.Generator, graph: SceneGraph, tag: str, taken: set[str]) -> dict[str, Any] | None:
    """The benchmark line of `graph` in a random wording, or None when it is taken, holds a
    held-out pair, or cannot be drawn for every seed."""
    from ..world.parser import parse_prompt
    from ..world.phrasing import phrase
    from ..world.scene import MAX_OBJECTS

    if graph.n_objects > MAX_OBJECTS or holds_heldout_pair(graph) or not _drawable(graph):
        return None
    key = scene_key(graph)
    if key in taken:
        return None
    line = graph.to_geneval(tag)
    line["prompt"] = phrase(graph, rng, **DEPTH_WORDING)
    if not _drawable(parse_prompt(line["prompt"])):
        return None
    taken.add(key)
    return line


def _depth_and_parts(seed: int, taken: set[str]) -> dict[str, list[dict[str, Any]]]:
    """`shapes-depth`, `shapes-parts` and their validation splits, each from a stream of its own."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, make, stream in (("shapes-depth", _depth_line, 4), ("shapes-parts", _parts_line, 5)):
        rng = np.random.default_rng([seed, stream])
        for split, n in ((name, 300), (f"{name}-val", 100)):
            lines: list[dict[str, Any]] = []
            while len(lines) < n:
                line = make(rng, taken)
                if line is not None:
                    lines.append(line)
            out[split] = lines
    return out


def _counting(seed: int, taken: set[str], singles: int = 60, pairs: int = 40) -> list[dict[str, Any]]:
    """`shapes-counting-val`: `singles` coloured groups of two to four objects and `pairs` of
    such groups (colour or not), each scene once, in GenEval's counting wording."""
    from ..world.vocab import MAX_COUNT

    rng = np.random.default_rng([seed, 6])
    lines: list[dict[str, Any]] = []
    while len(lines) < singles + pairs:
        k = 1 if len(lines) < singles else 2
        used: set[str] = set()
        groups = []
        for _ in range(k):
            g = _group(rng, used, False, 0.0)
            colour = None if k == 2 and rng.random() < 0.4 else g.color
            g = ObjectGroup(g.shape, colour, int(rng.integers(2, MAX_COUNT + 1)))
            used.add(g.shape)
            groups.append(g)
        line = _unworded_line(SceneGraph(tuple(groups)), "counting", taken)
        if line is not None:
            lines.append(line)
    return lines


def _counted(seed: int, taken: set[str], n: int = 200) -> list[dict[str, Any]]:
    """`shapes-counted-val`: 3 groups related in a tree, the first counted (two to four), the
    others counted with probability 0.3; each group uncoloured with probability 0.4."""
    from ..world.vocab import MAX_COUNT

    rng = np.random.default_rng([seed, 7])
    lines: list[dict[str, Any]] = []
    while len(lines) < n:
        used: set[str] = set()
        groups = []
        for i in range(3):  # two-group scenes are few enough that the shipped recipe's builds hold some
            g = _group(rng, used, False, 0.0)
            count = int(rng.integers(2, MAX_COUNT + 1)) if i == 0 or rng.random() < 0.3 else 1
            groups.append(ObjectGroup(g.shape, None if rng.random() < 0.4 else g.color, count))
            used.add(g.shape)
        line = _unworded_line(_in_random_order(rng, groups, 0), "counted", taken)  # the counted group not always first
        if line is not None:
            lines.append(line)
    return lines
