"""Measure the inspector on a balanced set of steps built on a benchmark's prompts: for each
prompt a right step, a wrong plan and a wrong sketch, made as the inspect data are made
(`data/inspections.py` `make_inspect_own`: the model's own plans at its inference settings
and its own sketches; a conflict is the model's own where it makes one, else its plan or its
sketch made wrong), and labelled by the exact judge outside the loop
(sketchloop/data/inspect_steps.py). The loop's own steps hold few conflicts once it plans
and draws well; this set holds a third of each kind, on prompts no data build holds.

    python scripts/inspector_benchmark.py [--checkpoint CKPT] [--benchmark shapes-complex-val]
        [--every 1] [--text-verdict] [--controls] [--out rows.json]
    python scripts/inspector_benchmark.py --data INSPECT_DATASET [--checkpoint CKPT]

`--data`: score the inspector on the examples of an inspect dataset instead (`sketchloop
data build --kind inspect --checkpoint ...` with a seed no training build used: fresh
examples of the training distribution).

`--controls`: also a right plan per prompt worded as the wrong plans are (its group with all
its relations, the scene in canonical order: `make_inspect_own(target="rephrased")`), kept
out of the rates; the share the plan check flags shows whether it judges content or wording.

Prints, for the inspector as the loop runs it and for thresholds on its doubts: recall on wrong
plans, recall on wrong sketches, false
alarms, and how often the inspection's text names the kind of conflict the judge found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.inspect_steps import benchmark_steps, score
from sketchloop.data.schema import read_dataset
from sketchloop.evaluation.process import doubt_auc, flag_rates
from sketchloop.models.sampling import SamplingConfig

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def rates(rows: list[dict], flagged) -> str:
    """Recall per conflict kind and false alarms of `flagged`, as JSON to 3 decimals."""
    return json.dumps({k: round(v, 3) for k, v in flag_rates(rows, flagged).items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--benchmark", action="append")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument(
        "--text-verdict", action="store_true", help="the inspection's own first word decides (no self-check)"
    )
    ap.add_argument("--plan-check", type=float, help="self-check: the plan doubt that makes a plan conflict")
    ap.add_argument("--image-check", type=float, help="self-check: the image doubt that makes an image conflict")
    ap.add_argument(
        "--controls",
        action="store_true",
        help="also right plans worded as the wrong plans are: does the plan check judge content, not wording?",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, help="an inspect dataset's examples instead of steps built on benchmarks")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    checks = {k: v for k, v in (("plan_check", args.plan_check), ("image_check", args.image_check)) if v is not None}
    roles = UnifiedRoles.from_pretrained(args.checkpoint, SamplingConfig(self_check=not args.text_verdict, **checks))
    rows = []
    if args.data:
        rows = [
            score(roles, row, "data", i, 0)
            for i, row in enumerate(tqdm(read_dataset(args.data).to_pylist(), desc=args.data.name, file=sys.stderr))
        ]
    for bench in [] if args.data else args.benchmark or ["shapes-complex-val"]:
        rows += [
            score(roles, row, bench, i, seed)
            for i, row, seed in benchmark_steps(roles, bench, args.every, args.seed, args.controls)
        ]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=0))
    controls = [r for r in rows if r["target"] == "rephrased" and r["kind"] == "consistent"]
    rows = [r for r in rows if r["target"] != "rephrased"]
    if controls:
        print(
            f"control: {len(controls)} right plans worded as the wrong ones are; plan check flags "
            f"{np.mean([r['plan_doubt'] >= roles.plan_threshold for r in controls]):.3f}, the inspector "
            f"{np.mean([r['said'] != 'consistent' for r in controls]):.3f}"
        )
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("consistent", "plan", "image")}
    print(f"{len(rows)} steps: {kinds}")
    as_run = rates(rows, lambda r: r["said"] != "consistent")
    named = [r for r in rows if r["kind"] != "consistent" and r["said"] != "consistent"]
    print(
        "as the loop runs it:",
        as_run,
        f"kind named right in {sum(r['said'] == r['kind'] for r in named)} of {len(named)} flagged conflicts",
    )
    for key, kind in (("doubt", None), ("plan_doubt", "plan"), ("plan_surprise", "plan"), ("image_doubt", "image")):
        auc = doubt_auc([r for r in rows if r[key] is not None], key, kind)
        if auc is not None:
            print(f"AUC of {key}, wrong {kind or 'steps'} above right steps: {auc:.3f}")
    for t in THRESHOLDS:
        print(f"text doubt {t:.2f}:", rates(rows, lambda r, t=t: r["doubt"] >= t))
    for key in ("plan_doubt", "image_doubt"):
        right = sorted(r[key] for r in rows if r["kind"] == "consistent" and r[key] is not None)
        for q in (0.9, 0.95, 0.98, 1.0):  # thresholds at quantiles of the right steps' doubts
            t = right[min(len(right) - 1, int(q * len(right)))] if right else 0.0
            t = t + 1e-6 if q == 1.0 else t
            print(
                f"{key} {t:.3f} (right steps' {q:.2f} quantile):",
                rates(rows, lambda r, t=t, key=key: r[key] is not None and r[key] >= t),
            )


if __name__ == "__main__":
    main()
