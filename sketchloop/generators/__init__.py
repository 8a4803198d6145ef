"""Image generators the evaluator can call by name: the unified model in staged or single
mode, and ORACLE upper bounds that use ShapesWorld's teachers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from ..errors import SketchloopError
from ..loop.roles import Roles
from ..loop.staged import DEFAULT_MAX_REFINES
from ..world.layout import sample_layout
from ..world import parser
from ..world.parser import parse_prompt
from ..world.render import DEFAULT_SIZE, blank_image, render


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


def _made_by(name: str, **options: Any) -> dict[str, Any]:
    from .. import __version__

    return {"generator": name, **options, "sketchloop": __version__}


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
        raise SketchloopError(f"the prompt has {words} words; at most {MAX_PROMPT_WORDS} (ShapesWorld scenes have "
                              f"up to 5 groups and 8 objects)")
    if model_reads_it and not oracle:  # a chat planner may use words the embedded model does not know
        from ..models.tokenizer import WordTokenizer

        unknown = WordTokenizer().unknown_words(prompt)
        if unknown:
            raise SketchloopError(f"unknown word {unknown[0]!r} in the prompt; the model knows ShapesWorld's shapes, "
                                  f"the ten GenEval colours, counts one to four and left of/right of/above/below")
    if oracle or model_reads_it:
        parser.parse_prompt(prompt)  # grammar, contradictions, too many objects: one clear line before any work


def _device_type(device: str | None) -> str:
    """cpu or cuda: what can change an image's floats (which GPU of a kind does not)."""
    return (device or "cpu").split(":")[0]


def record_id(record: dict[str, Any]) -> str:
    """A short name for a generator record (used for default image folders)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]


class OracleGenerator:
    """Parse the prompt, lay it out, render it: an upper bound that uses the world's teachers."""

    name = "oracle"

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self.record = _made_by(self.name, size=size)

    def generate(self, prompt: str, seed: int) -> Generated:
        graph = parse_prompt(prompt)
        layout = sample_layout(graph, np.random.default_rng(seed))
        return Generated(render(layout, self.size), {"oracle": True})


class LoopGenerator:
    """The staged loop (or single mode) over a set of roles; stats carry its compute.

    `roles_factory` gives the roles for one trajectory (roles keep no state between calls
    that changes their answers, so a factory may return the same objects every time)."""

    def __init__(self, name: str, roles_factory: Callable[[], Roles], mode: str = "staged",
                 size: int = DEFAULT_SIZE, max_iters: int = 8, oracle: bool = False,
                 max_refines: int = DEFAULT_MAX_REFINES, roles_record: dict[str, Any] | None = None):
        self.name, self.roles_factory, self.mode, self.size = name, roles_factory, mode, size
        self.max_iters, self.oracle, self.max_refines = max_iters, oracle, max_refines
        self.roles_record = dict(roles_record or {})
        options = {"mode": mode, "size": size} if mode == "single" else \
            {"mode": mode, "size": size, "max_iters": max_iters, "max_refines": max_refines}
        self.record = _made_by(name, **options, **self.roles_record)

    def with_roles(self, roles: Roles, roles_record: dict[str, Any]) -> "LoopGenerator":
        """The same loop settings with other roles."""
        return LoopGenerator(self.name, lambda: roles, self.mode, self.size, self.max_iters, self.oracle,
                             self.max_refines, {**self.roles_record, **roles_record})

    def run(self, prompt: str, seed: int, on_step: Callable[[Any], None] | None = None):
        """The trajectory for `prompt` and `seed`; `on_step` sees each step as it happens."""
        from ..loop.staged import run_single, run_staged

        roles = self.roles_factory().fork()
        blank = blank_image(self.size)
        if self.mode == "single":
            return run_single(prompt, roles.sketcher, blank, seed, on_step)
        return run_staged(prompt, roles, blank, seed, self.max_iters, self.max_refines, on_step)

    def generate(self, prompt: str, seed: int) -> Generated:
        traj = self.run(prompt, seed)
        return Generated(traj.final, {**traj.stats(), "oracle": self.oracle}, traj)


def oracle_generator(mode: str = "staged", size: int = DEFAULT_SIZE, max_iters: int = 8,
                     max_refines: int = DEFAULT_MAX_REFINES, name: str = "oracle-staged") -> LoopGenerator:
    """The loop with ShapesWorld's teachers in every role: an ORACLE upper bound."""
    from ..backends.wiring import oracle_roles

    return LoopGenerator(name, lambda: oracle_roles(size), mode, size, max_iters, oracle=True,
                         max_refines=max_refines)


def model_generator(mode: str, size: int = DEFAULT_SIZE, checkpoint=None, flow_steps: int = 16,
                    guidance: float = 1.0, max_iters: int = 8, temperature: float = 0.3,
                    max_refines: int = DEFAULT_MAX_REFINES, separate: bool = True,
                    device: str | None = None, min_size: int | None = None,
                    copy_phrases: bool = True, inspect_threshold: float | None = None) -> LoopGenerator:
    """The unified model (the shipped checkpoint unless `checkpoint`) in `mode` staged or single;
    `separate`: the planner's regions of one step are sampled apart; `min_size`: the smallest
    region size it writes (models/grammar.py; None: SamplingConfig's default); `copy_phrases`:
    the plans' noun phrases name the prompt's objects (models/grammar.py PhraseGrammar);
    `inspect_threshold`: the inspector's verdict by a threshold on its doubt (SamplingConfig)."""
    from ..backends.unified import SHIPPED_CHECKPOINT, SamplingConfig
    from ..backends.wiring import model_roles
    from ..models.unified import checkpoint_sha256

    config = SamplingConfig(flow_steps=flow_steps, guidance=guidance, temperature=temperature, separate=separate,
                            copy_phrases=copy_phrases, inspect_threshold=inspect_threshold,
                            **({} if min_size is None else {"min_size": min_size}))
    roles = model_roles(checkpoint, config, device)
    model = {"checkpoint": str(checkpoint or "shipped"),
             "checkpoint_sha256": checkpoint_sha256(checkpoint or SHIPPED_CHECKPOINT),
             "flow_steps": flow_steps, "guidance": guidance, "device": _device_type(device)}
    if mode == "staged":
        model.update({"temperature": temperature, "regions_apart": separate, "min_size": config.min_size,
                      "copy_phrases": copy_phrases, "inspect_threshold": inspect_threshold,
                      "max_words": config.max_words})
    return LoopGenerator(mode, lambda: roles, mode, size, max_iters, max_refines=max_refines, roles_record=model)


GENERATORS: dict[str, Callable[..., Generator]] = {
    "staged": lambda **kw: model_generator("staged", **kw),
    "single": lambda **kw: model_generator("single", **kw),
    "oracle": OracleGenerator,
    "oracle-staged": lambda size=DEFAULT_SIZE, **kw: oracle_generator("staged", size, **kw),
}


def register_generator(name: str, factory: Callable[..., Generator]) -> None:
    """Make a generator available to `sketchloop eval --generator NAME`."""
    GENERATORS[name] = factory


def get_generator(name: str, **kwargs: Any) -> Generator:
    if name not in GENERATORS:
        raise SketchloopError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](**kwargs)
