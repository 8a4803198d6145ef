"""Random scene graphs over the whole prompt language (for data and benchmarks)."""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError, PromptError
from .layout import Layout, sample_layout
from .scene import MAX_GROUPS, MAX_OBJECTS, ObjectGroup, Relation, SceneGraph
from .vocab import COLORS, DEPTH_RELATIONS, MAX_COUNT, RELATIONS, SHAPES, STAR_POINTS


def random_scene(rng: np.random.Generator, **kwargs) -> SceneGraph:
    """A random valid scene graph that the layout sampler can fit (see `random_scene_layout`)."""
    return random_scene_layout(rng, **kwargs)[0]


def random_scene_layout(
    rng: np.random.Generator,
    max_groups: int = MAX_GROUPS,
    max_objects: int = MAX_OBJECTS,
    color_prob: float = 0.6,
    relation_prob: float = 0.5,
    count_prob: float = 0.3,
    group_weights: list[float] | None = None,
    depth_prob: float = 0.0,
    points_prob: float = 0.0,
) -> tuple[SceneGraph, Layout]:
    """A random valid scene graph and a layout of it: 1..max_groups distinct groups, counts, colours, relations.

    Groups are distinct as noun phrases (so the English round-trips); relations link a
    later group to an earlier one, a `depth_prob` share of them in depth; a star gets a
    number of points with `points_prob`; graphs that contradict themselves or that the
    layout sampler cannot fit on the canvas are redrawn.
    """
    while True:
        if group_weights is None:
            n_groups = int(rng.integers(1, max_groups + 1))
        else:
            n_groups = 1 + int(rng.choice(len(group_weights), p=np.asarray(group_weights) / sum(group_weights)))
        groups: list[ObjectGroup] = []
        budget = max_objects
        for _ in range(n_groups):
            if budget - (n_groups - len(groups) - 1) < 1:
                break
            count = 1
            if rng.random() < count_prob:
                count = int(rng.integers(2, MAX_COUNT + 1))
            count = min(count, budget - (n_groups - len(groups) - 1))
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = COLORS[int(rng.integers(len(COLORS)))] if rng.random() < color_prob else None
            points = None
            if points_prob and shape == "star" and rng.random() < points_prob:
                points = STAR_POINTS[int(rng.integers(len(STAR_POINTS)))]
            group = ObjectGroup(shape, color, count, points)
            if group in groups or any(
                g.shape == shape and g.color is None or color is None and g.shape == shape for g in groups
            ):
                continue  # keep 'the <shape>' references unambiguous
            groups.append(group)
            budget -= count
        relations: list[Relation] = []
        for i in range(1, len(groups)):
            if rng.random() < relation_prob:
                j = int(rng.integers(0, i))
                if depth_prob and rng.random() < depth_prob:
                    relations.append(Relation(i, DEPTH_RELATIONS[int(rng.integers(2))], j))
                else:
                    relations.append(Relation(i, RELATIONS[int(rng.integers(len(RELATIONS)))], j))
        graph = SceneGraph(tuple(groups), tuple(relations))
        try:
            layout = sample_layout(graph, rng, attempts=20)
        except (PromptError, LayoutError):
            continue
        return graph, layout


def random_tree_scene(
    rng: np.random.Generator, n_groups: tuple[int, int] = (4, 5), max_objects: int = 6, count_prob: float = 0.4
) -> SceneGraph:
    """A crowded, consistent scene graph: `n_groups` (a range) coloured groups, each after the
    first related to one earlier group (a tree: chains and several relations to one
    anchor, never a cycle or a contradiction), counts up to 3 within `max_objects`."""
    while True:
        n = int(rng.integers(n_groups[0], n_groups[1] + 1))
        shapes = [SHAPES[int(i)] for i in rng.permutation(len(SHAPES))]
        budget, groups = max_objects, []
        for i in range(n):
            count = int(rng.integers(2, 4)) if rng.random() < count_prob else 1
            count = max(1, min(count, budget - (n - i - 1)))
            groups.append(ObjectGroup(shapes[i % len(shapes)], COLORS[int(rng.integers(len(COLORS)))], count))
            budget -= count
        if len({(g.shape, g.color) for g in groups}) < n or len({g.shape for g in groups}) < n:
            continue  # one group per shape keeps 'the <shape>' references unambiguous
        relations = [
            Relation(i, RELATIONS[int(rng.integers(len(RELATIONS)))], int(rng.integers(0, i))) for i in range(1, n)
        ]
        return SceneGraph(tuple(groups), tuple(relations))


def random_composite_scene(
    rng: np.random.Generator,
    group_weights: tuple[float, ...] = (0.0, 0.1, 0.4, 0.3, 0.2),
    color_prob: float = 0.9,
    count_prob: float = 0.2,
    max_objects: int = MAX_OBJECTS,
) -> SceneGraph:
    """A long composition of the kind GenEval never asks for: mostly 3-5 groups, nearly all
    coloured, every group after the first related to an earlier one (several to one anchor,
    or chains), plus up to two extra relations between groups already related; group order
    shuffled so the anchor is not always named first. Redrawn until the layout sampler fits it."""
    while True:
        n = 1 + int(rng.choice(len(group_weights), p=np.asarray(group_weights) / sum(group_weights)))
        shapes = [SHAPES[int(i)] for i in rng.permutation(len(SHAPES))[:n]]
        counts = [int(rng.integers(2, MAX_COUNT + 1)) if rng.random() < count_prob else 1 for _ in range(n)]
        if sum(counts) > max_objects:
            continue
        groups = [
            ObjectGroup(shape, COLORS[int(rng.integers(len(COLORS)))] if rng.random() < color_prob else None, c)
            for shape, c in zip(shapes, counts)
        ]
        relations = [
            Relation(
                i, RELATIONS[int(rng.integers(len(RELATIONS)))], 0 if rng.random() < 0.5 else int(rng.integers(0, i))
            )
            for i in range(1, n)
        ]
        for _ in range(int(rng.integers(0, 3)) if n > 2 else 0):
            i, j = sorted(int(v) for v in rng.choice(n, 2, replace=False))
            if all({r.subject, r.object} != {i, j} for r in relations):
                relations.append(Relation(j, RELATIONS[int(rng.integers(len(RELATIONS)))], i))
        order = [int(i) for i in rng.permutation(n)]
        graph = SceneGraph(
            tuple(groups[i] for i in order),
            tuple(Relation(order.index(r.subject), r.relation, order.index(r.object)) for r in relations),
        )
        try:
            graph.validate()
            sample_layout(graph, rng, attempts=20)
        except (PromptError, LayoutError):
            continue
        return graph
