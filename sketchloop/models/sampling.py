"""Sampling from the unified model, kept apart from the network: the sampling settings
(`SamplingConfig`, saved beside a checkpoint as sampling.json, as diffusers saves a
scheduler config), token sampling with a key/value cache and grammar masks, and an Euler
flow sampler with optional classifier-free guidance."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import SketchloopError, first_line
from .flow import FLOW
from .regions import MAX_REGIONS, REGION_WORDS
from .tokenizer import WordTokenizer
from .unified import KVCache, PromptMemory, UnifiedModel, prompt_memory

SAMPLING_FILE = "sampling.json"


@dataclass(frozen=True)
class SamplingConfig:
    """How the embedded model samples (docs/design.md, "Sampling", says why each default).

    flow_steps: Euler steps per region drawn (each one model call on a 24 px crop).
    guidance: classifier-free guidance scale for the flow (1 = off: one call per step).
    temperature: text sampling temperature for plans, regions and inspections (0: greedy, the most likely word).
    region_temperature: the temperature of the region tokens alone (None: `temperature`); the
        most likely token at each position of a layout need not make a likely layout.
    max_words: most tokens of one `<ins>`, `<des>`, `<inspect>` or `<refine>` text.
    separate: the regions of one step keep apart (the region grammar's `separate`).
    min_size: the smallest region size token the planner may write while a larger one fits.
    copy_phrases: the noun phrases and relations of plans are the prompt's (PhraseGrammar).
    relate_regions: an `add`'s regions meet the relations its own `<ins>` states and leave
        room for every object of the prompt still to come (the region grammar's `Placement`).
    edit_steps: a plan's `<ins>` may change, move or remove what earlier steps drew; off:
        every plan adds, and a wrong step is corrected only after its inspection.
    self_check: the inspector's verdict comes from the model's own likelihoods of the step
        (the plan check and the image check); off: the inspection's first word decides.
    guided: off (the default): the learned model alone, under the output's syntax only
        (`RegionSyntax`: well-formed region triples, at most MAX_REGIONS): nothing reads the
        prompt's content or the world's geometry, and the plan ends where the model writes
        `<end>`. On: constrained decoding with the world's rules (models/rules/), as
        `copy_phrases`, `relate_regions`, `separate`, `min_size` and `edit_steps` say; every
        number measured so is labelled GUIDED.
    plan_check, image_check, layout_check: the self-check's thresholds (None: the checkpoint's
        trained plan check's, models/plan_check.py, and layout check's, models/layout_check.py).
    check_draws: noisy versions of each region the image check scores (two flow calls each).
    region_beams: with greedy regions (temperature 0), the regions of a step are the likeliest
        the model gives by beam search of this width (1: token by token, the greedy choice).
    replan_candidates, replan_temperature: a correction of a step whose words pass the plan
        check but whose regions the layout check doubts samples this many region sets for the
        same words at this temperature and keeps the one the layout check doubts least.
    replan_reads_rejected: a correction of a flagged step is the model's own step written after
        the rejected one and the verdict (`format.replan_text`; a checkpoint trained on `data build
        --relabel replans` rows), where greedy planning would write the rejected step again.
    """

    flow_steps: int = 16
    guidance: float = 1.0
    temperature: float = 0.0
    region_temperature: float | None = None
    max_words: int = 80
    separate: bool = True
    min_size: int = 6
    copy_phrases: bool = True
    relate_regions: bool = True
    edit_steps: bool = False
    self_check: bool = True
    guided: bool = False
    plan_check: float | None = None
    image_check: float | None = None
    layout_check: float | None = None
    check_draws: int = 1
    region_beams: int = 1
    replan_candidates: int = 8
    replan_temperature: float = 0.7
    replan_reads_rejected: bool = False

    def __post_init__(self) -> None:
        if self.flow_steps < 1:
            raise SketchloopError(f"flow_steps {self.flow_steps}: use at least 1 flow step")
        if self.region_beams < 1:
            raise SketchloopError(f"region_beams {self.region_beams}: use at least 1 (1: greedy)")
        if self.replan_candidates < 1 or self.replan_temperature <= 0:
            raise SketchloopError(
                f"replan_candidates {self.replan_candidates}, replan_temperature {self.replan_temperature}: "
                "a correction samples at least 1 region set at a temperature above 0"
            )
        if not 4 <= self.min_size <= 10:
            raise SketchloopError(f"min_size {self.min_size}: region sizes are s4 to s10")

    def replace(self, **changes: Any) -> "SamplingConfig":
        """The same settings with `changes` (None values keep the setting)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"SamplingConfig has no setting {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_pretrained(cls, directory: Path | None) -> "SamplingConfig":
        """The settings saved beside a checkpoint (its sampling.json), or the defaults without one."""
        path = Path(directory) / SAMPLING_FILE if directory is not None else None
        if path is None or not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise SketchloopError(
                f"{path} is not a sampling config ({first_line(exc)[:160]}); fix or delete "
                f"it to sample with the defaults"
            ) from None

    def save_pretrained(self, directory: Path) -> None:
        """Write sampling.json into `directory` (atomically)."""
        from ..io import atomic_write_text

        atomic_write_text(Path(directory) / SAMPLING_FILE, json.dumps(asdict(self), indent=1) + "\n")


class RegionSyntax:
    """The syntax of an image step's regions, and nothing more: `x y s` triples of region
    words, at least one and at most `max_regions`, then `</img>` (`allowed(out)`: the token
    ids that may follow the region tokens `out`). The guided sampler's region grammar
    (models/rules/region_grammar.py) narrows this with the world's geometry."""

    def __init__(self, tokenizer: WordTokenizer, max_regions: int = MAX_REGIONS):
        t = tokenizer.token_id
        self.max_regions = max_regions
        self.x = [t(w) for w in REGION_WORDS if w[0] == "x"]
        self.y = [t(w) for w in REGION_WORDS if w[0] == "y"]
        self.s = [t(w) for w in REGION_WORDS if w[0] == "s"]
        self.end = t("</img>")

    @property
    def max_tokens(self) -> int:
        return 3 * self.max_regions + 1

    def allowed(self, out: list[int]) -> list[int]:
        k = len(out) % 3
        if k == 1:
            return self.y
        if k == 2:
            return self.s
        if len(out) >= 3 * self.max_regions:
            return [self.end]
        return self.x + ([self.end] if out else [])


class TextSession:
    """A growing token sequence and its cache: `feed` reads tokens (and canvases), `sample`
    writes new ones."""

    def __init__(
        self,
        model: UnifiedModel,
        canvas_id: int,
        prompt_tags: tuple[int, int] | None = None,
        region_open: int | None = None,
    ):
        """`prompt_tags`: the ids of `<prompt>` and `</prompt>` (what the pointer reads); `region_open`:
        the id of `<img>` (where the region map, `UnifiedModel.region_bias`, scores the next word)."""
        self.model, self.canvas_id, self.prompt_tags = model, canvas_id, prompt_tags
        self.region_open = region_open
        self._prompt: PromptMemory | None = None
        self.device = next(model.parameters()).device
        self.cache = KVCache()
        self.ids: list[int] = []
        self.last: torch.Tensor | None = None  # hidden state of the last position read
        self.hidden: list[torch.Tensor] = []  # hidden states of every position read

    @torch.no_grad()
    def feed(self, ids: list[int], canvases: torch.Tensor | None = None) -> torch.Tensor:
        """Read `ids` (with `canvases` for their `<canvas>` slots); their hidden states."""
        if not ids:
            return torch.empty(0, self.model.config.n_embd)
        x = torch.tensor([ids], device=self.device)
        h = self.model.hidden(x, canvases, x == self.canvas_id, cache=self.cache)[0]
        self.ids.extend(ids)
        self.hidden.extend(h)
        self.last = h[-1]
        return h

    def prompt(self) -> PromptMemory | None:
        """What the model's pointer reads of the prompt (None before `</prompt>` is read, or
        without `prompt_tags`, the ids of `<prompt>` and `</prompt>`)."""
        if self._prompt is None and self.prompt_tags is not None and self.prompt_tags[1] in self.ids:
            end = self.ids.index(self.prompt_tags[1]) + 1
            ids = torch.tensor([self.ids[:end]], device=self.device)
            self._prompt = prompt_memory(torch.stack(self.hidden[:end])[None], ids, *self.prompt_tags)
        return self._prompt

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's next-word scores for hidden states of this session (its pointer reads the prompt)."""
        return self.model.logits(hidden, self.prompt())

    @torch.no_grad()
    def next_logits(self) -> torch.Tensor:
        """The model's scores for the word after the last one read (with its region map, if any)."""
        assert self.last is not None, "feed the session before sampling from it"
        logits = self.logits(self.last)
        if self.region_open is not None:
            bias = self.model.next_region_bias(self.ids, self.hidden, self.region_open)
            if bias is not None:
                logits = logits + bias
        return logits

    @torch.no_grad()
    def sample(
        self,
        max_new: int,
        stop: set[int],
        generator: torch.Generator,
        temperature: float = 1.0,
        allowed: Callable[[list[int]], list[int] | None] | None = None,
    ) -> list[int]:
        """Up to `max_new` tokens, ending after one in `stop`; `allowed(out)` may restrict the next."""
        out: list[int] = []
        assert self.last is not None, "feed the session before sampling from it"
        for _ in range(max_new):
            logits = (self.next_logits() / max(temperature, 1e-6)).cpu()  # sampled with a CPU generator
            keep = allowed(out) if allowed else None
            if keep is not None:
                mask = torch.full_like(logits, -math.inf)
                mask[keep] = 0
                logits = logits + mask
            if temperature <= 1e-6:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(F.softmax(logits, -1), 1, generator=generator))
            out.append(token)
            self.feed([token])
            if token in stop:
                break
        return out

    def fork(self) -> "TextSession":
        """A copy that reads on independently (the cache's past tensors are shared, never changed)."""
        other = TextSession.__new__(TextSession)
        other.__dict__.update(self.__dict__)
        other.cache, other.ids, other.hidden = self.cache.copy(), list(self.ids), list(self.hidden)
        return other

    @torch.no_grad()
    def beam(
        self, max_new: int, stop: set[int], width: int, allowed: Callable[[list[int]], list[int] | None] | None = None
    ) -> list[int]:
        """The likeliest continuation the model gives of up to `max_new` tokens (by its summed
        log-probabilities), ending after one in `stop`, found by beam search of `width`; the
        session reads it as `sample` would. `allowed(out)` may restrict the next token."""
        assert self.last is not None, "feed the session before sampling from it"
        beams: list[tuple[float, list[int], TextSession]] = [(0.0, [], self)]
        done: list[tuple[float, list[int]]] = []
        for _ in range(max_new):
            grown = []
            for score, out, session in beams:
                assert session.last is not None
                logits = session.next_logits().cpu().float()
                keep = allowed(out) if allowed else None
                if keep is not None:
                    mask = torch.full_like(logits, -math.inf)
                    mask[keep] = 0
                    logits = logits + mask
                logp = F.log_softmax(logits, -1)  # over the allowed tokens
                top = logp.topk(min(width, len(keep) if keep is not None else logp.numel()))
                grown += [(score + float(v), out + [int(i)], session) for v, i in zip(top.values, top.indices)]
            grown.sort(key=lambda b: -b[0])
            beams = []
            for score, out, session in grown[:width]:
                if out[-1] in stop:
                    done.append((score, out))
                    continue
                session = session.fork()
                session.feed(out[-1:])
                beams.append((score, out, session))
            if not beams or (done and max(d[0] for d in done) >= beams[0][0]):
                break  # log-probabilities only fall: no live beam can beat the best finished one
        best = max(done + [(b[0], b[1]) for b in beams], key=lambda d: d[0])[1]
        self.feed(best)
        return best


