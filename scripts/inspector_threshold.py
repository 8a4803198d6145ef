"""Choose the inspector's decision threshold on a validation set: run the default loop,
and for every inspected step read the inspector's doubt (P("inconsistent") of the two
verdict words) and the exact judge's verdict on that step (outside the loop); print recall
on plan and image conflicts and false alarms for each threshold.

    python scripts/inspector_threshold.py [--benchmark shapes-complex-val] [--every 1] [--out rows.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from sketchloop.backends.shapes import DetectorJudge
from sketchloop.backends.unified import UnifiedRoles
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.process import doubt_auc, flag_rates
from sketchloop.generators import model_generator
from sketchloop.loop.roles import Plan
from sketchloop.world.parser import parse_prompt

PLAN = re.compile(r"<ins> (.*?) </ins> <des> (.*?) </des> <img> (.*?) </img>")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--benchmark", default="shapes-complex-val")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    gen = model_generator("staged", checkpoint=args.checkpoint)
    roles, judge, rows = UnifiedRoles.from_pretrained(args.checkpoint), DetectorJudge(), []
    for i, meta in enumerate(tqdm(load_benchmark(args.benchmark)[::args.every], file=sys.stderr)):
        traj, graph, history = gen.run(meta["prompt"], seed=i), parse_prompt(meta["prompt"]), []
        image = None
        for step in traj.steps:
            if step.type == "plan":
                history.append(Plan(*PLAN.search(step.text).groups()))
            elif step.type in ("sketch", "refine"):
                image = step.image
            elif step.type == "inspect":
                truth = judge.inspect_step(graph, history[-1].des, image)
                rows.append({"doubt": roles.doubt(meta["prompt"], history, image),
                             "kind": "consistent" if truth.consistent else truth.target})
    if args.out:
        args.out.write_text(json.dumps(rows))
    print(f"{len(rows)} inspected steps of {args.benchmark}")
    auc = doubt_auc(rows)
    if auc is not None:  # how well the doubt ranks a wrong step above a right one (0.5: not at all)
        wrong = sum(r["kind"] != "consistent" for r in rows)
        print(f"AUC {auc:.3f} ({wrong} wrong steps, {len(rows) - wrong} right)")
    print("threshold  recall(plan)  recall(image)  false alarms")
    for threshold in (0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
        rate = flag_rates(rows, lambda r: r["doubt"] >= threshold)
        print(f"{threshold:9.3f}  {rate['recall_plan']:12.2f}  {rate['recall_image']:13.2f}  "
              f"{rate['false_alarms']:12.2f}")


if __name__ == "__main__":
    main()
