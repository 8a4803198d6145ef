"""The pixel detector: an image to a list of objects (shape, colour, box, confidence).

It is ShapesWorld's judge and never looks at a layout, only at pixels:

1. the background is the median colour of the image border;
2. after a light Gaussian smoothing (noise), pixels far enough from the background
   are foreground, split into connected components;
3. a component's colour is the nearest palette colour to the median of its core
   (its pixels farthest from the background), so blurred edges do not vote;
4. its alpha matte (how far each pixel has moved from the background towards that
   colour) is compared with every shape's anti-aliased template (a star at each number
   of points, vocab.STAR_POINTS), each at a few blur levels, fitted to the component's
   box; the best soft IoU names the shape (and a star's points) and is the confidence.

A component that holds two or more colours (objects overlapping in depth, or touching)
is split by colour into pieces, and each touching pair is fitted both ways: one piece
whole and in front, the other a square shape whose pixels under the front one are
explained by it (not counted), searched over sides and positions; the better pair of
fits decides the boxes. `in_front_of` then lists, for each detection, the detections it
overlaps and hides: where their fitted shapes overlap, the image shows its colour.

Objects that touch each other in a single colour merge into one component; the
layouts of ShapesWorld keep a gap between objects, generated images may not.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .outline import SUPERSAMPLE, draw_shape, shape_mask
from .vocab import COLORS, PALETTE, SHAPES, STAR_POINTS

_PALETTE = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)


def variants(star_points: tuple[int, ...] = STAR_POINTS) -> tuple[tuple[str, int | None], ...]:
    """Every template the detector compares: each shape, and a star at each number of points."""
    return tuple((shape, points) for shape in SHAPES for points in (star_points if shape == "star" else (None,)))


PURE = 30.0  # a pixel within this RGB distance of a palette colour shows that colour unmixed
MIN_PURE = 4  # pixels of a colour, after a one-pixel erosion, for a component to hold that colour
OVERLAP_MIN = 2.0  # pixels two fitted shapes must share for one to be in front of the other
REFINED = 9  # hidden fits: the coarse best of this many templates are refined
SPLIT_FIT = 0.75  # a component splits into objects only if every piece fits a shape this well
SPLIT_MIXED = 0.2  # ... and at most this share of its pixels are blends of its colours
SPLIT_COVER = 0.9  # one shape that leaves more than 1 - this of a component out does not explain it


@dataclass(frozen=True)
class Detection:
    """One detected object; `box` is x0, y0, x1, y1 in pixels (GenEval's convention).

    `points`: a star's number of points (None for other shapes). `in_front_of`: the
    indices, in the detector's output list, of the detections this one partly hides.
    """

    shape: str
    color: str
    box: tuple[float, float, float, float]
    confidence: float
    points: int | None = None
    in_front_of: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        d["confidence"] = round(self.confidence, 4)
        if self.points is None:
            del d["points"]
        if self.in_front_of:
            d["in_front_of"] = list(self.in_front_of)
        else:
            del d["in_front_of"]
        return d


@runtime_checkable
class Detector(Protocol):
    """What the evaluator needs of a detector (the GenEval protocol's object detector).

    `threshold` and `counting_threshold` are the confidences above which detections
    count (GenEval: 0.3, and 0.9 for the counting task); a detector states its own.
    """

    name: str
    threshold: float
    counting_threshold: float

    def detect(self, image: Image.Image) -> list[Detection]: ...


@lru_cache(maxsize=None)
def _unit_moments(shape: str, points: int | None = None) -> tuple[float, float, float, float]:
    """Centroid and variances of `shape` filling the unit box: (cx, cy, var_x, var_y)."""
    n = 256
    m = shape_mask(shape, n, n, points=points).astype(np.float64)
    centres = (np.arange(n) + 0.5) / n
    total = m.sum()
    cx = (m.sum(axis=0) * centres).sum() / total
    cy = (m.sum(axis=1) * centres).sum() / total
    vx = (m.sum(axis=0) * (centres - cx) ** 2).sum() / total
    vy = (m.sum(axis=1) * (centres - cy) ** 2).sum() / total
    return cx, cy, vx, vy


@functools.lru_cache(maxsize=8192)
def _template(
    shape: str,
    box: tuple[float, float, float, float],
    shape_hw: tuple[int, int],
    blur: float,
    points: int | None = None,
) -> np.ndarray:
    """Coverage of `shape` filling `box` (window pixel coordinates), blurred by `blur`; read-only
    (cached: a hidden-shape fit scores the same boxes again as it refines)."""
    s = SUPERSAMPLE
    img = Image.new("L", (shape_hw[1] * s, shape_hw[0] * s), 0)
    x0, y0, x1, y1 = box
    draw_shape(ImageDraw.Draw(img), shape, (x0 * s, y0 * s, x1 * s, y1 * s), 255, points)
    m = np.asarray(img.resize((shape_hw[1], shape_hw[0]), Image.Resampling.BOX), dtype=np.float32) / 255.0
    out = ndimage.gaussian_filter(m, blur) if blur > 0 else m
    out.setflags(write=False)
    return out


class ShapesDetector:
    """Colour segmentation + moment-fitted template matching, for ShapesWorld images."""

    name = "shapes"
    extra_blurs = (0.0, 0.6, 1.0)

    def __init__(
        self,
        fg_threshold: float = 45.0,
        min_area_fraction: float = 0.003,
        smooth_sigma: float = 0.7,
        threshold: float = 0.5,
        counting_threshold: float = 0.5,
        star_points: tuple[int, ...] = STAR_POINTS,
    ):
        self.fg_threshold = fg_threshold
        self.min_area_fraction = min_area_fraction
        self.smooth_sigma = smooth_sigma
        self.threshold = threshold
        self.counting_threshold = counting_threshold
        self.variants = variants(star_points)  # wider in scripts/bench_detector.py, to choose STAR_POINTS

    def detect(self, image: Image.Image) -> list[Detection]:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        h, w, _ = rgb.shape
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        background = np.median(border, axis=0)
        smooth = ndimage.gaussian_filter(rgb, (self.smooth_sigma, self.smooth_sigma, 0))
        distance = np.linalg.norm(smooth - background, axis=-1)
        # Noisier images get a higher foreground threshold: 3x the border's median distance.
        edge = np.concatenate([distance[0], distance[-1], distance[:, 0], distance[:, -1]])
        threshold = max(self.fg_threshold, 3.0 * float(np.median(edge)))
        labels, _ = ndimage.label(distance > threshold)
        min_area = self.min_area_fraction * h * w
        found: list[tuple[Detection, int, tuple[int, ...]]] = []  # detection, piece id, ids of pieces it hides
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            if region is None or (labels[region] == index).sum() < min_area:
                continue
            component = labels == index
            colours = self._colours(smooth, component)
            if len(colours) < 2:
                detection = self._classify(smooth, distance, component, region, background)
                if detection is not None:
                    found.append((detection, len(found), ()))
            else:
                single = self._classify(smooth, distance, component, region, background)
                pieces, mixed = self._split(smooth, component, colours, region, background, min_area)
                covered = _covered(single, component)
                if not _prefer_split(single, [d for d, _ in pieces], mixed, covered):
                    if single is not None:
                        found.append((single, len(found), ()))
                    continue
                base = len(found)
                found += [(d, base + i, tuple(base + j for j in hides)) for i, (d, hides) in enumerate(pieces)]
        found.sort(key=lambda f: -f[0].confidence)
        position = {piece: i for i, (_, piece, _) in enumerate(found)}
        return [
            replace(d, in_front_of=tuple(sorted(position[j] for j in hides if j in position))) for d, _, hides in found
        ]

    def _colours(self, smooth: np.ndarray, component: np.ndarray) -> list[str]:
        """The palette colours a component shows unmixed over more than a thin line."""
        ys, xs = np.nonzero(component)
        pixels = smooth[ys, xs]
        dist = np.linalg.norm(pixels[:, None, :] - _PALETTE[None], axis=-1)
        nearest, pure = dist.argmin(1), dist.min(1) < PURE
        colours = []
        for c in np.unique(nearest[pure]):
            mask = np.zeros(component.shape, bool)
            keep = pure & (nearest == c)
            mask[ys[keep], xs[keep]] = True
            if ndimage.binary_erosion(mask).sum() >= MIN_PURE:
                colours.append(COLORS[int(c)])
        return colours

    def _classify(self, smooth, distance, component, region, background) -> Detection | None:
        """One object of one colour: its colour, shape and box."""
        h, w = distance.shape
        d = distance[component]
        core = component & (distance >= 0.7 * np.percentile(d, 90))
        color_rgb = np.median(smooth[core], axis=0)
        color = COLORS[int(np.argmin(np.linalg.norm(_PALETTE - color_rgb, axis=1)))]
        direction = color_rgb - background
        norm2 = float(direction @ direction)
        if norm2 < 1e-6:
            return None
        # Alpha matte (unclipped, so noise averages out) near the component only.
        y0, y1 = max(region[0].start - 4, 0), min(region[0].stop + 4, h)
        x0, x1 = max(region[1].start - 4, 0), min(region[1].stop + 4, w)
        alpha = (smooth[y0:y1, x0:x1] - background) @ direction / norm2
        near = ndimage.binary_dilation(component[y0:y1, x0:x1], iterations=3)
        alpha = np.where(near, alpha, 0.0)
        best = self._fit_whole(alpha)
        if best is None:
            return None
        score, shape, points, (bx0, by0, bx1, by1) = best
        return Detection(shape, color, (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1), score, points)

    def _fit_whole(self, alpha: np.ndarray, square: bool = False) -> _Fit | None:
        """The template that best fits an unhidden object's alpha matte, its box from the
        matte's moments (with `square`, made square about its centre, as ShapesWorld draws
        objects); soft IoU is the score."""
        mass = float(alpha.sum())
        if mass <= 1.0:
            return None
        ys = np.arange(alpha.shape[0]) + 0.5
        xs = np.arange(alpha.shape[1]) + 0.5
        px, py = alpha.sum(axis=0), alpha.sum(axis=1)
        mx, my = float(px @ xs) / mass, float(py @ ys) / mass
        var_x = float(px @ (xs - mx) ** 2) / mass
        var_y = float(py @ (ys - my) ** 2) / mass
        target = np.clip(alpha, 0, 1)
        best: _Fit | None = None
        for shape, points in self.variants:
            cx, cy, vx, vy = _unit_moments(shape, points)
            for extra in self.extra_blurs:
                blur2 = self.smooth_sigma**2 + extra**2
                if var_x <= blur2 or var_y <= blur2:
                    continue
                bw, bh = np.sqrt((var_x - blur2) / vx), np.sqrt((var_y - blur2) / vy)
                if square:
                    bw = bh = (bw + bh) / 2
                box = (mx - cx * bw, my - cy * bh, mx - cx * bw + bw, my - cy * bh + bh)
                t = _template(shape, box, alpha.shape, float(np.sqrt(blur2)), points)
                score = _soft_iou(target, t)
                if best is None or score > best[0]:
                    best = (score, shape, points, box)
        return best

    def _fit_hidden(
        self, alpha: np.ndarray, weight: np.ndarray, visible: np.ndarray, hiding: np.ndarray
    ) -> _Fit | None:
        """The square template that best fits a partly hidden object: its box holds the visible
        pixels and its shape reaches under the hiding pixels (weight 0), which count for nothing.
        `hiding`: the pixels of the pieces in front, which the shape must reach under.
        (ShapesWorld's objects are squares' worth of shape, and objects that touch overlap.)"""
        ys, xs = np.nonzero(visible)
        if len(ys) == 0:
            return None
        vx0, vx1, vy0, vy1 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
        hidden = weight < 0.5
        hy, hx = np.nonzero(hidden)
        if len(hy) == 0:
            return self._fit_whole(alpha, square=True)
        # how far the box may reach past each visible edge: as far as the hiding pixels go (and
        # a pixel more, for the anti-aliased edge)
        reach = (
            max(vx0 - hx.min(), 0) + 1.0,
            max(hx.max() + 1 - vx1, 0) + 1.0,
            max(vy0 - hy.min(), 0) + 1.0,
            max(hy.max() + 1 - vy1, 0) + 1.0,
        )
        target = np.clip(alpha, 0, 1)
        under = hiding & ~ndimage.binary_dilation(visible, iterations=2)  # past the blurred seam
        blur = float(np.sqrt(self.smooth_sigma**2 + 0.36))
        side0 = max(vx1 - vx0, vy1 - vy0) - 1.0
        boxes = []
        for side in np.arange(side0, side0 + max(reach) + 1.0, 1.0):
            for x0 in _anchors(vx0, vx1, side, reach[0], reach[1]):
                for y0 in _anchors(vy0, vy1, side, reach[2], reach[3]):
                    boxes.append((x0, y0, x0 + side, y0 + side))
        coarse: list[_Fit] = []
        for shape, points in self.variants:
            scored = []
            for box in boxes:
                t = _template(shape, box, alpha.shape, blur, points)
                if ((t > 0.5) & under).sum() >= OVERLAP_MIN:  # it reaches under what hides it
                    scored.append((_soft_iou(target, t, weight), box))
            if scored:
                score, box = max(scored, key=lambda sb: sb[0])
                coarse.append((score, shape, points, box))
        refined = [self._refine(fit, target, weight, under) for fit in sorted(coarse, key=lambda f: -f[0])[:REFINED]]
        return max(refined, key=lambda f: f[0]) if refined else None

    def _refine(self, fit: _Fit, target: np.ndarray, weight: np.ndarray, under: np.ndarray | None = None) -> _Fit:
        """A square box fit moved and resized in quarter-pixel steps while its score grows (and,
        with `under`, while its shape still covers OVERLAP_MIN of those pixels); scored at
        the detector's blur levels once it has settled."""
        _, shape, points, box = fit
        hw = target.shape
        blur = float(np.sqrt(self.smooth_sigma**2 + 0.36))

        def value(b: tuple[float, float, float, float]) -> float:
            return _soft_iou(target, _template(shape, b, hw, blur, points), weight)

        score = value(box)
        for step in (0.5, 0.25):  # refine the box around the coarse one
            improved = True
            while improved:
                improved = False
                for k, delta in [(k, d) for k in range(3) for d in (-step, step)]:
                    x0, y0, side = box[0], box[1], box[2] - box[0]
                    x0, y0, side = [v + (delta if i == k else 0.0) for i, v in enumerate((x0, y0, side))]
                    cand = (x0, y0, x0 + side, y0 + side)
                    if (
                        under is not None
                        and ((_template(shape, cand, hw, 0.0, points) > 0.5) & under).sum() < OVERLAP_MIN
                    ):
                        continue
                    v = value(cand)
                    if v > score + 1e-4:
                        score, box, improved = v, cand, True
        blurs = [float(np.sqrt(self.smooth_sigma**2 + e**2)) for e in self.extra_blurs]
        best = max(_soft_iou(target, _template(shape, box, hw, b, points), weight) for b in blurs)
        return best, shape, points, box

    def _split(
        self, smooth, component, colours: list[str], region, background, min_area: float
    ) -> tuple[list[tuple[Detection, tuple[int, ...]]], float]:
        """The objects of a component of several colours, which of them each one hides, and the
        share of the component's pixels that no colour explains (a blend, not a seam)."""
        h, w = component.shape
        y0, y1 = max(region[0].start - 4, 0), min(region[0].stop + 4, h)
        x0, x1 = max(region[1].start - 4, 0), min(region[1].stop + 4, w)
        window = smooth[y0:y1, x0:x1] - background
        comp = component[y0:y1, x0:x1]
        directions = np.array([np.array(PALETTE[c], np.float32) - background for c in colours])
        # each pixel to the colour whose line from the background passes nearest to it
        t = np.clip(window @ directions.T / (directions**2).sum(1), 0, 1.2)
        residual = np.linalg.norm(window[..., None, :] - t[..., None] * directions, axis=-1)
        label = np.where(comp, residual.argmin(-1), -1)
        mixed = float((residual.min(-1)[comp] > PURE).mean())
        pieces: list[tuple[int, np.ndarray]] = []
        for k in range(len(colours)):
            parts, n = ndimage.label(label == k)
            for j in range(1, n + 1):
                if (parts == j).sum() >= min_area:
                    pieces.append((k, parts == j))
        alphas = []
        for k, mask in pieces:
            d = directions[k]
            alpha = window @ d / float(d @ d)
            near = ndimage.binary_dilation(mask, iterations=2) & ~(comp & ~mask)
            alphas.append(np.where(near, alpha, 0.0))
        n = len(pieces)
        touching = [
            (i, j)
            for i in range(n)
            for j in range(i + 1, n)
            if (ndimage.binary_dilation(pieces[i][1], iterations=2) & pieces[j][1]).any()
        ]
        whole = []
        for i in range(n):
            fit = self._fit_whole(alphas[i], square=True)
            whole.append(self._refine(fit, np.clip(alphas[i], 0, 1), np.ones_like(alphas[i])) if fit else None)
        front: set[tuple[int, int]] = set()  # (i, j): piece i hides piece j
        for i, j in touching:
            hidden = {
                (a, b): self._fit_hidden(alphas[b], 1.0 - _grown(pieces[a][1]), pieces[b][1], pieces[a][1])
                for a, b in ((i, j), (j, i))
            }
            both = {  # both fits, and how far their overlap shows the front one's colour
                (a, b): _score(whole[a])
                + _score(hidden[a, b])
                + _front_share(whole[a], hidden[a, b], label, pieces[a][0])
                for a, b in hidden
            }
            front.add(max(both, key=lambda ab: both[ab]))
        found: list[tuple[Detection, tuple[int, ...]]] = []
        fits: list[_Fit | None] = []
        for b in range(n):
            hiders = [a for a, bb in front if bb == b]
            if hiders:
                hiding = np.any([pieces[a][1] for a in hiders], axis=0)
                fits.append(self._fit_hidden(alphas[b], 1.0 - _grown(hiding), pieces[b][1], hiding))
            else:
                fits.append(whole[b])
        for b, fit in enumerate(fits):
            if fit is None:
                continue
            score, shape, points, (bx0, by0, bx1, by1) = fit
            hides = tuple(
                j
                for j, other in enumerate(fits)
                if (b, j) in front and other is not None and _shows_in_overlap(fit, other, label, pieces[b][0])
            )
            found.append(
                (
                    Detection(shape, colours[pieces[b][0]], (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1), score, points),
                    hides,
                )
            )
        # ids in `hides` index pieces; renumber to the kept ones
        kept = [b for b, fit in enumerate(fits) if fit is not None]
        return [(d, tuple(kept.index(j) for j in hides)) for d, hides in found], mixed


_Fit = tuple[float, str, "int | None", tuple[float, float, float, float]]


def _prefer_split(single: Detection | None, pieces: list[Detection], mixed: float, covered: float) -> bool:
    """Whether a component of several colours is several objects (overlapping, with sharp seams)
    rather than one object in blended colours, as a generative model may draw: every piece
    fits a shape well, few pixels are blends, and one shape either leaves part of the component
    out (`covered`: the share of it inside that shape) or fits no better than the pieces."""
    if not pieces or min(d.confidence for d in pieces) < SPLIT_FIT or mixed > SPLIT_MIXED:
        return False
    if single is None or covered < SPLIT_COVER:
        return True
    return float(np.mean([d.confidence for d in pieces])) >= single.confidence


def _covered(single: Detection | None, component: np.ndarray) -> float:
    """The share of a component's pixels that a detection's shape covers."""
    if single is None:
        return 0.0
    shape = _template(single.shape, single.box, component.shape, 0.0, single.points) > 0.25
    return float((shape & component).sum() / max(component.sum(), 1))


def _score(fit: _Fit | None) -> float:
    return fit[0] if fit is not None else 0.0


def _soft_iou(target: np.ndarray, template: np.ndarray, weight: np.ndarray | None = None) -> float:
    if weight is None:
        return float(np.minimum(target, template).sum() / max(np.maximum(target, template).sum(), 1e-6))
    return float(
        (weight * np.minimum(target, template)).sum() / max((weight * np.maximum(target, template)).sum(), 1e-6)
    )


def _grown(mask: np.ndarray) -> np.ndarray:
    """A piece and the one-pixel ring around it (its edge pixels mix colours)."""
    return ndimage.binary_dilation(mask, iterations=1)


def _anchors(lo: float, hi: float, side: float, reach_lo: float, reach_hi: float) -> list[float]:
    """Box starts on one axis for a box of `side` holding the visible span [lo, hi) and
    reaching at most `reach_lo` before it and `reach_hi` past it."""
    first, last = max(hi - side, lo - reach_lo), min(lo, hi + reach_hi - side)
    if last < first - 1e-9:
        return []
    return sorted({float(v) for v in np.arange(first, last + 1e-9, 1.0)} | {float(last)})


def _front_share(front: _Fit | None, back: _Fit | None, label: np.ndarray, colour: int) -> float:
    """The share of the pixels where the two fitted shapes overlap that show the front one's
    colour (0 when they overlap by less than OVERLAP_MIN pixels)."""
    if front is None or back is None:
        return 0.0
    hw = label.shape
    a = _template(front[1], front[3], hw, 0.0, front[2]) > 0.5
    b = _template(back[1], back[3], hw, 0.0, back[2]) > 0.5
    overlap = a & b & (label >= 0)
    if overlap.sum() < OVERLAP_MIN:
        return 0.0
    inner = ndimage.binary_erosion(overlap)  # off the seam, where blur mixes the two colours
    overlap = inner if inner.sum() >= OVERLAP_MIN else overlap
    return float((label[overlap] == colour).mean())


def _shows_in_overlap(front: _Fit, back: _Fit, label: np.ndarray, colour: int) -> bool:
    """Whether, where the two fitted shapes overlap, most pixels show the front one's colour."""
    return _front_share(front, back, label, colour) > 0.5


def detected_scene(detections: list[Detection], threshold: float = 0.0) -> list[tuple[str, str]]:
    """The sorted (shape, colour) multiset of detections above `threshold`."""
    return sorted((d.shape, d.color) for d in detections if d.confidence >= threshold)
