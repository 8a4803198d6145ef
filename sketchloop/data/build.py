"""The sharded, resumable, multi-process data build (schema: data/schema.py).

Shard k is a pure function of (seed, kind, k), so any worker can make any shard; a shard
file appears only when complete (written to a temporary name, then renamed), and a re-run
skips shards already there. Every finished example is also kept under `data/.partial/`
with the random state after it, so a build stopped mid-shard resumes at the next example.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import SketchloopError
from ..io import atomic_write_text
from .card import write_card
from .schema import KINDS, shard_path, write_table
from .shards import make_shard


def build(
    kind: str,
    n: int,
    out: Path,
    seed: int = 0,
    workers: int = 1,
    edit_ops: float = 0.25,
    shard_size: int = 500,
    checkpoint: Path | None = None,
    progress: bool = True,
    teacher: dict[str, Any] | None = None,
    engine: str = "local",
    address: str | None = None,
    sampling: dict[str, Any] | None = None,
    wording: float = 0.0,
    knowledge: float = 0.0,
    depth: float = 0.0,
    parts: float = 0.0,
    counts: float = 0.0,
    trees: float = 0.0,
    own_regions: int = 0,
    own_conflicts: bool = False,
    planned_layouts: bool = False,
    relabel: str = "regions",
    linked_order: bool = False,
    recall_facts: bool = False,
) -> dict[str, Any]:
    """Build (or resume) a dataset of `n` examples in `out`; returns the card's statistics.

    `engine` "local" runs shards in `workers` processes; "ray" runs them on Ray actors (a
    cluster at `address`, or a local Ray), with the same shards, card and resume semantics.

    `teacher` switches from ShapesWorld's exact teachers to real models (see `make_teachers`);
    `sampling`: SamplingConfig settings a checkpoint's self-sampled rollouts change from its own
    sampling.json (default: the model as the loop runs it); `wording`: the
    share of ShapesWorld trajectories whose prompt is worded as people write it; `knowledge`:
    the share whose prompt names one attribute through a fact (world/knowledge.py; also for
    a checkpoint's inspected rollouts, whose plan critiques then name the fact); `depth` and
    `parts`: the shares of ShapesWorld scenes with a pair in depth and with stars of a counted
    number of points, `counts` of scenes of one or two groups that are all counted, `trees` of
    four or five groups related in a tree, many counted (trajectories, teacher inspect and refine
    data). `own_regions` (corrections): the label of a step is the model's own
    right regions, or the first right one of that many region sets it samples for the step's
    words, before the layout sampler's (data/corrections.py). `relabel` (corrections): "regions"
    (a step's regions), "plans" (the model's first wrong plan, relabelled with the teacher's
    step: DAgger on the plans) or "replans" (the same, the wrong plan kept before the label as
    the rejected one: a replanner's examples). `own_conflicts` (inspect with a
    checkpoint): its conflicts are the model's own only, never perturbed (data/inspections.py).
    `planned_layouts`: ShapesWorld's step writer plans each scene's layout rather than drawing it
    uniformly (world/layout.py `sample_layout`); `linked_order`: it adds each scene's groups so
    that each is related to one drawn before it (backends/shapes.py `linked_order`). Kind `facts`
    is the plain-text facts corpus (no images, no teachers); kind `plans` is ShapesWorld's
    trajectories without images, each image step named by its regions (data/trajectories.py
    `draw_plan`: the exact editor's layouts, neither rendered nor judged)."""
    if kind not in KINDS:
        raise SketchloopError(f"unknown data kind {kind!r}; available: {', '.join(KINDS)}")
    if engine not in ("local", "ray"):
        raise SketchloopError(f"--engine {engine!r}: use local or ray")
    if address is not None and engine != "ray":
        raise SketchloopError("--address is the Ray cluster's; give --engine ray too")
    if n < 1 or workers < 1 or shard_size < 1:
        raise SketchloopError("--n, --workers and --shard-size must be at least 1")
    if not 0.0 <= edit_ops <= 1.0:
        raise SketchloopError(f"--edit-ops {edit_ops}: give a share between 0 and 1")
    if checkpoint is not None and kind not in ("inspect", "corrections"):
        raise SketchloopError(
            f"--checkpoint drives self-sampled plans for --kind inspect and corrections; for {kind} the teachers "
            "make every example"
        )
    if kind == "corrections" and checkpoint is None:
        raise SketchloopError("--kind corrections relabels a model's own plans: give its --checkpoint")
    if own_conflicts and (kind != "inspect" or checkpoint is None):
        raise SketchloopError("--own-conflicts is for --kind inspect with a --checkpoint: its own conflicts only")
    if own_regions and (kind != "corrections" or own_regions < 0):
        raise SketchloopError("--own-regions N (N >= 1) is for --kind corrections: the model's own region sets first")
    if relabel not in ("regions", "plans", "replans"):
        raise SketchloopError(f"--relabel {relabel!r}: use regions, plans or replans")
    if relabel != "regions" and (kind != "corrections" or own_regions):
        raise SketchloopError(
            f"--relabel {relabel} is for --kind corrections (without --own-regions): the teacher's next step"
        )
    if checkpoint is not None:
        from ..models.unified import UnifiedModel

        UnifiedModel.from_pretrained(checkpoint)  # fail now, with one clear line, not in a worker
    if checkpoint is not None and teacher is not None:
        raise SketchloopError("--checkpoint (self-sampled plans judged by ShapesWorld) and --teacher do not mix")
    if sampling and checkpoint is None:
        raise SketchloopError(
            "--set changes how a --checkpoint samples its self-sampled inspect data; give --checkpoint"
        )
    if sampling:
        from ..models.sampling import SamplingConfig

        SamplingConfig().replace(**sampling)  # an unknown setting fails here, with one line
    params = {
        "kind": kind,
        "n": n,
        "seed": seed,
        "edit_ops": edit_ops,
        "shard_size": shard_size,
        "checkpoint": str(checkpoint) if checkpoint else None,
    }
    if sampling:
        params["sampling"] = dict(sorted(sampling.items()))
    if own_regions:
        params["own_regions"] = own_regions
    if own_conflicts:
        params["own_conflicts"] = True
    if relabel != "regions":
        params["relabel"] = relabel
    if (planned_layouts or linked_order) and (kind == "facts" or teacher is not None):
        flag = "--planned-layouts" if planned_layouts else "--linked-order"
        raise SketchloopError(f"{flag} changes ShapesWorld's step writer; it takes no --teacher and no --kind facts")
    if planned_layouts:
        params["layouts"] = "planned"
    if linked_order:
        params["order"] = "linked"
    if kind == "plans" and teacher is not None:
        raise SketchloopError("--kind plans is ShapesWorld's text-only trajectories (no images); it takes no --teacher")
    drawn_by_teachers = kind in ("trajectories", "plans")  # trajectories, with or without images
    if recall_facts:
        if not drawn_by_teachers or teacher is not None or not knowledge:
            raise SketchloopError(
                "--recall-facts writes the fact before the step of a ShapesWorld trajectory whose prompt names "
                "it: use it with --kind trajectories (or plans) and --knowledge"
            )
        params["recall"] = True
    if wording:
        if not drawn_by_teachers or teacher is not None or not 0.0 <= wording <= 1.0:
            raise SketchloopError("--wording is the share (0 to 1) of ShapesWorld trajectories worded as people write")
        params["wording"] = wording
    if knowledge:
        own_rollouts = kind in ("inspect", "corrections") and checkpoint is not None
        if not (drawn_by_teachers or own_rollouts) or teacher is not None or not 0.0 <= knowledge <= 1.0:
            raise SketchloopError(
                "--knowledge is the share (0 to 1) of ShapesWorld trajectories (or of a --checkpoint's inspected or "
                "corrected rollouts) whose prompt names an attribute through a fact"
            )
        params["knowledge"] = knowledge
    shares = {"depth": depth, "parts": parts, "counts": counts, "trees": trees}
    mix = {name: share for name, share in shares.items() if share}
    if mix:
        if (
            kind == "facts"
            or teacher is not None
            or not all(0.0 <= share <= 1.0 for share in shares.values())
            or sum(shares.values()) > 1.0
        ):
            raise SketchloopError(
                "--depth, --parts, --counts and --trees are shares (0 to 1, together at most 1) of the ShapesWorld "
                "scenes that teachers draw for trajectories, inspect and refine data (and a --checkpoint's inspected "
                "or corrected rollouts)"
            )
        params.update(mix)
    if kind == "facts" and teacher is not None:
        raise SketchloopError("--kind facts is the knowledge base's text corpus; it takes no --teacher")
    if teacher is not None:
        # what defines the data; where it runs (server URL, retries, device) may change on resume
        described = {k: v for k, v in teacher.items() if k not in ("prompts", "base_url", "client")}
        described["image"] = {k: v for k, v in teacher.get("image", {}).items() if k != "device"}
        params["teacher"] = described
    out.mkdir(parents=True, exist_ok=True)
    build_file = out / "build.json"
    if build_file.is_file():
        previous = json.loads(build_file.read_text())
        if previous.get("params") != params:
            raise SketchloopError(
                f"{out} holds a build with other parameters ({previous.get('params')}); "
                f"use another --out or the same parameters to resume"
            )
        stats = previous.get("shards", {})
    else:
        stats = {}
    n_shards = (n + shard_size - 1) // shard_size
    sizes = [min(shard_size, n - k * shard_size) for k in range(n_shards)]
    todo = [k for k in range(n_shards) if not (shard_path(out, kind, k, n_shards).is_file() and str(k) in stats)]

    def record(result: dict[str, Any]) -> None:
        stats[str(result["shard"])] = result
        _write_json(build_file, {"params": params, "shards": stats})

    _write_json(build_file, {"params": params, "shards": stats})
    start = time.time()
    bar = tqdm(total=n, initial=n - sum(sizes[k] for k in todo), desc=f"build {kind}", unit="ex", disable=not progress)
    args = [
        (
            kind,
            seed,
            k,
            sizes[k],
            edit_ops,
            str(out),
            n_shards,
            str(checkpoint) if checkpoint else None,
            teacher,
            sampling,
            wording,
            knowledge,
            mix or None,
            own_regions,
            own_conflicts,
            planned_layouts,
            relabel,
            linked_order,
            recall_facts,
        )
        for k in todo
    ]
    if engine == "ray":
        from .ray_engine import build_shards

        for result in build_shards(args, teacher, workers, address):
            record(result)
            bar.update(sizes[result["shard"]])
    elif workers == 1:
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


def inspect_target(row: dict[str, Any]) -> str:
    """What an inspect example teaches: consistent, or a conflict of the plan or of the image
    (read from its inspection text, the label itself)."""
    from ..format import text_verdict

    text = next(s["text"] for s in reversed(row["steps"]) if s["type"] == "inspect")
    consistent, target = text_verdict(text)
    return "consistent" if consistent else target


def subset(source: Path, out: Path, targets: list[str]) -> int:
    """The inspect examples of `source` that teach one of `targets` (consistent, plan, image) as a
    new dataset folder (the inspect-supervision ablation); returns how many."""
    from .schema import read_dataset

    unknown = sorted(set(targets) - {"consistent", "plan", "image"})
    if unknown:
        raise SketchloopError(f"--target {', '.join(unknown)}: choose consistent, plan or image")
    rows = [r for r in read_dataset(source).to_pylist() if r["kind"] == "inspect"]
    if not rows:
        raise SketchloopError(
            f"{source} holds no inspect examples; build them with 'sketchloop data build --kind inspect'"
        )
    _check_new(out)
    kept = [r for r in rows if inspect_target(r) in targets]
    if not kept:
        raise SketchloopError(f"{source} has no inspect example of {', '.join(sorted(targets))}")
    write_table(shard_path(out, "inspect", 0, 1), kept)
    _write_derived(out, source, {"kind": "inspect", "subset_of": str(source), "targets": sorted(targets)}, len(kept))
    return len(kept)


def _check_new(out: Path) -> None:
    """A derived dataset goes to a folder without one."""
    if (out / "data").is_dir() and any((out / "data").glob("*.parquet")):
        raise SketchloopError(f"{out} already holds a dataset; give a new --out")


def _write_derived(out: Path, source: Path, params: dict[str, Any], examples: int) -> None:
    """build.json of a dataset derived from `source`: its own parameters and the source's."""
    source_build = source / "build.json"
    params["source_params"] = json.loads(source_build.read_text()).get("params") if source_build.is_file() else None
    _write_json(out / "build.json", {"params": params, "examples": examples})


def one_step_row(row: dict[str, Any]) -> dict[str, Any]:
    """A trajectory as one step (the one-shot layout baseline): `<ins>` adds the whole scene, `<des>`
    is the trajectory's last one (the prompt's scene), one image with every object (the final
    image, its objects in the prompt's order, so the regions follow the text), then `<end>`."""
    from ..world.layout import Layout
    from ..world.scene import SceneGraph

    des = next(s["text"] for s in reversed(row["steps"]) if s["type"] == "des")
    final = max(s["image"] for s in row["steps"] if s["type"] == "sketch")
    layout = Layout.from_dict(json.loads(row["layouts"][final]))
    rank = {g: k for k, g in enumerate(SceneGraph.from_json(row["scene"]).mention_order())}
    layout = Layout(tuple(sorted(layout.objects, key=lambda o: rank[o.group])))
    steps = [
        {"type": "ins", "text": f"add {des}", "image": -1, "op": json.dumps({"op": "add", "scene": True})},
        {"type": "des", "text": des, "image": -1, "op": ""},
        {"type": "sketch", "text": "", "image": 0, "op": ""},
        {"type": "end", "text": "", "image": -1, "op": ""},
    ]
    meta = {**json.loads(row["meta"] or "{}"), "one_step_of": row["id"]}
    return {
        **row,
        "id": f"{row['id']}-one-step",
        "steps": steps,
        "images": [row["images"][final]],
        "layouts": [json.dumps(layout.to_dict(), sort_keys=True)],
        "meta": json.dumps(meta, sort_keys=True),
    }


def one_step(source: Path, out: Path, shard_size: int = 2000) -> int:
    """The trajectories of `source` rewritten as one-step trajectories (`one_step_row`) in a new dataset
    folder: the same scenes and final images, planned and drawn in one pass; returns how many."""
    from .schema import read_dataset

    _check_new(out)
    rows = [one_step_row(r) for r in read_dataset(source).to_pylist() if r["kind"] == "trajectories"]
    if not rows:
        raise SketchloopError(
            f"{source} holds no trajectories; build them with 'sketchloop data build --kind trajectories'"
        )
    n_shards = (len(rows) + shard_size - 1) // shard_size
    for k in range(n_shards):
        write_table(shard_path(out, "trajectories", k, n_shards), rows[k * shard_size : (k + 1) * shard_size])
    _write_derived(out, source, {"kind": "trajectories", "one_step_of": str(source)}, len(rows))
    return len(rows)
