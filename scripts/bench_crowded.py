"""Crowded scenes: the share of random tree-shaped scene graphs (4-5 coloured groups, each
related to one earlier group) that the layout sampler fits, and how often the detector
recovers the rendered scene exactly, for up to 6 and up to 8 objects.

    python scripts/bench_crowded.py [--n 500] [--size 64]
"""

import argparse
import time

import numpy as np

from sketchloop.errors import LayoutError
from sketchloop.evaluation.detector_check import scene_recovered
from sketchloop.world.detect import ShapesDetector
from sketchloop.world.layout import sample_layout
from sketchloop.world.render import render
from sketchloop.world.sample import random_tree_scene

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=500)
parser.add_argument("--size", type=int, default=64)
args = parser.parse_args()
detector = ShapesDetector()
for max_objects in (6, 8):
    rng = np.random.default_rng(1)
    laid = recovered = 0
    sizes, refused = [], []
    t = time.time()
    for k in range(args.n):
        graph = random_tree_scene(rng, max_objects=max_objects)
        try:
            layout = sample_layout(graph, k)
        except LayoutError:
            refused.append(graph.to_text())
            continue
        laid += 1
        sizes.append(min(o.size for o in layout.objects))
        recovered += scene_recovered(layout, detector.detect(render(layout, args.size)), detector.threshold, args.size)
    print(
        f"up to {max_objects} objects: laid out {laid}/{args.n} ({100 * laid / args.n:.1f}%), detector recovered "
        f"{recovered}/{laid} at {args.size} px; smallest object median {np.median(sizes):.3f}, "
        f"{1000 * (time.time() - t) / args.n:.0f} ms per graph"
    )
    for text in refused[:3]:
        print("  refused:", text)
