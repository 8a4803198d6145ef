"""Pipeline 1: plan/sketch trajectories (the paper's 32K staged examples).

A scene graph is split into steps by the step writer, each step drawn by the editor
from the previous image and checked by the judge. A step the judge rejects is drawn
again (up to `retries` times); a trajectory whose step still fails is dropped and a new
scene drawn. Both counts go to the dataset card.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..world.render import DEFAULT_SIZE
from ..world.sample import random_scene
from .teachers import DetectorJudge, LayoutEditor, ShapesStepWriter, blank_canvas


# Number of groups 1..5: weighted towards richer scenes than GenEval's, so trajectories
# average 3-5 intermediate images like the paper's.
GROUP_WEIGHTS = [0.1, 0.15, 0.25, 0.25, 0.25]


@dataclass
class Teachers:
    writer: Any = field(default_factory=ShapesStepWriter)
    editor: Any = field(default_factory=LayoutEditor)
    judge: Any = field(default_factory=DetectorJudge)


@dataclass
class Rejections:
    steps_redrawn: int = 0
    trajectories_dropped: int = 0


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def make_trajectory(rng: np.random.Generator, teachers: Teachers, edit_ops: float, rejections: Rejections,
                    size: int = DEFAULT_SIZE, retries: int = 3) -> dict[str, Any]:
    """One trajectory example (the shared row schema, see data/store.py)."""
    while True:
        graph = random_scene(rng, group_weights=GROUP_WEIGHTS)
        steps = teachers.writer.write_steps(graph, rng, edit_ops)
        canvas = blank_canvas(size)
        row_steps: list[dict[str, Any]] = []
        images: list[bytes] = []
        layouts: list[str] = []
        ok = True
        for step in steps:
            for _attempt in range(retries + 1):
                new = teachers.editor.edit(canvas, step, rng)
                if new is not None and teachers.judge.judge(new.image, step.scene).consistent:
                    break
                rejections.steps_redrawn += 1
            else:
                ok = False
                break
            canvas = new
            images.append(png_bytes(new.image))
            layouts.append(_layout_json(new.layout))
            row_steps += [
                {"type": "ins", "text": step.ins, "image": -1, "op": _json(step.op)},
                {"type": "des", "text": step.des, "image": -1, "op": ""},
                {"type": "sketch", "text": "", "image": len(images) - 1, "op": ""},
            ]
        if ok and not teachers.judge.judge(canvas.image, graph).consistent:
            ok = False
        if not ok:
            rejections.trajectories_dropped += 1
            continue
        row_steps.append({"type": "end", "text": "", "image": -1, "op": ""})
        return {"prompt": graph.to_text(), "scene": graph.to_json(), "steps": row_steps,
                "images": images, "layouts": layouts,
                "label": "", "meta": _json({"edit_ops": [s.op["op"] for s in steps]})}


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def _layout_json(layout) -> str:
    return _json(layout.to_dict()) if layout is not None else ""
