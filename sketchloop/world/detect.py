"""The pixel detector: an image to a list of objects (shape, colour, box, confidence).

It is ShapesWorld's judge and never looks at a layout, only at pixels:

1. the background is the median colour of the image border;
2. after a light Gaussian smoothing (noise), pixels far enough from the background
   are foreground, split into connected components;
3. a component's colour is the nearest palette colour to the median of its core
   (its pixels farthest from the background), so blurred edges do not vote;
4. its alpha matte (how far each pixel has moved from the background towards that
   colour) is compared with every shape's anti-aliased template, each at a few blur
   levels, fitted to the component's box; the best soft IoU names the shape and is
   the confidence.

Objects that touch each other in a single colour merge into one component; the
layouts of ShapesWorld keep a gap between objects, generated images may not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .render import SUPERSAMPLE, draw_shape, shape_mask
from .vocab import COLORS, PALETTE, SHAPES

_PALETTE = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    """One detected object; `box` is x0, y0, x1, y1 in pixels (GenEval's convention)."""

    shape: str
    color: str
    box: tuple[float, float, float, float]
    confidence: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["box"] = [round(v, 2) for v in self.box]
        d["confidence"] = round(self.confidence, 4)
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
def _unit_moments(shape: str) -> tuple[float, float, float, float]:
    """Centroid and variances of `shape` filling the unit box: (cx, cy, var_x, var_y)."""
    n = 256
    m = shape_mask(shape, n, n).astype(np.float64)
    centres = (np.arange(n) + 0.5) / n
    total = m.sum()
    cx = (m.sum(axis=0) * centres).sum() / total
    cy = (m.sum(axis=1) * centres).sum() / total
    vx = (m.sum(axis=0) * (centres - cx) ** 2).sum() / total
    vy = (m.sum(axis=1) * (centres - cy) ** 2).sum() / total
    return cx, cy, vx, vy


def _template(shape: str, box: tuple[float, float, float, float], shape_hw: tuple[int, int], blur: float) -> np.ndarray:
    """Coverage of `shape` filling `box` (window pixel coordinates), blurred by `blur`."""
    s = SUPERSAMPLE
    img = Image.new("L", (shape_hw[1] * s, shape_hw[0] * s), 0)
    x0, y0, x1, y1 = box
    draw_shape(ImageDraw.Draw(img), shape, (x0 * s, y0 * s, x1 * s, y1 * s), 255)
    m = np.asarray(img.resize((shape_hw[1], shape_hw[0]), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return ndimage.gaussian_filter(m, blur) if blur > 0 else m


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
    ):
        self.fg_threshold = fg_threshold
        self.min_area_fraction = min_area_fraction
        self.smooth_sigma = smooth_sigma
        self.threshold = threshold
        self.counting_threshold = counting_threshold

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
        detections = []
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            if region is None or (labels[region] == index).sum() < min_area:
                continue
            detection = self._classify(smooth, distance, labels, index, region, background)
            if detection is not None:
                detections.append(detection)
        detections.sort(key=lambda d: -d.confidence)
        return detections

    def _classify(self, smooth, distance, labels, index, region, background) -> Detection | None:
        h, w = distance.shape
        component = labels == index
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
        mass = float(alpha.sum())
        if mass <= 1.0:
            return None
        ys = np.arange(y1 - y0) + 0.5
        xs = np.arange(x1 - x0) + 0.5
        px, py = alpha.sum(axis=0), alpha.sum(axis=1)
        mx, my = float(px @ xs) / mass, float(py @ ys) / mass
        var_x = float(px @ (xs - mx) ** 2) / mass
        var_y = float(py @ (ys - my) ** 2) / mass
        target = np.clip(alpha, 0, 1)
        best: tuple[float, str, tuple[float, float, float, float]] | None = None
        for shape in SHAPES:
            cx, cy, vx, vy = _unit_moments(shape)
            for extra in self.extra_blurs:
                blur2 = self.smooth_sigma**2 + extra**2
                if var_x <= blur2 or var_y <= blur2:
                    continue
                bw, bh = np.sqrt((var_x - blur2) / vx), np.sqrt((var_y - blur2) / vy)
                box = (mx - cx * bw, my - cy * bh, mx - cx * bw + bw, my - cy * bh + bh)
                t = _template(shape, box, alpha.shape, float(np.sqrt(blur2)))
                score = float(np.minimum(target, t).sum() / max(np.maximum(target, t).sum(), 1e-6))
                if best is None or score > best[0]:
                    best = (score, shape, box)
        if best is None:
            return None
        score, shape, (bx0, by0, bx1, by1) = best
        return Detection(shape, color, (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1), score)


def detected_scene(detections: list[Detection], threshold: float = 0.0) -> list[tuple[str, str]]:
    """The sorted (shape, colour) multiset of detections above `threshold`."""
    return sorted((d.shape, d.color) for d in detections if d.confidence >= threshold)
