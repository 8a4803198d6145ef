"""The unified model: one causal transformer that writes the trajectory's text and reads
canvases, and an image expert that draws by flow matching, conditioned on it.

- Text: a nanoGPT-style transformer over word tokens (tokenizer.py). It writes plans
  (`<ins>`, `<des>`), the regions an image step paints (`<img> x3 y12 s8 </img>`),
  inspections, `<refine>` commands and `<end>`.
- Reading images: a `<canvas>` block of 64 placeholder tokens takes the patch embeddings
  of the current canvas (a 3-layer strided conv), so inspection attends to the pixels.
- Drawing: the image expert is a small UNet over a crop around each region (regions.py).
  It predicts the flow-matching velocity from the noisy crop, the current canvas crop and
  the crop's canvas coordinates, modulated (FiLM) by a condition read from the sequence
  (`_Reader`): the mean word embedding of the current step plus one cross-attention layer
  from the region token's hidden state over the step's hidden states, so the two experts
  share one representation (BAGEL's shared attention, made cheap: the image expert reads
  the sequence but never enters it).
  Single mode uses the same expert on the whole canvas from the `<full>` token.

Why this shape (measured, docs/design.md): placement is decided in text as lattice tokens, where
a small transformer learns relations cheaply; pixels are drawn locally, so the expert only
has to learn what a shape of a colour looks like, at 24x24 instead of 64x64.

Sampling lives in sampling.py; this file maps tensors to tensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SketchloopError, first_line
from .regions import GRID, REGION_FREQUENCIES, SIZE_STEPS, SIZE_TOKENS, region_word, region_word_features
from .tokenizer import WordTokenizer


@dataclass
class UnifiedConfig:
    vocab_size: int = 124
    block_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    canvas_px: int = 64
    canvas_grid: int = 8  # the canvas is read as canvas_grid**2 patch tokens
    unet_channels: tuple[int, int, int] = (24, 32, 48)
    cond_dropout: float = 0.1  # share of flow examples trained without the text condition (for CFG)
    copy_prompt: bool = False  # a pointer over the prompt's words mixed into the next-word head (_Pointer)
    region_coords: bool = False  # region words read and scored through their lattice value too (UnifiedModel.embed)
    plan_view: bool = False  # the planner reads the canvas (`<canvas>` slots) before each plan it writes
    region_map: bool = False  # region words also scored by a spatial head over the regions written before (_RegionMap)
    region_map_keys: int = 8  # the channels of what the region map reads of each region written before

    @property
    def canvas_tokens(self) -> int:
        return self.canvas_grid**2


class _Block(nn.Module):
    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )
        self.n_head = cfg.n_head

    def zero_outputs(self) -> None:
        """Zero the maps into the residual stream: the block adds nothing until it is trained."""
        for out_map in (self.proj, self.mlp[2]):
            assert isinstance(out_map, nn.Linear)
            nn.init.zeros_(out_map.weight)
            nn.init.zeros_(out_map.bias)

    def forward(self, x: torch.Tensor, cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.length
            if layer < len(cache.k):
                k, v = torch.cat([cache.k[layer], k], dim=2), torch.cat([cache.v[layer], v], dim=2)
                cache.k[layer], cache.v[layer] = k, v
            else:
                cache.k.append(k)
                cache.v.append(v)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class KVCache:
    """Keys and values of the positions already read, per layer (for sampling)."""

    def __init__(self) -> None:
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.length = 0

    def copy(self) -> "KVCache":
        other = KVCache()
        other.k, other.v, other.length = list(self.k), list(self.v), self.length
        return other


class _CanvasEncoder(nn.Module):
    """canvas_px x canvas_px RGB -> canvas_grid**2 embeddings."""

    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        layers, ch, size = [], 3, cfg.canvas_px
        widths = [32, 64]
        while size // 2 > cfg.canvas_grid:
            layers += [nn.Conv2d(ch, widths[0], 3, 2, 1), nn.GELU()]
            ch, size = widths[0], size // 2
            widths = widths[1:] + widths[-1:]
        layers += [nn.Conv2d(ch, cfg.n_embd, 3, 2, 1)]
        self.net = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.zeros(cfg.canvas_tokens, cfg.n_embd))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.net(canvas).flatten(2).transpose(1, 2) + self.pos


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    args = t[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(cond, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
        h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class _Reader(nn.Module):
    """The image expert's read of the sequence. The current step (from its `<ins>`,
    `<refine>` or `<prompt>` up to the region token) is read twice: the mean of its word
    embeddings (what to draw, at full strength from the first step of training) and an
    attention from the region token's hidden state over the step's hidden states and
    words (which region, and what the rest of the trajectory implies). A final hidden
    state alone mostly carries what the next token will be: conditioned on it, the flow
    ignored the words (measured: shuffling conditions changed the loss by 0.3%)."""

    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        d = cfg.n_embd
        self.n_head = cfg.n_head
        self.ln_q, self.ln_kv, self.ln_word, self.ln_bag = (nn.LayerNorm(d) for _ in range(4))
        self.q, self.kv, self.proj = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)

    def forward(
        self,
        query: torch.Tensor,
        states: torch.Tensor,
        words: torch.Tensor,
        span: torch.Tensor,
        bag_span: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, t, d = states.shape
        h = self.n_head
        weights = (span if bag_span is None else bag_span).to(words.dtype)[..., None]
        bag = (words * weights).sum(1) / weights.sum(1).clamp(min=1)
        q = self.q(self.ln_q(query)).view(n, h, 1, d // h)
        kv = self.kv(self.ln_kv(states) + self.ln_word(words))
        k, v = (z.view(n, t, h, d // h).transpose(1, 2) for z in kv.split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=span[:, None, None, :])
        return self.ln_bag(bag) + self.proj(y.reshape(n, d))


class PromptMemory(NamedTuple):
    """What the pointer reads of a sequence's prompt: hidden states (B, P, C), token ids (B, P)
    and which positions are prompt words (B, P bool)."""

    states: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor


def prompt_memory(hidden: torch.Tensor, ids: torch.Tensor, open_id: int, close_id: int) -> PromptMemory:
    """The prompt of each row of `hidden` (B, T, C) over `ids` (B, T): the words between `<prompt>`
    (`open_id`) and `</prompt>` (`close_id`)."""
    opened = torch.cumsum(ids == open_id, 1) > 0
    closed = torch.cumsum(ids == close_id, 1) > 0
    mask = opened & ~closed & (ids != open_id)
    return PromptMemory(hidden, ids, mask)


class _Pointer(nn.Module):
    """A learned copy mechanism: at each position, attention over the prompt's words gives a
    distribution over the words it holds, and a gate mixes it with the vocabulary head's
    (a pointer-generator). Keys read each prompt word's own state, its embedding and the state
    before it, so "the word after the one I copied last" is one attention away. The gate starts
    closed (bias -3): a checkpoint without the pointer keeps its predictions when one is added."""

    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        d = cfg.n_embd
        self.q, self.k, self.gate = nn.Linear(d, d), nn.Linear(3 * d, d), nn.Linear(d, 1)
        nn.init.normal_(self.q.weight, std=0.02)
        nn.init.normal_(self.k.weight, std=0.02)
        nn.init.zeros_(self.q.bias)
        nn.init.zeros_(self.k.bias)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -3.0)

    def forward(self, hidden: torch.Tensor, vocab_logits: torch.Tensor, words: torch.Tensor, memory: PromptMemory):
        """Log-probabilities (B, T, V) of the mixture, for `hidden` (B, T, C) and its head's logits."""
        previous = torch.cat([torch.zeros_like(memory.states[:, :1]), memory.states[:, :-1]], 1)
        keys = self.k(torch.cat([memory.states, previous, words], -1))  # B, P, C
        scores = self.q(hidden) @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])  # B, T, P
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        attn = torch.softmax(scores, -1).nan_to_num(0.0)  # a row without a prompt copies nothing
        copy = torch.zeros_like(vocab_logits).scatter_add_(
            2, memory.ids[:, None, :].expand(-1, hidden.shape[1], -1), attn
        )
        gate = torch.sigmoid(self.gate(hidden)) * memory.mask.any(1)[:, None, None]
        mixed = (1 - gate) * torch.softmax(vocab_logits, -1) + gate * copy
        return torch.log(mixed.clamp(min=1e-12))


