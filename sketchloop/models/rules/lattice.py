"""The region lattice as tables (every region token triple `x y s`, in (gx, gy, size) order):
which regions lie inside the canvas, keep apart, and stand in a relation to each other. The
region grammar and the look-ahead read them."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...world.layout import GRID, relation_mask
from ..regions import REGION_GAP, SIZE_TOKENS, Region, spaced

EDGE = 0.0  # the least distance of a region's box from the canvas's edges (1/32, the training
# regions' margin, measured worse on shapes-complex-val: 0.598 against 0.638 for no rule;
# 0.0, the box inside the canvas: 0.653)


@lru_cache(maxsize=1)
def lattice() -> tuple[np.ndarray, np.ndarray]:
    """Every lattice region's box and size token, in (gx, gy, size) order (`lattice_index`)."""
    grid = [Region(gx, gy, s) for gx in range(GRID) for gy in range(GRID) for s in SIZE_TOKENS]
    return np.array([r.box for r in grid]), np.array([r.s for r in grid])


@lru_cache(maxsize=1)
def inside() -> np.ndarray:
    """[gx, gy, size index]: whether the region's box keeps `EDGE` from the canvas's edges: every
    training region does (layouts keep objects 0.03 inside; snapped to the lattice, their boxes
    stay within [1/32, 31/32]); a region beyond the edge draws an object the edge cuts."""
    boxes = lattice()[0]
    ok = np.all((boxes >= EDGE - 1e-9) & (boxes <= 1 - EDGE + 1e-9), axis=1)
    return ok.reshape(GRID, GRID, len(SIZE_TOKENS))


@lru_cache(maxsize=2)
def spaced_table(gap: float) -> np.ndarray:
    """[i, j]: whether lattice regions i and j keep `gap` apart (regions.spaced)."""
    grid = [Region(gx, gy, s) for gx in range(GRID) for gy in range(GRID) for s in SIZE_TOKENS]
    return spaced(grid, grid, gap)


@lru_cache(maxsize=8)
def relation_pairs(relation: str) -> np.ndarray:
    """[i, j]: whether lattice region j stands in `relation` to lattice region i."""
    boxes = lattice()[0]
    return relation_mask(boxes[:, None, :], relation, boxes).T


@lru_cache(maxsize=16)
def to_spots(relation: str | None, look: int) -> np.ndarray:
    """[i, spot]: whether a spot of size `look` stands in `relation` to lattice region i (None:
    keeps `REGION_GAP` clear of it); the look-ahead's tables."""
    spots = lattice()[1] == look
    return np.ascontiguousarray((spaced_table(REGION_GAP) if relation is None else relation_pairs(relation))[:, spots])


def lattice_index(region: Region) -> int:
    return (region.gx * GRID + region.gy) * len(SIZE_TOKENS) + SIZE_TOKENS.index(region.s)


@lru_cache(maxsize=64)
def related_mask(relations: tuple[tuple[str, Region], ...]) -> np.ndarray:
    """[gx, gy, size index]: whether a region there meets every (relation, target region)."""
    boxes = lattice()[0]
    ok = np.ones(len(boxes), bool)
    for relation, target in relations:
        ok &= relation_mask(boxes, relation, target.box)
    return ok.reshape(GRID, GRID, len(SIZE_TOKENS))
