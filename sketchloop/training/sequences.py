"""Training examples for the unified model, from the data pipelines' parquet datasets.

Every dataset row becomes one token sequence in the trajectory format (format.py):

    <bos> <prompt> P </prompt> <ins> I </ins> <des> D </des> <img> x3 y12 s8 </img> ... <end>
          [<canvas> x 64] <inspect> T </inspect> [<refine> C </refine> <img> REGIONS </img>] <eos>

`<img> ... </img>` names the regions the image step paints (the objects that went away
and came, from the row's layouts; a model's own sketch row carries its regions as text); each
region's last token conditions one flow example
(the crop of the next image, drawn on the current canvas). `<canvas>` placeholders take
the patch embeddings of the canvas being inspected, as the inspector reads them at
inference (backends/unified.py `_read_canvas`).

What the loss covers, per kind:
- trajectories: every token after `</prompt>` and every region (plan + sketch); plans (text-only
  trajectories) the same, their image steps named by their regions alone (no flow example);
- inspect: from `<inspect>` on (the history may be self-sampled and wrong: no loss);
- refine: from `<inspect>` on, with the corrected image's regions and flow examples;
- corrections: the last step's regions and `</img>` only (the history and plan are the model's
  own; data/corrections.py); relabelled plans (meta `"teacher": "plan"`) the last step's
  `<ins>`, `<des>`, regions and `</img>`, or its `<end>`; a replan row (meta `"teacher":
  "replan"`) has a `rejected` step before it, the rejected plan's words and the verdict
  (`format.replan_text`), and learns the same. Their image steps hold no image: regions only,
  no flow example.
- facts: `<bos> S <eos>`, a plain sentence of the knowledge base (world/knowledge.py), all learned.
Single mode: `<bos> <prompt> P </prompt> <img> <full>` draws the final image in one go
(flow examples only), made from the trajectories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.schema import decode_png, read_dataset
from ..errors import SketchloopError
from ..format import BOS, CANVAS, END, EOS, INSPECT, REJECTION, prompt_text, single_text, tagged
from ..models.phrases import region_words
from ..models.regions import (
    PASTE_MARGIN,
    Region,
    box_pixels,
    changed_regions,
    coord_planes,
    crop,
    parse_regions,
    paste,
    region_of,
    to_float,
)
from ..models.tokenizer import WordTokenizer
from ..models.unified import phrase_mask
from ..world.instructions import is_add
from ..world.layout import Layout
from ..world.vocab import BACKGROUND


@dataclass
class FlowItem:
    """One crop to draw: conditioned on the hidden state at `pos`, drawn on `before` with the
    boxes of `earlier` regions already copied from `after` (None region: the whole canvas).
    Only their boxes: a whole crop of `after` around an earlier region would show this
    region's own object when it lies near, a leak the sampler never offers."""

    pos: int
    before: np.ndarray
    after: np.ndarray
    region: Region | None
    earlier: tuple[Region, ...] = ()
    phrase: tuple[int, ...] | None = None  # the words its condition reads (phrases.region_words)
    counted: bool = False  # the object it draws has a stated number of parts (a star's points)

    def _canvas(self) -> np.ndarray:
        """The canvas this region is drawn on: `before` with the earlier regions' boxes pasted,
        as the sampler pastes them."""
        canvas = self.before
        for r in self.earlier:
            canvas = paste(canvas, r, crop(self.after, r), PASTE_MARGIN)
        return canvas

    @cached_property
    def overlaps(self) -> bool:
        """Whether the region's box already holds paint where it is drawn (an object in front
        of another is drawn over it)."""
        if self.region is None:
            return False
        x0, y0, x1, y1 = box_pixels(self.region, self.before.shape[0])
        box = self._canvas()[max(0, y0) : y1, max(0, x0) : x1]
        return bool((box != np.asarray(BACKGROUND, dtype=box.dtype)).any())

    @property
    def hard(self) -> bool:
        """A crop the image expert meets rarely and draws worst: over paint or with counted parts."""
        return self.counted or self.overlaps

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(context, target, coords) as float arrays: 3 x S x S in [-1, 1] and 2 x S x S."""
        if self.region is None:
            n = self.after.shape[0]
            return to_float(self.before), to_float(self.after), coord_planes(None, n, n)
        canvas = self._canvas()
        context, target = crop(canvas, self.region), crop(self.after, self.region)
        return to_float(context), to_float(target), coord_planes(self.region, context.shape[0], canvas.shape[0])


@dataclass
class Example:
    ids: list[int]
    target: list[bool]
    canvases: list[np.ndarray] = field(default_factory=list)
    flows: list[FlowItem] = field(default_factory=list)


def blank_array(px: int) -> np.ndarray:
    out = np.empty((px, px, 3), dtype=np.uint8)
    out[:] = BACKGROUND
    return out


REGION_ORDERS = ("drawn", "raster")


def raster(regions: list[Region]) -> list[Region]:
    """One group's regions in reading order: top row first, then left to right."""
    return sorted(regions, key=lambda r: (r.gy, r.gx))


