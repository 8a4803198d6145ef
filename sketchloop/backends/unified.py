"""The unified model in the loop's four roles (one object plays them all: one model).

Every call rebuilds the trajectory's text from the prompt and the plan history (with each
step's regions, format.py), so the roles mix freely with other backends' roles, and
every call samples from its own seed: no state carries from one call to the next.
- plan: `<ins>` or `<end>`, the instruction, `<des>`, then `<img>` and the regions, under
  the region grammar (models/rules/);
- sketch / refine: for each region, the hidden state at its last token conditions the
  Euler flow sampler on a crop of the current canvas; the crop is pasted back;
- inspect: the canvas is read as patch tokens, then `<inspect> ... </inspect>` and, when the
  model finds a conflict, `<refine> ... </refine>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import SketchloopError
from ..format import (
    CANVAS,
    END,
    OBJECT_ENDS,
    STEP_STARTS,
    history_text,
    plan_text,
    rejected_text,
    single_text,
    step_text,
    text_verdict,
)
from ..loop.roles import Critique, Plan
from ..models.flow import FLOW
from ..models.layout_check import LayoutCheck, region_rows
from ..models.phrases import region_words
from ..models.plan_check import FEATURES, PlanCheck
from ..models.regions import (
    PASTE_MARGIN,
    Region,
    coord_planes,
    crop,
    parse_regions,
    paste,
    regions_text,
    to_float,
    to_uint8,
)
from ..models.rules.lookahead import Placement
from ..models.rules.phrase_grammar import PhraseGrammar
from ..models.rules.region_grammar import RegionGrammar
from ..models.sampling import RegionSyntax, SamplingConfig, TextSession, euler_sample
from ..models.tokenizer import WordTokenizer
from ..models.unified import UnifiedModel, phrase_mask
from ..world.vocab import BACKGROUND, COLORS, COUNT_WORDS, DEPTH_PHRASES, PLURALS, POINT_WORDS, RELATIONS, SHAPES

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "shapes-unified"


PLAN_CHECK = 17.0  # nats, for a checkpoint without a trained plan check (models/plan_check.py)
IMAGE_CHECK = 0.0  # log flow error ratio, for a checkpoint without a trained plan check
# the kinds of word a plan check compares a written word with (a colour with colours, ...)
WORD_CATEGORIES = (
    COLORS,
    SHAPES + tuple(PLURALS.values()),
    ("a", "an", *COUNT_WORDS),
    tuple(sorted({w for r in RELATIONS for w in r.split() if w != "of"})),
)


def resolve_device(device: str | None) -> torch.device:
    """`device` (None: the CPU), refused with one line when it is not there."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SketchloopError(f"--device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise SketchloopError(
            f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible); use --device cpu"
        )
    return dev


def largest_gap(read: tuple[torch.Tensor, ...]) -> float:
    """The planner's largest surprise over a plan (`UnifiedRoles.plan_features`): the plan's
    score without a trained plan check."""
    return float(read[-1][:, FEATURES.index("gap")].max())


STEP_RESERVE = 100  # tokens one more plan (with its regions) and its inspection take, besides the canvas


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


_BEYOND_RULES = re.compile(  # the depth phrases and a star's points ("six points", "six-pointed")
    rf"\b({'|'.join(DEPTH_PHRASES)}|pointed|({'|'.join(POINT_WORDS)}) points)\b"
)


def _planar_only(prompt: str) -> None:
    """Refuse, with one line, a prompt the world's decode rules cannot read: depth and a star's points."""
    found = _BEYOND_RULES.search(prompt.lower())
    if found:
        raise SketchloopError(
            f"--guided: the world's decode rules know the planar relations and no star points, not "
            f"{found.group(0)!r}; run this prompt without --guided (the learned model alone)"
        )


