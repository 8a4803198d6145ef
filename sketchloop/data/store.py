"""The dataset format and the sharded, resumable, multi-process build.

One parquet row per example, the same schema for every kind (readable by pyarrow and
Hugging Face `datasets`):

| column  | type                 | meaning                                                      |
|---------|----------------------|--------------------------------------------------------------|
| id      | string               | `{kind}-{shard:05d}-{index:05d}`                             |
| kind    | string               | trajectories, inspect or refine                              |
| prompt  | string               | the full prompt                                              |
| scene   | string               | its scene graph as JSON (sketchloop.SceneGraph.from_json)   |
| steps   | list<struct>         | ordered steps: type, text, image (index into images or -1), op (structured edit as JSON, or "") |
| images  | list<binary>         | PNG bytes, referenced by the steps                           |
| layouts | list<string>         | ShapesWorld layout JSON of each image ("" when unknown)      |
| label   | string               | inspect/refine: consistent or inconsistent; "" otherwise    |
| meta    | string               | JSON: pipeline details (edit ops used, perturbation, ...)    |

Step types: `ins`, `des` (the plan), `sketch` (an image), `inspect`, `refine`, `end`.

Output folder: `data/{kind}-{shard:05d}-of-{n:05d}.parquet`, `build.json` (the build's
parameters), `README.md` (the dataset card) and `contact_sheet.png`. Shard k is a pure
function of (seed, kind, k), so any worker can make any shard; a shard file appears
only when complete (written to a temporary name, then renamed), and a re-run skips
shards already there.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..errors import SketchloopError
from ..io import atomic_write_text

KINDS = ("trajectories", "inspect", "refine")
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("kind", pa.string()),
    ("prompt", pa.string()),
    ("scene", pa.string()),
    ("steps", pa.list_(pa.struct([("type", pa.string()), ("text", pa.string()),
                                  ("image", pa.int32()), ("op", pa.string())]))),
    ("images", pa.list_(pa.binary())),
    ("layouts", pa.list_(pa.string())),
    ("label", pa.string()),
    ("meta", pa.string()),
])


def shard_path(out: Path, kind: str, shard: int, n_shards: int) -> Path:
    return out / "data" / f"{kind}-{shard:05d}-of-{n_shards:05d}.parquet"


def make_shard(kind: str, seed: int, shard: int, n_examples: int, edit_ops: float, out: str,
               n_shards: int, checkpoint: str | None = None, teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build one shard and write it atomically; returns its statistics.

    Every finished example is kept at once (with the random state after it) under
    `data/.partial/`, so a build stopped mid-shard (a server outage, Ctrl-C) resumes at the
    next example and ends with the same shard as an uninterrupted run."""
    from .inspect import make_inspect_self_sampled, make_inspect_symbolic
    from .refine import make_refine
    from .trajectories import Rejections, make_trajectory

    rng = np.random.default_rng([seed, KINDS.index(kind), shard])
    teachers = make_teachers(teacher)
    rejections = Rejections()
    planner = None
    if checkpoint is not None:
        import torch

        from ..backends.unified import UnifiedRoles

        torch.set_num_threads(1)  # one process per core already
        # the model's raw plans, overlapping regions included: their errors are what inspection learns from
        planner = UnifiedRoles.from_pretrained(Path(checkpoint), seed=seed * 100_003 + shard, temperature=1.0,
                                               separate=False)
    partial = Path(out) / "data" / ".partial" / f"{kind}-{shard:05d}"
    rows, state = _read_partial(partial)
    if state is not None:
        rng.bit_generator.state = state["rng"]
        rejections = Rejections(**state["rejections"])
    for i in range(len(rows), n_examples):
        if kind == "trajectories":
            row = make_trajectory(rng, teachers, edit_ops, rejections)
        elif kind == "inspect" and planner is not None:
            row = make_inspect_self_sampled(rng, planner, teachers, rejections)
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
        rows.append({"id": f"{kind}-{shard:05d}-{i:05d}", "kind": kind, **row})
        _write_table(partial / f"{i:05d}.parquet", [rows[-1]], {"rng": rng.bit_generator.state,
                                                                "rejections": vars(rejections)})
    _write_table(shard_path(Path(out), kind, shard, n_shards), rows)
    shutil.rmtree(partial, ignore_errors=True)
    return {"shard": shard, "examples": n_examples, "steps_redrawn": rejections.steps_redrawn,
            "trajectories_dropped": rejections.trajectories_dropped}


