"""The region grammar: which region token may come next, as a mask.

RegionGrammar: while the model writes the regions of an image step
(`<img> x3 y12 s8 x10 y4 s6 </img>`).

Regions come as (x, y, s) triples on the layout lattice, at most `max_regions`, then
`</img>`. With `separate` (the default at inference), a new region must keep
`REGION_GAP` from the regions already written in this step: objects never overlap in the
training data, and a region drawn over another would paint one object over the other.
An `add` of N objects (the model's own `<ins>`, "add three stars ...") writes exactly N
regions while they fit. `occupied` regions (where earlier steps drew, for an `add`) are kept
`OCCUPIED_GAP` clear too (the training layouts keep 0.05 between objects; two touching boxes
draw touching objects, which the detector reads as one), and sizes below `min_size` are left out
(see below for when nothing is left free). Every region's box lies inside the canvas (`EDGE`;
beyond it the edge cuts the object, and the detector misses it or misreads its shape).
`relations` ((relation, region) pairs: "left of" the region where the model drew the object
its `<ins>` relates the new one to) keep every new region where the relation holds by the
world's geometry (world/layout.py `relation_mask`, the rule the training layouts follow),
while some region fits. `rest` (every object of the prompt still to come, with its count, its
relations to the new one, to each other and to drawn regions) keeps every new region where
all of them would still find a spot together (lookahead.py `completable`: shown by placing
them), while some region does. `Placement` (lookahead.py) reads both from the model's own
`<ins>`, its earlier steps and the prompt's words. Where no region meets every rule, they give
way in a fixed order (`_options`): the look-ahead, the region's own size, the relations, the
earlier regions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...world.layout import GRID
from ..regions import MAX_REGIONS, REGION_GAP, SIZE_TOKENS, Region, parse_regions
from ..sampling import RegionSyntax
from ..tokenizer import WordTokenizer
from .lattice import inside, lattice, lattice_index, related_mask, spaced_table
from .lookahead import Rest, completable

OCCUPIED_GAP = REGION_GAP  # the least gap between an `add`'s region and the regions earlier steps drew


class RegionGrammar(RegionSyntax):
    """`allowed(out)`: the token ids that may follow `out`, the region tokens written so far:
    the regions' syntax (RegionSyntax), narrowed by the rules above."""

    def __init__(
        self,
        tokenizer: WordTokenizer,
        separate: bool = True,
        max_regions: int = MAX_REGIONS,
        min_size: int = SIZE_TOKENS[0],
    ):
        super().__init__(tokenizer, max_regions)
        self.tok, self.separate, self.min_size = tokenizer, separate, min_size

    def allowed(
        self,
        out: list[int],
        occupied: tuple[Region, ...] = (),
        min_size: int | None = None,
        count: int | None = None,
        relations: tuple[tuple[str, Region], ...] = (),
        rest: Rest | None = None,
    ) -> list[int]:
        """`count`: the step paints exactly that many regions (while they fit). A step paints at
        least one (every image step of the training data changes some region; an empty one
        would leave the sketcher to place the step's objects where the plan does not say)."""
        k = len(out) % 3
        if k == 0 and len(out) >= 3 * (self.max_regions if count is None else min(count, self.max_regions)):
            return [self.end]
        placed = tuple(parse_regions(self.tok.decode(out[: len(out) - k]))) if self.separate else ()
        ok = _options(placed, tuple(occupied), self.min_size if min_size is None else min_size, tuple(relations), rest)
        if k == 0:
            starts = [x for gx, x in enumerate(self.x) if ok[gx].any()]
            return (starts or [self.end]) if count is not None or not out else starts + [self.end]
        gx = self.x.index(out[-k])
        if k == 1:
            return [y for gy, y in enumerate(self.y) if ok[gx, gy].any()]
        gy = self.y.index(out[-1])
        return [s for i, s in enumerate(self.s) if ok[gx, gy, i]]


@lru_cache(maxsize=256)
def _options(
    placed: tuple[Region, ...],
    occupied: tuple[Region, ...],
    min_size: int,
    relations: tuple[tuple[str, Region], ...],
    rest: Rest | None,
) -> np.ndarray:
    """[gx, gy, size index]: where the next region may go. Inside the canvas, `REGION_GAP` clear
    of the step's `placed` regions and `OCCUPIED_GAP` of `occupied`, at least `min_size`, where
    `relations` hold and every object of `rest` still finds a spot of `min_size`; while no
    region does, the rules give way in turn: the look-ahead is dropped, then the region may be
    smaller (relations kept), then the relations are dropped, then earlier steps' regions may
    be overlapped."""
    sizes = lattice()[1]
    apart, kept_clear = spaced_table(REGION_GAP), spaced_table(OCCUPIED_GAP)
    clear = inside().ravel().copy()
    for region in placed:
        clear &= apart[lattice_index(region)]
    near = clear.copy()
    for region in occupied:
        clear &= kept_clear[lattice_index(region)]
    related = related_mask(relations).ravel() if relations else np.ones(len(sizes), bool)
    smallest = SIZE_TOKENS[0]
    attempts: list[tuple[np.ndarray, int, np.ndarray | None, int | None]] = (
        [(clear, min_size, related, min_size)] if rest else []
    )
    attempts += [
        (clear, min_size, related, None),
        (clear, smallest, related, None),
        (clear, min_size, None, None),
        (clear, smallest, None, None),
        (near, smallest, None, None),
    ]
    for free, floor, rel, look in attempts:
        ok = free & (sizes >= floor)
        if rel is not None:
            ok &= rel
        if look is not None and ok.any():
            ok &= completable(rest, placed + occupied, look)
        if ok.any():
            return ok.reshape(GRID, GRID, len(SIZE_TOKENS))
    return np.zeros((GRID, GRID, len(SIZE_TOKENS)), bool)