class UnifiedRoles:
    """Planner, Sketcher, Inspector and Refiner backed by one UnifiedModel."""

    def __init__(
        self,
        model: UnifiedModel,
        tokenizer: WordTokenizer,
        config: SamplingConfig | None = None,
        plan_check: PlanCheck | None = None,
        layout_check: LayoutCheck | None = None,
    ):
        self.model, self.tok = model, tokenizer
        self.device = next(model.parameters()).device
        self.plan_check = plan_check.to(self.device) if plan_check is not None else None
        self.layout_check = layout_check.to(self.device) if layout_check is not None else None
        self.config = config or SamplingConfig()
        self.syntax = RegionSyntax(tokenizer)
        self.grammar = (  # the region grammar, guided only (models/rules/)
            RegionGrammar(tokenizer, self.config.separate, min_size=self.config.min_size)
            if self.config.guided
            else None
        )
        self.usage = {"flow_steps": 0, "text_tokens": 0}
        t = tokenizer.token_id
        self._starts = torch.tensor([t(w) for w in STEP_STARTS], device=self.device)
        self._prompt_tags = (t("<prompt>"), t("</prompt>"))
        self._object_ends = torch.tensor([t(w) for w in OBJECT_ENDS], device=self.device)
        region_ids = set(self.syntax.x + self.syntax.y + self.syntax.s)
        self._words = [i for i, w in enumerate(tokenizer.vocab) if not w.startswith("<") and i not in region_ids]
        self._choices = torch.tensor(self._words + [t("</ins>"), t("</des>")], device=self.device)
        category = torch.full((len(tokenizer.vocab),), -1, dtype=torch.long)
        for k, words in enumerate(WORD_CATEGORIES):
            for w in words:
                if w in tokenizer.index:
                    category[t(w)] = k
        self._category = category.to(self.device)
        self._choice_category = self._category[self._choices]

    def fork(self) -> "UnifiedRoles":
        """The same model and settings with usage counters of its own (one per trajectory, so
        that concurrent runs count their own compute; the weights are shared, read-only)."""
        return UnifiedRoles(self.model, self.tok, self.config, self.plan_check, self.layout_check)

    @classmethod
    def from_pretrained(
        cls, checkpoint: Path | None = None, config: SamplingConfig | None = None, device: str | None = None
    ) -> "UnifiedRoles":
        directory = checkpoint or SHIPPED_CHECKPOINT
        model, tok = UnifiedModel.from_pretrained(directory)
        return cls(
            model.to(resolve_device(device)),
            tok,
            config or SamplingConfig.from_pretrained(directory),
            PlanCheck.from_pretrained(directory),
            LayoutCheck.from_pretrained(directory),
        )

    @property
    def plan_threshold(self) -> float:
        """The plan score at which the self-check finds a plan conflict (SamplingConfig.plan_check)."""
        if self.config.plan_check is not None:
            return self.config.plan_check
        return self.plan_check.config.threshold if self.plan_check is not None else PLAN_CHECK

    @property
    def layout_threshold(self) -> float | None:
        """The layout score at which the self-check finds a plan conflict (SamplingConfig.layout_check;
        None: no layout check)."""
        if self.layout_check is None:
            return None
        return self.config.layout_check if self.config.layout_check is not None else self.layout_check.config.threshold

    @property
    def image_threshold(self) -> float:
        """The image doubt at which the self-check finds an image conflict (SamplingConfig.image_check)."""
        if self.config.image_check is not None:
            return self.config.image_check
        chosen = self.plan_check.config.image_threshold if self.plan_check is not None else None
        return IMAGE_CHECK if chosen is None else chosen

    # ------------------------------------------------------------------ helpers
    def _session(self, prompt: str, history: list[Plan]) -> TextSession:
        session = TextSession(self.model, self.tok.token_id(CANVAS), self._prompt_tags, self.tok.token_id("<img>"))
        session.feed(self.tok.encode(history_text(prompt, history)))
        return session

    def _read_canvas(self, session: TextSession, canvas: Image.Image) -> None:
        """The canvas as patch tokens."""
        array = self._canvas_array(canvas)
        session.feed(
            [self.tok.token_id(CANVAS)] * self.model.config.canvas_tokens,
            torch.from_numpy(to_float(array))[None].to(self.device),
        )

    def _room(self, session: TextSession, most: int, reserve: int) -> int:
        """How many tokens a text may take: at most `most`, leaving `reserve` of the context."""
        return max(1, min(most, self.model.config.block_size - len(session.ids) - reserve))

    def _text(
        self,
        session: TextSession,
        close: str,
        generator: torch.Generator,
        reserve: int = 4,
        phrases: PhraseGrammar | None = None,
        first: str | None = None,
    ) -> str:
        """Sample words up to the closing tag `close`; the words without it. A text stops where
        the context would keep less than `reserve` tokens (a plan leaves room for the canvas
        and its inspection, an inspection for its closing tags: cut, never a failure).
        `phrases`: its noun phrases copy the prompt's (models/rules/phrase_grammar.py); `first`: its first word."""
        t = self.tok.token_id
        words = self._words + [t(close)]
        room = self._room(session, self.config.max_words, reserve)
        rest = (lambda out: phrases.allowed(out, words)) if phrases else (lambda _: words)
        allowed = (lambda out: [t(first)] if not out else rest(out)) if first else rest
        out = session.sample(room, {t(close)}, generator, self.config.temperature, allowed)
        if out[-1] != t(close):
            session.feed([t(close)])
        self.usage["text_tokens"] += len(out)
        return self.tok.decode([i for i in out if i != t(close)])

    def _regions(
        self, session: TextSession, generator: torch.Generator, prompt: str, ins: str, history: list[Plan]
    ) -> list[tuple[Region, torch.Tensor]]:
        """Sample the regions after `<img>`; each with its condition. Guided, under the region
        grammar: an `add` of N objects writes N regions, clear of where earlier steps drew, each
        where the relations its `<ins>` states hold and leaving room for the objects still to
        come (models/rules/lookahead.py `Placement`); else under the regions' syntax alone."""
        start = len(session.ids)
        grammar = self.grammar
        if grammar is None:
            return self._sample_regions(session, generator, start, self.syntax.allowed)
        placement = Placement(self.tok, prompt, ins, [(p.ins, p.regions) for p in history])
        occupied = self._occupied(history) if ins.startswith("add ") else ()
        relate = self.config.relate_regions

        def allowed(prefix: list[int]) -> list[int]:
            written = parse_regions(self.tok.decode(prefix[: len(prefix) - len(prefix) % 3]))
            return grammar.allowed(
                prefix,
                occupied,
                count=placement.count,
                relations=placement.relations(written) if relate else (),
                rest=placement.rest(written) if relate else None,
            )

        return self._sample_regions(session, generator, start, allowed)

    def _sample_regions(
        self, session: TextSession, generator: torch.Generator, start: int, allowed: Callable[[list[int]], list[int]]
    ) -> list[tuple[Region, torch.Tensor]]:
        most = self._room(session, self.syntax.max_tokens, self._plan_reserve)
        temperature = self.config.region_temperature
        temperature = self.config.temperature if temperature is None else temperature
        if self.config.region_beams > 1 and temperature <= 0:
            out = session.beam(most, {self.syntax.end}, self.config.region_beams, allowed)
        else:
            out = session.sample(most, {self.syntax.end}, generator, temperature, allowed)
        self.usage["text_tokens"] += len(out)
        regions = parse_regions(self.tok.decode([i for i in out if i != self.syntax.end]))
        return [(r, self._condition(session, start + 3 * j + 2)) for j, r in enumerate(regions)]

    def _condition(self, session: TextSession, position: int) -> torch.Tensor:
        """The image expert's condition at `position` of the session (see UnifiedModel.condition)."""
        with torch.no_grad():
            states = torch.stack(session.hidden[: position + 1])[None]
            ids = torch.tensor([session.ids[: position + 1]], device=self.device)
            zero, pos = torch.tensor([0], device=self.device), torch.tensor([position], device=self.device)
            words = [self.tok.vocab[i] for i in session.ids[: position + 1]]
            phrases = phrase_mask([region_words(words, position)], ids.shape[1]).to(self.device)
            return self.model.condition(states, ids, zero, pos, self._starts, self._object_ends, phrases)[0]

    def _flow(
        self, context: np.ndarray, region: Region | None, cond: torch.Tensor, generator: torch.Generator
    ) -> np.ndarray:
        """One flow sample drawn on `context` (a crop of `region`, or the whole canvas for None)."""
        x = torch.from_numpy(to_float(context))[None].to(self.device)
        coords = torch.from_numpy(coord_planes(region, context.shape[0], self.model.config.canvas_px))[None].to(
            self.device
        )
        steps = self.config.flow_steps
        out = euler_sample(self.model, x, coords, cond[None], steps, generator, self.config.guidance)
        self.usage["flow_steps"] += steps
        return to_uint8(out[0].cpu())

    def _canvas_array(self, canvas: Image.Image) -> np.ndarray:
        px = self.model.config.canvas_px
        return np.asarray(canvas.convert("RGB").resize((px, px), Image.Resampling.BILINEAR))

    def _image(self, array: np.ndarray, size: tuple[int, int]) -> Image.Image:
        image = Image.fromarray(array)
        return image if image.size == size else image.resize(size, Image.Resampling.NEAREST)

    def _draw(
        self, canvas: Image.Image, regions: list[tuple[Region, torch.Tensor]], generator: torch.Generator
    ) -> Image.Image:
        """Each region's crop drawn by the flow sampler on the current canvas and pasted back."""
        array = self._canvas_array(canvas)
        for region, cond in regions:
            array = paste(array, region, self._flow(crop(array, region), region, cond, generator), PASTE_MARGIN)
        return self._image(array, canvas.size)

    # ------------------------------------------------------------------ roles
    @property
    def reads_canvas(self) -> bool:
        """Whether the planner reads the canvas before each plan (a checkpoint trained with `train
        --plan-views canvas`): the loop then passes `plan` and `replan` the canvas the step is drawn on."""
        return self.model.config.plan_view

    def plan(self, prompt: str, history: list[Plan], seed: int, canvas: Image.Image | None = None) -> Plan | None:
        """The next step, or None when the model ends the trajectory, when its last `<des>` is
        the whole prompt (guided, with `copy_phrases`: the training plans end there), or when its
        context could not hold another step and its inspection (STEP_RESERVE tokens): a
        planner that keeps adding and removing ends there instead of failing. A planner that
        `reads_canvas` reads `canvas` (the one the step is drawn on; blank before the first step)
        before it writes."""
        generator = _generator(seed)
        session = self._session(prompt, history)
        if self._full(session, self.model.config.canvas_tokens if self.reads_canvas else 0):
            return None
        if self.reads_canvas:
            if canvas is None and history:
                raise SketchloopError(
                    "this checkpoint's planner reads the canvas before each plan: pass plan() the canvas "
                    "the step is drawn on"
                )
            px = self.model.config.canvas_px
            self._read_canvas(session, canvas if canvas is not None else Image.new("RGB", (px, px), BACKGROUND))
        drawn = history[-1].des if history else ""
        if self.config.guided and not history:
            _planar_only(prompt)
        described = self._described(prompt)
        if described and drawn and described.complete(drawn):
            return None  # the last <des> is the whole prompt: the training plans end there
        return self._write_plan(session, generator, prompt, history, described)

    def _full(self, session: TextSession, view: int = 0) -> bool:
        """Whether the context after `session` (and a canvas `view` of that many tokens) cannot hold
        another step, its canvas and its inspection (STEP_RESERVE tokens)."""
        return len(session.ids) + view + self.model.config.canvas_tokens + STEP_RESERVE > self.model.config.block_size

    def _described(self, prompt: str) -> PhraseGrammar | None:
        """Guided with `copy_phrases`: the phrase grammar of `prompt` (None: the model alone)."""
        return PhraseGrammar(self.tok, prompt) if self.config.guided and self.config.copy_phrases else None

    def _write_plan(
        self,
        session: TextSession,
        generator: torch.Generator,
        prompt: str,
        history: list[Plan],
        described: PhraseGrammar | None,
    ) -> Plan | None:
        """`<ins>` or `<end>` after the session, then the instruction, `<des>` and the regions."""
        t = self.tok.token_id
        drawn = history[-1].des if history else ""
        guided = self.config.guided
        first = session.sample(1, set(), generator, self.config.temperature, lambda _: [t("<ins>"), t(END)])
        self.usage["text_tokens"] += 1
        if first[0] == t(END):
            return None
        ins = self._text(
            session,
            "</ins>",
            generator,
            self._plan_reserve,
            PhraseGrammar(self.tok, prompt, description=False, drawn=drawn) if described else None,
            first=None if self.config.edit_steps or not guided else "add",
        )
        session.feed([t("<des>")])
        des = self._text(
            session,
            "</des>",
            generator,
            self._plan_reserve,
            PhraseGrammar(self.tok, prompt, drawn=drawn, adds=ins) if described else None,
        )
        session.feed([t("<img>")])
        regions = [r for r, _ in self._regions(session, generator, prompt, ins, history)]
        return Plan(ins, des, " ".join(r.text for r in regions))

    @property
    def _plan_reserve(self) -> int:
        """What a plan leaves of the context: the canvas and a short inspection of it."""
        return self.model.config.canvas_tokens + 16

    def _occupied(self, history: list[Plan]) -> tuple[Region, ...]:
        """Where earlier steps drew: an `add` keeps clear of it (objects never overlap)."""
        return tuple(r for p in history for r in parse_regions(p.regions))

    def ground(self, prompt: str, history: list[Plan], seed: int) -> Plan:
        """`history[-1]` with the regions its image step paints: its own, or (a plan another
        backend wrote) sampled by the model under the region grammar."""
        last = history[-1]
        if last.regions:
            return last
        session = self._plan_session(prompt, history[:-1], last)
        regions = [r for r, _ in self._regions(session, _generator(seed), prompt, last.ins, history[:-1])]
        return Plan(last.ins, last.des, " ".join(r.text for r in regions), last.op, last.scene)

    def sketch(self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int) -> Image.Image:
        """The next image; with an empty history, single mode (the whole prompt in one flow)."""
        if not history:
            return self.single(prompt, canvas, seed)
        generator = _generator(seed)
        last = self.ground(prompt, history, seed)
        return self._draw(canvas, self._conditions(prompt, history[:-1], last), generator)

    def _conditions(self, prompt: str, history: list[Plan], plan: Plan) -> list[tuple[Region, torch.Tensor]]:
        """Each region `plan` (the step after `history`) paints, with the image expert's condition for it."""
        session = self._plan_session(prompt, history, plan)
        conds = []
        for region in parse_regions(plan.regions):
            session.feed(self.tok.encode(region.text))
            conds.append((region, self._condition(session, len(session.ids) - 1)))
        return conds

    def inspect(
        self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int, before: Image.Image | None = None
    ) -> Critique:
        """`<canvas> <inspect> T </inspect>`, and `<refine> C </refine>` when T finds a conflict;
        the verdict and where the conflict is (plan or image) are read from T itself. With
        `self_check` (the default) T's first words are the verdict of `checks` (the image check
        needs `before`, the canvas the step was drawn on), the rest sampled after them."""
        t = self.tok.token_id
        generator = _generator(seed)
        session = self._inspect_session(prompt, history, canvas)
        verdict = None
        if self.config.self_check:
            plan_doubt = self._plan_doubt(session)
            layout_doubt, layout_threshold = self._layout_doubt(session), self.layout_threshold
            image_doubt = self._image_doubt(self._step_conditions(session), canvas, before, generator)
            verdict = (
                "inconsistent plan"
                if (plan_doubt is not None and plan_doubt >= self.plan_threshold)
                or (layout_doubt is not None and layout_threshold is not None and layout_doubt >= layout_threshold)
                else "inconsistent image"
                if image_doubt is not None and image_doubt >= self.image_threshold
                else "consistent"
            )

        def fits(n: int) -> bool:  # a full context cuts the inspection short, never fails the run
            return len(session.ids) + n <= self.model.config.block_size

        if verdict is None:
            text = self._text(session, "</inspect>", generator)
        elif fits(len(self.tok.encode(verdict)) + 2):
            session.feed(self.tok.encode(verdict))
            text = self.tok.decode(self.tok.encode(f"{verdict} {self._text(session, '</inspect>', generator)}"))
        else:
            text = verdict
        consistent, target = text_verdict(text)
        if consistent:
            return Critique(True, text)
        if not fits(3):  # `<refine>`, a word and `</refine>`
            return Critique(False, text, "", target=target)
        session.feed([t("<refine>")])
        return Critique(False, text, self._text(session, "</refine>", generator), target=target)

    def checks(
        self, prompt: str, history: list[Plan], canvas: Image.Image, before: Image.Image | None, seed: int = 0
    ) -> tuple[float | None, float | None]:
        """How strongly the model's own likelihoods doubt the last step: (plan doubt, image doubt),
        the quantities `self_check` compares with `plan_threshold` and `image_threshold` (None: no
        plan, or no image check without `before`)."""
        session = self._session(prompt, history)
        return self._plan_doubt(session), self._image_doubt(
            self._step_conditions(session), canvas, before, _generator(seed)
        )

    def _step_conditions(self, session: TextSession) -> list[tuple[Region, torch.Tensor]]:
        """The regions of the session's last step (its `<img> R </img>`), each with the image
        expert's condition where the sketcher read it (`_conditions`: after the region's last
        token), read from the session's hidden states. Empty without a step or regions."""
        ids, t = session.ids, self.tok.token_id
        opens = [i for i, x in enumerate(ids) if x == t("<img>")]
        if not opens:
            return []
        start = opens[-1]
        end = next((i for i in range(start, len(ids)) if ids[i] == t("</img>")), len(ids))
        regions = parse_regions(self.tok.decode(ids[start + 1 : end]))
        return [(r, self._condition(session, start + 3 * (j + 1))) for j, r in enumerate(regions)]

    def plan_features(self, session: TextSession) -> tuple[torch.Tensor, ...] | None:
        """What the planner thought at each word of the session's last plan (`<ins> ... </des>`,
        the forced `<des>` left out): the word, the word before it, the part (0 `<ins>`, 1 from
        `</ins>`) and models/plan_check.py FEATURES: 1, the gap in nats between the likeliest word it could
        write there and the word written, the same gap among words of the written word's kind
        (colours, shapes, counts, relations; 0 for other words), the entropy of its choice.
        Read from the hidden states the session already holds. None without a plan."""
        ids, t = session.ids, self.tok.token_id
        starts = [i for i, x in enumerate(ids) if x == t("<ins>")]
        if not starts:
            return None
        start = starts[-1]
        end = next(i for i in range(start, len(ids)) if ids[i] == t("</des>"))
        with torch.no_grad():
            logp = torch.log_softmax(session.logits(torch.stack(session.hidden[start:end])), -1)
        said = torch.tensor(ids[start + 1 : end + 1], device=self.device)
        keep = said != t("<des>")  # `<des>` follows `</ins>` without a choice
        logp, said, previous = logp[keep], said[keep], torch.tensor(ids[start:end], device=self.device)[keep]
        choices = logp[:, self._choices]
        own = logp.gather(1, said[:, None])[:, 0]
        kind = self._category[said]
        same = self._choice_category[None, :] == kind[:, None]
        kind_best = choices.masked_fill(~same, float("-inf")).max(-1).values
        p = torch.softmax(choices, -1)
        features = torch.stack(
            [
                torch.ones_like(own),
                choices.max(-1).values - own,
                torch.where(kind >= 0, kind_best - own, torch.zeros_like(own)),
                -(p * torch.log(p.clamp_min(1e-12))).sum(-1),
            ],
            -1,
        )
        parts = torch.cumsum((said == t("</ins>")).long(), 0).clamp(max=1)
        return said, previous, parts, features

    def _plan_doubt(self, session: TextSession) -> float | None:
        """The last plan's score: the trained plan check's (models/plan_check.py), or without
        one the planner's largest surprise (the largest gap of `plan_features`). A plan that
        contradicts the prompt holds a word the planner, trained to copy the prompt, would not
        write. None without a plan."""
        read = self.plan_features(session)
        if read is None:
            return None
        if self.plan_check is None:
            return largest_gap(read)
        with torch.no_grad():
            return float(self.plan_check(*(x[None] for x in read), torch.ones_like(read[0], dtype=torch.bool)[None])[0])

    def layout_features(self, session: TextSession) -> torch.Tensor | None:
        """models/layout_check.py `region_rows` of the session: what the planner computed at each
        region written so far and at the last step's `</img>`, from the hidden states the session
        already holds. None without regions in the last step."""
        if not session.hidden:
            return None
        t = self.tok.token_id
        return region_rows(session.hidden, session.ids, t("<img>"), t("</img>"))

    def _layout_doubt(self, session: TextSession) -> float | None:
        """The layout check's score of the session's last step (None: no layout check, or no regions)."""
        if self.layout_check is None:
            return None
        rows = self.layout_features(session)
        return None if rows is None else self.layout_check.score(rows)

    def _region_words(self, session: TextSession, generator: torch.Generator, temperature: float) -> list[int]:
        """Region words sampled after the session's `<img>` under the regions' syntax alone, through
        `</img>` (counted as text written)."""
        syntax = self.syntax
        out = session.sample(syntax.max_tokens, {syntax.end}, generator, temperature, syntax.allowed)
        self.usage["text_tokens"] += len(out)
        return out

    def _plan_session(self, prompt: str, history: list[Plan], plan: Plan) -> TextSession:
        """The session after `history` and `plan`'s words, up to its `<img>`."""
        session = self._session(prompt, history)
        session.feed(self.tok.encode(f"{plan_text(plan.ins, plan.des)} <img>"))
        return session

    def resample_regions(self, prompt: str, history: list[Plan], plan: Plan, seed: int, temperature: float) -> Plan:
        """`plan`'s words with regions sampled at `temperature` under the regions' syntax alone
        (what `replan` tries for a flagged step)."""
        out = self._region_words(self._plan_session(prompt, history, plan), _generator(seed), temperature)
        return replace(plan, regions=regions_text(parse_regions(self.tok.decode(out))))

    def replan(
        self, prompt: str, history: list[Plan], rejected: Plan, seed: int, canvas: Image.Image | None = None
    ) -> Plan | None:
        """A correction of `rejected`, the step after `history` that the inspection found in conflict
        with the prompt. With `replan_reads_rejected` (a checkpoint trained on replans), the model
        writes the step again after `rejected`'s words and the verdict (`format.replan_text`); None
        when it would end there or writes the same words (keep the step). Else, where its words
        pass the plan check and a layout check is there, the same words with `replan_candidates`
        region sets sampled at `replan_temperature`, the one the layout check doubts least; None
        when none is doubted less than `rejected`'s (keep the step). Otherwise a new plan (`plan`)."""
        if self.config.replan_reads_rejected:
            return self._replan_after(prompt, history, rejected, seed)
        session = self._session(prompt, history)
        session.feed(self.tok.encode(step_text(rejected)))
        plan_doubt, doubt = self._plan_doubt(session), self._layout_doubt(session)
        if doubt is None or (plan_doubt is not None and plan_doubt >= self.plan_threshold):
            return self.plan(prompt, history, seed, canvas)
        base = self._plan_session(prompt, history, rejected)
        generator, best = _generator(seed), None
        for _ in range(self.config.replan_candidates):
            candidate = base.fork()
            regions = regions_text(
                parse_regions(self.tok.decode(self._region_words(candidate, generator, self.config.replan_temperature)))
            )
            if regions == rejected.regions:  # the rejected regions again: no correction, whatever float noise says
                continue
            score = self._layout_doubt(candidate)
            if score is not None and score < doubt:
                doubt, best = score, regions
        if best is None:
            return None
        return replace(rejected, regions=best)

    def _replan_after(self, prompt: str, history: list[Plan], rejected: Plan, seed: int) -> Plan | None:
        """The model's own correction of `rejected`, written after it and the verdict."""
        if self.reads_canvas:
            raise SketchloopError(
                "replan_reads_rejected is for a planner that does not read the canvas: set it false for this checkpoint"
            )
        session = self._session(prompt, history)
        session.feed(self.tok.encode(rejected_text(rejected)))
        if self._full(session):
            return None
        plan = self._write_plan(session, _generator(seed), prompt, history, self._described(prompt))
        if plan is None or (plan.ins, plan.des) == (rejected.ins, rejected.des):
            return None
        return plan

    def _image_doubt(
        self,
        regions: list[tuple[Region, torch.Tensor]],
        canvas: Image.Image,
        before: Image.Image | None,
        generator: torch.Generator,
    ) -> float | None:
        """How much worse the image expert explains what the last step drew than it explains it
        with no condition: for each region, the flow error on `check_draws` noisy versions of its
        crop under the step's condition over the error under the null condition (paired noise),
        the log of the largest ratio (> 0: some region does not look like what the plan says is
        there). The context of each region is what it was drawn on: `before` with the step's
        earlier regions pasted (exact while the step's regions keep apart, as the sampler keeps them).
        `regions`: the step's, with their conditions (`_step_conditions`). None without `before`
        or regions."""
        if before is None or not regions:
            return None
        after, context = self._canvas_array(canvas), self._canvas_array(before)
        crops, contexts, coords = [], [], []
        for region, _ in regions:
            crops.append(to_float(crop(after, region)))
            contexts.append(to_float(crop(context, region)))
            coords.append(coord_planes(region, crops[-1].shape[-1], self.model.config.canvas_px))
            context = paste(context, region, crop(after, region), PASTE_MARGIN)
        m = self.config.check_draws
        x, ctx, xy = (
            torch.from_numpy(np.stack(a)).repeat_interleave(m, 0).to(self.device) for a in (crops, contexts, coords)
        )
        noise = torch.randn(x.shape, generator=generator).to(self.device)
        times = ((torch.arange(m) + 0.5) / m).repeat(len(regions)).to(self.device)
        conds = torch.stack([c for _, c in regions]).repeat_interleave(m, 0)
        null = self.model.null_cond.expand_as(conds)

        def two(a: torch.Tensor) -> torch.Tensor:
            return torch.cat([a, a])

        with torch.no_grad():
            v = self.model.velocity(
                two(FLOW.add_noise(x, noise, times)), two(times), two(ctx), two(xy), torch.cat([conds, null])
            )
        self.usage["flow_steps"] += v.shape[0]
        err = ((v - two(FLOW.velocity_target(x, noise))) ** 2).mean((1, 2, 3)).view(2, len(regions), m).mean(-1)
        return float(torch.log(err[0] / err[1]).max())

    def _inspect_session(self, prompt: str, history: list[Plan], canvas: Image.Image) -> TextSession:
        session = self._session(prompt, history)
        self._read_canvas(session, canvas)
        session.feed([self.tok.token_id("<inspect>")])
        return session

    def _doubt(self, session: TextSession) -> float:
        """P(the inspection's first word is "inconsistent"), of the two verdict words."""
        assert session.last is not None
        with torch.no_grad():
            logits = session.logits(session.last).cpu()
        pair = logits[[self.tok.token_id("consistent"), self.tok.token_id("inconsistent")]]
        return float(torch.softmax(pair, -1)[1])

    def doubt(self, prompt: str, history: list[Plan], canvas: Image.Image) -> float:
        """How strongly the inspection's text doubts the step: P("inconsistent") of its first word
        (best-of-N keeps the candidate it doubts least)."""
        return self._doubt(self._inspect_session(prompt, history, canvas))

    def refine(
        self,
        prompt: str,
        history: list[Plan],
        canvas: Image.Image,
        critique: Critique,
        seed: int,
        before: Image.Image | None = None,
    ) -> Image.Image:
        """The last step drawn again on `before`, the canvas before it (its regions kept, new
        noise), so a refine repaints only that step's regions and the plan history stays true
        to the picture; without `before`, the regions are redrawn on `canvas`."""
        return self.sketch(prompt, history, before if before is not None else canvas, seed)

    def single(self, prompt: str, canvas: Image.Image, seed: int) -> Image.Image:
        """Single mode: the whole image from the prompt in one flow, no plan."""
        generator = _generator(seed)
        session = TextSession(self.model, self.tok.token_id(CANVAS), self._prompt_tags, self.tok.token_id("<img>"))
        session.feed(self.tok.encode(single_text(prompt)))
        cond = self._condition(session, len(session.ids) - 1)
        return self._image(self._flow(self._canvas_array(canvas), None, cond, generator), canvas.size)
