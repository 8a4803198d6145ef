"""Where the planner's regions go wrong, one step at a time, given the teacher's history.

    python scripts/region_errors.py DATA [--checkpoint CKPT] [--limit 400] [--view] [--out errors.json]

For every add step of a trajectories build (DATA, built with `--edit-ops 0`), the model reads the
teacher's sequence up to that step's `<img>`: the prompt, the earlier plans and regions, this
step's `<ins>` and `<des>` (with `--view`, also the canvas the step is drawn on, as `<canvas>`
slots before its `<ins>`, as `train --plan-views canvas` teaches). It writes the step's regions
greedily under the output's syntax only, as the default loop does. Its regions stand for the
step's new objects (in the teacher's order) beside the teacher's earlier ones, and are judged by
geometry, outside the model:

- `count`: not as many regions as the step adds objects;
- `overlap in step` / `overlap earlier`: a new object's box meets the box of another new one / of
  one drawn before (pairs in depth excepted);
- `relation`: a relation the prompt states between the new group and one already drawn fails
  GenEval's rule (world/layout.py `relative_position`).

The first that applies is the step's error. Steps are counted by how many groups are already
drawn and, for steps with a relation to a drawn group, by how many steps back that group was
added (1: the step before): a lookup that fails with the distance shows as errors that grow
with it. Steps where the teacher's own regions, snapped to the lattice, fail these checks are
left out (the row's scene graph gives the relations).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from sketchloop.data.schema import decode_png, read_dataset
from sketchloop.evaluation.process import moved_to, region_error
from sketchloop.models.regions import parse_regions, region_of, to_float
from sketchloop.models.sampling import RegionSyntax, TextSession
from sketchloop.models.unified import UnifiedModel
from sketchloop.training.sequences import blank_array, encode_row
from sketchloop.world.layout import Layout, relation_needs, relative_position
from sketchloop.world.scene import SceneGraph

SHIPPED = Path(__file__).resolve().parents[1] / "sketchloop" / "checkpoints" / "shapes-unified"


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def relation_kind(new: list, earlier: list, need: dict, regions: list) -> str:
    """How the first failed relation of a step's regions fails: "turned round" (the opposite
    holds), "other anchor" (it holds to a drawn object of another group, not the one named),
    "too close" (no relation holds on the relation's axis), or "other axis"."""
    for a in moved_to(new, regions):
        for b in earlier:
            held = relative_position(a.box, b.box)
            for rel in need.get((a.group, b.group), ()):
                if rel not in OPPOSITE or rel in held:
                    continue
                if OPPOSITE[rel] in held:
                    return "turned round"
                if any(rel in relative_position(a.box, c.box) for c in earlier if c.group not in (a.group, b.group)):
                    return "other anchor"
                axis = {"left of", "right of"} if rel in ("left of", "right of") else {"above", "below"}
                return "other axis" if held - axis else "too close"
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED)
    ap.add_argument("--limit", type=int, default=400, help="rows read")
    ap.add_argument("--view", action="store_true", help="the canvas before each plan (train --plan-views canvas)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model, tok = UnifiedModel.from_pretrained(args.checkpoint)
    model.eval()
    syntax = RegionSyntax(tok)
    img, end, ins = tok.token_id("<img>"), tok.token_id("</img>"), tok.token_id("<ins>")
    canvas_id = tok.token_id("<canvas>")
    prompt_tags = (tok.token_id("<prompt>"), tok.token_id("</prompt>"))
    rows = [r for r in read_dataset(args.data).to_pylist() if r["kind"] == "trajectories"][: args.limit]
    tally: dict[str, Counter] = defaultdict(Counter)
    skipped = Counter()
    for row in tqdm(rows, desc="rows", file=sys.stderr):
        need = relation_needs(SceneGraph.from_json(row["scene"]))
        ids = encode_row(row, tok, model.config.canvas_tokens).ids
        layouts = [Layout.from_dict(json.loads(s)) if s else None for s in row["layouts"]]
        sketches = [s for s in row["steps"] if s["type"] == "sketch"]
        starts = [i for i, t in enumerate(ids) if t == img]
        if len(starts) != len(sketches):
            skipped["row"] += 1
            continue
        images = [decode_png(b) for b in row["images"]]
        canvas = blank_array(images[0].shape[0])
        before, added_at = Layout(), {}
        for k, (start, sketch) in enumerate(zip(starts, sketches)):
            after = layouts[sketch["image"]]
            if after is None:
                break
            old = {(o.shape, o.color, o.x, o.y, o.size) for o in before.objects}
            new = [o for o in after.objects if (o.shape, o.color, o.x, o.y, o.size) not in old]
            earlier = list(before.objects)
            teacher = [region_of(o) for o in new]
            if not new or region_error(new, earlier, need, teacher) is not None:
                skipped["teacher"] += 1
            else:
                session = TextSession(model, canvas_id, prompt_tags, tok.token_id("<img>"))
                if args.view:
                    opening = max(i for i in range(start) if ids[i] == ins)
                    session.feed(ids[:opening])
                    session.feed([canvas_id] * model.config.canvas_tokens, torch.from_numpy(to_float(canvas))[None])
                    session.feed(ids[opening : start + 1])
                else:
                    session.feed(ids[: start + 1])
                out = session.sample(syntax.max_tokens, {end}, torch.Generator(), 0.0, syntax.allowed)
                regions = parse_regions(tok.decode([i for i in out if i != end]))
                error = region_error(new, earlier, need, regions) or "right"
                if error == "relation":
                    tally["relation errors by kind"][relation_kind(new, earlier, need, regions)] += 1
                groups = {o.group for o in new}
                drawn = {o.group for o in earlier}
                anchors = [added_at[b] for (a, b), rels in need.items() if a in groups and b in drawn for _ in rels]
                keys = [f"groups drawn {len(drawn)}", f"step {k + 1}"]
                if anchors:
                    nearest, farthest = k - max(anchors), k - min(anchors)
                    keys.append(f"anchor {nearest} steps back (nearest)")
                    keys.append(f"anchor {farthest} steps back (farthest)")
                    keys.append(f"groups drawn {len(drawn)}, anchor {nearest} steps back (nearest)")
                else:
                    keys.append("no relation to a drawn group")
                keys.append("new objects %d" % len(new))
                for key in keys + ["all"]:
                    tally[key][error] += 1
            for o in new:
                added_at.setdefault(o.group, k)
            before, canvas = after, images[sketch["image"]]
    report = {
        key: dict(c) | {"n": sum(c.values()), "right": round(c["right"] / sum(c.values()), 3)}
        for key, c in sorted(tally.items())
    }
    for key, r in report.items():
        print(
            f"{key:40s} n={r['n']:5d} right={r['right']:.3f} "
            + " ".join(f"{e}={r.get(e, 0)}" for e in ("count", "overlap in step", "overlap earlier", "relation"))
        )
    print("skipped", dict(skipped))
    if args.out:
        args.out.write_text(json.dumps({"report": report, "skipped": dict(skipped)}, indent=1))


if __name__ == "__main__":
    main()
