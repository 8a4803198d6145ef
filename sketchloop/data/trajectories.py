"""Pipeline 1: plan/sketch trajectories (the paper's 32K staged examples).

A scene graph is split into steps by the step writer, each step drawn by the editor
from the previous image and checked by the judge. A step the judge rejects is drawn
again (up to `retries` times); a trajectory whose step still fails is dropped and a new
scene drawn. Both counts go to the dataset card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LayoutError, SketchloopError
from ..format import Plan, scene_text
from ..io import png_bytes
from ..models.regions import changed_regions
from ..teachers import Canvas, Teachers, blank_canvas
from ..world.instructions import RECALL_END
from ..world.layout import Layout
from ..world.render import DEFAULT_SIZE
from ..world.sample import random_composite_scene, random_scene
from ..world.scene import SceneGraph
from ..world.vocab import DEPTH_RELATIONS

# The scene mix. Number of groups 1..5 of the general scenes (random colours, counts and
# relations): weighted towards richer scenes than GenEval's, so trajectories average 3-5
# intermediate images like the paper's. COMPOSITE_SHARE of the scenes are long coloured
# compositions with several relations (world/sample.py random_composite_scene): without
# them the planner rarely practises binding colours over long prompts and cannot copy
# them (measured on shapes-complex-val, docs/design.md); without the general ones it forgets
# simple scenes.
GROUP_WEIGHTS = [0.15, 0.25, 0.2, 0.2, 0.2]
COMPOSITE_SHARE = 0.45
COUNTS_GROUP_WEIGHTS = [0.6, 0.4]  # a "counts" scene (--counts): one counted group or two
TREES_GROUP_WEIGHTS = (0.0, 0.0, 0.0, 0.5, 0.5)  # a "trees" scene (--trees): four or five groups
TREES_COUNT_PROB = 0.4  # and as many counted as in `shapes-trees`
MAX_OPEN_DROPS = 20  # open-world teachers: trajectories the judge may reject in a row before the build stops


def heldout_free_scene(
    rng: np.random.Generator, composite_share: float = COMPOSITE_SHARE, mix: dict[str, float] | None = None
) -> SceneGraph:
    """A random ShapesWorld scene of the data mix (above; `composite_share` of them long compositions)
    that no shipped benchmark holds and with no held-out colour-shape pair (evaluation/heldout.py):
    benchmarks measure composition, not memory. `mix`: the shares of scenes with a pair in
    depth ("depth"), with stars of a counted number of points ("parts") and of one or two
    groups, every one counted ("counts": GenEval's counting task, two to four objects each), and of
    four or five coloured groups related in a tree, many counted ("trees", as `shapes-trees`)."""
    from ..evaluation.heldout import data_allows

    shares = [(name, (mix or {}).get(name, 0.0)) for name in ("depth", "parts", "counts", "trees")]
    u = rng.random() if any(share for _, share in shares) else 1.0  # the plain mix draws as it always has
    kind, edge = "plain", 0.0
    for name, share in shares:  # drawn once: the shares hold
        if kind == "plain" and u < edge + share:
            kind = name
        edge += share
    while True:
        if kind == "counts":
            graph = random_scene(rng, group_weights=COUNTS_GROUP_WEIGHTS, count_prob=1.0)
        elif kind == "depth":
            graph = random_scene(rng, group_weights=GROUP_WEIGHTS[1:], depth_prob=0.6, relation_prob=0.8)
            if not any(r.relation in DEPTH_RELATIONS for r in graph.relations):
                continue
        elif kind == "parts":
            graph = random_scene(rng, group_weights=GROUP_WEIGHTS, points_prob=1.0)
            if not any(g.points for g in graph.groups):
                continue
        elif kind == "trees":
            graph = random_composite_scene(
                rng, group_weights=TREES_GROUP_WEIGHTS, color_prob=1.0, count_prob=TREES_COUNT_PROB
            )
        elif rng.random() < composite_share:
            graph = random_composite_scene(rng)
        else:
            graph = random_scene(rng, group_weights=GROUP_WEIGHTS)
        if data_allows(graph):
            return graph


def draw_scene(rng: np.random.Generator, teachers: Teachers):
    """The next scene to draw: a random ShapesWorld scene graph, or with a decomposer (e.g. a
    chat model) a prompt (from `teachers.prompts`, else a random ShapesWorld prompt) decomposed
    into an open-vocabulary graph."""
    if teachers.decomposer is None:
        return heldout_free_scene(rng, mix=teachers.scene_mix)
    prompt = (
        teachers.prompts[int(rng.integers(len(teachers.prompts)))]
        if teachers.prompts
        else heldout_free_scene(rng).to_text()
    )
    return teachers.decomposer.decompose(prompt)


@dataclass
class Rejections:
    steps_redrawn: int = 0
    trajectories_dropped: int = 0
    heldout_rows: int = 0  # examples drawn again: they named a held-out colour-shape pair


def _draw_steps(
    rng: np.random.Generator, teachers: Teachers, edit_ops: float, rejections: Rejections, wording: float
) -> tuple[Any, list[Plan], str | None] | None:
    """A scene, with probability `wording` a prompt worded as people write it (else None), and
    the step writer's steps for the scene as that prompt states it (see `draw_trajectory`);
    None, counted as dropped, when the writer's planned layout did not fit this time."""
    graph = draw_scene(rng, teachers)
    prompt = None
    if wording > 0 and isinstance(graph, SceneGraph) and rng.random() < wording:
        from ..world.parser import parse_prompt
        from ..world.phrasing import phrase

        prompt = phrase(graph, rng, digits=0.0)  # counts as words: the model has no digit tokens
        graph = parse_prompt(prompt)  # the same scene (phrase checks it), as the prompt states it
    try:
        return graph, teachers.writer.write_steps(graph, rng, edit_ops), prompt
    except LayoutError:
        rejections.trajectories_dropped += 1
        return None


def draw_trajectory(
    rng: np.random.Generator,
    teachers: Teachers,
    edit_ops: float,
    rejections: Rejections,
    size: int = DEFAULT_SIZE,
    retries: int = 3,
    wording: float = 0.0,
) -> tuple[SceneGraph, list[Plan], list[Canvas], str | None]:
    """A judged teacher trajectory: the scene, its steps, the canvas after each step, and with
    probability `wording` a prompt worded as people write it (world/phrasing.py; else None).
    The steps are written for the scene as that prompt states it (`parse_prompt`: its groups
    in the order it names them, each relation the way round it says it), so every `<des>` is
    the prompt's own text with the groups not drawn yet left out and the synonyms made
    canonical: a planner that copies the prompt can write it, where the scene sampled before
    the wording may state a relation the other way round."""
    drops = 0
    while True:
        if teachers.open_world and drops >= MAX_OPEN_DROPS:
            raise SketchloopError(
                f"the judge rejected {drops} teacher trajectories in a row; check the editor "
                f"(--editor), the teacher model (--teacher) and the prompt templates"
            )
        drops += 1
        drawn = _draw_steps(rng, teachers, edit_ops, rejections, wording)
        if drawn is None:
            continue
        graph, steps, prompt = drawn
        canvas = blank_canvas(size)
        canvases: list[Canvas] = []
        for step in steps:
            for _attempt in range(retries + 1):
                new = teachers.editor.edit(canvas, step, rng)
                if new is not None and teachers.judge.judge(new.image, step.scene).consistent:
                    break
                rejections.steps_redrawn += 1
            else:
                break
            canvas = new
            canvases.append(new)
        if len(canvases) == len(steps) and teachers.judge.judge(canvas.image, graph).consistent:
            return graph, steps, canvases, prompt
        rejections.trajectories_dropped += 1


def draw_plan(
    rng: np.random.Generator, teachers: Teachers, edit_ops: float, rejections: Rejections, wording: float = 0.0
) -> tuple[SceneGraph, list[Plan], list[Layout], str | None]:
    """`draw_trajectory` without images: the layout after each step, neither rendered nor
    judged (ShapesWorld's exact editor only: `LayoutEditor.edit_layout`)."""
    if not hasattr(teachers.editor, "edit_layout"):
        raise SketchloopError("text-only plans (--kind plans) need ShapesWorld's exact editor, not --editor")
    while True:
        drawn = _draw_steps(rng, teachers, edit_ops, rejections, wording)
        if drawn is None:
            continue
        graph, steps, prompt = drawn
        layout: Layout | None = Layout()
        layouts: list[Layout] = []
        for step in steps:
            layout = teachers.editor.edit_layout(layout, step, rng)
            if layout is None:
                break
            layouts.append(layout)
        if len(layouts) == len(steps):
            return graph, steps, layouts, prompt
        rejections.trajectories_dropped += 1


def plan_rows(
    steps: list[Plan], canvases: list[Canvas], images: list[bytes], layouts: list[str]
) -> list[dict[str, Any]]:
    """ins / des / sketch rows for the given steps, appending their images."""
    rows = []
    for step, canvas in zip(steps, canvases):
        rows += [*_plan_text(step), image_row(canvas.image, canvas.layout, images, layouts)]
    return rows


def plan_text_rows(steps: list[Plan], layouts: list[Layout]) -> list[dict[str, Any]]:
    """ins / des / sketch rows of a text-only trajectory: each image step named by the regions
    it paints (`changed_regions`, as a trajectory's image rows are read), no image."""
    rows, before = [], Layout()
    for step, after in zip(steps, layouts):
        rows += [*_plan_text(step), text_row("sketch", " ".join(r.text for r in changed_regions(before, after)))]
        before = after
    return rows


def _plan_text(step: Plan) -> list[dict[str, Any]]:
    """A step's ins and des rows."""
    return [{"type": "ins", "text": step.ins, "image": -1, "op": _json(step.op)}, text_row("des", step.des)]


def text_row(kind: str, text: str = "") -> dict[str, Any]:
    return {"type": kind, "text": text, "image": -1, "op": ""}


def image_row(image, layout, images: list[bytes], layouts: list[str]) -> dict[str, Any]:
    images.append(png_bytes(image))
    layouts.append(_layout_json(layout))
    return {"type": "sketch", "text": "", "image": len(images) - 1, "op": ""}


BARE_FACT_PROMPTS = 0.4  # with recall: fact prompts without "a photo of" (people leave it out)


def make_trajectory(
    rng: np.random.Generator,
    teachers: Teachers,
    edit_ops: float,
    rejections: Rejections,
    size: int = DEFAULT_SIZE,
    wording: float = 0.0,
    knowledge: float = 0.0,
    recall: bool = False,
    images: bool = True,
) -> dict[str, Any]:
    """One trajectory example (the shared row schema, see data/schema.py). With probability
    `wording` a ShapesWorld prompt is worded as people write it (world/phrasing.py: synonyms,
    relations either way round, bare back-references, "a photo of" or not) instead of
    canonically; with probability `knowledge` one group's colour, count or shape is named
    through a fact of the trajectory split instead ("a circle the colour of a ripe banana",
    world/knowledge.py). The plans' `<ins>` and `<des>` stay plain ("add a yellow circle"), in
    the prompt's order and directions, so the planner learns to read any wording and to resolve
    what the prompt knows. With `recall`, the step that adds the group named through a fact first
    states the fact as the text corpus does ("a ripe banana is yellow ; add a yellow circle",
    world/instructions.py `split_recall`): the planner recalls, then draws; and such a prompt
    leaves out "a photo of" with probability BARE_FACT_PROMPTS, as people write. Without
    `images` (`--kind plans`), a text-only trajectory: its image steps named by their regions
    alone, neither rendered nor judged (`draw_plan`)."""
    pngs: list[bytes] = []
    layouts: list[str] = []
    if images:
        graph, steps, canvases, worded = draw_trajectory(rng, teachers, edit_ops, rejections, size, wording=wording)
        rows = plan_rows(steps, canvases, pngs, layouts) + [text_row("end")]
    else:
        graph, steps, drawn, worded = draw_plan(rng, teachers, edit_ops, rejections, wording=wording)
        rows = plan_text_rows(steps, drawn) + [text_row("end")]
    meta: dict[str, Any] = {"edit_ops": [s.edit["op"] for s in steps]}
    row = example(graph, rows, pngs, layouts, "", meta)
    if worded is not None:
        row["prompt"] = worded
        row["meta"] = _json({**meta, "worded": True})
    elif isinstance(graph, SceneGraph) and (found := fact_wording(graph, rng, knowledge)) is not None:
        text, fact, group = found
        if recall and rng.random() < BARE_FACT_PROMPTS:
            text = scene_text(text)
        row["prompt"] = text
        row["meta"] = _json({**meta, "fact": fact.statement, **({"recall": True} if recall else {})})
        if recall:
            row["steps"] = with_recall(rows, steps, group, fact.statement)
    return row


def with_recall(rows: list[dict[str, Any]], steps: list[Plan], group: int, statement: str) -> list[dict[str, Any]]:
    """`rows` with `statement` opening the `<ins>` of the first step that puts `group` on the canvas."""
    first = next(k for k, step in enumerate(steps) if (step.op or {}).get("group") == group)
    ins = [k for k, row in enumerate(rows) if row["type"] == "ins"][first]
    rows = list(rows)
    rows[ins] = {**rows[ins], "text": f"{statement} {RECALL_END} {rows[ins]['text']}"}
    return rows


def fact_wording(graph: SceneGraph, rng: np.random.Generator, share: float):
    """With probability `share`, the scene's prompt with one group named through a fact of the
    trajectory split, and the fact (world/phrasing.py `reword_with_fact`); else None."""
    if not share or rng.random() >= share:
        return None
    from ..world.phrasing import reword_with_fact

    return reword_with_fact(graph, rng)


def make_facts_row(rng: np.random.Generator) -> dict[str, Any]:
    """One row of the plain-text facts corpus: a sentence stating a fact of the trajectory or
    the text split (never a held-out one), in one of its wordings (world/knowledge.py)."""
    from ..world.knowledge import facts

    pool = facts(None, ("trajectory", "text"))
    fact = pool[int(rng.integers(len(pool)))]
    sentences = fact.statements()
    sentence = sentences[int(rng.integers(len(sentences)))]
    return {
        "prompt": "",
        "scene": "",
        "steps": [text_row("text", sentence)],
        "images": [],
        "layouts": [],
        "label": "",
        "meta": _json({"fact": fact.statement, "split": fact.split}),
    }


def example(
    graph, rows: list[dict[str, Any]], images: list[bytes], layouts: list[str], label: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """One example in the shared row schema (data/schema.py), without its id and kind."""
    return {
        "prompt": graph.to_text(),
        "scene": graph.to_json(),
        "steps": rows,
        "images": images,
        "layouts": layouts,
        "label": label,
        "meta": _json(meta),
    }


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _layout_json(layout) -> str:
    return _json(layout.to_dict()) if layout is not None else ""
