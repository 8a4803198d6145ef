"""The look-ahead and the placement of an `add`'s regions: `Placement` reads, from the model's
own `<ins>`, its earlier steps and the prompt's words, which relations a new region must meet
and which objects are still to come; `completable` shows by placing them whether a region
leaves every one of them a spot."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ...world.vocab import COUNT_WORDS
from ..phrases import Key, Reading, both_ways, prompt_objects
from ..regions import REGION_GAP, Region, parse_regions
from ..tokenizer import WordTokenizer
from .lattice import (
    inside,
    lattice,
    lattice_index,
    related_mask,
    spaced_table,
    to_spots,
)

# What is still to come when a region is chosen, as the look-ahead sees it: the objects (object 0
# the one the region draws, with how many more regions it draws after this one; the others with
# their counts), each with its (relation, region) pairs to objects drawn; and the prompt's
# relations between them, (i, relation, j): object i stands in that relation to object j.
Rest = tuple[tuple[tuple[int, tuple[tuple[str, Region], ...]], ...], tuple[tuple[int, str, int], ...]]
LOOK_TRIES_MIN = 4  # orders of spots the look-ahead tries per region ...
LOOK_TRIES = 64  # ... and up to this many while none of them completes a region
_PUSH = {
    "left of": np.array([-1.0, 0.0]),
    "right of": np.array([1.0, 0.0]),
    "above": np.array([0.0, -1.0]),
    "below": np.array([0.0, 1.0]),
}


def _order(rest: Rest) -> list[int]:
    """The objects of `rest` in the order the look-ahead places them: object 0 (the current one)
    first, next the one with most relations to those placed, then one with relations to drawn
    objects."""
    objects, links = rest
    order, left = [0], set(range(1, len(objects)))
    while left:
        best = max(left, key=lambda j: (sum(1 for a, _, b in links if a == j and b in order), bool(objects[j][1]), -j))
        order.append(best)
        left.remove(best)
    return order


@lru_cache(maxsize=256)
def completable(rest: Rest, taken: tuple[Region, ...], look: int) -> np.ndarray:
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
    sizes = lattice()[1]
    apart = spaced_table(REGION_GAP)
    free = inside().ravel().copy()
    for region in taken:
        free &= apart[lattice_index(region)]
    own = related_mask(objects[0][1]).ravel() if objects[0][1] else np.ones(len(sizes), bool)
    candidates = np.flatnonzero(free & own)
    spots = np.flatnonzero(sizes == look)
    base = {
        j: (free & related_mask(drawn).ravel())[spots] if drawn else free[spots] for j, (_, drawn) in enumerate(objects)
    }
    later = [j for j in _order(rest) if base[j].any() for _ in range(objects[j][0])]
    relations: dict[tuple[int, int], list[str]] = {}
    for a, relation, b in links:
        relations.setdefault((a, b), []).append(relation)
    done = np.zeros(len(candidates), bool)
    boxes = lattice()[0][spots]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - 0.5
    push = {j: np.zeros(2) for j in range(len(objects))}  # where an object's relations send it
    for j, relation, _ in links:
        push[j] += _PUSH[relation]
    for j, (_, drawn) in enumerate(objects):
        for relation, _ in drawn:
            push[j] += _PUSH[relation]
    for attempt in range(LOOK_TRIES):
        if attempt == 0:  # each object as far as its relations send it, else against an edge
            orders = {
                j: np.argsort(-(centre @ push[j] + np.abs(centre).max(axis=1)), kind="stable") for j in set(later)
            }
        else:
            shuffled = np.random.default_rng(attempt).permutation(len(spots))
            orders = {j: shuffled for j in set(later)}
        alive = np.flatnonzero(~done)  # the candidates this order may still complete
        placed = [(0, candidates[alive])]
        for j in later:
            room = np.repeat(base[j][None], len(alive), axis=0)
            for i, where in placed:
                room &= to_spots(None, look)[where]
                for relation in relations.get((j, i), ()):
                    room &= to_spots(relation, look)[where]
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
        self.drawn: dict[Key, list[Region]] = {}
        for text, regions in earlier:
            step = Reading(tokenizer.words(text))
            if not step.phrases:
                continue
            if text.startswith("add "):
                self.drawn.update(self._split(self._new(step), parse_regions(regions))[1])
            elif text.startswith("remove "):
                self.drawn.pop(step.phrases[0][1], None)
        words = tokenizer.words(ins)
        reading = Reading(words)
        self.objects = self._new(reading) if words[:1] == ["add"] else []
        self.count = sum(n for _, n in self.objects) if self.objects else None
        self.stated = both_ways(reading.said)
        self.prompted = both_ways(Reading(tokenizer.words(prompt)).said) if prompt else set()
        self.wanted = (
            {(colour, shape): n for n, colour, shape in prompt_objects(tokenizer.words(prompt))} if prompt else {}
        )

    def _new(self, reading: Reading) -> list[tuple[Key, int]]:
        """An `add`'s new objects and their counts: its first noun phrase, and the later ones
        that are neither "the" mentions nor drawn already."""
        return [
            (key, COUNT_WORDS.get(det, 1))
            for k, (det, key, _) in enumerate(reading.phrases)
            if k == 0 or (det != "the" and key not in self.drawn)
        ]

    def _split(
        self, objects: list[tuple[Key, int]], regions: Sequence[Region]
    ) -> tuple[Key | None, dict[Key, list[Region]]]:
        """`regions` given to `objects` in order: the object the next region would draw, and the
        regions of each object they cover."""
        drawn: dict[Key, list[Region]] = {}
        k = 0
        for key, n in objects:
            if len(regions) < k + n:
                return key, drawn
            drawn[key] = list(regions[k : k + n])
            k += n
        return None, drawn

    def _now(self, written: Sequence[Region]) -> tuple[Key | None, dict[Key, list[Region]]]:
        """The object the next region draws, and every object's regions drawn by then."""
        key, now = self._split(self.objects, written)
        return key, {**self.drawn, **now}

    def relations(self, written: Sequence[Region] = ()) -> tuple[tuple[str, Region], ...]:
        key, drawn = self._now(written)
        return tuple(
            sorted(
                (r, region)
                for s, r, o in self.stated | self.prompted
                if s == key and o != key and o in drawn
                for region in drawn[o]
            )
        )

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
            objects.append(
                (
                    self.wanted[other],
                    tuple(
                        sorted(
                            (r, region) for s, r, o in self.prompted if s == other and o in drawn for region in drawn[o]
                        )
                    ),
                )
            )
        links = tuple(
            sorted((keys.index(s), r, keys.index(o)) for s, r, o in self.prompted if s in keys and o in keys and s != o)
        )
        return tuple(objects), links
