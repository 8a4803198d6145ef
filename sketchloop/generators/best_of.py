"""Best-of-N: N images of a base generator, the unified model's inspector choosing one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SketchloopError
from .base import Generated, Generator, made_by


def candidate_seed(seed: int, k: int) -> int:
    """The seed of best-of-N's k-th candidate: the image's own seed first (so candidate 0 is the
    base generator's image), then seeds derived from it."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, 7, k]).generate_state(1)[0])


class BestOfGenerator:
    """Best-of-N: N images from a base generator, the unified model's inspector choosing the one
    it doubts least (its P("inconsistent") on the final canvas after the candidate's plans, or
    after the prompt alone for a one-pass image). The paper's PARM-style comparison; compute
    counts every candidate and every verdict read."""

    def __init__(self, base: Generator, n: int, inspector_checkpoint: Path | None = None, device: str | None = None):
        from ..backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
        from ..models.unified import checkpoint_sha256

        if n < 1:
            raise SketchloopError("--best-of must be at least 1")
        self.base, self.n = base, n
        self.inspector = UnifiedRoles.from_pretrained(inspector_checkpoint, device=device)
        self.name = f"best-of-{n}-{base.name}"
        self.record = made_by(
            "best-of",
            n=n,
            base=base.record,
            inspector_checkpoint=str(inspector_checkpoint or "shipped"),
            inspector_sha256=checkpoint_sha256(inspector_checkpoint or SHIPPED_CHECKPOINT),
        )

    def generate(self, prompt: str, seed: int) -> Generated:
        best: tuple[float, int, Generated] | None = None
        totals: dict[str, Any] = {"flow_steps": 0, "text_tokens": 0, "images": 0, "seconds": 0.0}
        doubts = []
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
        assert best is not None
        _, k, made = best
        return Generated(
            made.image,
            {**totals, "seconds": round(totals["seconds"], 4), "ended": True, "chosen": k, "doubts": doubts},
            made.trajectory,
        )
