"""Accuracy of an evaluation by the most relations one step states when the step writer adds
the prompt's groups in its order (relation targets first: `writing_order`), or in
`linked_order` (`--linked`): a group that several relations start from is added after all the
groups they end on, and its one step must meet them all.

    python scripts/relations_per_step.py RESULTS.json [RESULTS.json ...] [--linked]

RESULTS.json: `sketchloop eval --out` files. Prints, per file, prompts and share right by that
number of relations.
"""

import argparse
import json
from collections import defaultdict

from sketchloop.backends.shapes import linked_order, relations_to, writing_order
from sketchloop.world.parser import parse_prompt
from sketchloop.world.scene import SceneGraph


def most_relations(graph: SceneGraph, order: list[int]) -> int:
    """The most relations any one step states (the step writer's `relations_to`), adding the groups in `order`."""
    return max((len(relations_to(list(graph.relations), g, order[:k])) for k, g in enumerate(order)), default=0)


parser = argparse.ArgumentParser()
parser.add_argument("results", nargs="+")
parser.add_argument("--linked", action="store_true", help="count steps in linked_order")
args = parser.parse_args()
for path in args.results:
    right: dict[int, list[bool]] = defaultdict(list)
    for image in json.load(open(path))["images"]:
        graph = parse_prompt(image["prompt"])
        order = linked_order(graph) if args.linked else writing_order(graph)
        right[most_relations(graph, order)].append(bool(image["correct"]))
    cells = ", ".join(f"{k}: {len(v)} prompts, {sum(v) / len(v):.3f} right" for k, v in sorted(right.items()))
    print(f"{path}: {cells}")
