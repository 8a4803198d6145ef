"""The image expert on its own: the teacher's plans and regions for each prompt, the model's
sketches on its own canvases, judged by GenEval's rules. Where the loop fails, this tells
whether the drawing or the planning is at fault.

    python scripts/eval_sketcher.py [--checkpoint CKPT] [--benchmark shapes-depth-val] [--limit N] [--out FILE]

An ORACLE-PLANS measurement (`sketchloop/evaluation/sketcher.py`): ShapesWorld's step writer
plans each prompt (what is behind first) and its layout editor places each step, whose changed
regions the model then draws (`UnifiedRoles.sketch`, the checkpoint's flow settings), one step
after another on the model's own canvas. Scored afterwards: each step's canvas against the
scene after it, and the final canvas against the prompt. Never part of a generation path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sketchloop.backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.sketcher import sketch_scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--benchmark", default="shapes-depth-val")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    roles = UnifiedRoles.from_pretrained(args.checkpoint)
    prompts = [row["prompt"] for row in load_benchmark(args.benchmark)[: args.limit]]
    result = {"benchmark": args.benchmark, "checkpoint": str(args.checkpoint), "oracle_plans": True}
    result |= sketch_scores(roles, prompts, args.seed, progress=True)
    print(
        f"ORACLE PLANS, the model's sketches: {args.benchmark} {result['right']:.3f} of {result['prompts']} prompts, "
        f"{result['steps_right']:.3f} of {result['steps']} steps"
    )
    for coloured, label in ((True, "every group coloured"), (False, "an uncoloured group")):
        rows = [row for row in result["per_prompt"] if row["coloured"] == coloured]
        if rows:
            print(f"  prompts with {label}: {sum(row['correct'] for row in rows)} of {len(rows)} right")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
