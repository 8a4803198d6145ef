"""Grammars for token sampling: which token may come next, as a mask.

RegionGrammar: while the model writes the regions of an image step
(`<img> x3 y12 s8 x10 y4 s6 </img>`).

Regions come as (x, y, s) triples on the layout lattice, at most `max_regions`, then
`</img>`. With `separate` (the default at inference), a new region must keep
`REGION_GAP` from the regions already written in this step: objects never overlap in the
training data, and a region drawn over another would paint one object over the other.
An `add` of N objects (the model's own `<ins>`, "add three stars ...") writes exactly N
regions while they fit. `occupied` regions (where earlier steps drew, for an `add`) are kept
`OCCUPIED_GAP` clear too (the training layouts keep 0.05 between objects; two touching boxes
draw touching objects, which the detector reads as one), and sizes below `min_size` are left out
(see below for when nothing is left free). Every region's box lies inside the canvas (`EDGE`;
beyond it the edge cuts the object, and the detector misses it or misreads its shape).
`relations` ((relation, region) pairs: "left of" the region where the model drew the object
its `<ins>` relates the new one to) keep every new region where the relation holds by the
world's geometry (world/layout.py `relation_mask`, the rule the training layouts follow),
while some region fits. `rest` (every object of the prompt still to come, with its count, its
relations to the new one, to each other and to drawn regions) keeps every new region where
all of them would still find a spot together (`_completable`: shown by placing them), while
some region does. `Placement` reads both from the model's own `<ins>`, its earlier steps and
the prompt's words. Where no region meets every rule, they give way in a fixed order
(`_options`): the look-ahead, the region's own size, the relations, the earlier regions.

PhraseGrammar: while the planner writes `<ins>` and `<des>`: its noun phrases and relations
are copied from the prompt's words (the model still chooses which and in what order).
Measured on shapes-complex-val: the last `<des>` equals the prompt's scene in 0.98 of
trajectories with it, 0.37 without (README, "The unified model").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..world.layout import GRID, relation_mask
from ..world.vocab import COLORS, COUNT_WORDS, INVERSE_RELATION, PLURALS, RELATION_PHRASES, SHAPES, SINGULARS, plural
from .regions import REGION_GAP, REGION_WORDS, SIZE_TOKENS, Region, parse_regions, spaced
from .tokenizer import WordTokenizer

MAX_REGIONS = 8
OCCUPIED_GAP = REGION_GAP  # the least gap between an `add`'s region and the regions earlier steps drew
EDGE = 0.0  # the least distance of a region's box from the canvas's edges (1/32, the training
           # regions' margin, measured worse on shapes-complex-val: 0.598 against 0.638 for no rule;
           # 0.0, the box inside the canvas: 0.653)


class RegionGrammar:
    """`allowed(out)`: the token ids that may follow `out`, the region tokens written so far."""

    def __init__(self, tokenizer: WordTokenizer, separate: bool = True, max_regions: int = MAX_REGIONS,
                 min_size: int = SIZE_TOKENS[0]):
        t = tokenizer.token_id
        self.tok, self.separate, self.max_regions, self.min_size = tokenizer, separate, max_regions, min_size
        self.x = [t(w) for w in REGION_WORDS if w[0] == "x"]
        self.y = [t(w) for w in REGION_WORDS if w[0] == "y"]
        self.s = [t(f"s{i}") for i in SIZE_TOKENS]
        self.end = t("</img>")

    @property
    def max_tokens(self) -> int:
        return 3 * self.max_regions + 1

    def allowed(self, out: list[int], occupied: tuple[Region, ...] = (), min_size: int | None = None,
                count: int | None = None, relations: tuple[tuple[str, Region], ...] = (),
                rest: Rest | None = None) -> list[int]:
        """`count`: the step paints exactly that many regions (while they fit). A step paints at
        least one (every image step of the training data changes some region; an empty one
        would leave the sketcher to place the step's objects where the plan does not say)."""
        k = len(out) % 3
        if k == 0 and len(out) >= 3 * (self.max_regions if count is None else min(count, self.max_regions)):
            return [self.end]
        placed = tuple(parse_regions(self.tok.decode(out[: len(out) - k]))) if self.separate else ()
        ok = _options(placed, tuple(occupied), self.min_size if min_size is None else min_size,
                      tuple(relations), rest)
        if k == 0:
            starts = [x for gx, x in enumerate(self.x) if ok[gx].any()]
            return (starts or [self.end]) if count is not None or not out else starts + [self.end]
        gx = self.x.index(out[-k])
        if k == 1:
            return [y for gy, y in enumerate(self.y) if ok[gx, gy].any()]
        gy = self.y.index(out[-1])
        return [s for i, s in enumerate(self.s) if ok[gx, gy, i]]


@lru_cache(maxsize=256)
def _options(placed: tuple[Region, ...], occupied: tuple[Region, ...], min_size: int,
             relations: tuple[tuple[str, Region], ...], rest: Rest | None) -> np.ndarray:
    """[gx, gy, size index]: where the next region may go. Inside the canvas, `REGION_GAP` clear
    of the step's `placed` regions and `OCCUPIED_GAP` of `occupied`, at least `min_size`, where
    `relations` hold and every object of `rest` still finds a spot of `min_size`; while no
    region does, the rules give way in turn: the look-ahead is dropped, then the region may be
    smaller (relations kept), then the relations are dropped, then earlier steps' regions may
    be overlapped."""
    sizes = _lattice()[1]
    apart, kept_clear = _spaced(REGION_GAP), _spaced(OCCUPIED_GAP)
    clear = _inside().ravel().copy()
    for region in placed:
        clear &= apart[_index(region)]
    near = clear.copy()
    for region in occupied:
        clear &= kept_clear[_index(region)]
    related = _related(relations).ravel() if relations else np.ones(len(sizes), bool)
    smallest = SIZE_TOKENS[0]
    attempts = [(clear, min_size, related, min_size)] if rest else []
    attempts += [(clear, min_size, related, None), (clear, smallest, related, None),
                 (clear, min_size, None, None), (clear, smallest, None, None), (near, smallest, None, None)]
    for free, floor, rel, look in attempts:
        ok = free & (sizes >= floor)
        if rel is not None:
            ok &= rel
        if look is not None and ok.any():
            ok &= _completable(rest, placed + occupied, look)
        if ok.any():
            return ok.reshape(GRID, GRID, len(SIZE_TOKENS))
    return np.zeros((GRID, GRID, len(SIZE_TOKENS)), bool)


@lru_cache(maxsize=64)
def _related(relations: tuple[tuple[str, Region], ...]) -> np.ndarray:
    """[gx, gy, size index]: whether a region there meets every (relation, target region)."""
    boxes = _lattice()[0]
    ok = np.ones(len(boxes), bool)
    for relation, target in relations:
        ok &= relation_mask(boxes, relation, target.box)
    return ok.reshape(GRID, GRID, len(SIZE_TOKENS))


# What is still to come when a region is chosen, as the look-ahead sees it: the objects (object 0
# the one the region draws, with how many more regions it draws after this one; the others with
# their counts), each with its (relation, region) pairs to objects drawn; and the prompt's
# relations between them, (i, relation, j): object i stands in that relation to object j.
Rest = tuple[tuple[tuple[int, tuple[tuple[str, Region], ...]], ...], tuple[tuple[int, str, int], ...]]
LOOK_TRIES_MIN = 4  # orders of spots the look-ahead tries per region ...
LOOK_TRIES = 64  # ... and up to this many while none of them completes a region
_PUSH = {"left of": np.array([-1.0, 0.0]), "right of": np.array([1.0, 0.0]),
         "above": np.array([0.0, -1.0]), "below": np.array([0.0, 1.0])}


@lru_cache(maxsize=1)
def _lattice() -> tuple[np.ndarray, np.ndarray]:
    """Every lattice region's box and size token, in (gx, gy, size) order (`_index`)."""
    grid = [Region(gx, gy, s) for gx in range(GRID) for gy in range(GRID) for s in SIZE_TOKENS]
    return np.array([r.box for r in grid]), np.array([r.s for r in grid])


@lru_cache(maxsize=1)
def _inside() -> np.ndarray:
    """[gx, gy, size index]: whether the region's box keeps `EDGE` from the canvas's edges: every
    training region does (layouts keep objects 0.03 inside; snapped to the lattice, their boxes
    stay within [1/32, 31/32]); a region beyond the edge draws an object the edge cuts."""
    boxes = _lattice()[0]
    ok = np.all((boxes >= EDGE - 1e-9) & (boxes <= 1 - EDGE + 1e-9), axis=1)
    return ok.reshape(GRID, GRID, len(SIZE_TOKENS))


@lru_cache(maxsize=2)
def _spaced(gap: float) -> np.ndarray:
    """[i, j]: whether lattice regions i and j keep `gap` apart (regions.spaced)."""
    grid = [Region(gx, gy, s) for gx in range(GRID) for gy in range(GRID) for s in SIZE_TOKENS]
    return spaced(grid, grid, gap)


@lru_cache(maxsize=8)
def _pairs(relation: str) -> np.ndarray:
    """[i, j]: whether lattice region j stands in `relation` to lattice region i."""
    boxes = _lattice()[0]
    return relation_mask(boxes[:, None, :], relation, boxes).T


@lru_cache(maxsize=16)
def _to_spots(relation: str | None, look: int) -> np.ndarray:
    """[i, spot]: whether a spot of size `look` stands in `relation` to lattice region i (None:
    keeps `REGION_GAP` clear of it); the look-ahead's tables."""
    spots = _lattice()[1] == look
    return np.ascontiguousarray((_spaced(REGION_GAP) if relation is None else _pairs(relation))[:, spots])


def _index(region: Region) -> int:
    return (region.gx * GRID + region.gy) * len(SIZE_TOKENS) + SIZE_TOKENS.index(region.s)


def _order(rest: Rest) -> list[int]:
    """The objects of `rest` in the order the look-ahead places them: object 0 (the current one)
    first, next the one with most relations to those placed, then one with relations to drawn
    objects."""
    objects, links = rest
    order, left = [0], set(range(1, len(objects)))
    while left:
        best = max(left, key=lambda j: (sum(1 for a, _, b in links if a == j and b in order),
                                        bool(objects[j][1]), -j))
        order.append(best)
        left.remove(best)
    return order


@lru_cache(maxsize=256)
def _completable(rest: Rest, taken: tuple[Region, ...], look: int) -> np.ndarray:
    """[lattice index]: whether a region there for object 0 of `rest` leaves every object still to
    come (its own later regions and the other objects, each as many as its count) a spot of size
    `look`, inside the canvas, clear of `taken`, of the region and of each other, where its
    relations to drawn objects and to the others hold. Shown by placing them, for every
    candidate region at once: each later object (most related first, `_order`) takes the first
    free spot in an order of the lattice, first the order that sends it as far as its relations
    push it (`_PUSH`; else against an edge), then random orders, `LOOK_TRIES_MIN` in all, more
    (up to `LOOK_TRIES`) while none completes a region. A region no order completes counts as
    not completable (measured on the first regions of 80 `shapes-complex-val` scenes: these
    orders complete 86% of the regions 64 random orders do, at a tenth of the time, and some
    region wherever those find one). An object with no spot whatever the region (its relations
    to drawn objects fail) asks for nothing."""
    objects, links = rest
    sizes = _lattice()[1]
    apart = _spaced(REGION_GAP)
    free = _inside().ravel().copy()
    for region in taken:
        free &= apart[_index(region)]
    own = _related(objects[0][1]).ravel() if objects[0][1] else np.ones(len(sizes), bool)
    candidates = np.flatnonzero(free & own)
    spots = np.flatnonzero(sizes == look)
    base = {j: (free & _related(drawn).ravel())[spots] if drawn else free[spots]
            for j, (_, drawn) in enumerate(objects)}
    later = [j for j in _order(rest) if base[j].any() for _ in range(objects[j][0])]
    relations = {}
    for a, relation, b in links:
        relations.setdefault((a, b), []).append(relation)
    done = np.zeros(len(candidates), bool)
    boxes = _lattice()[0][spots]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - 0.5
    push = {j: np.zeros(2) for j in range(len(objects))}  # where an object's relations send it
    for j, relation, _ in links:
        push[j] += _PUSH[relation]
    for j, (_, drawn) in enumerate(objects):
        for relation, _ in drawn:
            push[j] += _PUSH[relation]
    for attempt in range(LOOK_TRIES):
        if attempt == 0:  # each object as far as its relations send it, else against an edge
            orders = {j: np.argsort(-(centre @ push[j] + np.abs(centre).max(axis=1)), kind="stable")
                      for j in set(later)}
        else:
            shuffled = np.random.default_rng(attempt).permutation(len(spots))
            orders = {j: shuffled for j in set(later)}
        alive = np.flatnonzero(~done)  # the candidates this order may still complete
        placed = [(0, candidates[alive])]
        for j in later:
            room = np.repeat(base[j][None], len(alive), axis=0)
            for i, where in placed:
                room &= _to_spots(None, look)[where]
                for relation in relations.get((j, i), ()):
                    room &= _to_spots(relation, look)[where]
            some = room.any(axis=1)
            alive, room = alive[some], room[some]
            placed = [(i, where[some]) for i, where in placed]
            order = orders[j]
            placed.append((j, spots[order[room[:, order].argmax(axis=1)]]))
        done[alive] = True
        if done.all() or (attempt + 1 >= LOOK_TRIES_MIN and done.any()):
            break
    ok = np.zeros(len(sizes), bool)
    ok[candidates[done]] = True
    return ok


_DETERMINERS = ("a", "an", "the", *COUNT_WORDS)  # what opens a noun phrase
_JOINS = (",", "and")
_RELATION_WORDS = {w for phrase in RELATION_PHRASES.values() for w in phrase.split()}
_Phrase = tuple[int, "str | None", str]  # (count, colour or None, shape): one object of the prompt
_Key = tuple["str | None", str]  # (colour, shape): how a text refers to it


class _Reading:
    """What a text has said so far, read left to right: the clause's subject, a relation
    being written, the (subject, relation, object) triples said, and the noun phrase open."""

    def __init__(self, words: list[str]):
        self.subject: _Key | None = None
        self.relation: list[str] = []
        self.said: set[tuple[_Key, str, _Key]] = set()
        self.phrases: list[tuple[str, _Key, bool]] = []  # (determiner, key, plural noun) of each noun phrase
        self.spans: list[range] = []  # the positions in `words` of each noun phrase
        self.open: list[str] = []  # the words of a noun phrase not finished yet
        self.after: str | None = None  # "subject" or "object": the last words were that noun phrase
        fresh = True
        for i, word in enumerate(words):
            self.after = None
            if self.open or word in _DETERMINERS:
                self.open.append(word)
                if word in SINGULARS or word in SHAPES:  # the noun ends the phrase
                    key = (self.open[1] if len(self.open) == 3 else None, SINGULARS.get(word, word))
                    self.phrases.append((self.open[0], key, word in SINGULARS))
                    self.spans.append(range(i + 1 - len(self.open), i + 1))
                    self.open = []
                    if self.relation and self.subject is not None:
                        self.said.add((self.subject, " ".join(self.relation), key))
                        self.after = "object"
                    elif fresh or self.subject is None:
                        self.subject, self.after = key, "subject"
                    self.relation, fresh = [], False
                elif len(self.open) > 2 or (len(self.open) == 2 and word not in COLORS):
                    self.open = []  # not a noun phrase ("a photo")
            elif word in _JOINS:
                fresh, self.relation = True, []
            elif word in _RELATION_WORDS:
                self.relation.append(word)
                fresh = False
            else:
                self.relation = []
        self.adding = bool(words) and words[0] == "add" and not self.phrases  # an `add`'s object is next


class PhraseGrammar:
    """A plan's text names the prompt's objects and relations, as the training plans do:
    each noun phrase is one of the prompt's objects (count, colour and shape together: "a pink
    circle", never "a blue circle" when the circle is pink and the blue object a triangle);
    each relation it states is one the prompt states, to another object, once (an `<ins>`
    may say it either way round, as an `add` does). A `<des>` (`description`) introduces each
    object once ("a ...", "two ...") and mentions it again with "the"; an `add` names an
    object the last `<des>` (`drawn`) does not have, and names a drawn object only with "the"
    and with "the" only objects drawn or named before in it. The `<des>` after an `add` (`adds`, its `<ins>`) names exactly the
    objects drawn and the one added: a plan whose `<ins>` adds a cross and whose `<des>` adds a
    diamond has its sketch draw the cross while the plan holds the diamond drawn, which is then
    never drawn. Which objects and relations, their order, the verbs and the regions stay the
    model's. Built from the prompt's words alone (no parse, no judge); a prompt without noun
    phrases holds nothing."""

    def __init__(self, tokenizer: WordTokenizer, prompt: str, description: bool = True, drawn: str = "",
                 adds: str = ""):
        self.tok, self.description = tokenizer, description
        words = tokenizer.words(prompt)
        self.objects = _objects(words)
        self.drawn = set(_objects(tokenizer.words(drawn)))  # the objects of the last `<des>`
        added = tokenizer.words(adds)  # the objects a `<des>` names after an `add`: those drawn and the added
        self.planned = self.drawn | set(_objects(added)) if description and added[:1] == ["add"] else None
        self.triples = set(_Reading(words).said)
        if not description:
            self.triples = _both_ways(self.triples)
        t = tokenizer.token_id
        self._id = {w: t(w) for w in _DETERMINERS + COLORS + SHAPES + tuple(PLURALS.values()) + ("of",)}

    def _candidates(self, reading: "_Reading", det: str) -> list[_Phrase]:
        """The objects a noun phrase opened with `det` may name here."""
        relation = " ".join(reading.relation)
        found = [o for o in self.objects if _fits(det, o)]
        if reading.adding:  # an `add` names an object the last `<des>` does not have yet ("a", "two")
            found = [o for o in found if o not in self.drawn and det != "the"]
        if self.planned is not None:
            found = [o for o in found if o in self.planned]
        if relation in INVERSE_RELATION and reading.subject is not None:  # the object of a relation
            found = [o for o in found if (reading.subject, relation, o[1:]) in self.triples - reading.said]
        elif self.description and det == "the":  # a clause's subject, mentioned again for a relation
            objects = None if self.planned is None else {p[1:] for p in self.planned}
            found = [o for o in found if any(s == o[1:] and (objects is None or t in objects)
                                             for s, _, t in self.triples - reading.said)]
        introduced = _introduced(reading)
        if self.description:  # introduced once, then "the"
            found = [o for o in found if (o in introduced) == (det == "the")]
        elif det != "the":  # an `<ins>` introduces an object once too (a one-shot plan names many), not a
            found = [o for o in found if o not in introduced and o not in self.drawn]  # drawn one
        else:  # ... and mentions with "the" what is drawn or introduced before
            found = [o for o in found if o in self.drawn or o in introduced]
        if det in ("a", "an"):  # "an orange star", "a red star"
            found = [o for o in found if ((o[1] or o[2])[0] in "aeiou") == (det == "an")]
        return found

    def _open_relations(self, reading: "_Reading") -> set[str]:
        """The relations the subject just written may state: the prompt's, not said yet, whose
        object the text may then name (a `<des>` after an `add` names only the planned objects;
        an `<ins>` mentions with "the" only what is drawn)."""
        found = set()
        for s, r, o in self.triples - reading.said:
            if s != reading.subject or r in found:
                continue
            then = copy.copy(reading)
            then.relation = r.split()
            if any(c[1:] == o for det in _DETERMINERS for c in self._candidates(then, det)):
                found.add(r)
        return found

    def _said_all(self, reading: "_Reading") -> bool:
        """A `<des>` after an `add` has named every planned object and every relation the
        prompt states between them (a training `<des>` is the prompt with the objects not
        drawn left out)."""
        keys = {o[1:] for o in self.planned}
        return self.planned <= _introduced(reading) and \
            {(s, r, o) for s, r, o in self.triples if s in keys and o in keys} <= reading.said

    def complete(self, des: str) -> bool:
        """`des` names every object and relation of the prompt: the picture is planned in full
        (in the training data `<end>` follows the first such `<des>`)."""
        words = self.tok.words(des)
        return bool(self.objects) and set(self.objects) <= set(_objects(words)) and self.triples <= _Reading(words).said

    def allowed(self, out: list[int], words: list[int]) -> list[int]:
        """Of `words` (what the text may write), those that may follow `out` (the text so far);
        where the rules leave nothing (a text gone astray), `words`."""
        if not self.objects:
            return words
        reading = _Reading([self.tok.vocab[i] for i in out])
        if reading.open:  # inside a noun phrase: its colour, or its noun
            det, colour = reading.open[0], reading.open[1] if len(reading.open) == 2 else None
            fit = [o for o in self._candidates(reading, det) if colour is None or o[1] == colour]
            if colour is None:
                found = {o[1] if o[1] else _noun(o, det) for o in fit}
            else:
                found = {_noun(o, det) for o in fit}
            return sorted(self._id[w] for w in found) or words
        dets = {d for d in _DETERMINERS if self._candidates(reading, d)}
        relation = " ".join(reading.relation)
        if reading.relation:
            if relation in INVERSE_RELATION:  # its object's determiner
                return sorted(self._id[d] for d in dets) or words
            return [self._id["of"]] if relation in ("left", "right") else words
        relations = _RELATION_WORDS
        joined = bool(out) and self.tok.vocab[out[-1]] in _JOINS
        if reading.after == "subject" or (joined and not self.description and reading.subject is not None):
            # the relations the prompt gives the subject that are not said yet, to an object it may
            # name (an `<ins>` goes on after "and" with another: "add a square left of the crosses and ...")
            relations = {r.split()[0] for r in self._open_relations(reading)}
        elif reading.after == "object":  # a clause is one relation
            relations = set()
        vocab = self.tok.vocab
        keep = [i for i in words if (vocab[i] not in _RELATION_WORDS or vocab[i] in relations)
                and (vocab[i] not in _DETERMINERS or vocab[i] in dets)]
        if self.description:  # a description's words: noun phrases, relations, joins
            if reading.after == "subject" and reading.phrases[-1][0] == "the" and relations:
                keep = [i for i in keep if vocab[i] in relations]  # a "the" subject is there for a relation
            joined = not out or vocab[out[-1]] in _JOINS  # a clause starts: with a noun phrase
            keep = [i for i in keep if (vocab[i] in _DETERMINERS and reading.after is None)
                    or (not joined and (vocab[i] in _RELATION_WORDS or vocab[i].startswith("<")
                                        or (vocab[i] in _JOINS and dets)))]  # "and" when a clause can follow
            if self.planned is not None and not self._said_all(reading):
                keep = [i for i in keep if not vocab[i].startswith("<")]  # not closed before it says it all
        return keep or words


def region_words(words: Sequence[str], position: int) -> list[int] | None:
    """Under `UnifiedConfig.bag = "phrase"`, the positions of `words` (a trajectory's tokens) the
    image condition reads for the region whose size token is at `position` when that region
    draws a later object of an `add` ("add a yellow star left of a brown cross": the cross):
    the step's `<ins>`, its "add" and that object's noun phrase, as if the add named it alone.
    An `add`'s objects are its first noun phrase and the later ones not opened with "the" (as
    `Placement` reads them), in text order, each drawing as many regions as its count. None
    for the first object's regions and for steps that are not an `add`: the "object" read
    serves (every `add` of the loop's training data adds one object)."""
    start = max((i for i in range(position + 1) if words[i] in ("<ins>", "<refine>", "<prompt>")), default=None)
    if start is None or words[start] != "<ins>" or words[start + 1:start + 2] != ["add"]:
        return None
    img = max((i for i in range(start, position + 1) if words[i] == "<img>"), default=None)
    if img is None:
        return None
    text = list(words[start + 2:img])
    reading = _Reading(text[:text.index("</ins>")] if "</ins>" in text else text)
    phrases = [([start + 2 + i for i in span], COUNT_WORDS.get(det, 1))
               for k, ((det, _, _), span) in enumerate(zip(reading.phrases, reading.spans)) if k == 0 or det != "the"]
    if not phrases:
        return None
    region = sum(1 for i in range(img + 1, position + 1) if words[i] in _SIZE_WORDS) - 1
    for k, (positions, count) in enumerate(phrases):
        if region < count:
            break
        region -= count
    return [start, start + 1, *positions] if k else None


_SIZE_WORDS = {f"s{s}" for s in SIZE_TOKENS}


def _introduced(reading: "_Reading") -> set[_Phrase]:
    """The objects a text has introduced so far ("a ...", "two ...", not "the ...")."""
    return {(COUNT_WORDS.get(d, 1), *key) for d, key, _ in reading.phrases if d != "the"}


def _fits(det: str, phrase: _Phrase) -> bool:
    return det == "the" or COUNT_WORDS.get(det, 1) == phrase[0]


def _noun(phrase: _Phrase, det: str) -> str:
    return plural(phrase[2], phrase[0] if det == "the" else COUNT_WORDS.get(det, 1))


def _objects(words: list[str]) -> list[_Phrase]:
    """The prompt's objects as (count, colour or None, shape), from its noun phrases
    (determiner, optional colour, noun); a "the" phrase mentions an earlier one."""
    found: list[_Phrase] = []
    for det, key, many in _Reading(words).phrases:
        if det == "the" and any(p[1:] == key and (p[0] > 1) == many for p in found):
            continue
        count = COUNT_WORDS.get(det, 1) if det != "the" else 1 + many
        if (count, *key) not in found:
            found.append((count, *key))
    return found


class Placement:
    """Where the regions of an `add` may go, read from the model's own `<ins>` (and, for the room
    it leaves, the prompt's words as PhraseGrammar reads them; no parse, no judge).

    The `add`'s new objects are its first noun phrase and those after it that are neither "the"
    mentions nor drawn already, in text order ("add a red circle left of the blue square": one;
    a one-shot plan, "add a red circle left of a blue square and a green star below the red
    circle": three); its regions follow them
    (`count` in all). `earlier`: each earlier step's `<ins>` and regions text.
    `relations(written)`: for the object whose region comes after the step's `written` regions,
    the (relation, region) pairs its `<ins>` or the prompt states against every region of an
    object drawn (by an earlier `add`, or earlier in this step; an `add` of several objects
    gives its regions to them in text order). `rest(written)`: every object of the prompt not
    drawn yet, with the prompt's relations: the region leaves them all a spot (an anchor drawn
    against the edge its later neighbours need, or a first object drawn large in a crowded
    scene, would leave them no room)."""

    def __init__(self, tokenizer: WordTokenizer, prompt: str, ins: str, earlier: list[tuple[str, str]]):
        self.drawn: dict[_Key, list[Region]] = {}
        for text, regions in earlier:
            step = _Reading(tokenizer.words(text))
            if not step.phrases:
                continue
            if text.startswith("add "):
                self.drawn.update(self._split(self._new(step), parse_regions(regions))[1])
            elif text.startswith("remove "):
                self.drawn.pop(step.phrases[0][1], None)
        words = tokenizer.words(ins)
        reading = _Reading(words)
        self.objects = self._new(reading) if words[:1] == ["add"] else []
        self.count = sum(n for _, n in self.objects) if self.objects else None
        self.stated = _both_ways(reading.said)
        self.prompted = _both_ways(_Reading(tokenizer.words(prompt)).said) if prompt else set()
        self.wanted = {(colour, shape): n for n, colour, shape in _objects(tokenizer.words(prompt))} if prompt else {}

    def _new(self, reading: _Reading) -> list[tuple[_Key, int]]:
        """An `add`'s new objects and their counts: its first noun phrase, and the later ones
        that are neither "the" mentions nor drawn already."""
        return [(key, COUNT_WORDS.get(det, 1)) for k, (det, key, _) in enumerate(reading.phrases)
                if k == 0 or (det != "the" and key not in self.drawn)]

    def _split(self, objects: list[tuple[_Key, int]], regions: Sequence[Region]
               ) -> tuple[_Key | None, dict[_Key, list[Region]]]:
        """`regions` given to `objects` in order: the object the next region would draw, and the
        regions of each object they cover."""
        drawn, k = {}, 0
        for key, n in objects:
            if len(regions) < k + n:
                return key, drawn
            drawn[key] = list(regions[k:k + n])
            k += n
        return None, drawn

    def _now(self, written: Sequence[Region]) -> tuple[_Key | None, dict[_Key, list[Region]]]:
        """The object the next region draws, and every object's regions drawn by then."""
        key, now = self._split(self.objects, written)
        return key, {**self.drawn, **now}

    def relations(self, written: Sequence[Region] = ()) -> tuple[tuple[str, Region], ...]:
        key, drawn = self._now(written)
        return tuple(sorted((r, region) for s, r, o in self.stated | self.prompted if s == key and o != key
                            and o in drawn for region in drawn[o]))

    def rest(self, written: Sequence[Region] = ()) -> Rest | None:
        """What is still to come when the region after `written` is chosen (`Rest`): the object
        it draws and how many more regions that object draws, then every object of the prompt
        not drawn yet with its count, each with its relations to drawn regions, and the
        prompt's relations between them. None when the region draws no object of an `add`."""
        key, drawn = self._now(written)
        if key is None:
            return None
        at = [k for k, _ in self.objects].index(key)
        before = sum(n for _, n in self.objects[:at])  # regions of the objects this add draws first
        keys = [key] + [k for k in self.wanted if k not in drawn and k != key]
        objects = [(self.objects[at][1] - (len(written) - before) - 1, self.relations(written))]
        for other in keys[1:]:
            objects.append((self.wanted[other], tuple(sorted(
                (r, region) for s, r, o in self.prompted if s == other and o in drawn for region in drawn[o]))))
        links = tuple(sorted((keys.index(s), r, keys.index(o)) for s, r, o in self.prompted
                             if s in keys and o in keys and s != o))
        return tuple(objects), links


def _both_ways(said: set[tuple[_Key, str, _Key]]) -> set[tuple[_Key, str, _Key]]:
    """(subject, relation, object) triples with each relation also said the other way round;
    words that are no relation (a free plan's "a red circle of the square") are left out."""
    known = {(s, r, o) for s, r, o in said if r in INVERSE_RELATION}
    return known | {(o, INVERSE_RELATION[r], s) for s, r, o in known}