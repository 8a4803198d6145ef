"""Make the held-out benchmarks (sketchloop/evaluation/heldout.py) with their fixed seed, in
sketchloop/benchmarks/: shapes-complex(-val), shapes-generalise, shapes-trees(-val),
shapes-phrasing(-val), shapes-wise(-val), shapes-depth(-val), shapes-parts(-val) and
shapes-counting-val and shapes-counted-val.

A shipped benchmark file is data, not code: every number measured on it refers to its prompts,
so this never rewrites one. It writes the files that are missing and names the shipped ones
that differ from what the code draws now (a later change to the layout sampler or the renderer
can change which random scenes are drawable: the code now draws one prompt more early in
shapes-depth, which shifts one prompt from shapes-depth into shapes-depth-val). `--force NAME`
rewrites NAME.

    python scripts/make_heldout_benchmarks.py [--force shapes-depth]
"""

import argparse
import json
from pathlib import Path

from sketchloop.evaluation.heldout import make_heldout_benchmarks

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--force", action="append", default=[], help="a benchmark to rewrite (repeatable)")
args = parser.parse_args()
folder = Path(__file__).resolve().parents[1] / "sketchloop" / "benchmarks"
for name, lines in make_heldout_benchmarks().items():
    path = folder / f"{name}.jsonl"
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if path.is_file() and name not in args.force:
        shipped = path.read_text(encoding="utf-8")
        if shipped == text:
            print(f"{name}: the shipped file is what the code draws ({len(lines)} prompts)")
        else:
            drawn = {json.dumps(line) for line in lines}
            kept = {line for line in shipped.splitlines() if line}
            print(
                f"{name}: the shipped file differs from what the code draws now "
                f"({len(kept - drawn)} of its {len(kept)} prompts not drawn); kept (--force {name} rewrites it)"
            )
        continue
    path.write_text(text, encoding="utf-8")
    print(f"wrote {len(lines)} prompts to {path}")