def region_cells(gx: torch.Tensor, gy: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(N, GRID, GRID) [y, x]: the share of each lattice cell that the boxes of regions `gx`, `gy`, `s`
    (N lattice indices and size words) cover: what a region token means, on the lattice it names."""
    cells = torch.arange(GRID, device=gx.device, dtype=torch.float32)
    half = s.float() * GRID / (2 * SIZE_STEPS)  # half a side, in cells

    def cover(centre: torch.Tensor) -> torch.Tensor:  # (N, GRID): overlap of [c - h, c + h] with each cell
        lo, hi = (centre.float() + 0.5 - half)[:, None], (centre.float() + 0.5 + half)[:, None]
        return (torch.minimum(hi, cells + 1) - torch.maximum(lo, cells)).clamp(min=0, max=1)

    return cover(gy)[:, :, None] * cover(gx)[:, None, :]


class _RegionMap(nn.Module):
    """A spatial head for region words. Each region written before (a complete `x y s` triple in
    the sequence) is painted on a GRID x GRID map over the cells its box covers, carrying a key
    read from the hidden state at its size word (which object it is) and a channel of coverage.
    At the position before a region's `x`, the hidden state there modulates the map (FiLM), the
    map and its running maxima in the four directions (what lies left, right, above and below
    each cell) go through dilated convolutions, and the result is a score for every (size, y, x)
    of the next region: one joint layout score that the `x`, `y` and size words add to their own
    (`UnifiedModel.region_bias`). Its last layer starts at zero: added to a trained model, it
    changes no prediction until it is trained."""

    def __init__(self, cfg: UnifiedConfig, width: int = 32):
        super().__init__()
        d, channels = cfg.n_embd, cfg.region_map_keys
        c = channels + 1
        self.key = nn.Linear(d, channels)
        self.film = nn.Linear(d, 2 * c)
        self.query = nn.Linear(d, width)
        self.inp = nn.Conv2d(6 * c + 2, width, 1)
        self.mid = nn.ModuleList(nn.Conv2d(width, width, 3, padding=k, dilation=k) for k in (1, 2, 4))
        self.out = nn.Conv2d(width, len(SIZE_TOKENS), 3, padding=1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def paint(self, keys: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """(N, channels + 1, GRID, GRID): each region's key over its cells, and its coverage."""
        return torch.cat([self.key(keys)[:, :, None, None] * cells[:, None], cells[:, None]], 1)

    def forward(self, memory: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Scores (N, sizes, GRID, GRID) [size, y, x] of the next region for maps `memory` (N, c, G, G)
        and the hidden states `query` (N, C) at the position before its `x`."""
        scale, shift = self.film(query)[:, :, None, None].chunk(2, 1)
        gated = F.relu(memory * (1 + scale) + shift)
        runs = [
            torch.cummax(gated, 3).values,
            torch.cummax(gated.flip(3), 3).values.flip(3),
            torch.cummax(gated, 2).values,
            torch.cummax(gated.flip(2), 2).values.flip(2),
        ]
        n, g = memory.shape[0], memory.shape[-1]
        axis = (torch.arange(g, device=memory.device, dtype=memory.dtype) + 0.5) / g
        coords = torch.stack([axis[None, :].expand(g, g), axis[:, None].expand(g, g)])[None].expand(n, -1, -1, -1)
        h = F.gelu(self.inp(torch.cat([memory, gated, *runs, coords], 1)) + self.query(query)[:, :, None, None])
        for conv in self.mid:
            h = h + F.gelu(conv(h))
        return self.out(h)


class _FlowUNet(nn.Module):
    """Velocity of a noisy crop given the canvas crop, coordinates and a condition vector."""

    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        c1, c2, c3 = cfg.unet_channels
        d = cfg.n_embd
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.cond = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.stem = nn.Conv2d(3 + 3 + 2, c1, 3, padding=1)
        self.down1, self.pool1 = _ResBlock(c1, c1, d), nn.Conv2d(c1, c2, 3, 2, 1)
        self.down2, self.pool2 = _ResBlock(c2, c2, d), nn.Conv2d(c2, c3, 3, 2, 1)
        self.mid1, self.mid2 = _ResBlock(c3, c3, d), _ResBlock(c3, c3, d)
        self.up2, self.dec2 = nn.Conv2d(c3, c2, 3, padding=1), _ResBlock(2 * c2, c2, d)
        self.up1, self.dec1 = nn.Conv2d(c2, c1, 3, padding=1), _ResBlock(2 * c1, c1, d)
        self.out_norm, self.out = nn.GroupNorm(8, c1), nn.Conv2d(c1, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, coords: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        c = F.silu(self.time(_timestep_embedding(t, cond.shape[-1])) + self.cond(cond))
        h1 = self.down1(self.stem(torch.cat([x_t, context, coords], dim=1)), c)
        h2 = self.down2(self.pool1(h1), c)
        h = self.mid2(self.mid1(self.pool2(h2), c), c)
        h = self.dec2(torch.cat([self.up2(F.interpolate(h, size=h2.shape[-2:])), h2], dim=1), c)
        h = self.dec1(torch.cat([self.up1(F.interpolate(h, size=h1.shape[-2:])), h1], dim=1), c)
        return self.out(F.silu(self.out_norm(h)))


def phrase_mask(rows: Sequence[Sequence[int] | None], length: int) -> torch.Tensor:
    """(N, length) bool: True at each row's positions (`phrases.region_words`); a None row is all
    False (the condition reads the step's first object)."""
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for n, positions in enumerate(rows):
        if positions:
            mask[n, positions] = True
    return mask


CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# config keys of earlier versions, with the one value this version reads the same way
RETIRED = {"bag": "phrase", "look_grid": 0, "max_looks": 4}


def checkpoint_sha256(directory: Path) -> str:
    """The identity of a checkpoint: SHA-256 over its three files and its plan check's and layout
    check's, when it has them (any change to any of them changes it). Missing files hash as empty:
    loading reports them."""
    import hashlib

    from . import layout_check, plan_check

    heads = (plan_check.WEIGHTS_FILE, plan_check.CONFIG_FILE, layout_check.WEIGHTS_FILE, layout_check.CONFIG_FILE)
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES + tuple(f for f in heads if (Path(directory) / f).is_file()):
        digest.update(name.encode())
        path = Path(directory) / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(partial(f.read, 1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def write_checkpoint(directory: Path, model: Any, model_type: str, tokenizer: WordTokenizer) -> None:
    """A model's checkpoint folder: model.safetensors, config.json (`model_type` and its config
    dataclass) and tokenizer.json, each written atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.safetensors.tmp"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(directory / "model.safetensors")
    atomic_write_text(
        directory / "config.json", json.dumps({"model_type": model_type, **asdict(model.config)}, indent=1)
    )
    atomic_write_text(directory / "tokenizer.json", json.dumps({"vocab": tokenizer.vocab}))


class UnifiedModel(nn.Module):
    region_features: torch.Tensor  # a buffer (vocab, features) with `config.region_coords` (index_region_words)
    region_axis: torch.Tensor  # buffers (vocab,) with `config.region_map`: a word's axis (0 x, 1 y, 2 size, -1
    region_value: torch.Tensor  # none) and its lattice index (sizes from 0 = s4)

    def __init__(self, config: UnifiedConfig):
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.pointer = _Pointer(config) if config.copy_prompt else None
        self.canvas = _CanvasEncoder(config)
        self.reader = _Reader(config)
        self.flow = _FlowUNet(config)
        self.null_cond = nn.Parameter(torch.zeros(config.n_embd))
        for m in (self.tok, self.pos, self.head, *self.blocks):
            m.apply(self._init)
        self.coord_in: nn.Linear | None = None
        self.coord_out: nn.Linear | None = None
        if config.region_coords:  # zero at first: adding them changes no prediction (grown)
            width = 3 * (1 + 2 * REGION_FREQUENCIES)
            self.register_buffer("region_features", torch.zeros(config.vocab_size, width))
            self.coord_in = nn.Linear(width, config.n_embd, bias=False)
            self.coord_out = nn.Linear(width, config.n_embd, bias=False)
            nn.init.zeros_(self.coord_in.weight)
            nn.init.zeros_(self.coord_out.weight)
        self.region_map = _RegionMap(config) if config.region_map else None
        if config.region_map:
            self.register_buffer("region_axis", torch.full((config.vocab_size,), -1, dtype=torch.long))
            self.register_buffer("region_value", torch.zeros(config.vocab_size, dtype=torch.long))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token `ids`. With `config.region_coords`, a region word's also holds
        a learned map of its lattice value (regions.region_word_features): x6 starts near x7, and
        "left of x9" is a direction in embedding space rather than a list of words."""
        x = self.tok(ids)
        if self.coord_in is not None:
            x = x + self.coord_in(self.region_features[ids])
        return x

    def hidden(
        self,
        ids: torch.Tensor,
        canvases: torch.Tensor | None = None,
        canvas_slots: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, C). `canvases` (M, 3, H, W) in [-1, 1] fill the
        `canvas_slots` (B, T bool, M * canvas_tokens True, in order) with patch embeddings.
        With a `cache`, `ids` continue the positions it holds, and it is extended."""
        start = cache.length if cache is not None else 0
        t = ids.shape[1]
        if start + t > self.config.block_size:
            raise SketchloopError(
                f"the trajectory reached {start + t} tokens, past the model's "
                f"{self.config.block_size}; use a shorter prompt or fewer --max-iters"
            )
        x = self.embed(ids)
        if canvases is not None and len(canvases):
            x = x.clone()
            x[canvas_slots] = self.canvas(canvases).reshape(-1, x.shape[-1]).to(x.dtype)
        x = x + self.pos(torch.arange(start, start + t, device=ids.device))
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += t
        return self.ln(x)

    def logits(self, hidden: torch.Tensor, prompt: PromptMemory | None = None) -> torch.Tensor:
        """Next-word scores for `hidden` (..., C). With the pointer (`config.copy_prompt`) and the
        sequence's `prompt` (rows matching `hidden`'s: (B, T, C) with B rows, or (C,) / (T, C)
        with one), log-probabilities of the head's words mixed with copies of the prompt's."""
        weight = self.head.weight
        if self.coord_out is not None:  # a region word's score also reads its lattice value
            weight = weight + self.coord_out(self.region_features)
        out = F.linear(hidden, weight)
        if self.pointer is None or prompt is None:
            return out
        shape = out.shape
        h = hidden if hidden.dim() == 3 else hidden.reshape(1, -1, hidden.shape[-1])
        mixed = self.pointer(h, out.reshape(h.shape[0], h.shape[1], -1), self.embed(prompt.ids), prompt)
        return mixed.reshape(shape)

    def region_bias(self, hidden: torch.Tensor, ids: torch.Tensor, opens: int, only: int | None = None) -> torch.Tensor:
        """What the region map adds to the next-word scores (B, T, V) of `hidden` (B, T, C) over token
        `ids` (B, T; `opens` the id of `<img>`). Wherever a region may start (after `<img>` or a
        region's size word) the map of the regions written before in the row scores every (size, y, x);
        the `x` words there read it summed over sizes and rows; where a region does start, its `y`
        reads the column of the `x` written and its size the cell of both (each centred, so a map of
        zeros adds nothing). `only`: score the map at that position alone (and the region written
        from it), zeros elsewhere. Zeros without `config.region_map`."""
        bias = torch.zeros(*ids.shape, self.config.vocab_size, device=hidden.device, dtype=hidden.dtype)
        if self.region_map is None or ids.shape[1] < 2:
            return bias
        axis, value = self.region_axis[ids], self.region_value[ids]
        start = torch.zeros_like(ids, dtype=torch.bool)  # the x of each complete region
        start[:, :-2] = (axis[:, :-2] == 0) & (axis[:, 1:-1] == 1) & (axis[:, 2:] == 2)
        after = torch.zeros_like(start)
        after[:, 2:] = start[:, :-2]
        may_start = (ids == opens) | after
        if only is not None:
            may_start[:, :only] = False
            may_start[:, only + 1 :] = False
        rows_q, pos_q = may_start.nonzero(as_tuple=True)  # where a region may start
        if not len(rows_q):
            return bias
        rows, pos = start.nonzero(as_tuple=True)
        cells = region_cells(value[rows, pos], value[rows, pos + 1], value[rows, pos + 2] + SIZE_TOKENS[0])
        paint = self.region_map.paint(hidden[rows, pos + 2], cells)  # Nt, c, G, G
        earlier = (rows[None, :] == rows_q[:, None]) & (pos[None, :] + 2 <= pos_q[:, None])  # Nq, Nt
        memory = (earlier.to(paint.dtype) @ paint.flatten(1)).view(len(rows_q), *paint.shape[1:])
        scores = self.region_map(memory, hidden[rows_q, pos_q])  # Nq, sizes, G (y), G (x)
        words = [(self.region_axis == a).nonzero(as_tuple=True)[0] for a in range(3)]
        words = [w[self.region_value[w].argsort()] for w in words]
        by_x = scores.logsumexp((1, 2)) - math.log(len(SIZE_TOKENS) * GRID)
        bias = bias.index_put((rows_q[:, None], pos_q[:, None], words[0][None, :]), by_x)
        where = torch.full(ids.shape, -1, dtype=torch.long, device=ids.device)
        where[rows_q, pos_q] = torch.arange(len(rows_q), device=ids.device)
        q = where[rows, pos - 1]  # the map each region was written from (-1: none, ill-formed)
        keep = q >= 0
        rows, pos, q = rows[keep], pos[keep], q[keep]
        gx, gy = value[rows, pos], value[rows, pos + 1]
        by_y = scores[q, :, :, gx].logsumexp(1) - math.log(len(SIZE_TOKENS))
        bias = bias.index_put((rows[:, None], pos[:, None], words[1][None, :]), by_y)
        return bias.index_put((rows[:, None], (pos + 1)[:, None], words[2][None, :]), scores[q, :, gy, gx])

    def next_region_bias(self, ids: Sequence[int], hidden: Sequence[torch.Tensor], opens: int) -> torch.Tensor | None:
        """`region_bias` (V,) for the word after a sequence being sampled (`ids`, the `hidden` state of
        each, `opens` the id of `<img>`): None where that word is no region word (after anything but
        `<img>` or a region's words) or without `config.region_map`."""
        if self.region_map is None or not ids:
            return None
        axis = [int(a) for a in self.region_axis[torch.tensor(list(ids[-2:]), device=self.region_axis.device)]]
        if axis[-1] == 0:
            done = 1  # the y of a region whose x was just written
        elif axis[-1] == 1 and len(axis) == 2 and axis[-2] == 0:
            done = 2  # its size
        elif ids[-1] == opens or axis[-1] == 2:
            done = 3  # a new region's x, or `</img>`
        else:
            return None
        # the region being written, completed by placeholder words (their values and states are not read)
        stub = [int((self.region_axis == a).nonzero()[0, 0]) for a in range(done, 3)]
        states = torch.stack(list(hidden))
        states = torch.cat([states, states[-1:].expand(len(stub), -1)])[None]
        ids_t = torch.tensor([list(ids) + stub], device=self.region_axis.device)
        start = len(ids) - 1 - done % 3  # where the region being written may start
        return self.region_bias(states, ids_t, opens, only=start)[0, len(ids) - 1]

    def condition(
        self,
        hidden: torch.Tensor,
        ids: torch.Tensor,
        rows: torch.Tensor,
        positions: torch.Tensor,
        step_starts: torch.Tensor,
        object_ends: torch.Tensor | None = None,
        phrases: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The image expert's condition for each (row, position) of `hidden` (B, T, C) over
        token `ids` (B, T): a read of the step that ends there; a step starts at the last
        token of `step_starts` (ids of `<ins>`, `<refine>`, `<prompt>` and ";", in that order:
        format.STEP_STARTS) before it, so an `<ins>`'s recall clause is not read.
        Given `object_ends` (`</ins>` and the relation words), the mean of words of an `<ins>`
        step stops at the first of them: "add a red cross left of the blue diamond" averages
        "add a red cross", not the diamond's words too. A row of `phrases` (N, T bool, the
        positions `phrases.region_words` gives; all False: the first object's read) is what both
        the mean and the attention (its query still the region token) read: the second region of
        "add a red cross left of a blue diamond" reads "<ins> add a blue diamond" alone, as if the
        add named only the diamond (reading the whole step, the attention drew a second cross)."""
        ids = ids[rows]
        idx = torch.arange(ids.shape[1], device=ids.device)[None, :]
        before = idx <= positions[:, None]
        starts = torch.where(torch.isin(ids, step_starts) & before, idx, torch.zeros_like(idx)).amax(1)
        span = before & (idx >= starts[:, None])
        bag_span = None
        if object_ends is not None:
            opens = ids.gather(1, starts[:, None])  # an add opens with `<ins>`, or ";" after a recall clause
            adds = torch.isin(opens, torch.cat([step_starts[:1], step_starts[3:]]))
            ends = torch.isin(ids, object_ends) & (idx > starts[:, None])
            first = torch.where(ends, idx, torch.full_like(idx, ids.shape[1])).amin(1)
            bag_span = span & ((idx < first[:, None]) | ~adds)
        if phrases is not None and bag_span is not None:
            later = phrases.any(1, keepdim=True)  # a later object of an add: read its words alone
            bag_span = torch.where(later, phrases & span, bag_span)
            span = torch.where(later, phrases & span, span)
        return self.reader(hidden[rows, positions], hidden[rows], self.embed(ids), span, bag_span)

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, coords: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """Flow velocity for crops (N, 3, S, S); `cond` (N, C) from `condition`, None = unconditional."""
        if cond is None:
            cond = self.null_cond.expand(x_t.shape[0], -1)
        return self.flow(x_t, t, context, coords, cond)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: Path, tokenizer: WordTokenizer) -> None:
        """model.safetensors + config.json + tokenizer.json, each written atomically."""
        write_checkpoint(directory, self, "sketchloop-unified", tokenizer)

    @classmethod
    def from_pretrained(cls, directory: Path) -> tuple["UnifiedModel", WordTokenizer]:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not directory.is_dir():
            raise SketchloopError(
                f"checkpoint {directory} does not exist; pass a folder written by "
                f"'sketchloop train' (or leave --checkpoint out for the shipped one)"
            )
        missing = [f for f in CHECKPOINT_FILES if not (directory / f).is_file()]
        if missing:
            raise SketchloopError(f"{directory} is not a sketchloop checkpoint: {', '.join(missing)} missing")
        try:
            raw = json.loads((directory / "config.json").read_text())
            if raw.get("model_type") != "sketchloop-unified":
                raise ValueError(f"model_type is {raw.get('model_type')!r}, not 'sketchloop-unified'")
            retired = {k: raw.pop(k) for k in RETIRED if k in raw}
            if any(retired.get(k, default) != default for k, default in RETIRED.items()):
                raise ValueError(
                    f"it was trained with settings this version no longer has ({retired}); read it with sketchloop 0.1"
                )
            known = {f.name for f in fields(UnifiedConfig)}
            raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
            model = cls(UnifiedConfig(**raw))
            model.load_state_dict(load_file(str(directory / "model.safetensors")))
        except Exception as exc:  # corrupt or mismatched files: one clear line
            line = first_line(exc)
            raise SketchloopError(
                f"checkpoint {directory} is corrupt or incompatible ({line[:160]}); "
                f"retrain it or point --checkpoint at another folder"
            ) from None
        return model.eval(), WordTokenizer.load(directory / "tokenizer.json")

    def grown(
        self,
        tokenizer: WordTokenizer,
        words: Sequence[str] = (),
        copy_prompt: bool = False,
        region_coords: bool = False,
        n_layer: int | None = None,
        region_map: bool = False,
    ) -> tuple["UnifiedModel", WordTokenizer]:
        """The model with `words` (default: every word of the current vocabulary it lacks)
        appended to its vocabulary, with `copy_prompt` the pointer over the prompt added (its gate
        closed), with `region_coords` the region words' lattice values (`embed`, zero at first) and
        with `n_layer` transformer blocks, the new ones after the old with their output maps at zero
        (each adds nothing to the residual stream at first), with `region_map` the spatial head over
        region words (`_RegionMap`, its last layer at zero); new weights start as a new model's,
        every other weight and every existing word's id stay as they are, and so do the predictions."""
        words = list(words) or [w for w in WordTokenizer().vocab if w not in tokenizer.index]
        copy_prompt = copy_prompt or self.config.copy_prompt
        region_coords = region_coords or self.config.region_coords
        region_map = region_map or self.config.region_map
        n_layer = n_layer or self.config.n_layer
        if n_layer < self.config.n_layer:
            raise SketchloopError(
                f"--n-layer {n_layer}: the checkpoint has {self.config.n_layer} layers; a model only grows"
            )
        same = (copy_prompt, region_coords, n_layer, region_map)
        old = (self.config.copy_prompt, self.config.region_coords, self.config.n_layer, self.config.region_map)
        if not words and same == old:
            return self, tokenizer
        vocab = WordTokenizer(tokenizer.vocab + words)
        config = replace(
            self.config,
            vocab_size=len(vocab),
            copy_prompt=copy_prompt,
            region_coords=region_coords,
            n_layer=n_layer,
            region_map=region_map,
        )
        model = UnifiedModel(config)
        for block in list(model.blocks)[self.config.n_layer :]:
            cast(_Block, block).zero_outputs()
        state = model.state_dict()
        for name, value in self.state_dict().items():
            if state[name].shape == value.shape:
                state[name] = value
            elif name in ("region_axis", "region_value"):
                continue  # indexed again below for the grown vocabulary
            else:  # tok.weight and head.weight: the old words' rows come first
                state[name][: value.shape[0]] = value
        model.load_state_dict(state)
        model.index_region_words(vocab.vocab)
        return model, vocab

    def index_region_words(self, vocab: Sequence[str]) -> None:
        """With `config.region_coords` or `config.region_map`, store the lattice value of each region
        word of `vocab` (the tokenizer's words in id order; saved with the weights)."""
        if self.config.region_coords:
            self.region_features.copy_(torch.from_numpy(region_word_features(list(vocab))))
        if self.config.region_map:
            for i, word in enumerate(vocab):
                parsed = region_word(word)
                if parsed is not None:
                    self.region_axis[i] = parsed[0]
                    self.region_value[i] = parsed[1] - (SIZE_TOKENS[0] if parsed[0] == 2 else 0)

    def num_parameters(self) -> dict[str, int]:
        parts: dict[str, list[nn.Module]] = {
            "text": [self.tok, self.pos, self.blocks, self.ln, self.head]
            + [m for m in (self.pointer, self.coord_in, self.coord_out, self.region_map) if m is not None],
            "canvas": [self.canvas],
            "flow": [self.reader, self.flow],
        }
        return {k: sum(p.numel() for m in ms for p in m.parameters()) for k, ms in parts.items()}
