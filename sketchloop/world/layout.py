"""Layouts: concrete placements of objects, sampled to satisfy a scene graph.

Coordinates are normalised to the canvas ([0, 1], y down), so one layout renders at
any resolution. Every object is a square box of side `size`; boxes keep a gap between
them so that a detector can tell objects apart, and every relation of the graph holds
under GenEval's position rule with a safety margin (see `relation_holds`). The two objects
of a depth relation overlap instead: the one in front hides DEPTH_HIDDEN of the other's
shape, and is drawn after it (a layout is in drawing order).

Defaults (measured with scripts/bench_detector.py and scripts/bench_layout.py, docs/shapesworld.md):
objects are about a quarter of the canvas wide (0.25, jittered by +-15%), which keeps a
star's five points and a cross's arms legible at the default 64 px; crowded scenes shrink
their objects as they need, down to MIN_SIZE (0.125, 8 px: the smallest side the detector
still recovers exactly on clean renders). A graph that cannot fit even then (GenEval's
rule must hold for every pair of subject and target objects) raises LayoutError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..errors import LayoutError
from .outline import SUPERSAMPLE, draw_shape, shape_mask
from .scene import SceneGraph
from .vocab import COLORS, DEPTH_RELATIONS, RELATIONS, SHAPES, depth_colours_clash

OBJECT_SIZE = 0.25
SIZE_JITTER = 0.15
MIN_SIZE = (
    0.125  # 8 px at 64 px: the smallest side the detector recovers exactly on clean renders (docs/shapesworld.md)
)
SHRINK_EVERY = 3  # failed attempts before objects shrink (and before groups aim at their tree cells)
SHRINK = 0.85
GAP = 0.05
MARGIN = 0.03
POSITION_THRESHOLD = 0.1  # GenEval's box-dimension shrink factor
RELATION_MARGIN = 0.6  # the layout asks for 0.6 where GenEval's rule asks for 0.5
# Centres sit on a GRID x GRID lattice and sides are multiples of 1/SIZE_STEPS (never below
# MIN_SIZE_STEPS), so that a plan can name a placement exactly in a few tokens (x3 y12 s8).
GRID = 16
SIZE_STEPS = 32
MIN_SIZE_STEPS = 4  # = MIN_SIZE on the size lattice (the region token s4)
# A depth pair ("A in front of B") overlaps: A's shape hides this share of B's shape, a range in
# which the detector recovers both objects and their order (scripts/bench_detector.py, docs/shapesworld.md).
DEPTH_HIDDEN = (0.1, 0.3)
POINTS_MIN_SIZE = 0.1875  # a star with a counted number of points never shrinks below 12 px (s6), where it is read
DEPTH_MIN_SIZE = 0.25  # objects of a depth pair never shrink below 16 px (s8): smaller, a hidden one is misread


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
    points: int | None = None  # a star's points (None: vocab.DEFAULT_POINTS)

    @property
    def box(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.x - h, self.y - h, self.x + h, self.y + h)


@dataclass(frozen=True)
class Layout:
    """The objects on a canvas, in drawing order (one drawn later is in front)."""

    objects: tuple[PlacedObject, ...] = ()

    def to_dict(self) -> dict:
        return {"objects": [_object_dict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> "Layout":
        return cls(tuple(PlacedObject(**o) for o in data["objects"]))

    # Edits: each returns a new layout; objects not named stay exactly where they were.
    def add(self, obj: PlacedObject) -> "Layout":
        return Layout(self.objects + (obj,))

    def remove(self, index: int) -> "Layout":
        return Layout(self.objects[:index] + self.objects[index + 1 :])

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


def _object_dict(obj: PlacedObject) -> dict:
    d = asdict(obj)
    if d["points"] is None:
        del d["points"]
    return d


# --------------------------------------------------------------------------- rules
def _directions(boxes_a, box_b, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """GenEval's revised direction (dx, dy) of each box A (rows x0, y0, x1, y1) from box B; zero
    where A's centre is within the threshold of B's on both axes."""
    a = np.asarray(boxes_a, dtype=float)
    a = a.reshape(-1, 4) if a.ndim < 2 else a  # boxes A and B broadcast against each other
    b = np.asarray(box_b, dtype=float)
    offset = (a[..., :2] + a[..., 2:]) / 2 - (b[..., :2] + b[..., 2:]) / 2
    dims = (a[..., 2:] - a[..., :2]) + (b[..., 2:] - b[..., :2])
    revised = np.maximum(np.abs(offset) - threshold * dims, 0) * np.sign(offset)
    some = ~np.all(np.abs(revised) < 1e-3, axis=-1)
    norm = np.where(some, np.linalg.norm(offset, axis=-1), 1.0)
    d = np.where(some[..., None], revised / norm[..., None], 0.0)
    return d[..., 0], d[..., 1]


def _relations(boxes_a, box_b, threshold: float, cutoff: float) -> dict[str, np.ndarray]:
    """For each relation, whether it holds for each box A against box B (GenEval's rule)."""
    dx, dy = _directions(boxes_a, box_b, threshold)
    return {"left of": dx < -cutoff, "right of": dx > cutoff, "above": dy < -cutoff, "below": dy > cutoff}


def relation_mask(
    boxes_a, relation: str, box_b, threshold: float = POSITION_THRESHOLD, cutoff: float = RELATION_MARGIN
) -> np.ndarray:
    """Whether `A relation B` holds for each box A (rows x0, y0, x1, y1), by GenEval's rule with the
    layout's margin (`relation_holds` for many boxes at once); boxes of shape (n, 1, 4) against
    `box_b` of shape (m, 4) give every pair, (n, m)."""
    return _relations(boxes_a, box_b, threshold, cutoff)[relation]


def relative_position(box_a, box_b, threshold: float = POSITION_THRESHOLD, cutoff: float = 0.5) -> set[str]:
    """GenEval's relations of box A to box B (boxes x0, y0, x1, y1; y grows downwards)."""
    return {rel for rel, holds in _relations(box_a, box_b, threshold, cutoff).items() if holds[0]}


def relation_holds(a: PlacedObject, relation: str, b: PlacedObject) -> bool:
    """Whether `a relation b` holds with the layout's safety margin."""
    return relation in relative_position(a.box, b.box, cutoff=RELATION_MARGIN)


def _separated(a: PlacedObject, b: PlacedObject, gap: float = GAP) -> bool:
    return abs(a.x - b.x) >= (a.size + b.size) / 2 + gap or abs(a.y - b.y) >= (a.size + b.size) / 2 + gap


def box_overlap(xy, size: float, other: PlacedObject) -> np.ndarray:
    """The area where boxes of side `size` centred at `xy` (K, 2) overlap `other`'s box."""
    offset = np.abs(np.asarray(xy, dtype=float).reshape(-1, 2) - np.array([other.x, other.y]))
    side = np.clip((size + other.size) / 2 - offset, 0, min(size, other.size))
    return side[:, 0] * side[:, 1]


_COVERAGE_PX = 32  # the resolution, across the hidden object's box, at which `hidden_share` counts


@lru_cache(maxsize=None)
def _coverage(shape: str, points: int | None) -> np.ndarray:
    return shape_mask(shape, _COVERAGE_PX, _COVERAGE_PX, points=points)


def hidden_share(front: PlacedObject, back: PlacedObject) -> float:
    """The share of `back`'s shape that `front`'s shape covers (1.0 when what is left of it
    falls into two or more pieces)."""
    n, s = _COVERAGE_PX, SUPERSAMPLE
    scale = n * s / back.size
    x0 = (front.x - front.size / 2 - (back.x - back.size / 2)) * scale
    y0 = (front.y - front.size / 2 - (back.y - back.size / 2)) * scale
    img = Image.new("L", (n * s, n * s), 0)
    draw_shape(
        ImageDraw.Draw(img), front.shape, (x0, y0, x0 + front.size * scale, y0 + front.size * scale), 255, front.points
    )
    cover = np.asarray(img.resize((n, n), Image.Resampling.BOX), dtype=np.float32) / 255.0
    mask = _coverage(back.shape, back.points)
    share = float((mask * cover).sum() / mask.sum())
    if share > 0 and ndimage.label((mask > 0.5) & (cover < 0.5))[1] > 1:
        return 1.0  # cut in two: as good as hidden, for no one can tell it is one object
    return share


def _depth_ok(xy, new: PlacedObject, other: PlacedObject, relations: list[str]) -> np.ndarray:
    """Whether `new` placed at each of `xy` (K, 2) overlaps `other` as a depth pair should: the
    shape in front hides a DEPTH_HIDDEN share of the shape behind."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    ok = box_overlap(xy, new.size, other) > 0
    for k in np.flatnonzero(ok):
        moved = replace(new, x=float(xy[k, 0]), y=float(xy[k, 1]))
        front, back = (moved, other) if "in front of" in relations else (other, moved)
        ok[k] = DEPTH_HIDDEN[0] <= hidden_share(front, back) <= DEPTH_HIDDEN[1]
    return ok


# ------------------------------------------------------------------------ sampling
def relation_needs(graph: SceneGraph) -> dict[tuple[int, int], list[str]]:
    """Required relations between group pairs (both orientations), keyed (group, other) as
    `place_object` reads them."""
    need: dict[tuple[int, int], list[str]] = {}
    for r in graph.relations:
        need.setdefault((r.subject, r.object), []).append(r.relation)
        inv = r.inverted()
        need.setdefault((inv.subject, inv.object), []).append(inv.relation)
    return need


def fits(
    obj: PlacedObject,
    placed: list[PlacedObject] | tuple[PlacedObject, ...],
    need: dict[tuple[int, int], list[str]] | None = None,
) -> bool:
    """Whether `obj` sits inside the canvas, clear of `placed`, and meets the relations."""
    h = obj.size / 2
    if not (
        h + MARGIN - 1e-9 <= obj.x <= 1 - h - MARGIN + 1e-9 and h + MARGIN - 1e-9 <= obj.y <= 1 - h - MARGIN + 1e-9
    ):
        return False
    for other in placed:
        rels = need.get((obj.group, other.group), []) if need else []
        depth = [r for r in rels if r in DEPTH_RELATIONS]
        if depth:
            if not _depth_ok([obj.x, obj.y], obj, other, depth)[0]:
                return False
        elif not _separated(obj, other):
            return False
        for rel in rels:
            if rel not in DEPTH_RELATIONS and not relation_holds(obj, rel, other):
                return False
    return True


def _feasible(
    xy: np.ndarray, size: float, group: int, placed, need, shape: str = "square", points: int | None = None
) -> np.ndarray:
    """Which candidate centres `xy` (K, 2) fit beside `placed` (vectorised `fits`)."""
    h = size / 2
    lo, hi = h + MARGIN, 1 - h - MARGIN
    ok = np.all((xy >= lo - 1e-9) & (xy <= hi + 1e-9), axis=1)

    def depth_last(other: PlacedObject) -> bool:  # the costly shape test on the fewest candidates
        return any(r in DEPTH_RELATIONS for r in (need or {}).get((group, other.group), ()))

    for other in sorted(placed, key=depth_last):
        offset = xy - np.array([other.x, other.y])
        rels = need.get((group, other.group), []) if need else []
        depth = [r for r in rels if r in DEPTH_RELATIONS]
        if depth:
            ok[ok] = _depth_ok(xy[ok], PlacedObject(shape, "", 0.0, 0.0, size, group, points), other, depth)
        else:
            reach = (size + other.size) / 2 + GAP
            ok &= np.any(np.abs(offset) >= reach, axis=1)
        for rel in rels:
            if rel in DEPTH_RELATIONS:
                continue
            revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (size + other.size), 0) * np.sign(offset)
            norm = np.maximum(np.linalg.norm(offset, axis=1), 1e-9)
            axis, sign = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]
            ok &= sign * revised[:, axis] / norm > RELATION_MARGIN
    return ok


def place_object(
    rng: np.random.Generator,
    shape: str,
    color: str,
    placed: tuple[PlacedObject, ...],
    group: int = -1,
    need: dict[tuple[int, int], list[str]] | None = None,
    size: float | None = None,
    candidates: int = 400,
    target: tuple[float, float] | None = None,
    nearest: bool = False,
    points: int | None = None,
) -> PlacedObject | None:
    """A new object at a random free spot that meets `need`, or None if there is none;
    with a `target`, more candidates are drawn around it (see `_grid_targets`), and with
    `nearest` the free spot nearest to it is taken."""
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
    xy = lo + (hi - lo) * u
    if target is not None:  # around the target, and every lattice point within 3 steps of it
        near = np.asarray(target) + rng.normal(0, 0.08, size=(candidates // 2, 2))
        steps = np.arange(-3, 4) / GRID
        grid = np.asarray(target) + np.stack(np.meshgrid(steps, steps), -1).reshape(-1, 2)
        xy = np.concatenate([xy, np.clip(near, lo, hi), np.clip(grid, lo, hi)])
    xy = snap_xy(xy)
    ok = np.flatnonzero(_feasible(xy, size, group, placed, need, shape, points))
    if len(ok) == 0:
        return None
    if nearest and target is not None:
        x, y = xy[ok[int(np.argmin(np.linalg.norm(xy[ok] - np.asarray(target), axis=1)))]]
    else:
        x, y = xy[int(rng.choice(ok))]
    return PlacedObject(shape, color, round(float(x), 4), round(float(y), 4), round(size, 4), group, points)


def _lean(group: int, need) -> tuple[int, int]:
    """The direction (-1, 0, 1 per axis) that `group`'s relations push it towards."""
    dx = dy = 0
    for (a, _b), rels in (need or {}).items():
        if a == group:
            for rel in rels:
                dx += {"left of": -1, "right of": 1}.get(rel, 0)
                dy += {"above": -1, "below": 1}.get(rel, 0)
    return int(np.sign(dx)), int(np.sign(dy))


def sample_layout(
    graph: SceneGraph, seed: int | np.random.Generator = 0, attempts: int = 100, planned: bool = False
) -> Layout:
    """Concrete placements satisfying `graph`, deterministic for a seed.

    Objects are placed one at a time, each at a spot drawn uniformly from the random
    candidates that are free and meet its relations to the objects already placed.
    An attempt that gets stuck starts over; every SHRINK_EVERY failed attempts objects
    shrink by 15% (never below MIN_SIZE), and from the first shrink on each group also
    draws candidates around its cell in the relation tree (`_grid_targets`), which lets
    chains of 4-5 groups fit. Uncoloured groups are painted in the first of FREE_COLOURS that
    differs from the colours of the groups they overlap in depth (red, else blue, ...). Objects are drawn back to
    front (`depth_levels`).

    `planned`: every group aims at its cell in the relation tree from the first attempt and takes
    the free spot nearest to it, so the layouts of one scene graph vary less (their centres'
    spread across seeds is about 0.6 of the drawn ones') and leave room for every group to come:
    a teacher whose regions a learned planner can better predict from the prompt. A scene the plan
    cannot fit raises LayoutError as any other.
    """
    graph.validate()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    placed = extend_layout(graph, rng, attempts=attempts, planned=planned)
    if placed is None:
        raise LayoutError(
            f"could not lay out {graph.to_text()!r}: its objects and relations do not fit the canvas, "
            f"even with objects shrunk to {MIN_SIZE:g} of its side (the smallest the detector reads); "
            f"use fewer objects or relations"
        )
    level = depth_levels(graph)
    return Layout(tuple(sorted(placed, key=lambda o: (level[o.group], o.group))))


def extend_layout(
    graph: SceneGraph,
    rng: np.random.Generator,
    fixed: tuple[PlacedObject, ...] = (),
    order: list[int] | None = None,
    attempts: int = 100,
    planned: bool = False,
) -> tuple[PlacedObject, ...] | None:
    """The objects of `graph`'s groups in `order` (default: every group, most related first)
    placed beside the `fixed` ones (another canvas's objects, their `group` the graph's group
    index), as `sample_layout` places a whole scene: attempts that start over, shrinking objects
    and aiming crowded groups at their cells in the relation tree (`planned`: every group, from
    the first attempt, at the free spot nearest its cell). None when no attempt fits."""
    need = relation_needs(graph)
    items: list[tuple[int, str, str, int | None]] = []
    for gi in placement_order(graph) if order is None else order:
        group = graph.groups[gi]
        color = group.color or _free_colour(graph, gi, items)  # one colour for the whole group
        items += [(gi, group.shape, color, group.points)] * group.count
    scale = 1.0
    targets: dict[int, tuple[float, float]] = _grid_targets(graph) if planned else {}
    in_depth = {g for r in graph.relations if r.relation in DEPTH_RELATIONS for g in (r.subject, r.object)}
    for attempt in range(1, attempts + 1):
        placed: list[PlacedObject] = []
        if attempt > SHRINK_EVERY and not targets:  # crowded: aim each group at its place in the relation tree
            targets = _grid_targets(graph)
        for gi, shape, color, points in items:
            smallest = DEPTH_MIN_SIZE if gi in in_depth else POINTS_MIN_SIZE if points else MIN_SIZE
            size = max(smallest, scale * OBJECT_SIZE * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)))
            obj = place_object(
                rng,
                shape,
                color,
                fixed + tuple(placed),
                gi,
                need,
                size=size,
                target=targets.get(gi),
                nearest=planned or attempt % 2 == 0,
                points=points,
            )
            if obj is None:
                break
            placed.append(obj)
        else:
            return tuple(placed)
        if attempt % SHRINK_EVERY == 0:
            scale *= SHRINK
    return None


