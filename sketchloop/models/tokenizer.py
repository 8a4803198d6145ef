"""A word-level tokenizer over ShapesWorld's vocabulary, the trajectory tags and the region
words (`x3 y12 s8`, models/regions.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import SketchloopError
from ..format import TAGS
from ..world.instructions import VERBS
from ..world.knowledge import knowledge_words
from ..world.vocab import COLORS, COUNT_WORDS, DEPTH_PHRASES, PLURALS, POINT_WORDS, RELATION_PHRASES, SHAPES
from .regions import REGION_WORDS

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORDS = (
    sorted(
        {
            "a",
            "an",
            "the",
            "photo",
            "of",
            "and",
            ",",
            "to",
            "not",
            "is",
            "are",
            "should",
            "be",
            "in",
            "prompt",
            "consistent",
            "inconsistent",
            "so",
            "far",
            "yet",
            "drawn",
            "missing",
            "still",
            "scene",
            "matches",
            ";",
            ":",
            "plan",
            "image",
            "asks",
            "for",
            "has",
            "description",
            "does",
            "say",
            "cannot",
            "read",
            "shows",
            "as",
        }
        | set(COLORS)
        | set(SHAPES)
        | set(PLURALS.values())
        | set(COUNT_WORDS)
        | set(VERBS)
        | {w for p in RELATION_PHRASES for w in p.split()}
    )
    + REGION_WORDS
)
# The knowledge base's words (world/knowledge.py) come last, so that a checkpoint from before
# them grows to this vocabulary with every old id kept (UnifiedModel.grown).
WORDS += sorted(knowledge_words() - set(WORDS) - set(SPECIAL) - set(TAGS))
# Depth and a star's points ("a red circle partly hiding a blue square", "a six-pointed star
# with", "should have six points"), last for the same reason.
DEPTH_AND_PARTS_WORDS = (
    {w for p in DEPTH_PHRASES for w in p.split()} | set(POINT_WORDS) | {"pointed", "points", "with", "have"}
)
WORDS += sorted(DEPTH_AND_PARTS_WORDS - set(WORDS))


class WordTokenizer:
    def __init__(self, vocab: list[str] | None = None):
        self.vocab = vocab or SPECIAL + TAGS + WORDS
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.index["<pad>"]

    def token_id(self, word: str) -> int:
        return self.index.get(word, self.index["<unk>"])

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"</?[a-z]+>|[xys][0-9]+\b|[a-z]+|[0-9]+|[,;:]", text.lower())

    def encode(self, text: str) -> list[int]:
        return [self.token_id(w) for w in self.words(text)]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` outside the vocabulary (they would encode as `<unk>`)."""
        return [w for w in self.words(text) if w not in self.index]

    def decode(self, ids: list[int]) -> str:
        text = " ".join(self.vocab[i] for i in ids if 0 <= i < len(self.vocab))
        return re.sub(r" ([,;:])", r"\1", text)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"vocab": self.vocab}, indent=0))

    @classmethod
    def load(cls, path: Path) -> "WordTokenizer":
        try:
            return cls(json.loads(path.read_text())["vocab"])
        except (OSError, ValueError, KeyError) as exc:
            raise SketchloopError(f"cannot read tokenizer {path}: {exc}") from None
