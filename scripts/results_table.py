"""Print a markdown table (per GenEval task, overall, compute per final image) from
`sketchloop eval --out` result files:

    python scripts/results_table.py staged.json single.json oracle.json
"""

import json
import sys

TASKS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
rows = [json.load(open(path)) for path in sys.argv[1:]]
print("| generator | " + " | ".join(TASKS) + " | overall | flow steps | images | text tokens | s/image |")
print("|---" * (len(TASKS) + 6) + "|")
for r in rows:
    name = r.get("generator") or r.get("images_dir")
    if r.get("oracle"):
        name += " (ORACLE)"
    c = r.get("compute", {})
    cells = [f"{r['tasks'].get(t, float('nan')):.3f}" for t in TASKS]
    print(f"| {name} | " + " | ".join(cells) + f" | **{r['overall']:.3f}** | {c.get('flow_steps', 0):.1f} | "
          f"{c.get('images', 0):.2f} | {c.get('text_tokens', 0):.0f} | {c.get('seconds', 0):.3f} |")
