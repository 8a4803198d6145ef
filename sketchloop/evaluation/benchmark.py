"""Benchmarks: GenEval-format JSONL prompt files, and the ones shipped in the package."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SketchloopError

# geneval: GenEval's own 553 prompts (MIT, GENEVAL_LICENSE.md); the held-out ShapesWorld ones: heldout.py
SHIPPED = (
    "shapes-geneval",
    "shapes-complex",
    "shapes-complex-val",
    "shapes-generalise",
    "shapes-trees",
    "shapes-trees-val",
    "shapes-phrasing",
    "shapes-phrasing-val",
    "shapes-wise",
    "shapes-wise-val",
    "shapes-depth",
    "shapes-depth-val",
    "shapes-parts",
    "shapes-parts-val",
    "shapes-counting-val",
    "shapes-counted-val",
    "geneval",
)


def benchmark_path(name_or_path: str) -> Path:
    """The JSONL file behind a shipped benchmark name or a path."""
    if name_or_path in SHIPPED:
        return Path(str(resources.files("sketchloop") / "benchmarks" / f"{name_or_path}.jsonl"))
    path = Path(name_or_path)
    if not path.is_file():
        raise SketchloopError(
            f"benchmark {name_or_path!r} is neither a shipped benchmark ({', '.join(SHIPPED)}) nor a JSONL file"
        )
    return path


def parse_metadata_line(line: str, where: str) -> dict[str, Any]:
    """One GenEval metadata line, checked for the fields the scorer reads."""
    try:
        meta = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SketchloopError(f"{where}: not valid JSON ({exc.msg})") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("prompt"), str)
        or not isinstance(meta.get("include"), list)
        or "tag" not in meta
    ):
        raise SketchloopError(f"{where}: a GenEval metadata line needs 'tag', 'include' (a list) and 'prompt'")
    for req in meta["include"] + meta.get("exclude", []):
        if not isinstance(req, dict) or "class" not in req or not isinstance(req.get("count", 1), int):
            raise SketchloopError(f"{where}: every include/exclude entry needs a 'class' and an integer 'count'")
        req.setdefault("count", 1)
    return meta


def load_benchmark(name_or_path: str) -> list[dict[str, Any]]:
    """The metadata lines of a benchmark, in order (blank lines skipped)."""
    path = benchmark_path(name_or_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [parse_metadata_line(line, f"{path}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
    if not prompts:
        raise SketchloopError(f"benchmark {path} holds no prompts")
    return prompts


# GenEval's task sizes, in its order.
GENEVAL_TASK_SIZES = {
    "single_object": 80,
    "two_object": 99,
    "counting": 80,
    "colors": 94,
    "position": 100,
    "color_attr": 100,
}


def make_shapes_geneval(seed: int = 2604) -> list[dict[str, Any]]:
    """GenEval's six tasks, sizes and phrasing over ShapesWorld's vocabulary.

    Every combination of a task is used as evenly as its size allows (all of them
    once before any twice), in an order fixed by `seed`.
    """
    import itertools

    import numpy as np

    from ..world.scene import ObjectGroup, Relation, SceneGraph
    from ..world.vocab import COLORS, MAX_COUNT, RELATIONS, SHAPES

    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a, b in itertools.permutations(SHAPES, 2)]
    combos = {
        "single_object": [SceneGraph((ObjectGroup(s),)) for s in SHAPES],
        "two_object": [SceneGraph((ObjectGroup(a), ObjectGroup(b))) for a, b in pairs],
        "counting": [SceneGraph((ObjectGroup(s, None, n),)) for n in range(2, MAX_COUNT + 1) for s in SHAPES],
        "colors": [SceneGraph((ObjectGroup(s, c),)) for s in SHAPES for c in COLORS],
        # GenEval's position prompts read "a photo of a A <rel> a B"; the target B comes first.
        "position": [
            SceneGraph((ObjectGroup(b), ObjectGroup(a)), (Relation(1, r, 0),)) for a, b in pairs for r in RELATIONS
        ],
        "color_attr": [
            SceneGraph((ObjectGroup(a, ca), ObjectGroup(b, cb)))
            for a, b in pairs
            for ca, cb in itertools.permutations(COLORS, 2)
        ],
    }
    lines = []
    for tag, size in GENEVAL_TASK_SIZES.items():
        pool = combos[tag]
        chosen: list = []
        while len(chosen) < size:
            take = min(size - len(chosen), len(pool))
            chosen += [pool[k] for k in rng.permutation(len(pool))[:take]]
        lines += [graph.to_geneval(tag) for graph in chosen]
    return lines
