"""How the embedded model reads its own plan texts: noun phrases, relations, and the words
of an `add` that condition each region (`region_words`). Built from words alone (no
parse, no judge): the image expert's condition reads it in training and in sampling,
and the decode rules (models/rules/) read plans and prompts with it."""

from __future__ import annotations

from collections.abc import Sequence

from ..format import STEP_STARTS
from ..world.instructions import RECALL_END
from ..world.vocab import (
    COLORS,
    COUNT_WORDS,
    INVERSE_RELATION,
    RELATION_PHRASES,
    SHAPES,
    SINGULARS,
    plural,
)
from .regions import SIZE_TOKENS

STEP_START_WORDS = frozenset(STEP_STARTS)

DETERMINERS = ("a", "an", "the", *COUNT_WORDS)  # what opens a noun phrase
JOINS = (",", "and")
RELATION_WORDS = {w for phrase in RELATION_PHRASES.values() for w in phrase.split()}
Phrase = tuple[int, "str | None", str]  # (count, colour or None, shape): one object of the prompt
Key = tuple["str | None", str]  # (colour, shape): how a text refers to it


class Reading:
    """What a text has said so far, read left to right: the clause's subject, a relation
    being written, the (subject, relation, object) triples said, and the noun phrase open."""

    def __init__(self, words: list[str]):
        self.subject: Key | None = None
        self.relation: list[str] = []
        self.said: set[tuple[Key, str, Key]] = set()
        self.phrases: list[tuple[str, Key, bool]] = []  # (determiner, key, plural noun) of each noun phrase
        self.spans: list[range] = []  # the positions in `words` of each noun phrase
        self.open: list[str] = []  # the words of a noun phrase not finished yet
        self.after: str | None = None  # "subject" or "object": the last words were that noun phrase
        fresh = True
        for i, word in enumerate(words):
            self.after = None
            if self.open or word in DETERMINERS:
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
            elif word in JOINS:
                fresh, self.relation = True, []
            elif word in RELATION_WORDS:
                self.relation.append(word)
                fresh = False
            else:
                self.relation = []
        self.adding = bool(words) and words[0] == "add" and not self.phrases  # an `add`'s object is next


def region_words(words: Sequence[str], position: int) -> list[int] | None:
    """The positions of `words` (a trajectory's tokens) the
    image condition reads for the region whose size token is at `position` when that region
    draws a later object of an `add` ("add a yellow star left of a brown cross": the cross):
    the step's `<ins>`, its "add" and that object's noun phrase, as if the add named it alone.
    An `add`'s objects are its first noun phrase and the later ones not opened with "the" (as
    `Placement` reads them), in text order, each drawing as many regions as its count. None
    for the first object's regions and for steps that are not an `add`: the "object" read
    serves (every `add` of the loop's training data adds one object). An `<ins>`'s recall
    clause ("a ripe banana is yellow ;") is not read: the step starts after its ";"."""
    start = max((i for i in range(position + 1) if words[i] in STEP_START_WORDS), default=None)
    if start is None or words[start] not in ("<ins>", RECALL_END) or words[start + 1 : start + 2] != ["add"]:
        return None
    img = max((i for i in range(start, position + 1) if words[i] == "<img>"), default=None)
    if img is None:
        return None
    text = list(words[start + 2 : img])
    reading = Reading(text[: text.index("</ins>")] if "</ins>" in text else text)
    phrases = [
        ([start + 2 + i for i in span], COUNT_WORDS.get(det, 1))
        for k, ((det, _, _), span) in enumerate(zip(reading.phrases, reading.spans))
        if k == 0 or det != "the"
    ]
    if not phrases:
        return None
    region = sum(1 for i in range(img + 1, position + 1) if words[i] in _SIZE_WORDS) - 1
    for k, (positions, count) in enumerate(phrases):
        if region < count:
            return [start, start + 1, *positions] if k else None
        region -= count
    return [start, start + 1, *phrases[-1][0]] if len(phrases) > 1 else None  # regions past the last object's


_SIZE_WORDS = {f"s{s}" for s in SIZE_TOKENS}


def introduced_objects(reading: "Reading") -> set[Phrase]:
    """The objects a text has introduced so far ("a ...", "two ...", not "the ...")."""
    return {(COUNT_WORDS.get(d, 1), *key) for d, key, _ in reading.phrases if d != "the"}


def fits(det: str, phrase: Phrase) -> bool:
    return det == "the" or COUNT_WORDS.get(det, 1) == phrase[0]


def noun(phrase: Phrase, det: str) -> str:
    return plural(phrase[2], phrase[0] if det == "the" else COUNT_WORDS.get(det, 1))


def prompt_objects(words: list[str]) -> list[Phrase]:
    """The prompt's objects as (count, colour or None, shape), from its noun phrases
    (determiner, optional colour, noun); a "the" phrase mentions an earlier one."""
    found: list[Phrase] = []
    for det, key, many in Reading(words).phrases:
        if det == "the" and any(p[1:] == key and (p[0] > 1) == many for p in found):
            continue
        count = COUNT_WORDS.get(det, 1) if det != "the" else 1 + many
        if (count, *key) not in found:
            found.append((count, *key))
    return found


def both_ways(said: set[tuple[Key, str, Key]]) -> set[tuple[Key, str, Key]]:
    """(subject, relation, object) triples with each relation also said the other way round;
    words that are no relation (a free plan's "a red circle of the square") are left out."""
    known = {(s, r, o) for s, r, o in said if r in INVERSE_RELATION}
    return known | {(o, INVERSE_RELATION[r], s) for s, r, o in known}
