"""The region grammar: which token may come next while the model writes the regions of an
image step (`<img> x3 y12 s8 x10 y4 s6 </img>`), as a mask for token sampling.

Regions come as (x, y, s) triples on the layout lattice, at most `max_regions`, then
`</img>`. With `separate` (the default at inference), a new region must keep
`REGION_GAP` from the regions already written in this step: objects never overlap in the
training data, and a region drawn over another would paint one object over the other.
An `add` of N objects (the model's own `<ins>`, "add three stars ...") writes exactly N
regions while they fit. `occupied` regions (where earlier steps drew, for an `add`) are kept clear too (no
overlap, no gap), and sizes below `min_size` are left out, unless nothing would be left
free (then small sizes come back first, then the earlier regions may be overlapped).
"""

from __future__ import annotations

from ..world.layout import GRID
from .regions import REGION_WORDS, SIZE_TOKENS, Region, free_sizes, parse_regions
from .tokenizer import WordTokenizer

MAX_REGIONS = 8


class RegionGrammar:
    """`allowed(out)`: the token ids that may follow `out`, the region tokens written so far."""

    def __init__(self, tokenizer: WordTokenizer, separate: bool = True, max_regions: int = MAX_REGIONS,
                 min_size: int = SIZE_TOKENS[0]):
        t = tokenizer.token_id
        self.tok, self.separate, self.max_regions, self.min_size = tokenizer, separate, max_regions, min_size
        self.x = [t(w) for w in REGION_WORDS if w[0] == "x"]
        self.y = [t(w) for w in REGION_WORDS if w[0] == "y"]
        self.s = [t(f"s{i}") for i in SIZE_TOKENS]
        self.end = t("</img>")

    @property
    def max_tokens(self) -> int:
        return 3 * self.max_regions + 1

    def allowed(self, out: list[int], occupied: tuple[Region, ...] = (), min_size: int | None = None,
                count: int | None = None) -> list[int]:
        """`count`: the step paints exactly that many regions (while they fit)."""
        k = len(out) % 3
        if count is not None and k == 0:
            if len(out) >= 3 * count:
                return [self.end]
            starts = [i for i in self.allowed(out, occupied, min_size) if i != self.end]
            return starts or [self.end]
        min_size = self.min_size if min_size is None else min_size
        if k == 0 and len(out) >= 3 * self.max_regions:
            return [self.end]
        if not self.separate:
            return self.x + [self.end] if k == 0 else [self.y, self.s][k - 1]
        placed = parse_regions(self.tok.decode(out[: len(out) - k]))

        def free(gx: int, gy: int) -> list[int]:
            sizes = free_sizes(gx, gy, placed)
            clear = set(free_sizes(gx, gy, list(occupied), gap=0.0)) if occupied else set(sizes)
            return [s for s in sizes if s in clear and s >= min_size]

        if (occupied or min_size > SIZE_TOKENS[0]) and not any(free(gx, gy) for gx in range(GRID) for gy in range(GRID)):
            # a full canvas: first allow the smallest sizes, then only keep the step's own regions apart
            return self.allowed(out, occupied, SIZE_TOKENS[0]) if min_size > SIZE_TOKENS[0] else \
                self.allowed(out, (), min_size)
        if k == 0:
            return [x for gx, x in enumerate(self.x) if any(free(gx, gy) for gy in range(GRID))] + [self.end]
        gx = self.x.index(out[-k])
        if k == 1:
            return [y for gy, y in enumerate(self.y) if free(gx, gy)]
        gy = self.y.index(out[-1])
        return [self.s[SIZE_TOKENS.index(s)] for s in free(gx, gy)]
