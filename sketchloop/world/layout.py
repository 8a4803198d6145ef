"""Layouts: concrete placements of objects, sampled to satisfy a scene graph.

Coordinates are normalised to the canvas ([0, 1], y down), so one layout renders at
any resolution. Every object is a square box of side `size`; boxes keep a gap between
them so that a detector can tell objects apart, and every relation of the graph holds
under GenEval's position rule with a safety margin (see `relation_holds`).

Defaults (measured with scripts/bench_detector.py and scripts/bench_layout.py, README):
objects are about a quarter of the canvas wide (0.25, jittered by +-15%), which leaves
room for MAX_OBJECTS = 8 objects with a gap between every two, and keeps a star's five
points and a cross's arms legible at the default 64 px. Crowded graphs with relations
between multi-object groups can still be impossible (GenEval's rule must hold for every
pair of subject and target objects): sample_layout then raises LayoutError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import LayoutError
from .scene import SceneGraph
from .vocab import COLORS, RELATIONS, SHAPES

OBJECT_SIZE = 0.25
SIZE_JITTER = 0.15
MIN_SIZE = 0.17
GAP = 0.05
MARGIN = 0.03
POSITION_THRESHOLD = 0.1  # GenEval's box-dimension shrink factor
RELATION_MARGIN = 0.6     # the layout asks for 0.6 where GenEval's rule asks for 0.5
# Centres sit on a GRID x GRID lattice and sides are multiples of 1/SIZE_STEPS (never below
# MIN_SIZE_STEPS), so that a plan can name a placement exactly in a few tokens (x3 y12 s8).
GRID = 16
SIZE_STEPS = 32
MIN_SIZE_STEPS = 5


def snap_size(size: float) -> float:
    """`size` rounded to the size lattice."""
    return max(MIN_SIZE_STEPS, round(size * SIZE_STEPS)) / SIZE_STEPS


def snap_xy(xy: np.ndarray) -> np.ndarray:
    """Centres moved to the nearest lattice point."""
    return (np.clip(np.floor(np.asarray(xy) * GRID), 0, GRID - 1) + 0.5) / GRID


@dataclass(frozen=True)
class PlacedObject:
    """One object on the canvas: shape, concrete colour, centre and side (normalised)."""

    shape: str
    color: str
    x: float
    y: float
    size: float
    group: int = -1

    @property
    def box(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.x - h, self.y - h, self.x + h, self.y + h)


@dataclass(frozen=True)
class Layout:
    """The objects on a canvas, in drawing order."""

    objects: tuple[PlacedObject, ...] = ()

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> "Layout":
        return cls(tuple(PlacedObject(**o) for o in data["objects"]))

    # Edits: each returns a new layout; objects not named stay exactly where they were.
    def add(self, obj: PlacedObject) -> "Layout":
        return Layout(self.objects + (obj,))

    def remove(self, index: int) -> "Layout":
        return Layout(self.objects[:index] + self.objects[index + 1:])

    def move(self, index: int, x: float, y: float) -> "Layout":
        return self._replace(index, replace(self.objects[index], x=x, y=y))

    def recolor(self, index: int, color: str) -> "Layout":
        if color not in COLORS:
            raise LayoutError(f"unknown colour {color!r}; known colours: {', '.join(COLORS)}")
        return self._replace(index, replace(self.objects[index], color=color))

    def _replace(self, index: int, obj: PlacedObject) -> "Layout":
        objs = list(self.objects)
        objs[index] = obj
        return Layout(tuple(objs))


# --------------------------------------------------------------------------- rules
def relative_position(box_a, box_b, threshold: float = POSITION_THRESHOLD,
                      cutoff: float = 0.5) -> set[str]:
    """GenEval's relations of box A to box B (boxes x0, y0, x1, y1; y grows downwards)."""
    a = np.asarray(box_a, dtype=float)
    b = np.asarray(box_b, dtype=float)
    center_a, center_b = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    dim_a, dim_b = a[2:] - a[:2], b[2:] - b[:2]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -cutoff:
        relations.add("left of")
    if dx > cutoff:
        relations.add("right of")
    if dy < -cutoff:
        relations.add("above")
    if dy > cutoff:
        relations.add("below")
    return relations


def relation_holds(a: PlacedObject, relation: str, b: PlacedObject) -> bool:
    """Whether `a relation b` holds with the layout's safety margin."""
    return relation in relative_position(a.box, b.box, cutoff=RELATION_MARGIN)


def _separated(a: PlacedObject, b: PlacedObject, gap: float = GAP) -> bool:
    return (abs(a.x - b.x) >= (a.size + b.size) / 2 + gap
            or abs(a.y - b.y) >= (a.size + b.size) / 2 + gap)


# ------------------------------------------------------------------------ sampling
def _constraints(graph: SceneGraph) -> dict[tuple[int, int], list[str]]:
    """Required relations between group pairs (both orientations)."""
    need: dict[tuple[int, int], list[str]] = {}
    for r in graph.relations:
        need.setdefault((r.subject, r.object), []).append(r.relation)
        inv = r.inverted()
        need.setdefault((inv.subject, inv.object), []).append(inv.relation)
    return need


def fits(obj: PlacedObject, placed: list[PlacedObject] | tuple[PlacedObject, ...],
         need: dict[tuple[int, int], list[str]] | None = None) -> bool:
    """Whether `obj` sits inside the canvas, clear of `placed`, and meets the relations."""
    h = obj.size / 2
    if not (h + MARGIN - 1e-9 <= obj.x <= 1 - h - MARGIN + 1e-9
            and h + MARGIN - 1e-9 <= obj.y <= 1 - h - MARGIN + 1e-9):
        return False
    for other in placed:
        if not _separated(obj, other):
            return False
        if need:
            for rel in need.get((obj.group, other.group), ()):
                if not relation_holds(obj, rel, other):
                    return False
    return True