@torch.no_grad()
def euler_sample(
    model: UnifiedModel,
    context: torch.Tensor,
    coords: torch.Tensor,
    cond: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    guidance: float = 1.0,
) -> torch.Tensor:
    """Integrate the flow from noise (t=0) to an image (t=1) in `steps` Euler steps (models/flow.py).
    `guidance` > 1 mixes conditional and unconditional velocities (classifier-free guidance)."""

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = model.velocity(x, t, context, coords, cond)
        if guidance != 1.0:
            v_uncond = model.velocity(x, t, context, coords, None)
            v = v_uncond + guidance * (v - v_uncond)
        return v

    noise = torch.randn(context.shape, generator=generator).to(context.device)  # drawn on the CPU: the same anywhere
    return FLOW.sample(velocity, noise, steps)


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """SamplingConfig settings from NAME=VALUE strings (`edit_steps=true`, `flow_steps=8`), each
    value read as JSON; one clear line for an unknown name or a value that is no JSON."""
    names = {f.name for f in fields(SamplingConfig)}
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in names:
            raise SketchloopError(f"{pair!r}: no sampling setting {name!r}; settings: {', '.join(sorted(names))}")
        try:
            settings[name] = json.loads(value)
        except ValueError:
            raise SketchloopError(f"{pair!r}: give the value as JSON (true, false, 8, 0.5, null)") from None
    return settings
