"""The planner's knowledge on its own: on knowledge prompts (shapes-wise), does the model's
plan resolve the fact ("the colour of coal" -> "a black circle"), and is the whole plan right?

    python scripts/eval_knowledge.py [--checkpoint CKPT] [--benchmark shapes-wise-val] [--limit N] [--out FILE]

Text only, with the checkpoint's own sampling settings (the model alone, as `eval` runs it):
the planner writes its steps until it ends; the last `<des>` is read by the world's parser
afterwards (never inside the loop). Per split (facts seen in trajectories, only in the text
corpus, held out) and category (colour, count, shape):
- resolved: the last description holds the group the fact names, with the fact's answer;
- plan right: the last description is the prompt's whole scene;
- recalled: a step's `<ins>` opens with the fact's own sentence ("coal is black ; add ...",
  world/instructions.py `split_recall`), as a checkpoint trained on `data build --recall-facts` writes.
The images are `sketchloop eval --benchmark shapes-wise --generator staged`'s to score.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from sketchloop.backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
from sketchloop.errors import PromptError
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.models.sampling import SamplingConfig
from sketchloop.world.instructions import split_recall
from sketchloop.world.parser import parse_prompt, parse_with_facts
from sketchloop.world.scene import scene_key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--benchmark", default="shapes-wise-val")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--max-iters", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    planner = UnifiedRoles.from_pretrained(args.checkpoint, SamplingConfig.from_pretrained(args.checkpoint))
    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"resolved": [], "plan_right": [], "recalled": []})
    examples = []
    for index, meta in enumerate(tqdm(load_benchmark(args.benchmark)[: args.limit], desc="plans")):
        prompt = meta["prompt"]
        asked, ((fact, group), *_) = parse_with_facts(prompt)
        history = []
        for it in range(args.max_iters):
            step = planner.plan(prompt, history, index * 100 + it)
            if step is None:
                break
            history.append(step)
        try:
            described = parse_prompt(history[-1].des) if history else None
        except PromptError:
            described = None
        resolved = described is not None and group in described.groups
        right = described is not None and scene_key(described) == scene_key(asked)
        recalls = [recall for recall, _ in map(split_recall, (step.ins for step in history)) if recall]
        for key in (f"{fact.split}/{fact.kind}", fact.split, "all"):
            cells[key]["resolved"].append(resolved)
            cells[key]["plan_right"].append(right)
            cells[key]["recalled"].append(fact.statement in recalls)
        examples.append(
            {"prompt": prompt, "fact": fact.statement, "recalls": recalls, "des": history[-1].des if history else ""}
        )
    table = {
        k: {m: sum(v) / len(v) for m, v in c.items()} | {"n": len(c["resolved"])} for k, c in sorted(cells.items())
    }
    print(f"| {args.benchmark} | n | resolved | plan right | recalled |\n|---|---|---|---|---|")
    for key, row in table.items():
        print(f"| {key} | {row['n']} | {row['resolved']:.3f} | {row['plan_right']:.3f} | {row['recalled']:.3f} |")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"checkpoint": str(args.checkpoint), "benchmark": args.benchmark, "table": table, "plans": examples},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