def _feasible(xy: np.ndarray, size: float, group: int, placed, need) -> np.ndarray:
    """Which candidate centres `xy` (K, 2) fit beside `placed` (vectorised `fits`)."""
    h = size / 2
    lo, hi = h + MARGIN, 1 - h - MARGIN
    ok = np.all((xy >= lo - 1e-9) & (xy <= hi + 1e-9), axis=1)
    for other in placed:
        offset = xy - np.array([other.x, other.y])
        reach = (size + other.size) / 2 + GAP
        ok &= np.any(np.abs(offset) >= reach, axis=1)
        for rel in need.get((group, other.group), ()) if need else ():
            revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (size + other.size), 0) * np.sign(offset)
            norm = np.maximum(np.linalg.norm(offset, axis=1), 1e-9)
            axis, sign = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]
            ok &= sign * revised[:, axis] / norm > RELATION_MARGIN
    return ok


def place_object(rng: np.random.Generator, shape: str, color: str, placed: tuple[PlacedObject, ...],
                 group: int = -1, need: dict[tuple[int, int], list[str]] | None = None,
                 size: float | None = None, candidates: int = 400) -> PlacedObject | None:
    """A new object at a random free spot that meets `need`, or None if there is none."""
    if size is None:
        size = OBJECT_SIZE * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))
    size = snap_size(size)
    lo, hi = size / 2 + MARGIN, 1 - size / 2 - MARGIN
    u = rng.uniform(0, 1, size=(candidates, 2))
    # Half the candidates lean towards the side the group's relations point to
    # (a group 'above' others towards the top), which crowded scenes need.
    lean = _lean(group, need)
    half = candidates // 2
    for axis in (0, 1):
        if lean[axis] < 0:
            u[:half, axis] = u[:half, axis] ** 2
        elif lean[axis] > 0:
            u[:half, axis] = 1 - u[:half, axis] ** 2
    xy = snap_xy(lo + (hi - lo) * u)
    ok = np.flatnonzero(_feasible(xy, size, group, placed, need))
    if len(ok) == 0:
        return None
    x, y = xy[int(rng.choice(ok))]
    return PlacedObject(shape, color, round(float(x), 4), round(float(y), 4), round(size, 4), group)


def _lean(group: int, need) -> tuple[int, int]:
    """The direction (-1, 0, 1 per axis) that `group`'s relations push it towards."""
    dx = dy = 0
    for (a, _b), rels in (need or {}).items():
        if a == group:
            for rel in rels:
                dx += {"left of": -1, "right of": 1}.get(rel, 0)
                dy += {"above": -1, "below": 1}.get(rel, 0)
    return int(np.sign(dx)), int(np.sign(dy))


def sample_layout(graph: SceneGraph, seed: int | np.random.Generator = 0,
                  attempts: int = 60) -> Layout:
    """Concrete placements satisfying `graph`, deterministic for a seed.

    Objects are placed one at a time, each at a spot drawn uniformly from the random
    candidates that are free and meet its relations to the objects already placed.
    An attempt that gets stuck starts over; every 10 failed attempts objects shrink
    by 8% (never below MIN_SIZE). Uncoloured groups get a random colour per object.
    """
    graph.validate()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    need = _constraints(graph)
    order = _placement_order(graph)
    items = [(gi, graph.groups[gi].shape, graph.groups[gi].color) for gi in order
             for _ in range(graph.groups[gi].count)]
    items = [(gi, shape, color or COLORS[int(rng.integers(len(COLORS)))]) for gi, shape, color in items]
    scale = 1.0
    for attempt in range(1, attempts + 1):
        placed: list[PlacedObject] = []
        for gi, shape, color in items:
            size = max(MIN_SIZE, scale * OBJECT_SIZE * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)))
            obj = place_object(rng, shape, color, tuple(placed), gi, need, size=size)
            if obj is None:
                break
            placed.append(obj)
        else:
            return Layout(tuple(sorted(placed, key=lambda o: o.group)))
        if attempt % 10 == 0:
            scale *= 0.92
    raise LayoutError(f"could not lay out {graph.to_text()!r}: its objects and relations do not fit "
                      f"the canvas; use fewer objects or relations")


def _placement_order(graph: SceneGraph) -> list[int]:
    """Most-related group first, then breadth-first along relations, then the rest."""
    degree = [0] * len(graph.groups)
    for r in graph.relations:
        degree[r.subject] += 1
        degree[r.object] += 1
    order: list[int] = []
    for start in sorted(range(len(graph.groups)), key=lambda g: -degree[g]):
        queue = [start]
        while queue:
            g = queue.pop(0)
            if g in order:
                continue
            order.append(g)
            for r in graph.relations:
                for a, b in ((r.subject, r.object), (r.object, r.subject)):
                    if a == g and b not in order:
                        queue.append(b)
    return order


def random_object(rng: np.random.Generator) -> tuple[str, str]:
    """A random (shape, colour) pair."""
    return SHAPES[int(rng.integers(len(SHAPES)))], COLORS[int(rng.integers(len(COLORS)))]


__all__ = [
    "GRID", "Layout", "PlacedObject", "RELATIONS", "SIZE_STEPS", "fits", "place_object", "random_object",
    "relation_holds", "relative_position", "sample_layout",
]