def make_teachers(teacher: dict[str, Any] | None):
    """ShapesWorld's exact teachers, or (given `teacher`: model, base_url, templates, editor,
    first_step, image settings, prompts) a chat model and a diffusers editor."""
    from .trajectories import Teachers

    if teacher is None:
        return Teachers()
    from ..backends.chat import ChatClient, ChatSettings
    from ..backends.chat_teachers import ChatDecomposer, ChatJudge, ChatStepWriter
    from ..backends.diffusers_editor import DiffusersEditor, DiffusersSettings

    client = ChatClient(ChatSettings(model=teacher["model"], base_url=teacher.get("base_url"),
                                     prompts_dir=Path(teacher["templates"]) if teacher.get("templates") else None,
                                     **teacher.get("client", {})))  # timeout, max_retries, backoff
    editor = DiffusersEditor.from_spec(teacher["editor"], DiffusersSettings(**teacher.get("image", {})),
                                       teacher.get("first_step"))
    return Teachers(writer=ChatStepWriter(client), editor=editor, judge=ChatJudge(client),
                    decomposer=ChatDecomposer(client), prompts=teacher.get("prompts"))


def _write_table(path: Path, rows: list[dict[str, Any]], state: dict[str, Any] | None = None) -> None:
    """Rows as a parquet file, written atomically; `state` goes in the schema metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    if state is not None:
        table = table.replace_schema_metadata({"sketchloop_state": json.dumps(state)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _read_partial(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The examples a stopped run finished for one shard, and the state after the last one."""
    files = sorted(folder.glob("[0-9]*.parquet")) if folder.is_dir() else []
    files = [f for i, f in enumerate(files) if f.name == f"{i:05d}.parquet"]  # a gap ends what can be used
    if not files:
        return [], None
    tables = [pq.read_table(f) for f in files]
    state = json.loads(tables[-1].schema.metadata[b"sketchloop_state"])
    return [row for t in tables for row in t.to_pylist()], state


def build(kind: str, n: int, out: Path, seed: int = 0, workers: int = 1, edit_ops: float = 0.25,
          shard_size: int = 500, checkpoint: Path | None = None, progress: bool = True,
          teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build (or resume) a dataset of `n` examples in `out`; returns the card's statistics.

    `teacher` switches from ShapesWorld's exact teachers to real models (see `make_teachers`)."""
    if kind not in KINDS:
        raise SketchloopError(f"unknown data kind {kind!r}; available: {', '.join(KINDS)}")
    if n < 1 or workers < 1 or shard_size < 1:
        raise SketchloopError("--n, --workers and --shard-size must be at least 1")
    if not 0.0 <= edit_ops <= 1.0:
        raise SketchloopError(f"--edit-ops {edit_ops}: give a share between 0 and 1")
    if checkpoint is not None and kind != "inspect":
        raise SketchloopError(f"--checkpoint drives self-sampled plans for --kind inspect; for {kind} the "
                              f"teachers make every example")
    if checkpoint is not None:
        from ..models.unified import UnifiedModel

        UnifiedModel.from_pretrained(checkpoint)  # fail now, with one clear line, not in a worker
    if checkpoint is not None and teacher is not None:
        raise SketchloopError("--checkpoint (self-sampled plans judged by ShapesWorld) and --teacher do not mix")
    params = {"kind": kind, "n": n, "seed": seed, "edit_ops": edit_ops, "shard_size": shard_size,
              "checkpoint": str(checkpoint) if checkpoint else None}
    if teacher is not None:
        # what defines the data; where it runs (server URL, retries, device) may change on resume
        params["teacher"] = {k: v for k, v in teacher.items() if k not in ("prompts", "base_url", "client")}
        params["teacher"]["image"] = {k: v for k, v in teacher.get("image", {}).items() if k != "device"}
    out.mkdir(parents=True, exist_ok=True)
    build_file = out / "build.json"
    if build_file.is_file():
        previous = json.loads(build_file.read_text())
        if previous.get("params") != params:
            raise SketchloopError(f"{out} holds a build with other parameters ({previous.get('params')}); "
                                  f"use another --out or the same parameters to resume")
        stats = previous.get("shards", {})
    else:
        stats = {}
    n_shards = (n + shard_size - 1) // shard_size
    sizes = [min(shard_size, n - k * shard_size) for k in range(n_shards)]
    todo = [k for k in range(n_shards)
            if not (shard_path(out, kind, k, n_shards).is_file() and str(k) in stats)]

    def record(result: dict[str, Any]) -> None:
        stats[str(result["shard"])] = result
        _write_json(build_file, {"params": params, "shards": stats})

    _write_json(build_file, {"params": params, "shards": stats})
    start = time.time()
    bar = tqdm(total=n, initial=n - sum(sizes[k] for k in todo), desc=f"build {kind}", unit="ex",
               disable=not progress)
    args = [(kind, seed, k, sizes[k], edit_ops, str(out), n_shards, str(checkpoint) if checkpoint else None, teacher)
            for k in todo]
    if workers == 1:
        for a in args:
            record(make_shard(*a))
            bar.update(a[3])
    else:
        # spawn, not fork: a forked child of a process that already ran torch can hang in OpenMP
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(make_shard, *a): a for a in args}
            for fut in as_completed(futures):
                record(fut.result())
                bar.update(futures[fut][3])
    bar.close()
    elapsed = time.time() - start
    built = sum(sizes[k] for k in todo)
    summary = write_card(out, params, stats, examples_per_second=built / elapsed if built and elapsed > 0 else None)
    return summary


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def read_dataset(out: Path) -> pa.Table:
    files = sorted((out / "data").glob("*.parquet"))
    if not files:
        raise SketchloopError(f"{out} holds no dataset shards (data/*.parquet); build one with 'sketchloop data build'")
    return pa.concat_tables(pq.read_table(f) for f in files)


