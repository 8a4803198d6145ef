"""A benchmark made of a training build's own long compositions: does the model fit what it trained on?

    python scripts/bench_from_build.py DATA [--n 100] [--min-groups 3] [--min-relations 2] [--seed 0] > fit.jsonl
    sketchloop eval --benchmark fit.jsonl --generator staged --images-per-prompt 1 --workers 2

Takes trajectory rows of a `data build --kind trajectories` folder whose prompt is the scene's
plain GenEval-style prompt (no rewording, no knowledge phrase, no pair in depth, no counted
points, like `shapes-complex`), with at least `--min-groups` groups and `--min-relations`
relations, and writes `--n` of them, chosen by `--seed`, as GenEval metadata lines. Scored
beside `shapes-complex-val` (held out of every build), the difference is what the model has
not learnt to carry over from its training scenes to new ones; a low score here is a model
that does not fit its own data.
"""

import argparse
import glob
import json
import random
import sys

import pyarrow.parquet as pq

from sketchloop.world.scene import DEPTH_RELATIONS, SceneGraph

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("data", help="a trajectories build folder (its data/*.parquet)")
parser.add_argument("--n", type=int, default=100)
parser.add_argument("--min-groups", type=int, default=3)
parser.add_argument("--min-relations", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

files = sorted(glob.glob(f"{args.data}/data/*.parquet"))
if not files:
    sys.exit(f"error: {args.data} holds no data/*.parquet; pass a folder written by 'sketchloop data build'")
lines = []
for path in files:
    for row in pq.read_table(path, columns=["kind", "prompt", "scene"]).to_pylist():
        if row["kind"] != "trajectories":
            continue
        graph = SceneGraph.from_json(row["scene"])
        if len(graph.groups) < args.min_groups or len(graph.relations) < args.min_relations:
            continue
        if any(r.relation in DEPTH_RELATIONS for r in graph.relations) or any(g.points for g in graph.groups):
            continue
        meta = graph.to_geneval("complex")
        if meta["prompt"] == row["prompt"]:  # the plain prompt: not reworded, no fact named
            lines.append(meta)
random.Random(args.seed).shuffle(lines)
print(f"{len(lines)} rows qualify; writing {min(args.n, len(lines))}", file=sys.stderr)
for meta in lines[: args.n]:
    print(json.dumps(meta))
