"""Image generators the evaluator can call by name: the unified model in staged or single
mode, the text-to-image baseline (models/t2i.py), best-of-N over any of them with the
unified model's inspector choosing, and ORACLE upper bounds that use ShapesWorld's teachers."""

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
                 max_refines: int = DEFAULT_MAX_REFINES, roles_record: dict[str, Any] | None = None,
                 inspect: bool = True):
        self.name, self.roles_factory, self.mode, self.size = name, roles_factory, mode, size
        self.max_iters, self.oracle, self.max_refines, self.inspect = max_iters, oracle, max_refines, inspect
        self.roles_record = dict(roles_record or {})
        options = {"mode": mode, "size": size} if mode == "single" else \
            {"mode": mode, "size": size, "max_iters": max_iters, "max_refines": max_refines}
        if mode != "single" and not inspect:
            options = {**options, "max_refines": 0, "inspect": False}
        self.record = _made_by(name, **options, **self.roles_record)

    def with_roles(self, roles: Roles, roles_record: dict[str, Any]) -> "LoopGenerator":
        """The same loop settings with other roles."""
        return LoopGenerator(self.name, lambda: roles, self.mode, self.size, self.max_iters, self.oracle,
                             self.max_refines, {**self.roles_record, **roles_record}, self.inspect)

    def run(self, prompt: str, seed: int, on_step: Callable[[Any], None] | None = None):
        """The trajectory for `prompt` and `seed`; `on_step` sees each step as it happens."""
        from ..loop.staged import run_single, run_staged

        roles = self.roles_factory().fork()
        blank = blank_image(self.size)
        if self.mode == "single":
            return run_single(prompt, roles.sketcher, blank, seed, on_step)
        return run_staged(prompt, roles, blank, seed, self.max_iters, self.max_refines, on_step, self.inspect)

    def generate(self, prompt: str, seed: int) -> Generated:
        traj = self.run(prompt, seed)
        return Generated(traj.final, {**traj.stats(), "oracle": self.oracle}, traj)


def oracle_generator(mode: str = "staged", size: int = DEFAULT_SIZE, max_iters: int = 8,
                     max_refines: int = DEFAULT_MAX_REFINES, name: str = "oracle-staged") -> LoopGenerator:
    """The loop with ShapesWorld's teachers in every role: an ORACLE upper bound."""
    from ..backends.wiring import oracle_roles

    return LoopGenerator(name, lambda: oracle_roles(size), mode, size, max_iters, oracle=True,
                         max_refines=max_refines)


ROOM_FOR = "every later object"  # what the look-ahead leaves room for (before session 25: the related ones, `True`)


def model_generator(mode: str, size: int = DEFAULT_SIZE, checkpoint=None, flow_steps: int = 16,
                    guidance: float = 1.0, max_iters: int = 8, temperature: float = 0.3,
                    max_refines: int = DEFAULT_MAX_REFINES, separate: bool = True,
                    device: str | None = None, min_size: int | None = None,
                    copy_phrases: bool = True, inspect_threshold: float | None = None,
                    self_check: bool = True, inspect: bool = True, relate_regions: bool | None = None,
                    leave_room: bool | None = None, keep_context: bool | None = None,
                    edit_steps: bool | None = None) -> LoopGenerator:
    """The unified model (the shipped checkpoint unless `checkpoint`) in `mode` staged or single;
    `separate`: the planner's regions of one step are sampled apart; `min_size`: the smallest
    region size it writes (models/grammar.py; None: SamplingConfig's default); `copy_phrases`:
    the plans' noun phrases name the prompt's objects (models/grammar.py PhraseGrammar);
    `inspect_threshold`: the inspector's verdict by a threshold on its doubt; `self_check`: by the
    model's own likelihoods of the step (SamplingConfig);
    `inspect=False`: plan and sketch only, no inspection (staged); `relate_regions`: an `add`'s
    regions meet the relations its `<ins>` states; `leave_room`: and leave room for every object
    of the prompt still to come (recorded as `ROOM_FOR`); `keep_context`: a drawn crop is pasted back
    only over its region's box; `edit_steps`: a plan may change, move or remove what is drawn
    (SamplingConfig; None: its defaults)."""
    from ..backends.unified import SHIPPED_CHECKPOINT, SamplingConfig
    from ..backends.wiring import model_roles
    from ..models.unified import checkpoint_sha256

    config = SamplingConfig(flow_steps=flow_steps, guidance=guidance, temperature=temperature, separate=separate,
                            copy_phrases=copy_phrases, inspect_threshold=inspect_threshold, self_check=self_check,
                            **({} if min_size is None else {"min_size": min_size}),
                            **({} if relate_regions is None else {"relate_regions": relate_regions}),
                            **({} if leave_room is None else {"leave_room": leave_room}),
                            **({} if keep_context is None else {"keep_context": keep_context}),
                            **({} if edit_steps is None else {"edit_steps": edit_steps}))
    roles = model_roles(checkpoint, config, device)
    model = {"checkpoint": str(checkpoint or "shipped"),
             "checkpoint_sha256": checkpoint_sha256(checkpoint or SHIPPED_CHECKPOINT),
             "flow_steps": flow_steps, "guidance": guidance, "device": _device_type(device)}
    if mode == "staged":
        model.update({"temperature": temperature, "regions_apart": separate, "min_size": config.min_size,
                      "copy_phrases": copy_phrases, "inspect_threshold": inspect_threshold,
                      "self_check": {"plan": roles.inspector.plan_threshold,
                                     "plan_check": "trained" if roles.inspector.plan_check else "surprise",
                                     "image": roles.inspector.image_threshold,
                                     "draws": config.check_draws} if self_check else False,
                      "max_words": config.max_words, "relate_regions": config.relate_regions,
                      "leave_room": ROOM_FOR if config.relate_regions and config.leave_room else False,
                      "keep_context": config.keep_context, "edit_steps": config.edit_steps})
    return LoopGenerator(mode, lambda: roles, mode, size, max_iters, max_refines=max_refines, roles_record=model,
                         inspect=inspect)


