"""The inspector's test steps: for each prompt a right step, a wrong plan and a wrong sketch of
the model's own, made as the inspect data are made (data/inspections.py `make_inspect_own`)
and labelled by the exact judge outside the loop. scripts/inspector_benchmark.py measures
the inspector on them; scripts/train_plan_check.py trains and thresholds the plan check."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..backends.unified import UnifiedRoles, largest_gap
from ..backends.wiring import make_teachers
from ..evaluation.benchmark import load_benchmark
from ..format import Plan, text_verdict
from ..teachers import blank_canvas
from .inspections import OWN_TARGETS, make_inspect_own
from .schema import decode_png
from .trajectories import Rejections


def inspected_step(row: dict) -> tuple[list[Plan], Image.Image, Image.Image]:
    """The plan history of an inspect example (each sketch row names its regions), the canvas
    its inspection reads and the canvas its last step was drawn on."""
    plans, ins, des, images = [], "", "", []
    for step in row["steps"]:
        if step["type"] == "ins":
            ins = step["text"]
        elif step["type"] == "des":
            des = step["text"]
        elif step["type"] == "sketch":
            plans.append(Plan(ins, des, step["text"]))
            images.append(Image.fromarray(decode_png(row["images"][step["image"]])))
    before = images[-2] if len(images) > 1 else blank_canvas(images[-1].size[0]).image
    return plans, images[-1], before


def own_step(
    roles: UnifiedRoles, teachers: Any, rng: np.random.Generator, target: str, prompt: str | None = None
) -> dict | None:
    """`make_inspect_own`'s example of `target` (on `prompt`, else a random held-out scene), or
    None when the model made no such step of its own (a teacher's example, or a reworded plan
    that fell back to another kind)."""
    row = make_inspect_own(rng, roles, teachers, Rejections(), target=target, prompt=prompt)
    source = json.loads(row["meta"])["source"]
    if source == "teacher" or (target == "rephrased" and source != "rephrased-plan"):
        return None
    return row


def benchmark_steps(
    roles: UnifiedRoles, bench: str, every: int = 1, seed: int = 0, controls: bool = False
) -> Iterator[tuple[int, dict, int]]:
    """(prompt index, inspect example, seed for the inspector) of each kind of step on every
    `every`th prompt of `bench` (seeded by prompt and kind), skipping kinds the model makes no
    step of its own for."""
    teachers = make_teachers(None)
    for i, meta in enumerate(tqdm(load_benchmark(bench)[::every], desc=bench, file=sys.stderr)):
        for k, target in enumerate(OWN_TARGETS + (("rephrased",) if controls else ())):
            rng = np.random.default_rng([seed, i, k])
            row = own_step(roles, teachers, rng, target, meta["prompt"])
            if row is not None:
                yield i, row, int(rng.integers(2**31))


def score(roles: UnifiedRoles, row: dict, source: str, index: int, seed: int) -> dict:
    """The inspector on one inspect example: the judge's verdict (the example's label), the
    inspector's doubt and what its inspection (as the loop samples it) says."""
    plans, canvas, before = inspected_step(row)
    consistent, kind = text_verdict([s["text"] for s in row["steps"] if s["type"] == "inspect"][-1])
    said = roles.inspect(row["prompt"], plans, canvas, seed, before)
    plan_doubt, image_doubt = roles.checks(row["prompt"], plans, canvas, before, seed)
    read = roles.plan_features(roles._session(row["prompt"], plans))  # the untrained score: the largest gap
    surprise = largest_gap(read) if read is not None else None
    meta = json.loads(row["meta"])
    return {
        "benchmark": source,
        "index": index,
        "target": meta.get("target"),
        "source": meta.get("source"),
        "kind": "consistent" if consistent else kind,
        "doubt": roles.doubt(row["prompt"], plans, canvas),
        "plan_doubt": plan_doubt,
        "plan_surprise": surprise,
        "image_doubt": image_doubt,
        "said": "consistent" if said.consistent else said.target,
        "text": said.text,
    }
