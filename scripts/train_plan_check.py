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

from inspector_benchmark import inspected_step, own_step
from sketchloop.backends.unified import IMAGE_CHECK, SHIPPED_CHECKPOINT, SamplingConfig, UnifiedRoles
from sketchloop.backends.wiring import make_teachers
from sketchloop.data.inspections import OWN_TARGETS
from sketchloop.data.trajectories import heldout_free_scene
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.process import flag_rates
from sketchloop.loop.roles import Plan
from sketchloop.models.plan_check import PlanCheck, PlanCheckConfig
from sketchloop.trajectory import text_verdict

TRAIN_TARGETS = ("plan", "consistent", "plan", "rephrased", "plan", "image")  # half of them plan conflicts
L2S = (3e-3, 1e-2)
LONG_STREAM = 1  # a long composition's random stream apart from the mix's
EPOCHS, LR = 300, 0.01

_roles: UnifiedRoles | None = None
_teachers = None


def _init(checkpoint: str | None) -> None:
    global _roles, _teachers
    torch.set_num_threads(1)
    _roles = UnifiedRoles.from_pretrained(Path(checkpoint) if checkpoint else None, SamplingConfig())
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
    out = {"task": list(_key(task)), "target": target, "source": json.loads(row["meta"])["source"], "prompt": row["prompt"],
           "kind": "consistent" if consistent else kind, "plans": [[p.ins, p.des, p.regions] for p in plans]}
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
        with get_context("fork").Pool(workers, _init, (str(checkpoint) if checkpoint else None,)) as pool, \
                path.open("a") as f:
            for task, rec in zip(todo, tqdm(pool.imap(_step, todo, chunksize=4), total=len(todo), desc=path.stem,
                                            file=sys.stderr)):
                rec = rec or {"task": list(_key(task)), "skipped": True}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[_key(task)] = rec
    return [done[_key(t)] for t in tasks if not done[_key(t)].get("skipped")]


def features(roles: UnifiedRoles, steps: list[dict]) -> tuple[torch.Tensor, ...]:
    """Padded (words, previous words, parts, features, mask) of each step's last plan, as the
    self-check reads it."""
    read = [roles.plan_features(roles._session(s["prompt"], [Plan(*p) for p in s["plans"]])) for s in steps]
    n, length = len(read), max(len(r[0]) for r in read)
    words, previous, parts = (torch.zeros(n, length, dtype=torch.long) for _ in range(3))
    feats, mask = torch.zeros(n, length, read[0][-1].shape[-1]), torch.zeros(n, length, dtype=torch.bool)
    for i, (w, b, p, x) in enumerate(read):
        k = len(w)
        words[i, :k], previous[i, :k], parts[i, :k], feats[i, :k], mask[i, :k] = w, b, p, x, True
    return words, previous, parts, feats, mask


def fit(config: PlanCheckConfig, data: tuple[torch.Tensor, ...], labels: torch.Tensor, l2: float) -> PlanCheck:
    """The head fitted to `labels` (1: a plan conflict) by full-batch Adam with weight decay `l2`."""
    torch.manual_seed(0)
    head = PlanCheck(config)
    opt = torch.optim.Adam(head.parameters(), LR, weight_decay=l2)
    for _ in tqdm(range(EPOCHS), desc=f"fit (l2 {l2:g})", file=sys.stderr, leave=False):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(head(*data), labels).backward()
        opt.step()
    return head.eval()


def _right(step: dict) -> bool:
    """A right step that counts as one (the reworded controls are kept apart)."""
    return step["kind"] == "consistent" and step["target"] != "rephrased"


def _image_flags(steps: list[dict], image_check: float) -> np.ndarray:
    """Which steps the image check flags at `image_check` (none without an image doubt)."""
    return np.array([s["image_doubt"] is not None and s["image_doubt"] >= image_check for s in steps])


def threshold(scores: np.ndarray, steps: list[dict], image_check: float, false_alarms: float) -> float:
    """The lowest plan score at which at most `false_alarms` of the right steps are flagged by
    either check."""
    right = [i for i, s in enumerate(steps) if _right(s)]
    image, plan = _image_flags([steps[i] for i in right], image_check), scores[right]
    for t in sorted(set(plan.tolist())) + [float(plan.max()) + 1e-3]:
        if np.mean(image | (plan >= t)) <= false_alarms:
            return float(t)
    return float(plan.max()) + 1e-3


