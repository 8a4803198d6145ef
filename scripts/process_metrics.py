"""Per-stage metrics of the staged loop, measured outside it: does the planner copy the
prompt, does the inspector see the conflicts, does a refine fix without breaking?

    python scripts/process_metrics.py [--checkpoint CKPT] [--benchmark shapes-complex]
        [--benchmark shapes-geneval] [--every 1] [--max-refines N] [--set edit_steps=true ...] [--out metrics.json]

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
from sketchloop.loop.staged import DEFAULT_MAX_REFINES
from sketchloop.models.sampling import parse_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--benchmark", action="append")
    ap.add_argument("--every", type=int, default=1, help="every N-th prompt of each benchmark")
    ap.add_argument("--max-refines", type=int, default=DEFAULT_MAX_REFINES)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a sampling setting other than the checkpoint's sampling.json (SamplingConfig field, "
        "e.g. edit_steps=true, copy_phrases=false); repeatable",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    gen = model_generator(
        "staged", checkpoint=args.checkpoint, max_refines=args.max_refines, **parse_settings(args.set)
    )
    judge = DetectorJudge()
    results = {}
    for bench in args.benchmark or ["shapes-complex", "shapes-geneval"]:
        counts: Counter = Counter()
        for i, meta in enumerate(tqdm(load_benchmark(bench)[:: args.every], desc=bench, file=sys.stderr)):
            measure(gen.run(meta["prompt"], seed=i), judge, counts)
        results[bench] = summary(counts)
        print(bench, json.dumps(results[bench]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
