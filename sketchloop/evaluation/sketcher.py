"""The sketcher on its own: ShapesWorld's teacher plans each prompt (what is behind first) and
places each step; the model draws the regions each step changed, one step after another on its
own canvas; the judge scores every step's canvas and the final one afterwards. An ORACLE-PLANS
measurement (the teacher decides the plan and the layout), never part of a generation path:
where the loop fails, it tells the drawing from the planning."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..backends.shapes import shapes_teachers
from ..errors import SketchloopError
from ..format import Plan
from ..loop.roles import Sketcher
from ..models.regions import changed_regions
from ..teachers import blank_canvas
from ..world.parser import parse_prompt


def sketch_scores(sketcher: Sketcher, prompts: list[str], seed: int = 0, progress: bool = False) -> dict:
    """Shares of final images and of steps right when `sketcher` draws the teacher's plans, and
    each prompt's verdict (`per_prompt`: the prompt, whether every group is coloured, right or not)."""
    teachers = shapes_teachers()
    right, steps_right, steps = 0, 0, 0
    per_prompt = []
    for index, prompt in enumerate(tqdm(prompts, desc="sketches", disable=not progress)):
        graph = parse_prompt(prompt)
        rng = np.random.default_rng([seed, index])
        canvas = blank_canvas()
        image, history = canvas.image, []
        for k, step in enumerate(teachers.writer.write_steps(graph, rng, 0.0)):
            placed = teachers.editor.edit(canvas, step, rng)
            if placed is None or placed.layout is None or canvas.layout is None:
                raise SketchloopError(f"the layout editor found no room for {step.ins!r} of {prompt!r}")
            regions = " ".join(r.text for r in changed_regions(canvas.layout, placed.layout))
            history.append(Plan(step.ins, step.des, regions))
            image = sketcher.sketch(prompt, history, image, seed=1000 * index + k)
            steps += 1
            steps_right += teachers.judge.judge(image, step.scene).consistent
            canvas = placed
        correct = teachers.judge.judge(image, graph).consistent
        right += correct
        coloured = all(group.color is not None for group in graph.groups)
        per_prompt.append({"prompt": prompt, "coloured": coloured, "correct": bool(correct)})
    return {
        "prompts": len(prompts),
        "right": right / max(1, len(prompts)),
        "steps": steps,
        "steps_right": steps_right / max(1, steps),
        "per_prompt": per_prompt,
    }
