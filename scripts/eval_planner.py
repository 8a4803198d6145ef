"""How often a unified checkpoint's plans are right, judged by the critic (text only).

    python scripts/eval_planner.py CKPT [--benchmark shapes-geneval] [--limit N] [--temperature T]

A plan is right when every <ins> can be carried out, every <des> says what its <ins>
did, no step conflicts with the prompt, and the planner ends with the whole prompt
described. Prints the share right per GenEval task and overall (mean of task shares).
"""

import argparse
from pathlib import Path

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.errors import PromptError
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.models.sampling import SamplingConfig
from sketchloop.world.critique import inspect_description
from sketchloop.world.instructions import Scene, apply, parse_instruction
from sketchloop.world.parser import parse_prompt
from sketchloop.world.scene import scene_key

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint", type=Path)
parser.add_argument("--benchmark", default="shapes-geneval")
parser.add_argument("--limit", type=int)
parser.add_argument("--temperature", type=float, default=0.3)
args = parser.parse_args()

planner = UnifiedRoles.from_pretrained(args.checkpoint, SamplingConfig(temperature=args.temperature))
prompts = load_benchmark(args.benchmark)[: args.limit]
by_task: dict[str, list[bool]] = {}
for meta in prompts:
    graph = parse_prompt(meta["prompt"])
    scene, history, ok = Scene(), [], False
    for it in range(8):
        step = planner.plan(meta["prompt"], history, it)
        if step is None:
            ok = inspect_description(scene.graph(), graph, final=True).consistent
            break
        try:
            scene = apply(scene, parse_instruction(step.ins, scene))
            described = parse_prompt(step.des)
        except PromptError:
            break
        if scene_key(described) != scene_key(scene.graph()):
            break
        if not inspect_description(described, graph).consistent:
            break
        history.append(step)
    by_task.setdefault(meta["tag"], []).append(ok)
scores = {t: sum(v) / len(v) for t, v in by_task.items()}
for t, s in scores.items():
    print(f"{t:14s} {s:.3f}")
print(f"{'overall':14s} {sum(scores.values()) / len(scores):.3f}  ({len(prompts)} prompts, T={args.temperature})")