KIND_NOTES = {
    "trajectories": "Every kept step's image passed the judge against the step's `<des>`, and every final "
                    "image passed it against the whole prompt. `images per example` = intermediate images.",
    "inspect": "Each example ends in an `<inspect>` of its last plan against the prompt (and, self-sampled, of "
               "its image against its `<ins>`); inconsistent ones add a `<refine>` corrective instruction. "
               "Labels are the judge's.",
    "refine": "Each example ends in an image judged against its `<ins>`: positive with a reason, or negative "
              "with the judge's error analysis (`<inspect>`), a `<refine>` fix and the corrected image.",
}


def write_card(out: Path, params: dict[str, Any], shard_stats: dict[str, Any],
               examples_per_second: float | None) -> dict[str, Any]:
    """Write README.md (the dataset card) and contact_sheet.png; returns the statistics."""
    from .show import contact_sheet

    table = read_dataset(out)
    steps = table.column("steps").to_pylist()
    step_types: dict[str, int] = {}
    images_per_example = []
    for s in steps:
        images_per_example.append(sum(1 for x in s if x["type"] == "sketch"))
        for x in s:
            step_types[x["type"]] = step_types.get(x["type"], 0) + 1
    ops: dict[str, int] = {}
    labels: dict[str, int] = {}
    sources: dict[str, int] = {}
    problems: dict[str, int] = {}
    for label, m in zip(table.column("label").to_pylist(), table.column("meta").to_pylist()):
        meta = json.loads(m)
        for op in meta.get("edit_ops", []):
            ops[op] = ops.get(op, 0) + 1
        if label:
            labels[label] = labels.get(label, 0) + 1
        if "source" in meta:
            sources[meta["source"]] = sources.get(meta["source"], 0) + 1
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
        "steps_redrawn": sum(s["steps_redrawn"] for s in shard_stats.values()),
        "trajectories_dropped": sum(s["trajectories_dropped"] for s in shard_stats.values()),
        "examples_per_second": examples_per_second,
    }
    contact_sheet(table, out / "contact_sheet.png")
    lines = [
        f"# sketchloop dataset: {params['kind']}",
        "",
        f"Built by `sketchloop data build --kind {params['kind']} --n {params['n']} --seed {params['seed']} "
        f"--edit-ops {params['edit_ops']}"
        + (f" --checkpoint {params['checkpoint']}" if params.get("checkpoint") else "")
        + (f" --teacher openai:{params['teacher']['model']} --editor {params['teacher']['editor']}"
           if params.get("teacher") else "") + "`"
        + (f" with real teachers: {params['teacher']['model']} as decomposer, step writer and judge, "
           f"{params['teacher']['editor']} as editor (prompts: "
           f"{params['teacher'].get('prompts_file') or 'ShapesWorld random scenes'}). " if params.get("teacher") else
           " with ShapesWorld's exact teachers (parser, step writer, layout editor + renderer, detector judge). ")
        + "Schema: see `sketchloop/data/store.py`; load with "
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
        f"| judge rejections | {summary['steps_redrawn']} steps redrawn, "
        f"{summary['trajectories_dropped']} trajectories dropped |",
    ]
    if examples_per_second:
        lines.append(f"| throughput of the last run | {examples_per_second:.1f} examples/s |")
    lines += ["", KIND_NOTES[params["kind"]], "", "![contact sheet](contact_sheet.png)", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return summary
