"""What every generator is: a name, a record of what makes its images, and `generate`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ..errors import SketchloopError
from ..world import parser


@dataclass
class Generated:
    """An image and what it cost (flow steps, tokens, seconds: whatever the generator counts)."""

    image: Image.Image
    stats: dict[str, Any] = field(default_factory=dict)
    trajectory: Any = None  # the loop's Trajectory, for generators that run one


class Generator(Protocol):
    name: str
    record: dict[str, Any]  # what makes its images (name, checkpoint identity, options): JSON-able

    def generate(self, prompt: str, seed: int) -> Generated: ...


def made_by(name: str, **options: Any) -> dict[str, Any]:
    """A generator's record: its name, every option that can change an image, the version."""
    from .. import __version__

    return {"generator": name, **options, "sketchloop": __version__}


def record_id(record: dict[str, Any]) -> str:
    """A short name for a generator record (used for default image folders)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]


def device_type(device: str | None) -> str:
    """cpu or cuda: what can change an image's floats (which GPU of a kind does not)."""
    return (device or "cpu").split(":")[0]


MAX_PROMPT_WORDS = 64  # ShapesWorld's longest prompts (5 groups, 8 objects) have about 45


def check_prompt(prompt: str, oracle: bool = False, model_reads_it: bool = True) -> None:
    """Refuse, with one clear line, a prompt no run can start from: empty, too long, with a
    word the embedded model does not know, or one ShapesWorld cannot parse or draw (a
    contradiction, more objects than fit), as `render` refuses it; the embedded model and
    the ORACLE both read ShapesWorld's language. (Only the parser runs: no scorer.)"""
    if not prompt.strip():
        raise SketchloopError("the prompt is empty; give one such as 'a photo of a red circle above a blue square'")
    words = len(prompt.split())
    if words > MAX_PROMPT_WORDS:
        raise SketchloopError(
            f"the prompt has {words} words; at most {MAX_PROMPT_WORDS} (ShapesWorld scenes have "
            f"up to 5 groups and 8 objects)"
        )
    if model_reads_it and not oracle:  # a chat planner may use words the embedded model does not know
        from ..models.tokenizer import WordTokenizer

        unknown = WordTokenizer().unknown_words(prompt)
        if unknown and unknown[0].isdigit():
            raise SketchloopError(
                f"the embedded model reads numbers as words: write {unknown[0]!r} out (as in 'a star with six points')"
            )
        if unknown:
            raise SketchloopError(
                f"unknown word {unknown[0]!r} in the prompt; the model knows ShapesWorld's shapes, "
                f"the ten GenEval colours, counts one to four, left of/right of/above/below, in front of/behind "
                f"and a star's points"
            )
    if oracle or model_reads_it:
        parser.parse_prompt(prompt)  # grammar, contradictions, too many objects: one clear line before any work
