"""GenEval-protocol evaluation: benchmarks, scoring rules, and the evaluation runner."""
