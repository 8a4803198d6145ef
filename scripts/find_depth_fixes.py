"""Search the model's own trajectories for a depth order it corrects: an inspection that names a
depth word ("in front of", "behind", "hiding"), a correction after it, and a final image the judge
passes. Saves each trajectory page found, and prints every depth-naming inspection.

    python scripts/find_depth_fixes.py [--checkpoint CKPT] [--benchmark shapes-depth-val]
        [--seeds 2] [--max-refines 2] [--out runs/depth-fixes]

The loop runs with the model alone (no scorer inside it); the judge reads the final image only
afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from sketchloop.backends.shapes import DetectorJudge
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.generators import model_generator
from sketchloop.pages.trajectory import save_trajectory
from sketchloop.world.parser import parse_prompt

DEPTH_WORDS = ("front", "behind", "hiding", "hidden")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--benchmark", default="shapes-depth-val")
    ap.add_argument("--seeds", type=int, default=2, help="rollouts of each prompt (seeds 0..N-1)")
    ap.add_argument("--max-refines", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/depth-fixes"))
    args = ap.parse_args()
    gen = model_generator("staged", checkpoint=args.checkpoint, max_refines=args.max_refines)
    judge = DetectorJudge()
    prompts = [m["prompt"] for m in load_benchmark(args.benchmark)]
    named = corrected = fixed = 0
    for seed in range(args.seeds):
        for i, prompt in enumerate(tqdm(prompts, desc=f"seed {seed}", file=sys.stderr)):
            traj = gen.run(prompt, seed=seed)
            flagged = [
                k
                for k, s in enumerate(traj.steps)
                if s.type == "inspect" and not s.text.startswith("consistent") and any(w in s.text for w in DEPTH_WORDS)
            ]
            if not flagged:
                continue
            right = judge.judge(traj.final, parse_prompt(prompt)).consistent
            again = any(s.attempt > 0 for s in traj.steps[flagged[0] + 1 :])
            named += 1
            corrected += again
            fixed += again and right
            for k in flagged:
                print(json.dumps({"seed": seed, "prompt": i, "inspect": traj.steps[k].text, "final_right": right}))
            if again and right:
                save_trajectory(traj, args.out / f"{seed}-{i:03d}")
    total = args.seeds * len(prompts)
    print(
        f"{total} trajectories: {named} with an inspection naming depth, {corrected} of them corrected after it, "
        f"{fixed} of those ending right (pages in {args.out})"
    )


if __name__ == "__main__":
    main()
