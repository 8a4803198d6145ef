"""Regenerate the held-out benchmarks (sketchloop/evaluation/heldout.py) with their fixed seed:
sketchloop/benchmarks/shapes-complex.jsonl, shapes-complex-val.jsonl, shapes-generalise.jsonl,
shapes-trees.jsonl, shapes-trees-val.jsonl, shapes-phrasing.jsonl, shapes-phrasing-val.jsonl."""

import json
from pathlib import Path

from sketchloop.evaluation.heldout import make_heldout_benchmarks

folder = Path(__file__).resolve().parents[1] / "sketchloop" / "benchmarks"
for name, lines in make_heldout_benchmarks().items():
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} prompts to {folder / name}.jsonl")