def encode_row(row: dict, tok: WordTokenizer, canvas_tokens: int, region_order: str = "drawn") -> Example:
    """One dataset row as a training sequence (see the module docstring). `region_order`: the
    regions of a teacher's `add` step in the order the teacher drew them ("drawn") or in reading
    order, top row first and left to right ("raster"; a correction's teacher regions too); a
    model's own sketches keep its order."""
    images = [decode_png(b) for b in row["images"]]
    layouts = [Layout.from_dict(json.loads(s)) if s else None for s in row["layouts"]]
    px = images[0].shape[0] if images else 64
    ex = Example([], [])
    learning = row["kind"] in ("trajectories", "plans")
    corrected = len(row["steps"]) - 1 if row["kind"] == "corrections" else -1  # the one step learned
    if corrected >= 0 and json.loads(row.get("meta") or "{}").get("teacher") in ("plan", "replan"):  # its plan too
        plan_from = corrected if row["steps"][-1]["type"] == "end" else corrected - 2
    else:
        plan_from = len(row["steps"])
    words: list[str] = []

    def add(text: str, learn: bool) -> None:
        ids = tok.encode(text)
        ex.ids.extend(ids)
        ex.target.extend([learn] * len(ids))
        words.extend(tok.vocab[i] for i in ids)

    def slots(tag: str, n: int) -> None:  # placeholders an image's embeddings fill (never learned)
        ex.ids.extend([tok.token_id(tag)] * n)
        ex.target.extend([False] * n)
        words.extend([tag] * n)

    if row["kind"] == "facts":
        add(BOS, False)
        add(" ".join(s["text"] for s in row["steps"]), True)
        add(EOS, True)
        return ex
    add(prompt_text(row["prompt"]), False)
    canvas, layout = blank_array(px), Layout()
    ins = ""
    for index, step in enumerate(row["steps"]):
        kind, text = step["type"], step["text"]
        if kind == "ins":
            ins = text
        if kind in ("ins", "des", "refine"):
            learning = learning or kind == "refine"
            add(tagged(kind, text), learning or index >= plan_from)
        elif kind == "end":
            add(END, learning or index >= plan_from)
        elif kind == "sketch" and step["image"] < 0:  # an image step named by its regions alone
            learn = learning or index == corrected
            if index == corrected and region_order == "raster" and is_add(ins):
                text = " ".join(r.text for r in raster(parse_regions(text)))  # the teacher's regions
            add("<img>", learn)
            if text:
                add(text, learn)
            add("</img>", learn)
        elif kind == "sketch":
            after, after_layout = images[step["image"]], layouts[step["image"]]
            # a model's own sketch names its regions; a teacher's image has a layout to diff
            if step["text"] or after_layout is None:
                regions = parse_regions(step["text"])
            else:
                regions = changed_regions(layout, after_layout)
                if region_order == "raster" and is_add(ins):
                    regions = raster(regions)
            add("<img>", learning)
            for j, region in enumerate(regions):
                add(region.text, learning)
                if learning:
                    phrase = region_words(words, len(words) - 1)
                    drawn = after_layout.objects if after_layout is not None else ()
                    ex.flows.append(
                        FlowItem(
                            len(ex.ids) - 1,
                            canvas,
                            after,
                            region,
                            tuple(regions[:j]),
                            tuple(phrase) if phrase else None,
                            any(o.points is not None and region_of(o) == region for o in drawn),
                        )
                    )
            add("</img>", learning)
            canvas, layout = after, (after_layout if after_layout is not None else layout)
        elif kind == "rejected":  # a plan the inspection rejected, before its correction (never learned)
            add(f"{text} {REJECTION}", False)
        elif kind == "inspect":
            learning = True
            slots(CANVAS, canvas_tokens)
            ex.canvases.append(canvas)
            add(tagged(INSPECT, text), True)
    add(EOS, learning)
    return ex


PLAN_VIEWS = ("off", "canvas", "blind")


def plan_view_examples(row: dict, tok: WordTokenizer, canvas_tokens: int, view: str = "canvas") -> list[Example]:
    """One example per plan of a trajectories row, and one for its `<end>`: the history before it
    unlearned, then (`view` "canvas") the canvas that plan is drawn on as `<canvas>` slots, then the
    plan with its regions (or `<end>`) learned; text only, no flow example. "blind": the same
    examples without the canvas (the baseline that holds everything else equal)."""
    full = encode_row(row, tok, canvas_tokens)
    images = [decode_png(b) for b in row["images"]]
    canvas = blank_array(images[0].shape[0] if images else 64)
    ins, end, close = tok.token_id("<ins>"), tok.token_id(END), tok.token_id("</img>")
    sketches = iter(s for s in row["steps"] if s["type"] == "sketch")
    out: list[Example] = []
    for start, token in enumerate(full.ids):
        if token not in (ins, end):
            continue
        stop = start + 1 if token == end else full.ids.index(close, start) + 1
        slots = canvas_tokens if view == "canvas" else 0
        out.append(
            Example(
                full.ids[:start] + [tok.token_id(CANVAS)] * slots + full.ids[start:stop],
                [False] * (start + slots) + full.target[start:stop],
                [canvas] if slots else [],
            )
        )
        if token == ins:
            step = next(sketches, None)
            if step is not None and step["image"] >= 0:
                canvas = images[step["image"]]
    return out


