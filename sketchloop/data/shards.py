"""One shard of a data build: `make_shard` is a pure function of (seed, kind, shard), and
keeps every finished example at once, so a stopped build resumes where it stopped. Both
engines (local processes in build.py, Ray actors in ray_engine.py) call it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..teachers import Teachers
from .schema import KINDS, read_partial, shard_path, write_table


def make_shard(
    kind: str,
    seed: int,
    shard: int,
    n_examples: int,
    edit_ops: float,
    out: str,
    n_shards: int,
    checkpoint: str | None = None,
    teacher: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    wording: float = 0.0,
    knowledge: float = 0.0,
    mix: dict[str, float] | None = None,
    own_regions: int = 0,
    own_conflicts: bool = False,
    planned_layouts: bool = False,
    relabel: str = "regions",
    linked_order: bool = False,
    recall_facts: bool = False,
    *,
    teachers: Teachers | None = None,
) -> dict[str, Any]:
    """Build one shard and write it atomically; returns its statistics. `teachers`: ones
    already made from `teacher` (a worker that builds many shards loads its editor once);
    `sampling`: settings the checkpoint's rollouts change from its sampling.json; `mix`: the
    shares of ShapesWorld scenes with depth and with counted parts (`heldout_free_scene`);
    `own_regions`: corrections labelled by the model's own right region sets first (data/corrections.py);
    `own_conflicts`: a checkpoint's inspect conflicts its own only (data/inspections.py);
    `planned_layouts`: ShapesWorld's step writer plans its layouts (world/layout.py `sample_layout`);
    `linked_order`: ShapesWorld's step writer adds the groups in `linked_order` (backends/shapes.py);
    `recall_facts`: a trajectory's step that adds the group its prompt names through a fact states
    the fact first (data/trajectories.py `make_trajectory`);
    `relabel`: what corrections relabel, "regions" or "plans" (data/corrections.py).

    Every finished example is kept at once (with the random state after it) under
    `data/.partial/`, so a build stopped mid-shard (a server outage, Ctrl-C) resumes at the
    next example and ends with the same shard as an uninterrupted run."""
    from ..backends.wiring import make_teachers
    from ..evaluation.heldout import row_allows
    from .corrections import make_correction, make_plan_correction
    from .inspections import make_inspect_own, make_inspect_symbolic
    from .refine import make_refine
    from .trajectories import Rejections, make_facts_row, make_trajectory

    rng = np.random.default_rng([seed, KINDS.index(kind), shard])
    teachers = teachers if teachers is not None else make_teachers(teacher)
    if mix:
        teachers = dataclasses.replace(teachers, scene_mix=mix)
    if planned_layouts or linked_order:
        from ..backends.shapes import ShapesStepWriter

        teachers = dataclasses.replace(teachers, writer=ShapesStepWriter(planned=planned_layouts, linked=linked_order))
    rejections = Rejections()
    planner = None
    if checkpoint is not None:
        import torch

        from ..backends.unified import UnifiedRoles
        from ..models.sampling import SamplingConfig

        torch.set_num_threads(1)  # one process per core already
        # the model as the loop runs it: its own plans and sketches at the inference settings
        directory = Path(checkpoint)
        config = SamplingConfig.from_pretrained(directory).replace(**(sampling or {}))
        planner = UnifiedRoles.from_pretrained(directory, config)
    partial = Path(out) / "data" / ".partial" / f"{kind}-{shard:05d}"
    rows, state = read_partial(partial)
    if state is not None:
        rng.bit_generator.state = state["rng"]
        rejections = Rejections(**state["rejections"])
    for i in range(len(rows), n_examples):
        while True:  # ShapesWorld rows never hold a benchmark's scene or a held-out pair, even mid-trajectory
            if kind in ("trajectories", "plans"):
                row = make_trajectory(
                    rng,
                    teachers,
                    edit_ops,
                    rejections,
                    wording=wording,
                    knowledge=knowledge,
                    recall=recall_facts,
                    images=kind == "trajectories",
                )
            elif kind == "facts":
                row = make_facts_row(rng)
            elif kind == "corrections" and relabel in ("plans", "replans"):
                row = make_plan_correction(
                    rng, planner, teachers, rejections, knowledge=knowledge, replan=relabel == "replans"
                )
            elif kind == "corrections":
                row = make_correction(rng, planner, teachers, rejections, knowledge=knowledge, own_samples=own_regions)
            elif kind == "inspect" and planner is not None:
                row = make_inspect_own(
                    rng, planner, teachers, rejections, knowledge=knowledge, own_conflicts=own_conflicts
                )
            elif kind == "inspect" and teachers.open_world:
                from .open_world import make_inspect_open

                row = make_inspect_open(rng, teachers, rejections, edit_ops)
            elif kind == "inspect":
                row = make_inspect_symbolic(rng, teachers, rejections, edit_ops)
            elif teachers.open_world:
                from .open_world import make_refine_open

                row = make_refine_open(rng, teachers, rejections, edit_ops)
            else:
                row = make_refine(rng, teachers, rejections, edit_ops)
            if teachers.open_world or row_allows(row):
                break
            rejections.heldout_rows += 1
        rows.append({"id": f"{kind}-{shard:05d}-{i:05d}", "kind": kind, **row})
        write_table(
            partial / f"{i:05d}.parquet", [rows[-1]], {"rng": rng.bit_generator.state, "rejections": vars(rejections)}
        )
    write_table(shard_path(Path(out), kind, shard, n_shards), rows)
    shutil.rmtree(partial, ignore_errors=True)
    return {
        "shard": shard,
        "examples": n_examples,
        "steps_redrawn": rejections.steps_redrawn,
        "trajectories_dropped": rejections.trajectories_dropped,
        "heldout_rows": rejections.heldout_rows,
    }
