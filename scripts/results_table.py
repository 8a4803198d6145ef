"""Print a markdown table (per task, overall, compute per final image) from
`sketchloop eval --out` result files:

    python scripts/results_table.py staged.json single.json oracle.json

Columns are GenEval's six tasks when every file has them, else every task the files hold
(shapes-complex: `complex`, shapes-generalise: `generalise`).
"""

import json
import sys

GENEVAL = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
rows = [json.load(open(path)) for path in sys.argv[1:]]
tasks = (
    GENEVAL
    if all(set(GENEVAL) <= set(r["tasks"]) for r in rows)
    else list(dict.fromkeys(t for r in rows for t in r["tasks"]))
)
print(
    "| generator | benchmark | "
    + " | ".join(tasks)
    + " | overall | failed | flow steps | images | text tokens | s/image |"
)
print("|---" * (len(tasks) + 8) + "|")
for r in rows:
    name = r.get("generator") or r.get("images_dir")
    if r.get("oracle"):
        name += " (ORACLE)"
    c = r.get("compute", {})
    cells = [f"{r['tasks'][t]:.3f}" if t in r["tasks"] else "-" for t in tasks]
    print(
        f"| {name} | {r.get('benchmark') or '-'} | " + " | ".join(cells) + f" | **{r['overall']:.3f}** | "
        f"{r.get('n_failed', 0)} | {c.get('flow_steps', 0):.1f} | {c.get('images', 0):.2f} | "
        f"{c.get('text_tokens', 0):.0f} | {c.get('seconds', 0):.3f} |"
    )
