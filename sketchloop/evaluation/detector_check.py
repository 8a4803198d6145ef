"""How often the detector recovers a rendered scene exactly, under blur and noise."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..world.augment import degrade
from ..world.detect import Detector, ShapesDetector
from ..world.layout import Layout, fits, hidden_share
from ..world.render import render
from ..world.sample import random_scene_layout
from ..world.vocab import DEFAULT_POINTS

HIDES = 0.02  # an object hides another when it covers at least this share of its shape


def _name(shape: str, color: str, points: int | None) -> tuple[str, str, int | None]:
    return shape, color, (points or DEFAULT_POINTS) if shape == "star" else None


def scene_recovered(layout: Layout, detections, threshold: float, size: int, min_iou: float = 0.5) -> bool:
    """Same (shape, colour, star points) multiset as the layout, each object's box matched with
    IoU >= min_iou, and each object in front of exactly the objects it hides."""
    dets = [d for d in detections if d.confidence >= threshold]
    if sorted(_name(d.shape, d.color, d.points) for d in dets) != sorted(
        _name(o.shape, o.color, o.points) for o in layout.objects
    ):
        return False
    index = {id(d): i for i, d in enumerate(detections)}
    unused = list(dets)
    match = []
    for obj in layout.objects:
        box = np.array(obj.box) * size
        name = _name(obj.shape, obj.color, obj.points)
        best = max((d for d in unused if _name(d.shape, d.color, d.points) == name), key=lambda d: _iou(box, d.box))
        if _iou(box, best.box) < min_iou:
            return False
        unused.remove(best)
        match.append(best)
    objs = layout.objects
    for i, back in enumerate(objs):
        for j in range(len(objs)):
            hides = j > i and hidden_share(objs[j], back) >= HIDES  # drawn later, over it
            if hides != (index[id(match[i])] in match[j].in_front_of):
                return False
    return True


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


@dataclass
class DetectorCheck:
    n: int
    recovered: int

    @property
    def accuracy(self) -> float:
        return self.recovered / self.n


def check_detector(
    n: int,
    seed: int = 0,
    max_blur: float = 1.0,
    max_noise: float = 0.06,
    size: int = 64,
    detector: Detector | None = None,
    fixed: bool = False,
    object_size: float | None = None,
    scenes: dict | None = None,
) -> DetectorCheck:
    """Render `n` random scenes, degrade each (blur, noise drawn up to the maxima, or exactly
    the maxima with `fixed`), and count the images whose scene the detector recovers.
    `object_size`: every object drawn at this side (a share of the canvas) where it was placed
    (a scene whose objects would then touch or leave the canvas is drawn again). `scenes`:
    keyword arguments for `random_scene_layout` (e.g. depth_prob, points_prob)."""
    detector = detector or ShapesDetector()
    rng = np.random.default_rng(seed)
    recovered = 0
    for _ in range(n):
        _, layout = random_scene_layout(rng, **(scenes or {}))
        while object_size is not None:
            resized = [replace(o, size=object_size) for o in layout.objects]
            if all(fits(o, resized[:i]) for i, o in enumerate(resized)):
                layout = Layout(tuple(resized))
                break
            _, layout = random_scene_layout(rng)
        blur = max_blur if fixed else float(rng.uniform(0, max_blur))
        noise = max_noise if fixed else float(rng.uniform(0, max_noise))
        image = degrade(render(layout, size), blur, noise, rng)
        recovered += scene_recovered(layout, detector.detect(image), detector.threshold, size)
    return DetectorCheck(n, recovered)
