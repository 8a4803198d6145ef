"""Regions: where an image step paints, named in tokens (`x3 y12 s8`), and the crops the
image expert draws there.

A region is a lattice point of the layout grid (world/layout.py: GRID x GRID centres,
sides in 1/SIZE_STEPS) with a size. The image expert generates a square crop of side
CROP (a share of the canvas) centred on the region and the crop is pasted back: every
pixel outside the regions of a step stays exactly as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..world.layout import GRID, SIZE_STEPS, Layout, PlacedObject
from ..world.vocab import BACKGROUND

CROP = 0.375  # crop side as a share of the canvas: the largest object plus a margin
SIZE_TOKENS = tuple(range(4, 11))
REGION_WORDS = [f"x{i}" for i in range(GRID)] + [f"y{i}" for i in range(GRID)] + [f"s{i}" for i in SIZE_TOKENS]
_REGION = re.compile(r"x(\d+) y(\d+) s(\d+)")


@dataclass(frozen=True, order=True)
class Region:
    gx: int
    gy: int
    s: int

    @property
    def text(self) -> str:
        return f"x{self.gx} y{self.gy} s{self.s}"

    @property
    def center(self) -> tuple[float, float]:
        return (self.gx + 0.5) / GRID, (self.gy + 0.5) / GRID

    @property
    def size(self) -> float:
        return self.s / SIZE_STEPS

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) as a share of the canvas."""
        (cx, cy), h = self.center, self.size / 2
        return cx - h, cy - h, cx + h, cy + h


REGION_FREQUENCIES = 6  # Fourier frequencies per axis in region_word_features


def region_word(word: str) -> tuple[int, int] | None:
    """A region word's axis (0 x, 1 y, 2 size) and the number it names (x3: (0, 3), s8: (2, 8));
    None for any other word."""
    m = re.fullmatch(r"([xys])(\d+)", word)
    return None if m is None else ("xys".index(m[1]), int(m[2]))


def region_word_features(vocab: list[str]) -> np.ndarray:
    """(len(vocab), 3 * (1 + 2 * REGION_FREQUENCIES)) float32: for a region word, its axis (x, y or
    size) and its value v as [1, sin(pi k v), cos(pi k v) for k = 1..REGION_FREQUENCIES] in that
    axis's slot; zeros for every other word. v is the lattice index over GRID (x3: 3.5 / 16; sizes
    on the same scale, s4 to s10 over 0.28 to 0.66), so that neighbouring words get neighbouring
    features on every axis and what the model learns of x7 carries to x6 and x8 (models/unified.py)."""
    width = 1 + 2 * REGION_FREQUENCIES
    out = np.zeros((len(vocab), 3 * width), dtype=np.float32)
    k = np.arange(1, REGION_FREQUENCIES + 1)
    for i, word in enumerate(vocab):
        parsed = region_word(word)
        if parsed is None:
            continue
        axis, v = parsed[0], (parsed[1] + 0.5) / GRID
        out[i, axis * width : (axis + 1) * width] = np.concatenate(
            [[1.0], np.sin(np.pi * k * v), np.cos(np.pi * k * v)]
        )
    return out


PASTE_MARGIN = 1  # pixels around a region's box pasted with it (a shape's anti-aliased rim)
MAX_REGIONS = 8  # the most regions one image step may paint (the output's syntax)
REGION_GAP = 0.03  # the least gap between two regions of one step when sampling keeps them apart


def spaced(a: list[Region], b: list[Region], gap: float = REGION_GAP) -> np.ndarray:
    """[i, j]: whether region a[i] keeps `gap` clear of region b[j] (apart along x or along y:
    the sampler's non-overlap rule)."""
    ca, cb = np.array([r.center for r in a]).reshape(-1, 2), np.array([r.center for r in b]).reshape(-1, 2)
    sa, sb = np.array([r.size for r in a]), np.array([r.size for r in b])
    reach = (sa[:, None] + sb[None]) / 2 + gap
    return np.any(np.abs(ca[:, None] - cb[None]) >= reach[..., None], axis=-1)


def free_sizes(gx: int, gy: int, placed: list[Region], gap: float = REGION_GAP) -> list[int]:
    """The size tokens a region centred on lattice point (gx, gy) can take without coming
    within `gap` of any region in `placed`."""
    clear = spaced([Region(gx, gy, s) for s in SIZE_TOKENS], list(placed), gap).all(axis=1)
    return [s for s, ok in zip(SIZE_TOKENS, np.atleast_1d(clear).tolist()) if ok]