# The colours an uncoloured group is painted in, in order of preference: the first that may overlap
# its partners in depth. One convention rather than a random pick, so that a learned sketcher
# given "a diamond" learns to draw one colour, not a blend of all ten (docs/shapesworld.md).
FREE_COLOURS: tuple[str, ...] = ("red", "blue", *(c for c in COLORS if c not in ("red", "blue")))


def _free_colour(graph: SceneGraph, group: int, items: list) -> str:
    """The colour of an uncoloured group: the first of FREE_COLOURS that may overlap, in depth, the
    groups it relates to in depth (their colours, or those chosen for them in `items`)."""
    partners = {
        r.object if r.subject == group else r.subject
        for r in graph.relations
        if r.relation in DEPTH_RELATIONS and group in (r.subject, r.object)
    }
    taken = {c for p in partners if (c := graph.groups[p].color) is not None}
    taken |= {item[2] for item in items if item[0] in partners}
    return next(c for c in FREE_COLOURS if not any(depth_colours_clash(c, t) for t in taken))


def depth_levels(graph: SceneGraph) -> list[int]:
    """Each group's drawing layer: 0 for a group in front of nothing, else one more than the
    highest layer of the groups it is in front of (so what is behind is drawn first)."""
    behind: dict[int, set[int]] = {i: set() for i in range(len(graph.groups))}
    for r in graph.relations:
        if r.relation == "in front of":
            behind[r.subject].add(r.object)
        elif r.relation == "behind":
            behind[r.object].add(r.subject)
    level: dict[int, int] = {}

    def visit(g: int) -> int:
        if g not in level:
            level[g] = 0  # validate() has refused cycles
            level[g] = 1 + max((visit(b) for b in behind[g]), default=-1)
        return level[g]

    return [visit(g) for g in range(len(graph.groups))]


