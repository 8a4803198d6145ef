"""The dataset card: README.md with the build's statistics, and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_text
from .schema import read_dataset

KIND_NOTES = {
    "trajectories": "Every kept step's image passed the judge against the step's `<des>`, and every final "
    "image passed it against the whole prompt. `images per example` = intermediate images.",
    "plans": "Each example is a trajectory without images: the exact teacher's steps, each image step named by "
    "the regions it paints in the exact editor's layout (`<img> x3 y12 s8 </img>`), neither rendered nor judged "
    "(data/trajectories.py `draw_plan`). It trains the planner's words and regions, not the image expert.",
    "inspect": "Each example ends as the loop's inspector reads a step (`<img> R </img>`, the canvas, "
    "`<inspect>`): its plan against the prompt and, self-sampled, its image against its `<des>`; "
    "a conflict says where it is (`inconsistent plan:` / `inconsistent image:`) and adds a "
    "`<refine>` corrective instruction. Labels are the judge's.",
    "facts": "Each example is one plain sentence stating a fact of the knowledge base's trajectory or text "
    "split (sketchloop/world/knowledge.csv); no held-out fact appears.",
    "corrections": "Each example is the model's own plans for a prompt (its inference settings) up to a step, "
    "then that step's regions as the exact teacher places them beside the objects the model's earlier regions "
    "hold (data/corrections.py); only those regions are learned. Label `corrected`: the model's own regions "
    "there failed the judge; `confirmed`: they passed. No images; `trajectories dropped` counts the "
    "rollouts whose regions left the teacher no room for the groups still to come.",
    "plan corrections": "Each example is the model's own plans for a prompt (its inference settings) up to its "
    "first wrong plan (a `<des>` that is not the prompt's scene so far plus one group with the relations the "
    "prompt states, an `<end>` with groups still to draw, or a step after the scene is complete), then the "
    "step the exact teacher writes there: the step writer's next `add` with the layout sampler's regions beside "
    "the model's, or `<end>` (data/corrections.py `make_plan_correction`); only that step is learned. No images.",
    "replans": "Each example is the model's own plans for a prompt up to its first wrong `add` (as for plan "
    "corrections), that wrong plan as the rejected one (`<ins> I </ins> <des> D </des> <inspect> inconsistent "
    "plan </inspect>`), then the exact teacher's step there; in a quarter of them a right step of the rollout is "
    "the rejected one and the label keeps it (data/corrections.py `make_plan_correction`, `replan`). Only the "
    "last step is learned. No images.",
    "refine": "Each example ends in an image judged against its `<ins>`: positive with a reason, or negative "
    "with the judge's error analysis (`<inspect>`), a `<refine>` fix and the corrected image.",
}


def write_card(
    out: Path, params: dict[str, Any], shard_stats: dict[str, Any], examples_per_second: float | None
) -> dict[str, Any]:
    """Write README.md (the dataset card) and contact_sheet.png; returns the statistics."""
    from ..pages.dataset import contact_sheet

    table = read_dataset(out)
    steps = table.column("steps").to_pylist()
    step_types: dict[str, int] = {}
    images_per_example = []
    for s in steps:
        images_per_example.append(sum(1 for x in s if x["type"] == "sketch" and x["image"] >= 0))
        for x in s:
            step_types[x["type"]] = step_types.get(x["type"], 0) + 1
    ops: dict[str, int] = {}
    labels: dict[str, int] = {}
    sources: dict[str, int] = {}
    problems: dict[str, int] = {}
    labellers: dict[str, int] = {}  # corrections: who labelled the regions (the model's own or the layout sampler)
    for label, m in zip(table.column("label").to_pylist(), table.column("meta").to_pylist()):
        meta = json.loads(m)
        for op in meta.get("edit_ops", []):
            ops[op] = ops.get(op, 0) + 1
        if label:
            labels[label] = labels.get(label, 0) + 1
        if "source" in meta:
            sources[meta["source"]] = sources.get(meta["source"], 0) + 1
        if "teacher" in meta:
            labellers[meta["teacher"]] = labellers.get(meta["teacher"], 0) + 1
        for p in meta.get("problems", []):
            problems[p] = problems.get(p, 0) + 1
    total_ops = sum(ops.values()) or 1
    summary = {
        "examples": table.num_rows,
        "shards": len(shard_stats),
        "mean_intermediate_images": float(np.mean(images_per_example)),
        "min_images": int(np.min(images_per_example)),
        "max_images": int(np.max(images_per_example)),
        "step_types": step_types,
        "edit_op_shares": {k: v / total_ops for k, v in sorted(ops.items())},
        "label_shares": {k: v / table.num_rows for k, v in sorted(labels.items())},
        "sources": dict(sorted(sources.items())),
        "problems": dict(sorted(problems.items())),
        "region_labels": dict(sorted(labellers.items())),
        "steps_redrawn": sum(s["steps_redrawn"] for s in shard_stats.values()),
        "trajectories_dropped": sum(s["trajectories_dropped"] for s in shard_stats.values()),
        "heldout_rows": sum(s.get("heldout_rows", 0) for s in shard_stats.values()),
        "examples_per_second": examples_per_second,
    }
    if any(images_per_example):
        contact_sheet(table, out / "contact_sheet.png")
    lines = [
        f"# sketchloop dataset: {params['kind']}",
        "",
        f"Built by `sketchloop data build --kind {params['kind']} --n {params['n']} --seed {params['seed']} "
        f"--edit-ops {params['edit_ops']}"
        + (f" --wording {params['wording']}" if params.get("wording") else "")
        + (f" --knowledge {params['knowledge']}" if params.get("knowledge") else "")
        + (f" --depth {params['depth']}" if params.get("depth") else "")
        + (f" --parts {params['parts']}" if params.get("parts") else "")
        + (f" --counts {params['counts']}" if params.get("counts") else "")
        + (f" --trees {params['trees']}" if params.get("trees") else "")
        + (f" --checkpoint {params['checkpoint']}" if params.get("checkpoint") else "")
        + (f" --own-regions {params['own_regions']}" if params.get("own_regions") else "")
        + (f" --relabel {params['relabel']}" if params.get("relabel") else "")
        + (" --own-conflicts" if params.get("own_conflicts") else "")
        + (" --planned-layouts" if params.get("layouts") == "planned" else "")
        + (" --linked-order" if params.get("order") == "linked" else "")
        + (" --recall-facts" if params.get("recall") else "")
        + (
            f" --teacher openai:{params['teacher']['model']} --editor {params['teacher']['editor']}"
            if params.get("teacher")
            else ""
        )
        + "`"
        + (
            f" with real teachers: {params['teacher']['model']} as decomposer, step writer and judge, "
            f"{params['teacher']['editor']} as editor (prompts: "
            f"{params['teacher'].get('prompts_file') or 'ShapesWorld random scenes'}). "
            if params.get("teacher")
            else " from the knowledge base (sketchloop/world/knowledge.csv). "
            if params["kind"] == "facts"
            else " with ShapesWorld's exact teachers (parser, step writer, layout editor; nothing rendered). "
            if params["kind"] == "plans"
            else " with ShapesWorld's exact teachers (parser, step writer, layout editor + renderer, detector judge). "
        )
        + "Schema: see `sketchloop/data/schema.py`; load with "
        "`datasets.load_dataset('parquet', data_files='data/*.parquet')` or `pyarrow.parquet.read_table`.",
        "",
        "| statistic | value |",
        "|---|---|",
        f"| examples | {summary['examples']} in {summary['shards']} shards |",
        f"| images per example | mean {summary['mean_intermediate_images']:.2f} "
        f"(min {summary['min_images']}, max {summary['max_images']}) |",
        f"| steps by type | {', '.join(f'{k}: {v}' for k, v in sorted(step_types.items()))} |",
        f"| edit operations (share of steps) | "
        f"{', '.join(f'{k}: {v:.3f}' for k, v in summary['edit_op_shares'].items()) or '-'} |",
        f"| labels | {', '.join(f'{k}: {v:.3f}' for k, v in summary['label_shares'].items()) or '-'} |",
        f"| sources | {', '.join(f'{k}: {v}' for k, v in summary['sources'].items()) or '-'} |",
        f"| problems found by the judge | {', '.join(f'{k}: {v}' for k, v in summary['problems'].items()) or '-'} |",
        *(
            [f"| regions labelled by | {', '.join(f'{k}: {v}' for k, v in summary['region_labels'].items())} |"]
            if labellers
            else []
        ),
        f"| judge rejections | {summary['steps_redrawn']} steps redrawn, "
        f"{summary['trajectories_dropped']} trajectories dropped |",
        f"| held out | {summary['heldout_rows']} examples drawn again: a benchmark's scene or a held-out "
        f"colour-shape pair (sketchloop/evaluation/heldout.py) |",
    ]
    if examples_per_second:
        lines.append(f"| throughput of the last run | {examples_per_second:.1f} examples/s |")
    note = {"plans": "plan corrections", "replans": "replans"}.get(params.get("relabel", ""), params["kind"])
    lines += ["", KIND_NOTES[note], ""]
    if any(images_per_example):
        lines += ["![contact sheet](contact_sheet.png)", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return summary
