"""What a critique names: the errors an inspection text states and the object a `<refine>` acts on,
read from the critique's own phrasing (world/critique.py), so that a model's critique can be
compared with the exact judge's (evaluation/process.py). Scoring only: never in the loop.

A critique is clauses separated by "; " after "inconsistent[ plan| image]: ". Each clause is
read as (kind, key):

- "X should be left of Y[, not ...]" -> ("relation", "X|left of|Y");
- "X should be red[, ...]" -> ("colour", "X"); "X should have five points" -> ("points", "X");
- "the prompt asks for three circles, the scene has ..." -> ("count", "circle");
- "X is not in the prompt" -> ("extra", "X"); "X is still missing" -> ("missing", "X");
- anything else -> ("other", the clause).

Noun phrases lose their articles ("the red circle" and "a red circle" are one object). A
command ("move the red circle left of the square") is read as (verb, the object of its first
noun phrase, whatever its number: "add two squares" acts on what "add a square" does, with
another count).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..world.vocab import COLORS, COUNT_WORDS, DEPTH_RELATIONS, RELATIONS, SHAPES, SINGULARS

_RELATIONS = sorted(RELATIONS + DEPTH_RELATIONS, key=len, reverse=True)  # "right of" before "of"-less ones
_VERBS = ("add", "remove", "move", "change")
_TRAILER = re.compile(r",\s*(not .*|and the description does not say so)$")


def noun_phrase(text: str) -> str:
    """`text` as an object's name: lower case, without its leading article."""
    words = text.strip().lower().split()
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def bare_object(text: str) -> str:
    """What a noun phrase is, whatever its number: "two red squares" and "a red square" -> "red
    square" (a star's points kept)."""
    words = noun_phrase(text).split()
    if words and words[0] in COUNT_WORDS:
        words = words[1:]
    return " ".join(SINGULARS.get(w, w) for w in words)


def _shape(text: str) -> str:
    """The shape a noun phrase names ("three circles" -> "circle"), or the phrase itself."""
    for word in reversed(text.lower().split()):
        if SINGULARS.get(word, word) in SHAPES:
            return SINGULARS.get(word, word)
    return noun_phrase(text)


def _split_relation(rest: str) -> tuple[str, str] | None:
    """("left of", "the blue square") from "left of the blue square", or None."""
    for relation in _RELATIONS:
        if rest == relation or rest.startswith(relation + " "):
            return relation, rest[len(relation) :].strip()
    return None


def clause_key(clause: str) -> tuple[str, str]:
    """One critique clause as (kind, key) (see the module docstring)."""
    clause = clause.strip().rstrip(".")
    if m := re.fullmatch(r"the prompt asks for (.+), the scene has (.+)", clause):
        return "count", _shape(m.group(1))
    if m := re.fullmatch(r"(.+) is not in the prompt", clause):
        return "extra", noun_phrase(m.group(1))
    if m := re.fullmatch(r"(.+) is still missing", clause):
        return "missing", noun_phrase(m.group(1))
    if m := re.fullmatch(r"(.+) should have (\S+) points.*", clause):
        return "points", noun_phrase(m.group(1))
    if m := re.fullmatch(r"(.+?) should be (.+)", clause):
        subject, rest = noun_phrase(m.group(1)), _TRAILER.sub("", m.group(2)).strip()
        if rest in COLORS:
            return "colour", subject
        split = _split_relation(rest)
        if split is not None:
            return "relation", f"{subject}|{split[0]}|{noun_phrase(split[1])}"
    return "other", clause


def critique_keys(text: str) -> set[tuple[str, str]]:
    """The errors an inspection text names, as (kind, key); empty for a consistent one."""
    text = text.strip()
    if not text.startswith("inconsistent"):
        return set()
    body = text.split(":", 1)[1] if ":" in text else ""
    return {clause_key(c) for c in body.split(";") if c.strip()}


def _object(key: tuple[str, str]) -> str:
    """The object a (kind, key) is about (a relation's subject)."""
    kind, value = key
    return _shape(value) if kind == "count" else value.split("|")[0]


def names_error(text: str, judged: Iterable[str]) -> bool:
    """Whether inspection `text` names one of the judge's errors (`judged`: its problems'
    critiques): the same kind about the same object (and, for a relation, the same relation
    to the same object)."""
    return bool(critique_keys(text) & {clause_key(c) for c in judged})


def names_object(text: str, judged: Iterable[str]) -> bool:
    """Whether inspection `text` names an object one of the judge's errors is about, of any kind."""
    return bool({_object(k) for k in critique_keys(text)} & {_object(clause_key(c)) for c in judged})


def command_key(command: str) -> tuple[str, str] | None:
    """(verb, object) of a `<refine>` command ("move the red circle left of the square" ->
    ("move", "red circle"); "add two squares" -> ("add", "square")); None when it is not one."""
    words = command.strip().lower().split(" ", 1)
    if len(words) < 2 or words[0] not in _VERBS:
        return None
    rest = words[1]
    cuts = [rest.find(m) for m in [f" {r} " for r in _RELATIONS] + [" to "]]
    return words[0], bare_object(rest[: min([c for c in cuts if c >= 0], default=len(rest))])


def acts_on(command: str, fixes: Iterable[str]) -> bool:
    """Whether `<refine>` `command` does what one of the judge's fixes (`fixes`) does: the same
    verb on the same object."""
    key = command_key(command)
    return key is not None and key in {command_key(f) for f in fixes}


__all__ = [
    "acts_on",
    "bare_object",
    "clause_key",
    "command_key",
    "critique_keys",
    "names_error",
    "names_object",
    "noun_phrase",
]