_STEP = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}


def _grid_targets(graph: SceneGraph) -> dict[int, tuple[float, float]]:
    """Where each group should go: the relations walked from the most related group put
    each group one cell left/right/above/below the group it relates to (further out when
    that cell is taken), then the grid is scaled to the canvas. A hint for crowded scenes:
    placements are still drawn at random and checked exactly."""
    cells: dict[int, tuple[int, int]] = {}
    for start in placement_order(graph):
        if start in cells:
            continue
        cells[start] = (max((c[0] for c in cells.values()), default=-2) + 2, 0)  # a new tree beside the others
        frontier = [start]
        while frontier:
            g = frontier.pop(0)
            for r in graph.relations:
                if r.relation in DEPTH_RELATIONS:  # a depth pair shares its cell's neighbourhood
                    continue
                for a, rel, b in ((r.subject, r.relation, r.object), (r.object, r.inverted().relation, r.subject)):
                    if b == g and a not in cells:
                        dx, dy = _STEP[rel]
                        x, y = cells[g][0] + dx, cells[g][1] + dy
                        while (x, y) in cells.values():
                            x, y = x + dx, y + dy
                        cells[a] = (x, y)
                        frontier.append(a)
    xs, ys = [c[0] for c in cells.values()], [c[1] for c in cells.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1)
    cell = 1 / (span + 1)
    return {
        g: (
            (x - min(xs) + 0.5) * cell + (1 - (max(xs) - min(xs) + 1) * cell) / 2,
            (y - min(ys) + 0.5) * cell + (1 - (max(ys) - min(ys) + 1) * cell) / 2,
        )
        for g, (x, y) in cells.items()
    }


def placement_order(graph: SceneGraph) -> list[int]:
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
    "GRID",
    "Layout",
    "PlacedObject",
    "RELATIONS",
    "SIZE_STEPS",
    "extend_layout",
    "fits",
    "place_object",
    "placement_order",
    "random_object",
    "relation_holds",
    "relation_mask",
    "relative_position",
    "sample_layout",
]
