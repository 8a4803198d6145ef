"""Sampling from the unified model, kept apart from the network: token sampling with a
key/value cache and grammar masks, and an Euler flow sampler with optional
classifier-free guidance."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .flow import FLOW
from .unified import KVCache, UnifiedModel


class TextSession:
    """A growing token sequence and its cache: `feed` reads tokens (and canvases), `sample`
    writes new ones."""

    def __init__(self, model: UnifiedModel, canvas_id: int, look_id: int | None = None):
        self.model, self.canvas_id, self.look_id = model, canvas_id, look_id
        self.device = next(model.parameters()).device
        self.cache = KVCache()
        self.ids: list[int] = []
        self.last: torch.Tensor | None = None  # hidden state of the last position read
        self.hidden: list[torch.Tensor] = []  # hidden states of every position read

    @torch.no_grad()
    def feed(self, ids: list[int], canvases: torch.Tensor | None = None,
             looks: torch.Tensor | None = None) -> torch.Tensor:
        """Read `ids` (with `canvases` for their `<canvas>` slots, region crops `looks` for their
        `<look>` slots); their hidden states."""
        if not ids:
            return torch.empty(0, self.model.config.n_embd)
        x = torch.tensor([ids], device=self.device)
        h = self.model.hidden(x, canvases, x == self.canvas_id, cache=self.cache, looks=looks,
                              look_slots=None if self.look_id is None else x == self.look_id)[0]
        self.ids.extend(ids)
        self.hidden.extend(h)
        self.last = h[-1]
        return h

    @torch.no_grad()
    def sample(self, max_new: int, stop: set[int], generator: torch.Generator, temperature: float = 1.0,
               allowed: Callable[[list[int]], list[int] | None] | None = None) -> list[int]:
        """Up to `max_new` tokens, ending after one in `stop`; `allowed(out)` may restrict the next."""
        out: list[int] = []
        for _ in range(max_new):
            logits = (self.model.logits(self.last) / max(temperature, 1e-6)).cpu()  # sampled with a CPU generator
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


@torch.no_grad()
def euler_sample(model: UnifiedModel, context: torch.Tensor, coords: torch.Tensor, cond: torch.Tensor,
                 steps: int, generator: torch.Generator, guidance: float = 1.0) -> torch.Tensor:
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
