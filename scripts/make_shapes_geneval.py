"""Regenerate the shipped benchmark sketchloop/benchmarks/shapes-geneval.jsonl (fixed seed)."""

import json
from pathlib import Path

from sketchloop.evaluation.benchmark import make_shapes_geneval

out = Path(__file__).resolve().parents[1] / "sketchloop" / "benchmarks" / "shapes-geneval.jsonl"
lines = make_shapes_geneval()
out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
print(f"wrote {len(lines)} prompts to {out}")