def thresholds(scores: np.ndarray, steps: list[dict], false_alarms: float,
               image_default: float) -> tuple[float, float, dict]:
    """(plan threshold, image threshold, their rates): of the image thresholds tried (`image_default`,
    and just above each right step's image doubt), the one whose plan threshold (`threshold`) finds
    most of the conflict kind found least (then most of both), the right steps flagged by either
    check staying at most `false_alarms`."""
    right = [s for s in steps if _right(s)]
    doubts = [s["image_doubt"] for s in right if s["image_doubt"] is not None]
    best = None
    for image in sorted({image_default, *(float(np.nextafter(d, np.inf)) for d in doubts)}):
        if np.mean(_image_flags(right, image)) > false_alarms:  # the image check alone flags too many
            continue
        plan = threshold(scores, steps, image, false_alarms)
        r = rates(scores, steps, plan, image)
        key = (min(r["recall_plan"], r["recall_image"]), r["recall_plan"] + r["recall_image"])
        if best is None or key > best[0]:
            best = (key, plan, image, r)
    return best[1], best[2], best[3]


def rates(scores: np.ndarray, steps: list[dict], t: float, image_check: float) -> dict:
    """`flag_rates` of the two checks at (plan `t`, `image_check`), and the share of reworded
    right plans (the controls) flagged, to 3 decimals."""
    flags = (scores >= t) | _image_flags(steps, image_check)
    judged = [{"kind": s["kind"], "flagged": f} for s, f in zip(steps, flags) if s["target"] != "rephrased"]
    controls = [f for s, f in zip(steps, flags) if s["target"] == "rephrased"]
    out = {**flag_rates(judged, lambda s: s["flagged"]), "rephrased_flagged": np.mean(controls) if controls else np.nan}
    return {k: round(float(v), 3) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--examples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/plan-check"))
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--val-benchmark", default="shapes-complex-val")
    ap.add_argument("--long-examples", type=int, default=3000,
                    help="more training steps, on long compositions only (world/sample.py random_composite_scene)")
    ap.add_argument("--val-every", type=int, default=1, help="every Nth validation prompt (a quick run)")
    ap.add_argument("--val-seeds", type=int, default=3,
                    help="rollouts of each validation prompt (seeds 0.. ; seed 0 is inspector_benchmark.py's)")
    ap.add_argument("--false-alarms", type=float, default=0.04,
                    help="the most right validation steps the two checks may flag together (0.04: a standard "
                         "error under the 0.05 bar on 300 right steps)")
    ap.add_argument("--build-only", action="store_true", help="build the work files, fit nothing")
    ap.add_argument("--out", type=Path, help="where to save the head (default: the checkpoint's folder)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train = build(args.work / "examples.jsonl", [("train", i, args.seed) for i in range(args.examples)] +
                  [("long", i, args.seed) for i in range(args.long_examples)], args.workers, args.checkpoint)
    val = build(args.work / "val.jsonl", [("val", i, seed, k, m["prompt"]) for seed in range(args.val_seeds) for i, m in
                                          enumerate(load_benchmark(args.val_benchmark)[::args.val_every]) for k in range(4)],
                args.workers, args.checkpoint)
    if args.build_only:
        return
    _init(str(args.checkpoint) if args.checkpoint else None)
    torch.set_num_threads(args.workers)  # the fits run here, alone
    roles = _roles
    print(f"training steps: {len(train)} ({sum(s['kind'] == 'plan' for s in train)} plan conflicts); "
          f"validation steps: {len(val)}", file=sys.stderr)
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
        if best is None or min(r["recall_plan"], r["recall_image"]) > min(best[4]["recall_plan"], best[4]["recall_image"]):
            best = (l2, head, t, image, r)
    l2, head, t, image, r = best
    head.config.threshold, head.config.image_threshold = t, image
    head.config.trained_on = {"script": "scripts/train_plan_check.py", "seed": args.seed,
                              "examples": sum(s["task"][0] == "train" for s in train),
                              "long_examples": sum(s["task"][0] == "long" for s in train),
                              "l2": l2, "validation": args.val_benchmark, "validation_steps": len(val),
                              "false_alarms_at_most": args.false_alarms, "validation_rates": r}
    out = args.out or args.checkpoint or SHIPPED_CHECKPOINT
    head.save_pretrained(out)
    print(f"saved the plan check to {out} (l2 {l2:g}, thresholds plan {t:.3f}, image {image:.3f})")


if __name__ == "__main__":
    main()
