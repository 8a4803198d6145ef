"""The phrase grammar: while the planner writes `<ins>` and `<des>`, its noun phrases and
relations are copied from the prompt's words (the model still chooses which and in what order)."""

from __future__ import annotations

import copy

from ...world.vocab import COLORS, INVERSE_RELATION, PLURALS, SHAPES
from ..phrases import (
    DETERMINERS,
    JOINS,
    RELATION_WORDS,
    Phrase,
    Reading,
    both_ways,
    fits,
    introduced_objects,
    noun,
    prompt_objects,
)
from ..tokenizer import WordTokenizer


class PhraseGrammar:
    """A plan's text names the prompt's objects and relations, as the training plans do:
    each noun phrase is one of the prompt's objects (count, colour and shape together: "a pink
    circle", never "a blue circle" when the circle is pink and the blue object a triangle);
    each relation it states is one the prompt states, to another object, once (an `<ins>`
    may say it either way round, as an `add` does). A `<des>` (`description`) introduces each
    object once ("a ...", "two ...") and mentions it again with "the"; an `add` names an
    object the last `<des>` (`drawn`) does not have, and names a drawn object only with "the"
    and with "the" only objects drawn or named before in it. The `<des>` after an `add` (`adds`, its
    `<ins>`) names exactly the
    objects drawn and the one added: a plan whose `<ins>` adds a cross and whose `<des>` adds a
    diamond has its sketch draw the cross while the plan holds the diamond drawn, which is then
    never drawn. Which objects and relations, their order, the verbs and the regions stay the
    model's. Built from the prompt's words alone (no parse, no judge); a prompt without noun
    phrases holds nothing."""

    def __init__(
        self, tokenizer: WordTokenizer, prompt: str, description: bool = True, drawn: str = "", adds: str = ""
    ):
        self.tok, self.description = tokenizer, description
        words = tokenizer.words(prompt)
        self.objects = prompt_objects(words)
        self.drawn = set(prompt_objects(tokenizer.words(drawn)))  # the objects of the last `<des>`
        added = tokenizer.words(adds)  # the objects a `<des>` names after an `add`: those drawn and the added
        self.planned = self.drawn | set(prompt_objects(added)) if description and added[:1] == ["add"] else None
        self.triples = set(Reading(words).said)
        if not description:
            self.triples = both_ways(self.triples)
        t = tokenizer.token_id
        self._id = {w: t(w) for w in DETERMINERS + COLORS + SHAPES + tuple(PLURALS.values()) + ("of",)}

    def _candidates(self, reading: "Reading", det: str) -> list[Phrase]:
        """The objects a noun phrase opened with `det` may name here."""
        relation = " ".join(reading.relation)
        found = [o for o in self.objects if fits(det, o)]
        if reading.adding:  # an `add` names an object the last `<des>` does not have yet ("a", "two")
            found = [o for o in found if o not in self.drawn and det != "the"]
        if self.planned is not None:
            found = [o for o in found if o in self.planned]
        if relation in INVERSE_RELATION and reading.subject is not None:  # the object of a relation
            found = [o for o in found if (reading.subject, relation, o[1:]) in self.triples - reading.said]
        elif self.description and det == "the":  # a clause's subject, mentioned again for a relation
            objects = None if self.planned is None else {p[1:] for p in self.planned}
            found = [
                o
                for o in found
                if any(s == o[1:] and (objects is None or t in objects) for s, _, t in self.triples - reading.said)
            ]
        introduced = introduced_objects(reading)
        if self.description:  # introduced once, then "the"
            found = [o for o in found if (o in introduced) == (det == "the")]
        elif det != "the":  # an `<ins>` introduces an object once too (a one-shot plan names many), not a
            found = [o for o in found if o not in introduced and o not in self.drawn]  # drawn one
        else:  # ... and mentions with "the" what is drawn or introduced before
            found = [o for o in found if o in self.drawn or o in introduced]
        if det in ("a", "an"):  # "an orange star", "a red star"
            found = [o for o in found if ((o[1] or o[2])[0] in "aeiou") == (det == "an")]
        return found

    def _open_relations(self, reading: "Reading") -> set[str]:
        """The relations the subject just written may state: the prompt's, not said yet, whose
        object the text may then name (a `<des>` after an `add` names only the planned objects;
        an `<ins>` mentions with "the" only what is drawn)."""
        found = set()
        for s, r, o in self.triples - reading.said:
            if s != reading.subject or r in found:
                continue
            then = copy.copy(reading)
            then.relation = r.split()
            if any(c[1:] == o for det in DETERMINERS for c in self._candidates(then, det)):
                found.add(r)
        return found

    def _said_all(self, reading: "Reading") -> bool:
        """A `<des>` after an `add` has named every planned object and every relation the
        prompt states between them (a training `<des>` is the prompt with the objects not
        drawn left out)."""
        assert self.planned is not None
        keys = {o[1:] for o in self.planned}
        return (
            self.planned <= introduced_objects(reading)
            and {(s, r, o) for s, r, o in self.triples if s in keys and o in keys} <= reading.said
        )

    def complete(self, des: str) -> bool:
        """`des` names every object and relation of the prompt: the picture is planned in full
        (in the training data `<end>` follows the first such `<des>`)."""
        words = self.tok.words(des)
        return (
            bool(self.objects)
            and set(self.objects) <= set(prompt_objects(words))
            and self.triples <= Reading(words).said
        )

    def allowed(self, out: list[int], words: list[int]) -> list[int]:
        """Of `words` (what the text may write), those that may follow `out` (the text so far);
        where the rules leave nothing (a text gone astray), `words`."""
        if not self.objects:
            return words
        reading = Reading([self.tok.vocab[i] for i in out])
        if reading.open:  # inside a noun phrase: its colour, or its noun
            det, colour = reading.open[0], reading.open[1] if len(reading.open) == 2 else None
            fit = [o for o in self._candidates(reading, det) if colour is None or o[1] == colour]
            if colour is None:
                found = {o[1] if o[1] else noun(o, det) for o in fit}
            else:
                found = {noun(o, det) for o in fit}
            return sorted(self._id[w] for w in found) or words
        dets = {d for d in DETERMINERS if self._candidates(reading, d)}
        relation = " ".join(reading.relation)
        if reading.relation:
            if relation in INVERSE_RELATION:  # its object's determiner
                return sorted(self._id[d] for d in dets) or words
            return [self._id["of"]] if relation in ("left", "right") else words
        relations = RELATION_WORDS
        joined = bool(out) and self.tok.vocab[out[-1]] in JOINS
        if reading.after == "subject" or (joined and not self.description and reading.subject is not None):
            # the relations the prompt gives the subject that are not said yet, to an object it may
            # name (an `<ins>` goes on after "and" with another: "add a square left of the crosses and ...")
            relations = {r.split()[0] for r in self._open_relations(reading)}
        elif reading.after == "object":  # a clause is one relation
            relations = set()
        vocab = self.tok.vocab
        keep = [
            i
            for i in words
            if (vocab[i] not in RELATION_WORDS or vocab[i] in relations)
            and (vocab[i] not in DETERMINERS or vocab[i] in dets)
        ]
        if self.description:  # a description's words: noun phrases, relations, joins
            if reading.after == "subject" and reading.phrases[-1][0] == "the" and relations:
                keep = [i for i in keep if vocab[i] in relations]  # a "the" subject is there for a relation
            joined = not out or vocab[out[-1]] in JOINS  # a clause starts: with a noun phrase
            keep = [
                i
                for i in keep
                if (vocab[i] in DETERMINERS and reading.after is None)
                or (
                    not joined
                    and (vocab[i] in RELATION_WORDS or vocab[i].startswith("<") or (vocab[i] in JOINS and dets))
                )
            ]  # "and" when a clause can follow
            if self.planned is not None and not self._said_all(reading):
                keep = [i for i in keep if not vocab[i].startswith("<")]  # not closed before it says it all
        return keep or words
