"""Per-stage metrics of the staged loop, measured outside it: does the planner copy the
prompt, does the inspector see the conflicts, does a refine fix without breaking?

    python scripts/process_metrics.py [--checkpoint CKPT] [--benchmark shapes-complex]
        [--benchmark shapes-geneval] [--every 1] [--max-refines N] [--text-verdict] [--inspect-threshold T] [--free-plans] [--edit-steps] [--out metrics.json]

The loop runs with the model alone (no scorer inside it); afterwards every recorded step
is judged by the exact ShapesWorld judge (sketchloop/evaluation/process.py says what
each number means). Seeds: the prompt's index, as `eval` uses for its first image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from sketchloop.backends.shapes import DetectorJudge
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.process import measure, summary
from sketchloop.generators import model_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--benchmark", action="append")
    ap.add_argument("--every", type=int, default=1, help="every N-th prompt of each benchmark")
    ap.add_argument("--max-refines", type=int, default=None, help="default: the loop's default")
    ap.add_argument("--inspect-threshold", type=float, default=None,
                    help="the inspector's verdict by a threshold on its doubt (default: sampled)")
    ap.add_argument("--text-verdict", action="store_true", help="the inspection's first word decides (no self-check)")
    ap.add_argument("--free-plans", action="store_true", help="the planner's phrases its own (not copied)")
    ap.add_argument("--free-regions", action="store_true", help="an add's regions not held to its <ins>'s relations")
    ap.add_argument("--no-room", action="store_true", help="an add's regions need not leave room for the objects "
                                                          "still to come")
    ap.add_argument("--paste-crop", action="store_true", help="a drawn crop is pasted back whole (not only over "
                                                             "its region's box)")
    ap.add_argument("--edit-steps", action="store_true", help="a plan may change, move or remove what is drawn "
                                                             "(off: every plan adds)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    kw = {} if args.max_refines is None else {"max_refines": args.max_refines}
    kw.update(inspect_threshold=args.inspect_threshold, self_check=not args.text_verdict)
    gen = model_generator("staged", checkpoint=args.checkpoint, copy_phrases=not args.free_plans,
                          relate_regions=not args.free_regions,
                          leave_room=not args.no_room, keep_context=not args.paste_crop,
                          edit_steps=args.edit_steps, **kw)
    judge = DetectorJudge()
    results = {}
    for bench in args.benchmark or ["shapes-complex", "shapes-geneval"]:
        counts: Counter = Counter()
        for i, meta in enumerate(tqdm(load_benchmark(bench)[::args.every], desc=bench, file=sys.stderr)):
            measure(gen.run(meta["prompt"], seed=i), judge, counts)
        results[bench] = summary(counts)
        print(bench, json.dumps(results[bench]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
