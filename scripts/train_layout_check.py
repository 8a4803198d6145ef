"""Train a checkpoint's layout check (sketchloop/models/layout_check.py) on the model's own regions,
choose its threshold on validation prompts, and save it beside the checkpoint.

    python scripts/train_layout_check.py [--checkpoint CKPT] [--scenes 2000] [--candidates 4]
        [--work DIR] [--val-benchmark shapes-complex-val ...] [--val-every 2]
        [--false-alarms 0.1] [--out CKPT]

1. Training examples (DIR/train-*.npz, one per shard, resumable): greedy rollouts of random scenes
   held out of every benchmark (70% long compositions), each step's greedy regions and
   `--candidates` sampled region sets for the same words, judged exactly
   (training/layout_check.py).
2. Validation examples (DIR/val-*.npz): the same on the validation benchmarks' prompts.
3. The head is fitted on 1 and its threshold set on 2's greedy steps: the lowest that flags at
   most `--false-alarms` of the right ones. Printed: AUC on every validation example, on the
   greedy steps, and within a step (a right against a wrong region set for the same words:
   what a correction chooses by).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sketchloop.backends.shapes import DetectorJudge
from sketchloop.backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
from sketchloop.data.trajectories import heldout_free_scene
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.models.layout_check import LayoutCheckConfig
from sketchloop.training.layout_check import auc, fit, own_layout_rows, scores_of, threshold_for, within_auc

SHARD = 250
TEMPERATURES = (0.7, 1.0)
LONG_SHARE = 0.7


def save_rows(path: Path, rows: list[dict]) -> None:
    """One shard: every example's rows stacked, with where each example starts."""
    tmp = path.with_suffix(".tmp.npz")
    lengths = [len(r["rows"]) for r in rows]
    np.savez(
        tmp,
        rows=np.concatenate([r["rows"] for r in rows]) if rows else np.zeros((0, 1), np.float16),
        lengths=np.array(lengths, dtype=np.int64),
        wrong=np.array([r["wrong"] for r in rows], dtype=bool),
        group=np.array([r["group"] for r in rows], dtype=np.int64),
        greedy=np.array([r["greedy"] for r in rows], dtype=bool),
    )
    tmp.replace(path)


def load_rows(paths: list[Path]) -> dict:
    """The shards' examples: "rows" a list of arrays, the rest arrays (groups kept apart per shard)."""
    out: dict = {"rows": [], "wrong": [], "group": [], "greedy": []}
    for n, path in enumerate(paths):
        shard = np.load(path)
        cuts = np.cumsum(shard["lengths"])[:-1]
        out["rows"] += np.split(shard["rows"], cuts) if len(shard["lengths"]) else []
        out["wrong"].append(shard["wrong"])
        out["group"].append(shard["group"] + n * 10**7)
        out["greedy"].append(shard["greedy"])
    return {k: v if k == "rows" else np.concatenate(v) for k, v in out.items()}


def build(work: Path, name: str, prompts: list[str], roles, judge, candidates: int, seed: int) -> list[Path]:
    """Shards of judged steps of `prompts` (resumable: a finished shard is kept)."""
    paths = []
    for start in range(0, len(prompts), SHARD):
        path = work / f"{name}-{start // SHARD:03d}.npz"
        paths.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng([seed, start])
        rows = []
        for i, prompt in enumerate(tqdm(prompts[start : start + SHARD], desc=f"{name} {start // SHARD}")):
            rows += own_layout_rows(roles, judge, prompt, rng, candidates, TEMPERATURES, start + i)
        save_rows(path, rows)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    ap.add_argument("--scenes", type=int, default=2000)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("runs/layout-check"))
    ap.add_argument("--val-benchmark", action="append", default=None)
    ap.add_argument("--val-every", type=int, default=2, help="every N-th validation prompt")
    ap.add_argument("--false-alarms", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--pair-weight", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=1500, help="fitting steps")
    ap.add_argument("--fit-only", action="store_true", help="print the validation report, save nothing")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None, help="where to save (default: the checkpoint)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    roles, judge = UnifiedRoles.from_pretrained(args.checkpoint), DetectorJudge()
    rng = np.random.default_rng(args.seed)
    scenes = ["a photo of " + heldout_free_scene(rng, LONG_SHARE).to_text() for _ in range(args.scenes)]
    train = load_rows(build(args.work, "train", scenes, roles, judge, args.candidates, args.seed))
    benches = args.val_benchmark or ["shapes-complex-val", "shapes-counted-val"]
    val_prompts = [m["prompt"] for b in benches for m in load_benchmark(b)[:: args.val_every]]
    val = load_rows(build(args.work, "val", val_prompts, roles, judge, args.candidates, args.seed + 1))
    wrong, group = train["wrong"], train["group"]
    config = LayoutCheckConfig(n_embd=roles.model.config.n_embd, hidden=args.hidden)
    head = fit(train["rows"], wrong, group, config, steps=args.steps, pair_weight=args.pair_weight, seed=args.seed)
    scores = scores_of(head, val["rows"])
    greedy, vwrong = val["greedy"], val["wrong"]
    head.config.threshold = threshold_for(scores[greedy & ~vwrong], args.false_alarms)
    flagged = scores >= head.config.threshold
    report = {
        "train_examples": int(len(wrong)),
        "train_wrong": int(wrong.sum()),
        "val_examples": int(len(vwrong)),
        "val_greedy_steps": int(greedy.sum()),
        "val_greedy_wrong": int((greedy & vwrong).sum()),
        "auc": auc(scores, vwrong),
        "greedy_auc": auc(scores[greedy], vwrong[greedy]),
        "within_step_auc": within_auc(scores, vwrong, val["group"]),
        "threshold": head.config.threshold,
        "recall_greedy_wrong": float(flagged[greedy & vwrong].mean()) if (greedy & vwrong).any() else None,
        "false_alarms_greedy": float(flagged[greedy & ~vwrong].mean()),
    }
    head.config.trained_on = {
        "scenes": args.scenes,
        "candidates": args.candidates,
        "temperatures": list(TEMPERATURES),
        "long_share": LONG_SHARE,
        "validation": benches,
        "val_every": args.val_every,
        "false_alarms": args.false_alarms,
        "pair_weight": args.pair_weight,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()},
    }
    print(json.dumps(report, indent=1))
    if not args.fit_only:
        head.save_pretrained(args.out or args.checkpoint)


if __name__ == "__main__":
    main()
