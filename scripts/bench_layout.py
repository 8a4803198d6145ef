"""Layout sampler benchmark: share of random scene graphs it fits, and time per layout.

    python scripts/bench_layout.py [--n 1000]

Scene graphs are drawn like sketchloop.world.sample.random_scene but without its
layout check, so crowded graphs (many objects under every-pair relations) show up.
"""

import argparse
import time

import numpy as np

from sketchloop.errors import LayoutError, PromptError
from sketchloop.world.layout import sample_layout
from sketchloop.world.sample import random_scene_layout

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=1000)
args = parser.parse_args()

rng = np.random.default_rng(0)
graphs = []
while len(graphs) < args.n:
    g, _ = random_scene_layout(rng, max_groups=5, count_prob=0.45, relation_prob=0.7)
    graphs.append(g)
t = time.time()
fails = 0
for i, g in enumerate(graphs):
    try:
        sample_layout(g, i)
    except (LayoutError, PromptError):
        fails += 1
elapsed = time.time() - t
print(
    f"{args.n - fails}/{args.n} layoutable graphs laid out again with a fresh seed "
    f"({100 * (args.n - fails) / args.n:.1f}%), {1000 * elapsed / args.n:.1f} ms per layout"
)
