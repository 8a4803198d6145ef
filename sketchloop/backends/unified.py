"""The unified model in the loop's four roles (one object plays them all: one model).

Every call rebuilds the trajectory's text from the prompt and the plan history (with each
step's regions), so the roles mix freely with other backends' roles. Sampling:
- plan: `<ins>` or `<end>`, the instruction, `<des>`, then `<img>` and the regions, under
  a grammar mask (x, y, s, ... `</img>`) that also keeps the regions of one step from
  overlapping (`separate`; objects never overlap in the training data);
- sketch / refine: for each region, the hidden state at its last token conditions the
  Euler flow sampler on a crop of the current canvas; the crop is pasted back;
- inspect: the canvas is read as patch tokens, then `<inspect> ... </inspect>` and, when the
  model finds a conflict, `<refine> ... </refine>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..loop.roles import Critique, PlanStep
from ..models.regions import (REGION_WORDS, SIZE_TOKENS, Region, coord_planes, crop, free_sizes, parse_regions,
                              paste)
from ..world.layout import GRID
from ..models.sampling import TextSession, euler_sample
from ..models.tokenizer import WordTokenizer
from ..models.unified import UnifiedModel
from ..training.sequences import STEP_STARTS, history_text, to_float

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "shapes-unified"
MAX_REGIONS = 8


def _uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


class UnifiedRoles:
    """Planner, Sketcher, Inspector and Refiner backed by one UnifiedModel."""

    def __init__(self, model: UnifiedModel, tokenizer: WordTokenizer, seed: int = 0, flow_steps: int = 16,
                 guidance: float = 1.0, temperature: float = 0.3, max_words: int = 32, separate: bool = True):
        self.model, self.tok = model, tokenizer
        self.separate = separate  # sample the regions of one step apart (see _regions)
        self.flow_steps, self.guidance, self.temperature, self.max_words = flow_steps, guidance, temperature, max_words
        self.generator = torch.Generator().manual_seed(seed)
        self.usage = {"flow_steps": 0, "text_tokens": 0}
        self.last_inspection = ""
        t = tokenizer.token_id
        self._x = [t(w) for w in REGION_WORDS if w[0] == "x"]
        self._y = [t(w) for w in REGION_WORDS if w[0] == "y"]
        self._s = [t(f"s{i}") for i in SIZE_TOKENS]
        self._starts = torch.tensor([t(w) for w in STEP_STARTS])
        region_ids = set(self._x + self._y + self._s)
        self._words = [i for i, w in enumerate(tokenizer.vocab) if not w.startswith("<") and i not in region_ids]

    @classmethod
    def from_pretrained(cls, checkpoint: Path | None = None, **kwargs) -> "UnifiedRoles":
        model, tok = UnifiedModel.from_pretrained(checkpoint or SHIPPED_CHECKPOINT)
        return cls(model, tok, **kwargs)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    # ------------------------------------------------------------------ helpers
    def _session(self, prompt: str, history: list[PlanStep]) -> TextSession:
        session = TextSession(self.model, self.tok.token_id("<canvas>"))
        session.feed(self.tok.encode(history_text(prompt, [(h.ins, h.des, h.regions) for h in history])))
        return session

    def _read_canvas(self, session: TextSession, canvas: Image.Image) -> None:
        n = self.model.config.canvas_tokens
        session.feed([self.tok.token_id("<canvas>")] * n, torch.from_numpy(to_float(self._canvas_array(canvas)))[None])

    def _text(self, session: TextSession, close: str) -> str:
        """Sample words up to the closing tag `close`; the words without it."""
        t = self.tok.token_id
        words = self._words + [t(close)]
        out = session.sample(self.max_words, {t(close)}, self.generator, self.temperature, lambda _: words)
        if out[-1] != t(close):
            session.feed([t(close)])
        self.usage["text_tokens"] += len(out)
        return self.tok.decode([i for i in out if i != t(close)])

    def _regions(self, session: TextSession) -> list[tuple[Region, torch.Tensor]]:
        """Sample the regions after `<img>` (grammar-masked); each with its hidden state."""
        t = self.tok.token_id
        end = t("</img>")
        cycle = [self._x, self._y, self._s]

        def allowed(out: list[int]) -> list[int]:
            k = len(out) % 3
            if not self.separate:
                if k == 0:
                    return self._x + [end] if len(out) < 3 * MAX_REGIONS else [end]
                return cycle[k]
            # keep the regions of one step apart: objects in the data never overlap
            placed = parse_regions(self.tok.decode(out[: len(out) - k]))
            if k == 0:
                if len(out) >= 3 * MAX_REGIONS:
                    return [end]
                return [x for gx, x in enumerate(self._x)
                        if any(free_sizes(gx, gy, placed) for gy in range(GRID))] + [end]
            gx = self._x.index(out[-k])
            if k == 1:
                return [y for gy, y in enumerate(self._y) if free_sizes(gx, gy, placed)]
            gy = self._y.index(out[-1])
            return [self._s[SIZE_TOKENS.index(s)] for s in free_sizes(gx, gy, placed)]

        start = len(session.ids)
        out = session.sample(3 * MAX_REGIONS + 1, {end}, self.generator, self.temperature, allowed)
        self.usage["text_tokens"] += len(out)
        regions = parse_regions(self.tok.decode([i for i in out if i != end]))
        return [(r, self._condition(session, start + 3 * j + 2)) for j, r in enumerate(regions)]

    def _condition(self, session: TextSession, position: int) -> torch.Tensor:
        """The image expert's condition at `position` of the session (see UnifiedModel.condition)."""
        with torch.no_grad():
            states = torch.stack(session.hidden[:position + 1])[None]
            ids = torch.tensor([session.ids[:position + 1]])
            return self.model.condition(states, ids, torch.tensor([0]), torch.tensor([position]), self._starts)[0]

    def _flow(self, context: np.ndarray, region: Region | None, cond: torch.Tensor) -> np.ndarray:
        """One flow sample drawn on `context` (a crop of `region`, or the whole canvas for None)."""
        x = torch.from_numpy(to_float(context))[None]
        coords = torch.from_numpy(coord_planes(region, context.shape[0], self.model.config.canvas_px))[None]
        out = euler_sample(self.model, x, coords, cond[None], self.flow_steps, self.generator, self.guidance)
        self.usage["flow_steps"] += self.flow_steps
        return _uint8(out[0])

    def _canvas_array(self, canvas: Image.Image) -> np.ndarray:
        px = self.model.config.canvas_px
        return np.asarray(canvas.convert("RGB").resize((px, px), Image.BILINEAR))

    def _image(self, array: np.ndarray, size: tuple[int, int]) -> Image.Image:
        image = Image.fromarray(array)
        return image if image.size == size else image.resize(size, Image.NEAREST)

    def _draw(self, canvas: Image.Image, regions: list[tuple[Region, torch.Tensor]]) -> Image.Image:
        """Each region's crop drawn by the flow sampler on the current canvas and pasted back."""
        array = self._canvas_array(canvas)
        for region, cond in regions:
            array = paste(array, region, self._flow(crop(array, region), region, cond))
        return self._image(array, canvas.size)

    # ------------------------------------------------------------------ roles
    def plan(self, prompt: str, history: list[PlanStep]) -> PlanStep | None:
        t = self.tok.token_id
        session = self._session(prompt, history)
        first = session.sample(1, set(), self.generator, self.temperature, lambda _: [t("<ins>"), t("<end>")])
        self.usage["text_tokens"] += 1
        if first[0] == t("<end>"):
            return None
        ins = self._text(session, "</ins>")
        session.feed([t("<des>")])
        des = self._text(session, "</des>")
        session.feed([t("<img>")])
        regions = [r for r, _ in self._regions(session)]
        return PlanStep(ins, des, " ".join(r.text for r in regions))

    def sketch(self, prompt: str, history: list[PlanStep], canvas: Image.Image, seed: int) -> Image.Image:
        self.generator.manual_seed(seed)
        session = self._session(prompt, history[:-1])
        last = history[-1]
        session.feed(self.tok.encode(f"<ins> {last.ins} </ins> <des> {last.des} </des> <img>"))
        if not last.regions:  # another backend planned: the model places the step itself
            return self._draw(canvas, self._regions(session))
        conds = []
        for region in parse_regions(last.regions):
            session.feed(self.tok.encode(region.text))
            conds.append((region, self._condition(session, len(session.ids) - 1)))
        return self._draw(canvas, conds)

    def inspect(self, prompt: str, history: list[PlanStep], canvas: Image.Image) -> Critique:
        t = self.tok.token_id
        session = self._session(prompt, history)
        self._read_canvas(session, canvas)
        session.feed([t("<inspect>")])
        text = self._text(session, "</inspect>")
        self.last_inspection = text
        nxt = session.sample(1, set(), self.generator, self.temperature, lambda _: [t("<refine>"), t("<eos>")])
        self.usage["text_tokens"] += 1
        if nxt[0] != t("<refine>"):
            return Critique(True, text)
        return Critique(False, text, self._text(session, "</refine>"))

    def refine(self, prompt: str, history: list[PlanStep], canvas: Image.Image, command: str,
               seed: int) -> Image.Image:
        self.generator.manual_seed(seed)
        session = self._session(prompt, history)
        self._read_canvas(session, canvas)
        inspection = self.last_inspection or "inconsistent"  # another backend inspected
        session.feed(self.tok.encode(f"<inspect> {inspection} </inspect> <refine> {command} </refine> <img>"))
        return self._draw(canvas, self._regions(session))

    def single(self, prompt: str, canvas: Image.Image, seed: int) -> Image.Image:
        """Single mode: the whole image from the prompt in one flow, no plan."""
        self.generator.manual_seed(seed)
        session = TextSession(self.model, self.tok.token_id("<canvas>"))
        session.feed(self.tok.encode(f"<bos> <prompt> {prompt} </prompt> <img> <full>"))
        cond = self._condition(session, len(session.ids) - 1)
        return self._image(self._flow(self._canvas_array(canvas), None, cond), canvas.size)


class SingleSketcher:
    """The Sketcher that run_single calls: the unified model's single mode."""

    def __init__(self, roles: UnifiedRoles):
        self.roles = roles

    @property
    def usage(self) -> dict:
        return self.roles.usage

    def sketch(self, prompt: str, history: list[PlanStep], canvas: Image.Image, seed: int) -> Image.Image:
        return self.roles.single(prompt, canvas, seed)
