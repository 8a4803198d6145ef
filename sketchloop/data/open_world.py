"""Pipelines 2 and 3 with open-vocabulary teachers (a chat model as decomposer, step writer
and judge, an image-editing pipeline as editor), where no layout exists to perturb: the
step writer rewrites a step so that it contradicts the prompt (`flaw`), the editor draws
it, and the judge's critique or analysis is the label. Pipeline 1 needs nothing extra:
`trajectories.make_trajectory` runs unchanged with such teachers. Rows follow the shared
schema of `data/schema.py`; `layouts` are "" (unknown)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SketchloopError
from ..teachers import Teachers, blank_canvas
from ..world.render import DEFAULT_SIZE
from .inspections import INCONSISTENT_SHARE
from .refine import POSITIVE_SHARE, judged_rows
from .trajectories import Rejections, draw_trajectory, example, plan_rows, text_row

MAX_TRIES = 8  # trajectories drawn for one example before the teachers are given up on


def _flawed(rng: np.random.Generator, teachers: Teachers, graph, steps, canvases, k: int, size: int):
    """Plan `k` rewritten by the teacher to contradict the prompt, drawn from the canvas before it."""
    step = teachers.flaw_writer.flaw(graph, steps, k)
    return step, teachers.editor.edit(canvases[k - 1] if k else blank_canvas(size), step, rng)


def make_inspect_open(
    rng: np.random.Generator,
    teachers: Teachers,
    rejections: Rejections,
    edit_ops: float = 0.25,
    size: int = DEFAULT_SIZE,
) -> dict[str, Any]:
    """A teacher trajectory up to step k, its plan (or a flawed one) critiqued against the prompt."""
    inconsistent = bool(rng.random() < INCONSISTENT_SHARE)
    for _ in range(MAX_TRIES):
        graph, steps, canvases, _ = draw_trajectory(rng, teachers, edit_ops, rejections, size)
        last = len(steps) - 1
        k = int(rng.integers(len(steps)))
        images: list[bytes] = []
        layouts: list[str] = []
        if inconsistent:
            step, canvas = _flawed(rng, teachers, graph, steps, canvases, k, size)
            review = teachers.judge.critique(step.scene, graph, False)
            rows = plan_rows(steps[:k], canvases[:k], images, layouts) + plan_rows([step], [canvas], images, layouts)
        else:
            review = teachers.judge.critique(steps[k].scene, graph, k == last)
            rows = plan_rows(steps[: k + 1], canvases[: k + 1], images, layouts)
            if k == last:
                rows.append(text_row("end"))
        if review.consistent != (not inconsistent):
            rejections.trajectories_dropped += 1  # the judge disagrees with the teacher: draw again
            continue
        rows.append(text_row("inspect", review.text))
        if not review.consistent:
            rows.append(text_row("refine", review.refine))
        return example(
            graph,
            rows,
            images,
            layouts,
            "inconsistent" if inconsistent else "consistent",
            {
                "source": "teacher-flaw" if inconsistent else "teacher",
                "step": k,
                "problems": [p.kind for p in review.problems],
            },
        )
    raise SketchloopError(
        f"the judge disagreed with the teacher's plans {MAX_TRIES} times in a row; check the "
        f"teacher model and the flaw / critique templates"
    )


def make_refine_open(
    rng: np.random.Generator,
    teachers: Teachers,
    rejections: Rejections,
    edit_ops: float = 0.25,
    size: int = DEFAULT_SIZE,
) -> dict[str, Any]:
    """A teacher trajectory up to step k and that step's image judged: positive, or a flawed
    image with the judge's analysis, a `<refine>` fix and the teacher's correct image."""
    positive = bool(rng.random() < POSITIVE_SHARE)
    for _ in range(MAX_TRIES):
        graph, steps, canvases, _ = draw_trajectory(rng, teachers, edit_ops, rejections, size)
        k = int(rng.integers(len(steps)))
        step, canvas = steps[k], canvases[k]
        images: list[bytes] = []
        layouts: list[str] = []
        rows = plan_rows(steps[:k], canvases[:k], images, layouts)
        rows += [text_row("ins", step.ins), text_row("des", step.des)]
        shown = canvas if positive else _flawed(rng, teachers, graph, steps, canvases, k, size)[1]
        if shown is None:  # the editor could not draw the flaw: draw again
            rejections.trajectories_dropped += 1
            continue
        flawed = None if positive else shown
        review = teachers.judge.analyse(shown.image, step.scene)
        if review.consistent != positive:  # the judge disagrees (or the flaw did not show): draw again
            rejections.trajectories_dropped += 1
            continue
        rows += judged_rows(step, canvas, flawed, review, images, layouts)
        return example(
            graph,
            rows,
            images,
            layouts,
            "consistent" if positive else "inconsistent",
            {
                "source": "teacher" if positive else "teacher-flaw",
                "step": k,
                "problems": [p.kind for p in review.problems],
            },
        )
    raise SketchloopError(
        f"the judge disagreed with the teacher's images {MAX_TRIES} times in a row; check the "
        f"editor, the teacher model and the flaw / analyse templates"
    )