def region_of(obj: PlacedObject) -> Region:
    return Region(
        int(np.clip(np.floor(obj.x * GRID), 0, GRID - 1)),
        int(np.clip(np.floor(obj.y * GRID), 0, GRID - 1)),
        int(np.clip(round(obj.size * SIZE_STEPS), SIZE_TOKENS[0], SIZE_TOKENS[-1])),
    )


def placed(region: Region, shape: str, color: str, group: int = -1, points: int | None = None) -> PlacedObject:
    """The object a region stands for when it holds one object of `shape` and `color`: centred on
    its lattice point, at its size (how a plan's regions read as a layout)."""
    return PlacedObject(shape, color, *region.center, region.size, group, points)


def regions_text(regions: list[Region]) -> str:
    return " ".join(r.text for r in regions)


def parse_regions(text: str) -> list[Region]:
    """The regions named in `text` (`x3 y12 s8 x9 y2 s7`); malformed groups are skipped."""
    return [
        Region(int(a), int(b), int(c))
        for a, b, c in _REGION.findall(text)
        if int(a) < GRID and int(b) < GRID and int(c) in SIZE_TOKENS
    ]


def changed_regions(before: Layout, after: Layout) -> list[Region]:
    """The regions an edit from `before` to `after` paints: where objects went away, then
    where objects appeared (a recolour or reshape is one region)."""

    def key(o: PlacedObject):
        return (o.shape, o.color, round(o.x, 3), round(o.y, 3), round(o.size, 3))

    old, new = {key(o) for o in before.objects}, {key(o) for o in after.objects}
    gone = [region_of(o) for o in before.objects if key(o) not in new]
    came = [region_of(o) for o in after.objects if key(o) not in old]
    out: list[Region] = []
    for r in gone + came:
        same = [i for i, q in enumerate(out) if (q.gx, q.gy) == (r.gx, r.gy)]
        if same:
            out[same[0]] = max(out[same[0]], r, key=lambda q: q.s)
        else:
            out.append(r)
    return out


def crop_box(region: Region, canvas_px: int) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the crop around `region` (may reach past the canvas)."""
    side = int(round(CROP * canvas_px))
    cx, cy = region.center
    return int(round(cx * canvas_px - side / 2)), int(round(cy * canvas_px - side / 2)), side


def crop(canvas: np.ndarray, region: Region) -> np.ndarray:
    """The crop (side x side x 3, uint8) of an H x W x 3 canvas, background beyond the edges."""
    n = canvas.shape[0]
    left, top, side = crop_box(region, n)
    out = np.empty((side, side, 3), dtype=canvas.dtype)
    out[:] = BACKGROUND
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, n), min(top + side, n)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = canvas[y0:y1, x0:x1]
    return out


def box_pixels(region: Region, canvas_px: int, margin: int = 0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in pixels of the region's box widened by `margin`, every pixel it
    touches (may reach past the canvas)."""
    bx0, by0, bx1, by1 = region.box
    return (
        int(np.floor(bx0 * canvas_px)) - margin,
        int(np.floor(by0 * canvas_px)) - margin,
        int(np.ceil(bx1 * canvas_px)) + margin,
        int(np.ceil(by1 * canvas_px)) + margin,
    )


def paste(canvas: np.ndarray, region: Region, patch: np.ndarray, margin: int | None = None) -> np.ndarray:
    """A copy of `canvas` with `patch` (a crop from `crop`'s geometry) written over the region:
    the whole crop, or with `margin` only the region's own box widened by `margin` pixels (the
    rest of the crop keeps the canvas, as an inpainting mask keeps what it does not edit)."""
    out = canvas.copy()
    n = canvas.shape[0]
    left, top, side = crop_box(region, n)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, n), min(top + side, n)
    if margin is not None:
        bx0, by0, bx1, by1 = box_pixels(region, n, margin)
        x0, y0, x1, y1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
    out[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def coord_planes(region: Region | None, side: int, canvas_px: int) -> np.ndarray:
    """2 x side x side canvas coordinates in [-1, 1] of each crop pixel (the whole canvas for None)."""
    if region is None:
        left = top = 0
        step = canvas_px / side
    else:
        left, top, _ = crop_box(region, canvas_px)
        step = 1.0
    idx = np.arange(side) * step + step / 2
    xs = (left + idx) / canvas_px * 2 - 1
    ys = (top + idx) / canvas_px * 2 - 1
    return np.stack([np.broadcast_to(xs[None, :], (side, side)), np.broadcast_to(ys[:, None], (side, side))]).astype(
        np.float32
    )


def to_float(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> 3 x H x W float32 in [-1, 1] (what the model reads and draws)."""
    return image.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
    """3 x H x W in [-1, 1] (a tensor the model drew) -> H x W x 3 uint8."""
    import torch

    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
