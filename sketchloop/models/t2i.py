"""The text-to-image baseline: what a user would train instead of the staged model.

A whole-canvas flow-matching UNet conditioned on the prompt through cross-attention over
the prompt's token states (a small bidirectional transformer encodes the prompt), plus the
mean of those states as a FiLM vector, as text-to-image diffusion models are built. It is
trained on the trajectories' final images and their prompts (training/t2i.py), with the
same parameter count as the unified model, and draws a picture in one flow, no plan, no
regions, no inspection. Sampling (`sample`) is separate from the network (`velocity`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SketchloopError, first_line
from .flow import FLOW
from .tokenizer import WordTokenizer
from .unified import CHECKPOINT_FILES, _ResBlock, _timestep_embedding, write_checkpoint

MODEL_TYPE = "sketchloop-t2i"


@dataclass
class TextToImageConfig:
    vocab_size: int = 124
    max_prompt: int = 72  # prompt tokens read (ShapesWorld's longest prompts have about 45 words)
    n_layer: int = 2  # the prompt encoder
    n_head: int = 4
    n_embd: int = 128
    canvas_px: int = 64
    unet_channels: tuple[int, int, int] = (40, 64, 80)  # 1.45M parameters in all (vocabulary 410): the unified model's
    cond_dropout: float = 0.1  # share of training images drawn without the prompt (for CFG)


class _CrossAttention(nn.Module):
    """Image features (B, C, H, W) attend to the prompt's token states (B, T, D)."""

    def __init__(self, channels: int, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.norm = nn.GroupNorm(8, channels)
        self.q, self.kv, self.out = nn.Linear(channels, d), nn.Linear(d, 2 * d), nn.Linear(d, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = text.shape[-1]
        q = self.q(self.norm(x).flatten(2).transpose(1, 2)).view(b, h * w, self.n_head, d // self.n_head)
        k, v = (z.view(b, -1, self.n_head, d // self.n_head).transpose(1, 2) for z in self.kv(text).split(d, dim=2))
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask[:, None, None, :])
        return x + self.out(y.transpose(1, 2).reshape(b, h * w, d)).transpose(1, 2).view(b, c, h, w)


class TextToImageModel(nn.Module):
    def __init__(self, config: TextToImageConfig):
        super().__init__()
        self.config = config
        d, (c1, c2, c3) = config.n_embd, config.unet_channels
        self.tok = nn.Embedding(config.vocab_size, d)
        self.pos = nn.Embedding(config.max_prompt, d)
        layer = nn.TransformerEncoderLayer(
            d, config.n_head, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layer, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d)
        self.null_text = nn.Parameter(torch.zeros(1, d))  # the "no prompt" of classifier-free guidance
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pooled = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.stem = nn.Conv2d(3, c1, 3, padding=1)
        self.down1, self.pool1 = _ResBlock(c1, c1, d), nn.Conv2d(c1, c2, 3, 2, 1)
        self.down2, self.pool2 = _ResBlock(c2, c2, d), nn.Conv2d(c2, c3, 3, 2, 1)
        self.attn2 = _CrossAttention(c2, d, config.n_head)
        self.mid1, self.mid2 = _ResBlock(c3, c3, d), _ResBlock(c3, c3, d)
        self.attn_mid1, self.attn_mid2 = _CrossAttention(c3, d, config.n_head), _CrossAttention(c3, d, config.n_head)
        self.up2, self.dec2 = nn.Conv2d(c3, c2, 3, padding=1), _ResBlock(2 * c2, c2, d)
        self.attn_dec2 = _CrossAttention(c2, d, config.n_head)
        self.up1, self.dec1 = nn.Conv2d(c2, c1, 3, padding=1), _ResBlock(2 * c1, c1, d)
        self.out_norm, self.out = nn.GroupNorm(8, c1), nn.Conv2d(c1, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def encode(
        self, ids: torch.Tensor, pad_id: int, drop: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(token states (B, T, D), mask (B, T) of the tokens to attend to); rows where `drop`
        is True read only the null text (no prompt)."""
        ids = ids[:, : self.config.max_prompt]
        mask = ids != pad_id
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        x = self.ln(self.encoder(x, src_key_padding_mask=~mask))
        if drop is not None and bool(drop.any()):
            null = torch.zeros_like(x)
            null[:, 0] = self.null_text[0]
            only_first = torch.zeros_like(mask)
            only_first[:, 0] = True
            x = torch.where(drop[:, None, None], null, x)
            mask = torch.where(drop[:, None], only_first, mask)
        return x, mask

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Flow velocity of whole canvases (B, 3, H, W) given the encoded prompt."""
        weights = mask.to(text.dtype)[..., None]
        pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1)
        c = F.silu(self.time(_timestep_embedding(t, text.shape[-1])) + self.pooled(pooled))
        h1 = self.down1(self.stem(x_t), c)
        h2 = self.attn2(self.down2(self.pool1(h1), c), text, mask)
        h = self.attn_mid1(self.mid1(self.pool2(h2), c), text, mask)
        h = self.attn_mid2(self.mid2(h, c), text, mask)
        h = self.dec2(torch.cat([self.up2(F.interpolate(h, size=h2.shape[-2:])), h2], dim=1), c)
        h = self.attn_dec2(h, text, mask)
        h = self.dec1(torch.cat([self.up1(F.interpolate(h, size=h1.shape[-2:])), h1], dim=1), c)
        return self.out(F.silu(self.out_norm(h)))

    @torch.no_grad()
    def sample(
        self, ids: torch.Tensor, pad_id: int, steps: int, generator: torch.Generator, guidance: float = 1.0
    ) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) for prompt token ids (B, T), in `steps` Euler steps;
        `guidance` > 1: classifier-free guidance against the null text."""
        text, mask = self.encode(ids, pad_id)
        if guidance != 1.0:
            null, null_mask = self.encode(ids, pad_id, torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device))

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = self.velocity(x, t, text, mask)
            if guidance != 1.0:
                v_uncond = self.velocity(x, t, null, null_mask)
                v = v_uncond + guidance * (v - v_uncond)
            return v

        px = self.config.canvas_px
        noise = torch.randn((ids.shape[0], 3, px, px), generator=generator).to(ids.device)  # CPU draw: same anywhere
        return FLOW.sample(velocity, noise, steps)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: Path, tokenizer: WordTokenizer) -> None:
        """model.safetensors + config.json + tokenizer.json, each written atomically."""
        write_checkpoint(directory, self, MODEL_TYPE, tokenizer)

    @classmethod
    def from_pretrained(cls, directory: Path) -> tuple["TextToImageModel", WordTokenizer]:
        from safetensors.torch import load_file

        directory = Path(directory)
        missing = [f for f in CHECKPOINT_FILES if not (directory / f).is_file()]
        if not directory.is_dir() or missing:
            raise SketchloopError(
                f"{directory} is not a text-to-image checkpoint ({', '.join(missing) or 'no folder'} "
                f"missing); train one with 'sketchloop train --stage t2i'"
            )
        try:
            raw = json.loads((directory / "config.json").read_text())
            if raw.get("model_type") != MODEL_TYPE:
                raise ValueError(f"model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}")
            known = {f.name for f in fields(TextToImageConfig)}
            settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
            model = cls(TextToImageConfig(**settings))
            model.load_state_dict(load_file(str(directory / "model.safetensors")))
        except Exception as exc:  # corrupt or mismatched files: one clear line
            raise SketchloopError(
                f"checkpoint {directory} is corrupt or incompatible ({first_line(exc)[:160]}); "
                f"retrain it with 'sketchloop train --stage t2i'"
            ) from None
        return model.eval(), WordTokenizer.load(directory / "tokenizer.json")
