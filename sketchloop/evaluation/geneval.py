"""GenEval's protocol over a run: per-image verdicts (`score_image`, GenEval's rules over
detections, world/judge.py) summarised per task and overall."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..world.judge import score_image

__all__ = ["score_image", "summarize"]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task means and their mean (GenEval's overall) from per-image records."""
    by_task: dict[str, list[bool]] = {}
    for rec in records:
        by_task.setdefault(rec["tag"], []).append(bool(rec["correct"]))
    tasks = {tag: float(np.mean(v)) for tag, v in by_task.items()}
    overall = float(np.mean(list(tasks.values()))) if tasks else 0.0
    return {"overall": overall, "tasks": tasks}