class TextToImageGenerator:
    """The text-to-image baseline (models/t2i.py): the whole canvas in one flow from the prompt."""

    name = "t2i"

    def __init__(self, checkpoint=None, size: int = DEFAULT_SIZE, flow_steps: int = 16, guidance: float = 1.0,
                 device: str | None = None):
        from ..models.t2i import TextToImageModel
        from ..models.unified import checkpoint_sha256

        if checkpoint is None:
            raise SketchloopError("--generator t2i needs --checkpoint: a folder from 'sketchloop train --stage t2i' "
                                  "(the text-to-image baseline is not shipped; scripts/paper_table.py trains it)")
        self.model, self.tok = TextToImageModel.from_pretrained(checkpoint)
        if self.model.config.canvas_px != size:
            raise SketchloopError(f"--size {size}: the text-to-image checkpoint draws {self.model.config.canvas_px} px")
        self.flow_steps, self.guidance, self.size = flow_steps, guidance, size
        self.record = _made_by(self.name, size=size, checkpoint=str(checkpoint),
                               checkpoint_sha256=checkpoint_sha256(checkpoint), flow_steps=flow_steps,
                               guidance=guidance, device=_device_type(device))

    def generate(self, prompt: str, seed: int) -> Generated:
        import time

        import torch

        from ..models.regions import to_uint8

        start = time.perf_counter()
        ids = torch.tensor([self.tok.encode(prompt)])
        x = self.model.sample(ids, self.tok.pad_id, self.flow_steps, torch.Generator().manual_seed(seed),
                              self.guidance)
        image = Image.fromarray(to_uint8(x[0]))
        return Generated(image, {"flow_steps": self.flow_steps, "text_tokens": 0, "images": 1,
                                 "seconds": round(time.perf_counter() - start, 4), "ended": True})


def candidate_seed(seed: int, k: int) -> int:
    """The seed of best-of-N's k-th candidate: the image's own seed first (so candidate 0 is the
    base generator's image), then seeds derived from it."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, 7, k]).generate_state(1)[0])


class BestOfGenerator:
    """Best-of-N: N images from a base generator, the unified model's inspector choosing the one
    it doubts least (its P("inconsistent") on the final canvas after the candidate's plans, or
    after the prompt alone for a one-pass image). The paper's PARM-style comparison; compute
    counts every candidate and every verdict read."""

    def __init__(self, base: Generator, n: int, inspector_checkpoint=None, device: str | None = None):
        from ..backends.unified import SHIPPED_CHECKPOINT, SamplingConfig, UnifiedRoles
        from ..models.unified import checkpoint_sha256

        if n < 1:
            raise SketchloopError("--best-of must be at least 1")
        self.base, self.n = base, n
        self.inspector = UnifiedRoles.from_pretrained(inspector_checkpoint, SamplingConfig(), device)
        self.name = f"best-of-{n}-{base.name}"
        self.record = _made_by("best-of", n=n, base=base.record,
                               inspector_checkpoint=str(inspector_checkpoint or "shipped"),
                               inspector_sha256=checkpoint_sha256(inspector_checkpoint or SHIPPED_CHECKPOINT))

    def generate(self, prompt: str, seed: int) -> Generated:
        import time

        best, totals, doubts = None, {"flow_steps": 0, "text_tokens": 0, "images": 0, "seconds": 0.0}, []
        for k in range(self.n):
            made = self.base.generate(prompt, candidate_seed(seed, k))
            start = time.perf_counter()
            plans = made.trajectory.plans if made.trajectory is not None else []
            doubt = self.inspector.doubt(prompt, plans, made.image)
            doubts.append(round(doubt, 4))
            for key in ("flow_steps", "text_tokens", "images"):
                totals[key] += made.stats.get(key, 0)
            totals["text_tokens"] += 1  # the verdict word read
            totals["seconds"] += made.stats.get("seconds", 0.0) + time.perf_counter() - start
            if best is None or doubt < best[0]:
                best = (doubt, k, made)
        doubt, k, made = best
        return Generated(made.image, {**totals, "seconds": round(totals["seconds"], 4), "ended": True,
                                      "chosen": k, "doubts": doubts}, made.trajectory)


GENERATORS: dict[str, Callable[..., Generator]] = {
    "staged": lambda **kw: model_generator("staged", **kw),
    "single": lambda **kw: model_generator("single", **kw),
    "t2i": TextToImageGenerator,
    "oracle": OracleGenerator,
    "oracle-staged": lambda size=DEFAULT_SIZE, **kw: oracle_generator("staged", size, **kw),
}


def register_generator(name: str, factory: Callable[..., Generator]) -> None:
    """Make a generator available to `sketchloop eval --generator NAME`."""
    GENERATORS[name] = factory


def get_generator(name: str, best_of: int = 1, inspector_checkpoint=None, **kwargs: Any) -> Generator:
    """The generator `name` made with `kwargs`; `best_of` N > 1: best-of-N over it, the unified
    model's inspector (`inspector_checkpoint`, default the shipped one) choosing."""
    if name not in GENERATORS:
        raise SketchloopError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    base = GENERATORS[name](**kwargs)
    if best_of == 1:
        return base
    return BestOfGenerator(base, best_of, inspector_checkpoint, kwargs.get("device"))
