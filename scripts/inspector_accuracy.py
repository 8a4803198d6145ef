"""How well the model's inspector judges its own sketches: every sketch of a staged run
(refinement off, so inspections change nothing) is checked by the detector against the
plan's `<des>` (outside the loop: the detector is the scorer), and compared with the
model's verdict.

    python scripts/inspector_accuracy.py [--checkpoint CKPT] [--every 5]

Prints the confusion counts, the false-alarm rate (the model says "inconsistent" on a
sketch that matches its description) and the miss rate, with example false alarms.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from sketchloop.data.teachers import DetectorJudge
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
                matches = judge.judge(step.image, parse_prompt("a photo of " + des)).consistent
            except SketchloopError:  # a description the parser cannot read: not counted
                continue
            says_ok = steps[k + 1].text.startswith("consistent")
            counts[(matches, says_ok)] += 1
            if matches and not says_ok and len(false_alarms) < 8:
                false_alarms.append(f"{meta['prompt']!r} | des {des!r} | {steps[k + 1].text!r}")
    good, bad = counts[(True, True)] + counts[(True, False)], counts[(False, True)] + counts[(False, False)]
    print(f"checkpoint: {args.checkpoint or 'shipped'}; {len(prompts)} prompts, {good + bad} sketches")
    print(f"sketch matches its <des> (detector): {good}; model says consistent {counts[(True, True)]}, "
          f"inconsistent {counts[(True, False)]}  -> false-alarm rate {counts[(True, False)] / max(good, 1):.3f}")
    print(f"sketch does not match (detector): {bad}; model says inconsistent {counts[(False, False)]}, "
          f"consistent {counts[(False, True)]}  -> miss rate {counts[(False, True)] / max(bad, 1):.3f}")
    for line in false_alarms:
        print("  false alarm:", line)


if __name__ == "__main__":
    main()
