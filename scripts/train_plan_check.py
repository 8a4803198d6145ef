"""Train a checkpoint's plan check (sketchloop/models/plan_check.py) on the model's own plans,
choose its threshold on a validation set, and save it beside the checkpoint.

    python scripts/train_plan_check.py [--checkpoint CKPT] [--examples 3000] [--long-examples 3000]
        [--work DIR] [--workers 2] [--val-benchmark shapes-complex-val] [--val-seeds 3]
        [--false-alarms 0.04] [--build-only] [--out CKPT]

1. Training examples (DIR/examples.jsonl, resumable): `make_inspect_own` steps on random
   scenes held out of every benchmark (`--examples` of the data mix, `--long-examples` of long
   compositions only): the model's own plans at its inference settings, made wrong (`plan`),
   right (`consistent`, `image`: a wrong sketch of a right plan) and right but worded as the
   wrong ones are (`rephrased`), so that wording alone cannot tell them apart. Labelled by the
   exact judge; positives are plan conflicts.
2. Validation steps (DIR/val.jsonl): `scripts/inspector_benchmark.py`'s steps on the
   validation benchmark's prompts (seed 0 is that script's; `--val-seeds` rollouts of each
   prompt), with the image check's doubt, plus a `rephrased` control per prompt and seed.
3. The head fitted for each weight decay in L2S; kept: the one finding most of the conflict
   kind it finds least on the validation steps at its thresholds (`thresholds`): the plan
   threshold and the image check's, chosen together so that the right validation steps
   flagged by either check stay at most `--false-alarms`. Both are saved with the head.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sketchloop.backends.unified import (
    IMAGE_CHECK,
    SHIPPED_CHECKPOINT,
    SamplingConfig,
    UnifiedRoles,
)
from sketchloop.backends.wiring import make_teachers
from sketchloop.data.inspect_steps import inspected_step, own_step
from sketchloop.data.inspections import OWN_TARGETS
from sketchloop.data.trajectories import heldout_free_scene
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.format import text_verdict
from sketchloop.models.plan_check import PlanCheckConfig
from sketchloop.training.plan_check import features, fit, thresholds

TRAIN_TARGETS = ("plan", "consistent", "plan", "rephrased", "plan", "image")  # half of them plan conflicts
L2S = (3e-3, 1e-2)
LONG_STREAM = 1  # a long composition's random stream apart from the mix's

_roles: UnifiedRoles | None = None
_teachers = None


def _init(checkpoint: str | None) -> None:
    global _roles, _teachers
    torch.set_num_threads(1)
    directory = Path(checkpoint) if checkpoint else SHIPPED_CHECKPOINT
    # the model as the loop runs it: the checkpoint's sampling.json, else the defaults
    _roles = UnifiedRoles.from_pretrained(directory, SamplingConfig.from_pretrained(directory))
    _teachers = make_teachers(None)


def _key(task: tuple) -> tuple:
    """What names a step in the work files: (kind, index, seed), and k for a validation step."""
    return tuple(task[:4]) if task[0] == "val" else tuple(task[:3])


def _step(task: tuple) -> dict | None:
    """One step: ("train", index, seed) on a random scene of the data mix, ("long", index, seed) on a
    random long composition, or ("val", i, seed, k, prompt) as scripts/inspector_benchmark.py
    builds it (k = 3: the rephrased control)."""
    if task[0] in ("train", "long"):
        scenes, index, seed = task
        target = TRAIN_TARGETS[index % len(TRAIN_TARGETS)]
        rng = np.random.default_rng([seed, index] if scenes == "train" else [seed, index, LONG_STREAM])
        prompt = heldout_free_scene(rng, composite_share=1.0).to_text() if scenes == "long" else None
    else:
        _, index, seed, k, prompt = task
        target, rng = (OWN_TARGETS + ("rephrased",))[k], np.random.default_rng([seed, index, k])
    row = own_step(_roles, _teachers, rng, target, prompt)
    if row is None:
        return None  # the model found no such step of its own here
    plans, canvas, before = inspected_step(row)
    consistent, kind = text_verdict([s["text"] for s in row["steps"] if s["type"] == "inspect"][-1])
    out = {
        "task": list(_key(task)),
        "target": target,
        "source": json.loads(row["meta"])["source"],
        "prompt": row["prompt"],
        "kind": "consistent" if consistent else kind,
        "plans": [[p.ins, p.des, p.regions] for p in plans],
    }
    if task[0] == "val":
        out["image_doubt"] = _roles.checks(row["prompt"], plans, canvas, before, int(rng.integers(2**31)))[1]
    return out


def build(path: Path, tasks: list[tuple], workers: int, checkpoint: Path | None) -> list[dict]:
    """The steps of `tasks`, appended to `path` as they come (a rerun builds only the missing ones)."""
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[tuple(rec["task"])] = rec
    todo = [t for t in tasks if _key(t) not in done]
    if todo:
        with (
            get_context("fork").Pool(workers, _init, (str(checkpoint) if checkpoint else None,)) as pool,
            path.open("a") as f,
        ):
            for task, rec in zip(
                todo, tqdm(pool.imap(_step, todo, chunksize=4), total=len(todo), desc=path.stem, file=sys.stderr)
            ):
                rec = rec or {"task": list(_key(task)), "skipped": True}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[_key(task)] = rec
    return [done[_key(t)] for t in tasks if not done[_key(t)].get("skipped")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--examples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/plan-check"))
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--val-benchmark", default="shapes-complex-val")
    ap.add_argument(
        "--long-examples",
        type=int,
        default=3000,
        help="more training steps, on long compositions only (world/sample.py random_composite_scene)",
    )
    ap.add_argument("--val-every", type=int, default=1, help="every Nth validation prompt (a quick run)")
    ap.add_argument(
        "--val-seeds",
        type=int,
        default=3,
        help="rollouts of each validation prompt (seeds 0.. ; seed 0 is inspector_benchmark.py's)",
    )
    ap.add_argument(
        "--false-alarms",
        type=float,
        default=0.04,
        help="the most right validation steps the two checks may flag together (0.04: a standard "
        "error under the 0.05 bar on 300 right steps)",
    )
    ap.add_argument("--build-only", action="store_true", help="build the work files, fit nothing")
    ap.add_argument("--out", type=Path, help="where to save the head (default: the checkpoint's folder)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train = build(
        args.work / "examples.jsonl",
        [("train", i, args.seed) for i in range(args.examples)]
        + [("long", i, args.seed) for i in range(args.long_examples)],
        args.workers,
        args.checkpoint,
    )
    val = build(
        args.work / "val.jsonl",
        [
            ("val", i, seed, k, m["prompt"])
            for seed in range(args.val_seeds)
            for i, m in enumerate(load_benchmark(args.val_benchmark)[:: args.val_every])
            for k in range(4)
        ],
        args.workers,
        args.checkpoint,
    )
    if args.build_only:
        return
    _init(str(args.checkpoint) if args.checkpoint else None)
    torch.set_num_threads(args.workers)  # the fits run here, alone
    roles = _roles
    print(
        f"training steps: {len(train)} ({sum(s['kind'] == 'plan' for s in train)} plan conflicts); "
        f"validation steps: {len(val)}",
        file=sys.stderr,
    )
    data, val_data = features(roles, train), features(roles, val)
    labels = torch.tensor([s["kind"] == "plan" for s in train], dtype=torch.float)
    config = PlanCheckConfig(vocab_size=len(roles.tok.vocab))
    best = None
    for l2 in L2S:
        head = fit(config, data, labels, l2)
        with torch.no_grad():
            scores = head(*val_data).numpy()
        t, image, r = thresholds(scores, val, args.false_alarms, IMAGE_CHECK)
        print(f"l2 {l2:g}: thresholds plan {t:.3f}, image {image:.3f} on {args.val_benchmark}: {json.dumps(r)}")
        if best is None or min(r["recall_plan"], r["recall_image"]) > min(
            best[4]["recall_plan"], best[4]["recall_image"]
        ):
            best = (l2, head, t, image, r)
    l2, head, t, image, r = best
    head.config.threshold, head.config.image_threshold = t, image
    head.config.trained_on = {
        "script": "scripts/train_plan_check.py",
        "seed": args.seed,
        "examples": sum(s["task"][0] == "train" for s in train),
        "long_examples": sum(s["task"][0] == "long" for s in train),
        "l2": l2,
        "validation": args.val_benchmark,
        "validation_steps": len(val),
        "false_alarms_at_most": args.false_alarms,
        "validation_rates": r,
    }
    out = args.out or args.checkpoint or SHIPPED_CHECKPOINT
    head.save_pretrained(out)
    print(f"saved the plan check to {out} (l2 {l2:g}, thresholds plan {t:.3f}, image {image:.3f})")


if __name__ == "__main__":
    main()