def single_example(row: dict, tok: WordTokenizer) -> Example:
    """Single mode: the prompt, `<img> <full>`, and the final image drawn on a blank canvas."""
    final = decode_png(row["images"][-1])
    ids = tok.encode(f"{single_text(row['prompt'])} </img>")
    return Example(ids, [False] * len(ids), [], [FlowItem(len(ids) - 2, blank_array(final.shape[0]), final, None)])


def load_examples(
    data_dirs: list[Path],
    kinds: set[str],
    tok: WordTokenizer,
    block_size: int,
    canvas_tokens: int,
    progress: bool = True,
    region_order: str = "drawn",
    plan_views: str = "off",
) -> tuple[list[Example], list[Example]]:
    """(sequence examples, single-mode examples) of the rows of `kinds` in `data_dirs`
    (`region_order`: see `encode_row`; `plan_views` "canvas" or "blind": each trajectory's plans
    also one by one, `plan_view_examples`)."""
    examples, singles = [], []
    for data_dir in data_dirs:
        table = read_dataset(Path(data_dir))
        found = set(table.column("kind").to_pylist())
        if not found & kinds:
            raise SketchloopError(
                f"{data_dir} holds {', '.join(sorted(found))} examples; this stage trains on "
                f"{', '.join(sorted(kinds))} (sketchloop data build --kind ...)"
            )
        for row in tqdm(table.to_pylist(), desc=f"read {Path(data_dir).name}", disable=not progress, leave=False):
            if row["kind"] not in kinds:
                continue
            ex = encode_row(row, tok, canvas_tokens, region_order)
            if len(ex.ids) <= block_size:
                examples.append(ex)
            if row["kind"] == "trajectories":
                singles.append(single_example(row, tok))
                if plan_views != "off":
                    examples += [
                        e for e in plan_view_examples(row, tok, canvas_tokens, plan_views) if len(e.ids) <= block_size
                    ]
    if not examples:
        raise SketchloopError(f"no example in {', '.join(map(str, data_dirs))} fits the model's {block_size} tokens")
    return examples, singles


def collate(
    examples: list[Example], pad_id: int, max_flows: int, rng: np.random.Generator, hard_share: float = 0.0
) -> dict:
    """Tensors for one step: inputs, next-token targets (-100: no loss), the canvases read
    (their slots are the `<canvas>` ids of the inputs, in order), and up to `max_flows` crop flow
    examples plus every whole-canvas one; a share `hard_share` of the crops, as far as the
    examples hold them, is drawn among the hard ones (`FlowItem.hard`)."""
    length = max(len(e.ids) for e in examples) - 1
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), length), -100, dtype=torch.long)
    canvases = []
    for i, e in enumerate(examples):
        seq = torch.tensor(e.ids)
        ids[i, : len(e.ids) - 1] = seq[:-1]
        learn = torch.tensor(e.target[1:])
        targets[i, : len(e.ids) - 1] = torch.where(learn, seq[1:], torch.full_like(seq[1:], -100))
        canvases.extend(e.canvases)
    out: dict = {"ids": ids, "targets": targets}
    if canvases:
        out["canvases"] = torch.from_numpy(np.stack([to_float(c) for c in canvases]))
    crops = [(i, f) for i, e in enumerate(examples) for f in e.flows if f.region is not None]
    fulls = [(i, f) for i, e in enumerate(examples) for f in e.flows if f.region is None]
    if len(crops) > max_flows and hard_share:
        hard = [k for k, (_, f) in enumerate(crops) if f.hard]
        chosen = set(rng.permutation(hard)[: int(round(max_flows * hard_share))].tolist())
        rest = [k for k in range(len(crops)) if k not in chosen]
        chosen |= set(rng.choice(rest, max_flows - len(chosen), replace=False).tolist())
        crops = [crops[k] for k in sorted(chosen)]
    elif len(crops) > max_flows:
        crops = [crops[k] for k in sorted(rng.choice(len(crops), max_flows, replace=False))]
    for name, items in (("crop", crops), ("full", fulls)):
        if not items:
            continue
        arrays = [f.arrays() for _, f in items]
        out[name] = {
            "row": torch.tensor([i for i, _ in items]),
            "pos": torch.tensor([f.pos for _, f in items]),
            "context": torch.from_numpy(np.stack([a[0] for a in arrays])),
            "target": torch.from_numpy(np.stack([a[1] for a in arrays])),
            "coords": torch.from_numpy(np.stack([a[2] for a in arrays])),
            "phrases": phrase_mask([f.phrase for _, f in items], length),
        }
    return out
