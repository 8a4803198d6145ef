"""World knowledge as data: everyday things mapped to ShapesWorld's attributes, and the
prompt phrases that use them (the WISE half of the paper, in ShapesWorld).

The facts live in `knowledge.csv` beside this file, one row each:

| column    | meaning                                                                  |
|-----------|--------------------------------------------------------------------------|
| kind      | colour, count or shape: which attribute the fact gives                    |
| thing     | the everyday thing as prompts name it ("a ripe banana", "coal")          |
| part      | count facts: what is counted ("wheels"); empty otherwise                  |
| answer    | the attribute: a colour, a count (1-4) or a shape of world/vocab.py      |
| statement | the fact as a plain sentence ("a ripe banana is yellow")                 |
| split     | trajectory, text or heldout (below)                                      |
| source    | where the fact comes from                                                |

Splits, so that a benchmark measures knowledge, not memory:
- `trajectory`: used in image trajectories (`data build --knowledge`) and in the text corpus;
- `text`: only in the plain-text facts corpus (`data build --kind facts`), never in a trajectory;
- `heldout`: in nothing any data build makes; for a chat planner, whose knowledge is its own.

Phrases the prompt language accepts (world/parser.py):
- colour: "a circle the colour of a ripe banana", "two stars coloured like coal" (also "color",
  "colored", and after a comma);
- count: "as many stars as a bicycle has wheels", "as many red stars as a dog has legs";
- shape: "a shape like a plus sign", "a red shape like a kite", "two shapes like a coin".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import PromptError
from .vocab import COLORS, MAX_COUNT, NUMBER_WORDS, SHAPES, plural

KNOWLEDGE_FILE = Path(__file__).with_name("knowledge.csv")
KINDS = ("colour", "count", "shape")
SPLITS = ("trajectory", "text", "heldout")
COLOUR_OPENERS: tuple[tuple[str, ...], ...] = (
    ("the", "colour", "of"),
    ("the", "color", "of"),
    ("coloured", "like"),
    ("colored", "like"),
)
SHAPE_NOUNS = ("shape", "shapes")
GRAMMAR_WORDS = frozenset({"colour", "color", "coloured", "colored", "like", "shape", "shapes", "as", "many", "has"})


@dataclass(frozen=True)
class Fact:
    kind: str
    thing: str
    part: str
    answer: str
    statement: str
    split: str
    source: str

    @property
    def words(self) -> tuple[str, ...]:
        """The words a prompt uses to name the fact ("a bicycle has wheels" for a count)."""
        return tuple(f"{self.thing} has {self.part}".split() if self.kind == "count" else self.thing.split())

    @property
    def value(self) -> str | int:
        return int(self.answer) if self.kind == "count" else self.answer

    @property
    def answer_word(self) -> str:
        """The answer as its statement writes it ("two" for a count of 2)."""
        return NUMBER_WORDS[int(self.answer)] if self.kind == "count" else self.answer

    @property
    def lead(self) -> str:
        """The statement's words before its answer ("a ripe banana is" for "a ripe banana is yellow")."""
        words = self.statement.split()
        return " ".join(words[: words.index(self.answer_word)])

    def statements(self) -> list[str]:
        """The fact as the plain sentences of the text corpus."""
        if self.kind == "colour":
            return [
                self.statement,
                f"the colour of {self.thing} is {self.answer}",
                f"{self.thing} has a {self.answer} colour",
            ]
        if self.kind == "count":
            n = self.answer_word
            return [
                self.statement,
                f"the number of {self.part} {self.thing} has is {n}",
                f"count the {self.part} of {self.thing}: {n}",
            ]
        return [
            self.statement,
            f"{self.thing} looks like a {self.answer}",
            f"the shape of {self.thing} is a {self.answer}",
        ]


@lru_cache(maxsize=1)
def load_facts() -> tuple[Fact, ...]:
    """Every fact of `knowledge.csv`, checked: a known kind, split and answer, one row per phrase."""
    with KNOWLEDGE_FILE.open(newline="", encoding="utf-8") as f:
        facts = tuple(Fact(**row) for row in csv.DictReader(f))
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for fact in facts:
        ok_answer = {
            "colour": fact.answer in COLORS,
            "count": fact.answer.isdigit() and 1 <= int(fact.answer) <= MAX_COUNT,
            "shape": fact.answer in SHAPES,
        }.get(fact.kind, False)
        if not ok_answer or fact.split not in SPLITS or not fact.thing or not fact.source:
            raise ValueError(f"{KNOWLEDGE_FILE}: malformed fact {fact}")
        if (fact.kind, fact.words) in seen:
            raise ValueError(f"{KNOWLEDGE_FILE}: {fact.kind} fact {fact.thing!r} appears twice")
        seen.add((fact.kind, fact.words))
    return facts


def facts(kind: str | None = None, splits: tuple[str, ...] = SPLITS) -> list[Fact]:
    return [f for f in load_facts() if (kind is None or f.kind == kind) and f.split in splits]


def knowledge_words() -> frozenset[str]:
    """Every word a knowledge phrase may use (the parser and the tokenizer know them)."""
    words = set(GRAMMAR_WORDS)
    for fact in load_facts():
        words |= set(fact.words) | {w for s in fact.statements() for w in s.split()}
    return frozenset(words)


def match_fact(tokens: list[str], pos: int, kind: str) -> tuple[Fact, int] | None:
    """The longest fact of `kind` whose words start at `tokens[pos]`, and its length."""
    best: tuple[Fact, int] | None = None
    for fact in facts(kind):
        n = len(fact.words)
        if tuple(tokens[pos : pos + n]) == fact.words and (best is None or n > best[1]):
            best = (fact, n)
    return best


def no_fact_error(prompt: str, kind: str, tokens: list[str], pos: int) -> PromptError:
    """One line: the words after a knowledge phrase's opener name no fact of that kind."""
    rest = " ".join(tokens[pos : pos + 6])
    where = f"for '{rest}'" if rest else "at the end of the prompt"
    examples = ", ".join(f"'{f.thing}'" for f in facts(kind)[:3])
    return PromptError(
        f"in prompt {prompt!r}: no {kind} fact in the knowledge base {where}; "
        f"name a thing it knows (e.g. {examples}; all in {KNOWLEDGE_FILE.name})"
    )


# ------------------------------------------------------------------ wording with facts
def knowledge_noun_phrase(shape: str, color: str | None, count: int, fact: Fact) -> str:
    """An indefinite noun phrase that names one attribute through `fact` (the others plainly)."""
    if fact.kind == "count":
        words = ["as", "many", *([color] if color else []), plural(shape, 2), "as", *fact.words]
        return " ".join(words)
    colour_words = [color] if color and fact.kind != "colour" else []
    noun = (
        ("shapes like " if count > 1 else "shape like ") + fact.thing if fact.kind == "shape" else plural(shape, count)
    )
    article = NUMBER_WORDS[count] if count > 1 else ("an" if (colour_words or [noun])[0][0] in "aeiou" else "a")
    phrase = " ".join([article, *colour_words, noun])
    if fact.kind == "colour":
        phrase += f" the colour of {fact.thing}"
    return phrase


def fact_fits(fact: Fact, shape: str, color: str | None, count: int) -> bool:
    """Whether `fact` names one of this group's attributes."""
    return {"colour": color, "count": count, "shape": shape}[fact.kind] == fact.value
