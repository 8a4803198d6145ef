"""How well the model's inspector judges its own steps: every step of a staged run
(refinement off, so inspections change nothing) is checked outside the loop, where the
scorers belong: the sketch by the detector against the plan's `<des>`, and the `<des>` by
the symbolic critique against the prompt; both are compared with the model's verdict.

    python scripts/inspector_accuracy.py [--checkpoint CKPT] [--every 5]

Prints the false-alarm rate (the model says "inconsistent" on a step whose sketch matches
its description and whose description fits the prompt) and the miss rates for wrong
sketches and for wrong plans, with example false alarms.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from sketchloop.world.critique import inspect_description
from sketchloop.backends.shapes import DetectorJudge
from sketchloop.errors import SketchloopError
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.generators import model_generator
from sketchloop.world.parser import parse_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--every", type=int, default=5, help="use every N-th prompt of shapes-geneval")
    args = ap.parse_args()
    prompts = load_benchmark("shapes-geneval")[::args.every]
    gen = model_generator("staged", checkpoint=args.checkpoint, max_refines=0)
    judge = DetectorJudge()
    counts: Counter = Counter()
    false_alarms = []
    for i, meta in enumerate(prompts):
        steps = gen.run(meta["prompt"], seed=i).steps
        for k, step in enumerate(steps):
            if step.type != "sketch":
                continue
            des = steps[k - 1].text.split("<des>")[1].split("</des>")[0].strip()
            try:
                described = parse_prompt("a photo of " + des)
            except SketchloopError:  # a description the parser cannot read: not counted
                continue
            sketch_ok = judge.judge(step.image, described).consistent
            plan_ok = inspect_description(described, parse_prompt(meta["prompt"]), final=False).consistent
            truth = "right" if sketch_ok and plan_ok else "wrong plan" if not plan_ok else "wrong sketch"
            says_ok = steps[k + 1].text.startswith("consistent")
            counts[(truth, says_ok)] += 1
            if truth == "right" and not says_ok and len(false_alarms) < 8:
                false_alarms.append(f"{meta['prompt']!r} | des {des!r} | {steps[k + 1].text!r}")
    print(f"checkpoint: {args.checkpoint or 'shipped'}; {len(prompts)} prompts, {sum(counts.values())} steps")
    for truth in ("right", "wrong plan", "wrong sketch"):
        ok, flagged = counts[(truth, True)], counts[(truth, False)]
        rate = (f"false-alarm rate {flagged / max(ok + flagged, 1):.3f}" if truth == "right"
                else f"miss rate {ok / max(ok + flagged, 1):.3f}")
        print(f"{truth:>12}: {ok + flagged:4d} steps; model says consistent {ok}, inconsistent {flagged} -> {rate}")
    for line in false_alarms:
        print("  false alarm:", line)


if __name__ == "__main__":
    main()
