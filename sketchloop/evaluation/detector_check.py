"""How often the detector recovers a rendered scene exactly, under blur and noise."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..world.augment import degrade
from ..world.detect import Detector, ShapesDetector
from ..world.layout import Layout, fits
from ..world.render import render
from ..world.sample import random_scene_layout


def scene_recovered(layout: Layout, detections, threshold: float, size: int, min_iou: float = 0.5) -> bool:
    """Same (shape, colour) multiset as the layout, each object's box matched with IoU >= min_iou."""
    dets = [d for d in detections if d.confidence >= threshold]
    if sorted((d.shape, d.color) for d in dets) != sorted((o.shape, o.color) for o in layout.objects):
        return False
    unused = list(dets)
    for obj in layout.objects:
        box = np.array(obj.box) * size
        best = max((d for d in unused if (d.shape, d.color) == (obj.shape, obj.color)), key=lambda d: _iou(box, d.box))
        if _iou(box, best.box) < min_iou:
            return False
        unused.remove(best)
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
) -> DetectorCheck:
    """Render `n` random scenes, degrade each (blur, noise drawn up to the maxima, or exactly
    the maxima with `fixed`), and count the images whose scene the detector recovers.
    `object_size`: every object drawn at this side (a share of the canvas) where it was placed
    (a scene whose objects would then touch or leave the canvas is drawn again)."""
    detector = detector or ShapesDetector()
    rng = np.random.default_rng(seed)
    recovered = 0
    for _ in range(n):
        _, layout = random_scene_layout(rng)
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
