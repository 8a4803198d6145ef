"""The paper's table in ShapesWorld: what each part of the process buys, at what compute.

    python scripts/paper_table.py                 # the table and plots from the result files in docs/paper/
    python scripts/paper_table.py --run [--row ID] [--runs runs/paper] [--workers 2]
                                                  # first evaluate the rows whose result files are missing

Every row is scored by `sketchloop eval` (GenEval's rules, ShapesWorld's detector) on the
same held-out benchmarks (shapes-geneval, shapes-complex, shapes-generalise, shapes-wise; the ORACLE row
also shapes-depth and shapes-parts), one image per prompt with the same seeds (the image index), on this
CPU with 2 worker processes. The
rows that need their own weights (the text-to-image baseline, the ablations) read them from
--runs, where `bash scripts/train_paper_rows.sh` trains them (resumable); a row whose
checkpoint is missing is left out of the table and named in its "not measured" list.

Writes docs/paper-table.md (ours beside the paper's numbers), docs/paper/*.json (one
result file per row and benchmark), docs/paper/per-stage.json (per-stage metrics,
scripts/process_metrics.py) and two plots: docs/paper/accuracy-vs-flow-steps.png and
docs/paper/geneval-tasks.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUT = DOCS / "paper"
BENCHMARKS = ("shapes-geneval", "shapes-complex", "shapes-generalise", "shapes-wise", "shapes-depth", "shapes-parts")
PLANAR_BENCHMARKS = BENCHMARKS[:4]  # the world's decode rules (--guided) know no depth and no points
MODEL_BENCHMARKS = BENCHMARKS
PLOTTED = BENCHMARKS[:3]
GENEVAL_TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass
class Row:
    id: str
    label: str
    group: str  # baseline, process, ablation
    holds: str  # what it holds equal with the shipped loop, and what it changes
    args: list[str]  # `sketchloop eval` arguments (besides benchmark, seeds, workers, files)
    paper: str = ""  # the paper's matching row
    per_stage: bool = False  # also measure its per-stage metrics (process_metrics.py)
    frozen: str = ""  # the git commit that measured it, for a row whose code or weights this version no
    # longer has: shown, never re-run (`git checkout COMMIT` reruns it)
    guided: bool = False  # decoded under the world's rules (`--guided`, or a frozen row measured when that was the
    # default): labelled GUIDED, never the learned model alone
    benchmarks: tuple[str, ...] = MODEL_BENCHMARKS  # the benchmarks it runs on

    @property
    def title(self) -> str:
        """The label as every table shows it: GUIDED and frozen rows say so."""
        label = f"{self.label} (GUIDED: the world's decode rules)" if self.guided else self.label
        return f"{label} (*frozen at {self.frozen}*)" if self.frozen else label


ROWS = [
    Row(
        "t2i",
        "text-to-image (cross-attention)",
        "baseline",
        "the parameter count of the unified model before its pointer (1.37M; 1.44M with it), the same 32K "
        "training scenes (their final images and prompts), 7,800 "
        "steps (the shipped recipe's first three stages; its fourth stage trains the shipped model 800 steps more: "
        "9% fewer steps here) of 8 whole canvases (32.8K pixels a step; the unified model's 32 crops and 2 canvases "
        "are 26.6K); 16 Euler steps per image",
        ["--generator", "t2i", "--checkpoint", "{runs}/t2i"],
        paper="BAGEL-7B single pass: 0.77",
        benchmarks=BENCHMARKS[:3],  # its weights predate the knowledge, depth and points words
    ),
    Row(
        "single",
        "single pass of the shipped model (`<img> <full>`)",
        "baseline",
        "the shipped checkpoint's own weights and data (its single-mode examples are every training trajectory's "
        "prompt and final image), one whole-canvas flow from the prompt: no plan, no inspection",
        ["--generator", "single"],
        paper="BAGEL-7B single pass: 0.77",
    ),
    Row(
        "one-shot",
        "one-shot layout (one plan, one image)",
        "baseline",
        "the same architecture, the same 32K scenes and final images rewritten as one step each (`sketchloop data "
        "one-step`: one `<ins>`/`<des>` naming the whole scene, one `<img>` with every region), the recipe's "
        "4,000 + 2,000 + 1,000 + 800 + 800 steps and rates; drawn in one pass, no inspection; its regions, in text "
        "order, meet the relations its plan states to the objects before them and leave room for those after (the "
        "loop's region grammar, within one step), and each region's image condition reads its own object's words",
        ["--generator", "staged", "--checkpoint", "{runs}/one-step-s4", "--no-inspect"],
        paper="(the paper's single pass is the nearest: 0.77)",
        frozen="d16b90c",
        guided=True,
    ),
    Row(
        "plan-sketch",
        "plan + sketch, no inspection (= planner only)",
        "process",
        "the shipped checkpoint, the learned model alone; the inspect step skipped. Its planner never reads the "
        "canvas, so this is "
        "also the paper's planner-only baseline: a prompt rewritten into steps, drawn without feedback",
        ["--generator", "staged", "--no-inspect"],
        paper="planner alone (GPT-4o rewrites): 0.60",
    ),
    Row(
        "loop",
        "full loop (default: inspect, no corrections)",
        "process",
        "the shipped checkpoint and loop as `sketchloop generate` runs it: the learned model alone (plans and "
        "regions under the output's syntax only, greedy), the inspector's verdict by the model's self-check (two "
        "flow calls per region), no corrections, so its images are the plan + sketch row's",
        ["--generator", "staged"],
        paper="staged fine-tune: 0.83 at 131 flow steps; both kinds of inspect supervision: count 0.75 / "
        "position 0.72 / colour attr 0.69",
        per_stage=True,
    ),
    Row(
        "loop-check-r2",
        "full loop, up to 2 corrections per step by the self-check",
        "process",
        "the shipped checkpoint and loop (the model alone) with `--max-refines 2`: a step the self-check flags is "
        "planned again "
        "(a plan conflict) or its regions redrawn with new noise on the canvas before it (an image conflict)",
        ["--generator", "staged", "--max-refines", "2"],
        per_stage=True,
    ),
    Row(
        "loop-guided",
        "full loop under the world's decode rules",
        "process",
        "the shipped checkpoint and loop with `--guided`: the phrase grammar copies the prompt's noun phrases and "
        "relations and ends the plan, the region grammar places regions where the world's relation geometry holds "
        'and leaves room for what is still to come, every plan adds (docs/design.md, "Decode rules"); the rules '
        "read the prompt's words, so this row is not the learned model alone (its seconds were measured beside "
        "other jobs on the 2 cores)",
        ["--generator", "staged", "--guided"],
        guided=True,
        benchmarks=PLANAR_BENCHMARKS,
    ),
    Row(
        "best-of-2-model",
        "best-of-2 plan + sketch, own inspector chooses (the model alone)",
        "process",
        "2 samples of the plan + sketch row (the learned model alone; each sample its own seed), the inspector "
        "keeping the one it doubts least: the smallest N, at 1.2-1.7 times the flow steps of the loop with 2 "
        "corrections (the paper's PARM comparison, at more compute than the loop's)",
        ["--generator", "staged", "--best-of", "2"],
        paper="PARM best-of-20: 0.77 at 1000 flow steps",
    ),
    Row(
        "best-of-2",
        "best-of-2 plan + sketch, own inspector chooses",
        "process",
        "2 samples of the plan + sketch row, the inspector keeping the one it doubts least: about the flow steps of "
        "the loop with 2 corrections (the paper's PARM comparison at equal compute); an earlier checkpoint and "
        "sampler (regions without the look-ahead, whole crops pasted back)",
        ["--generator", "staged", "--best-of", "2"],
        paper="PARM best-of-20: 0.77 at 1000 flow steps",
        frozen="58bcad2",
        guided=True,
    ),
    Row(
        "inspector-only",
        "inspector only: best-of-4 text-to-image",
        "process",
        "4 images of the text-to-image baseline, an earlier stage-3 checkpoint's inspector (reading the prompt and "
        "the canvas, no plan) keeping the one it doubts least; no planner",
        ["--generator", "t2i", "--checkpoint", "{runs}/t2i", "--best-of", "4"],
        paper="inspector alone: 0.80",
        frozen="19fe257",
    ),
    Row(
        "loop-edits",
        "ablation: the planner's edit steps allowed",
        "ablation",
        "the shipped checkpoint and loop with `--edit-steps`: a plan may change, move or remove what earlier "
        "steps drew, as the training trajectories' detours do (`build --edit-ops 0.25`); its planner never reads "
        "the canvas, so such an edit is never asked for by what was drawn",
        ["--generator", "staged", "--edit-steps"],
        per_stage=True,
        frozen="d16b90c",
        guided=True,
    ),
    Row(
        "abl-edit0",
        "ablation: instruction diversity (`--edit-ops 0`)",
        "ablation",
        "the shipped recipe on trajectories built with `--edit-ops 0` (every group added, none moved, recoloured "
        "or removed), `EDIT_OPS=0 SHIP=0 bash scripts/train_shipped.sh RUNS/edit0`; the default loop",
        ["--generator", "staged", "--checkpoint", "{runs}/edit0/s4"],
        paper="additive-only: position 0.58 / colour attr 0.50 (with modify/swap/remove 0.67 / 0.62)",
        per_stage=True,
        frozen="d16b90c",
        guided=True,
    ),
    Row(
        "abl-both",
        "ablation reference: both kinds of inspect supervision",
        "ablation",
        "an earlier recipe's stage-3 checkpoint (self-sampled inspect data with plan and image conflicts), the "
        "text inspector's verdict, up to 2 corrections, regions free, whole crops pasted back: the reference the "
        "four inspect-supervision ablations below change one thing of",
        ["--generator", "staged", "--checkpoint", "{runs}/recipe/s3", "--max-refines", "2", "--free-regions"],
        paper="text- and image-side inspect supervision: count 0.75 / position 0.72 / colour attr 0.69",
        frozen="58bcad2",
        guided=True,
    ),
    Row(
        "abl-none",
        "ablation: no inspect supervision",
        "ablation",
        "the reference's recipe from its stage-1 checkpoint, with the inspect data left out (1,000 plan-sketch + "
        "800 joint steps on trajectories only); the reference's loop",
        ["--generator", "staged", "--checkpoint", "{runs}/none-s3", "--max-refines", "2"],
        paper="none: count 0.61 / position 0.66 / colour attr 0.62",
        frozen="19fe257",
        guided=True,
    ),
    Row(
        "abl-none-ps",
        "ablation: no inspect supervision, plan + sketch",
        "ablation",
        "the no-inspect-supervision checkpoint above, drawn without inspection (so without corrections): how "
        "well its extra 1,000 + 800 steps on trajectories draw, apart from what its untrained inspector triggers",
        ["--generator", "staged", "--checkpoint", "{runs}/none-s3", "--no-inspect"],
        frozen="842a520",
        guided=True,
    ),
    Row(
        "abl-plan",
        "ablation: plan conflicts only",
        "ablation",
        "the reference's inspect data without its image conflicts (2,246 of 3,000 examples), same steps and loop",
        ["--generator", "staged", "--checkpoint", "{runs}/plan-s3", "--max-refines", "2"],
        paper="(not in the paper)",
        frozen="19fe257",
        guided=True,
    ),
    Row(
        "abl-image",
        "ablation: image conflicts only",
        "ablation",
        "the reference's inspect data without its plan conflicts (2,262 of 3,000), same steps and loop",
        ["--generator", "staged", "--checkpoint", "{runs}/image-s3", "--max-refines", "2"],
        paper="(not in the paper)",
        frozen="19fe257",
        guided=True,
    ),
    Row(
        "abl-symbolic",
        "ablation: symbolic critiques",
        "ablation",
        "3,000 inspect examples from perturbed teacher trajectories judged on the scene graph (plan conflicts "
        "only) instead of the model's own, same steps and loop",
        ["--generator", "staged", "--checkpoint", "{runs}/sym-s3", "--max-refines", "2", "--free-regions"],
        paper="symbolic: position 0.70 / colour attr 0.67 (self-sampled 0.72 / 0.69)",
        frozen="58bcad2",
        guided=True,
    ),
]

ROWS.append(
    Row(
        "oracle",
        "ORACLE: ShapesWorld's parser, layout sampler and renderer (an upper bound, no model)",
        "upper bound",
        "the same benchmarks, seeds and scoring; the prompt parsed, laid out and rendered exactly: what every "
        "benchmark allows at most, and the check that every prompt is drawable and scorable",
        ["--generator", "oracle"],
        paper="(not in the paper)",
        benchmarks=BENCHMARKS,
    )
)

# per-stage settings (process_metrics.py --set) of the eval flags rows use
FLAG_SETTINGS = {
    "--edit-steps": "edit_steps=true",
    "--free-regions": "relate_regions=false",
    "--free-plans": "copy_phrases=false",
    "--allow-overlap": "separate=false",
    "--text-verdict": "self_check=false",
}

NOT_YET: list[tuple[str, str]] = [  # rows scripted but not measured yet: (row, how to measure it)
    (
        "text-to-image on shapes-wise, shapes-depth and shapes-parts",
        "its weights predate the knowledge, depth and points words; `bash scripts/train_paper_rows.sh` retrains it on "
        "the current recipe's data, then `--run --row t2i --benchmark shapes-depth`",
    ),
    (
        "the GUIDED loop on shapes-depth and shapes-parts",
        "the world's decode rules know only the planar relations and no points; `--guided` refuses such a prompt",
    ),
]


PAPER = """| the paper (BAGEL-7B, GenEval) | overall | position | colour attr | flow steps |
|---|---|---|---|---|
| BAGEL-7B, single pass | 0.77 | 0.51 | 0.56 | 50 |
| planner alone (GPT-4o rewrites the prompt) | 0.60 | | | |
| inspector alone | 0.80 | | | |
| PARM (best-of-20 with a critic) | 0.77 | | | 1000 |
| staged fine-tune (full loop) | 0.83 | 0.72 | 0.69 | 131 |
| ablation: additive-only steps | | 0.58 | 0.50 | |
| ablation: + modify/swap/remove | | 0.67 | 0.62 | |
| ablation: + self-sampled critiques | | 0.72 | 0.69 | |
| ablation: symbolic critiques instead | | 0.70 | 0.67 | |
| ablation: no inspect supervision (count 0.61) | | 0.66 | 0.62 | |
| ablation: text- and image-side inspect supervision (count 0.75) | | 0.72 | 0.69 | |
"""


def trained_weights(row: Row) -> str | None:
    """The folder under --runs whose weights the row evaluates (its `--checkpoint {runs}/X`), or
    None for the shipped model."""
    if "--checkpoint" not in row.args:
        return None
    path = row.args[row.args.index("--checkpoint") + 1]
    return path.removeprefix("{runs}/") if path.startswith("{runs}/") else None


def result_path(row: Row, bench: str) -> Path:
    return OUT / f"{row.id}-{bench}.json"


def missing_checkpoint(row: Row, runs: Path) -> Path | None:
    if trained_weights(row) is None:
        return None
    path = runs / trained_weights(row)
    state = path / "trainer" / "state.json"
    if state.is_file():  # a training run: finished when its last step is saved
        saved = json.loads(state.read_text())
        return None if saved["step"] >= saved["train"]["steps"] else path
    return None if (path / "model.safetensors").is_file() else path


def run_row(row: Row, bench: str, runs: Path, workers: int, images: Path) -> None:
    """`sketchloop eval` for one row and benchmark, into its result file."""
    args = [a.replace("{runs}", str(runs)) for a in row.args]
    cmd = [
        "sketchloop",
        "eval",
        "--benchmark",
        bench,
        *args,
        "--images-per-prompt",
        "1",
        "--workers",
        str(workers),
        "--out",
        str(result_path(row, bench)),
        "--images-out",
        str(images / f"{row.id}-{bench}"),
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_per_stage(row: Row, runs: Path) -> dict:
    """Per-stage metrics of a row's loop (every 3rd prompt of shapes-complex and shapes-geneval)."""
    args = [a.replace("{runs}", str(runs)) for a in row.args]
    import tempfile

    out = Path(tempfile.mkdtemp()) / "per-stage.json"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "process_metrics.py"),
        "--every",
        "3",
        "--benchmark",
        "shapes-complex",
        "--benchmark",
        "shapes-geneval",
        "--out",
        str(out),
    ]
    if "--checkpoint" in args:
        cmd += ["--checkpoint", args[args.index("--checkpoint") + 1]]
    if "--max-refines" in args:
        cmd += ["--max-refines", args[args.index("--max-refines") + 1]]
    for flag, setting in FLAG_SETTINGS.items():
        if flag in args:
            cmd += ["--set", setting]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def load(row: Row, bench: str) -> dict | None:
    path = result_path(row, bench)
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def write_table(rows: list[Row], per_stage: dict, runs: Path) -> str:
    results = {(r.id, b): load(r, b) for r in rows for b in BENCHMARKS}
    lines = [
        "# The paper's table in ShapesWorld",
        "",
        "Written by `python scripts/paper_table.py` from the result files in `docs/paper/` (each made by the "
        "`sketchloop eval` command in the last section). Every row: the same held-out benchmarks (`shapes-"
        "geneval` 553 prompts, `shapes-complex` 300, `shapes-generalise` 150, `shapes-wise` 300 knowledge "
        "prompts, `shapes-depth` 300 and `shapes-parts` 300; no scene of theirs in any training data), one "
        "image per prompt with the same seeds, GenEval's rules with ShapesWorld's detector, compute per final"
        " image on this 2-core CPU (2 worker processes). No row runs a scorer inside generation. The "
        "machine's speed varied by up to 2.1x between runs, so seconds compare only among rows measured "
        "together; flow steps compare everywhere. A row marked *frozen* was measured at the git commit it "
        "names, with that commit's sampler and weights (a switch or checkpoint this version no longer has); "
        "its numbers stay as measured, and `git checkout COMMIT` reruns its command.",
        "",
        "## Ours",
        "",
        "| row | geneval | position | colour attr | counting | complex | generalise | wise (facts seen / text "
        "only / held out) | depth | parts | flow steps (geneval / complex) | images (complex) | text tokens "
        "(complex) | s/image (complex) | the paper's matching row (GenEval) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    left_out = []
    for row in rows:
        g, c, s, w, d, p = (results[(row.id, b)] for b in BENCHMARKS)
        wt = w["tasks"] if w else {}
        wise = (
            f"{fmt(w['overall'])} ({fmt(wt.get('wise-trajectory'), 2)} / {fmt(wt.get('wise-text'), 2)} / "
            f"{fmt(wt.get('wise-heldout'), 2)})"
            if w
            else "–"
        )
        if g is None and c is None:
            why = (
                f"its checkpoint {missing_checkpoint(row, runs)} is not trained (yet)"
                if missing_checkpoint(row, runs)
                else "not evaluated yet (--run)"
            )
            left_out.append(f"{row.label}: {why}")
            continue
        gt = g["tasks"] if g else {}
        cc = c.get("compute", {}) if c else {}
        lines.append(
            f"| {row.title} | **{fmt(g and g['overall'])}** | {fmt(gt.get('position'))} | "
            f"{fmt(gt.get('color_attr'))} | {fmt(gt.get('counting'))} | **{fmt(c and c['overall'])}** | "
            f"{fmt(s and s['overall'])} | {wise} | {fmt(d and d['overall'])} | {fmt(p and p['overall'])} | "
            f"{fmt(g and g.get('compute', {}).get('flow_steps'), 1)} / "
            f"{fmt(cc.get('flow_steps'), 1)} | {fmt(cc.get('images'), 2)} | {fmt(cc.get('text_tokens'), 0)} | "
            f"{fmt(cc.get('seconds'), 2)} | {row.paper or '–'} |"
        )
    lines += ["", "What each row holds equal with the shipped loop, and what it changes:", ""]
    lines += [f"- **{r.title}**: {r.holds}." for r in rows]
    if left_out:
        lines += ["", "Rows not in the table yet: " + "; ".join(left_out) + "."]
    if NOT_YET:
        lines += ["", "Not measured yet: " + "; ".join(f"{a} ({b})" for a, b in NOT_YET) + "."]
    lines += [
        "",
        "## The paper's numbers (for the shape of the comparison, not the values)",
        "",
        PAPER,
        "## Per stage (outside the loop, every 3rd prompt; `scripts/process_metrics.py`)",
        "",
        "| row | benchmark | plan accuracy (each step's `<des>`) | last `<des>` = prompt | sketch fidelity | "
        "recall, plan conflicts | recall, image conflicts | false alarms | precision | fixed (wrong -> right) | "
        "broken (right -> wrong) | inspections per image | wrong images: in the plan / regions / drawing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for bench, m in per_stage.get(row.id, {}).items():
            plan_acc = 1 - m["plan_conflicts"] / m["inspections"] if m["inspections"] else None
            fixed = f"{fmt(m['fix_rate'], 2)} of {m['refined_wrong']}" if m["refined_wrong"] else "–"
            broken = f"{fmt(m['break_rate'], 2)} of {m['refined_right']}" if m["refined_right"] else "–"
            lines.append(
                f"| {row.title} | {bench} | {fmt(plan_acc, 2)} | {fmt(m['plan_copy_rate'], 2)} | "
                f"{fmt(m['sketch_fidelity'], 2)} | {fmt(m['recall_plan_conflicts'], 2)} | "
                f"{fmt(m['recall_image_conflicts'], 2)} | {fmt(m['false_alarm_rate'], 2)} | "
                f"{fmt(m['inspector_precision'], 2)} | {fixed} | {broken} | "
                f"{fmt(m['inspections'] / m['trajectories'], 2)} | {_split(m)} |"
            )
    lines += [
        "",
        "Wrong in the plan: the last `<des>` is not the prompt's scene, or an earlier one contradicts the "
        "prompt (evaluation/process.py `failure_stage`). Rows frozen at an earlier commit were split by the "
        "last `<des>` alone, so they count an image drawn after a contradicting middle step as wrong in "
        "the regions.",
        "",
        "## Commands",
        "",
        "```bash",
        "bash scripts/train_paper_rows.sh runs/paper   # the rows' own weights (resumable)",
    ]
    for row in rows:
        for bench in BENCHMARKS:
            if results[(row.id, bench)] is not None:
                args = " ".join(a.replace("{runs}", "runs/paper") for a in row.args)
                lines.append(
                    (f"# at commit {row.frozen}: " if row.frozen else "")
                    + f"sketchloop eval --benchmark {bench} {args} --images-per-prompt 1 --workers 2 "
                    f"--out {result_path(row, bench).relative_to(ROOT)}"
                )
    lines += ["python scripts/paper_table.py", "```", ""]
    return "\n".join(lines)


def _split(m: dict) -> str:
    """Where the wrong final images went wrong (evaluation/process.py `failure_stage`), as shares
    of all images, with those whose regions overlap; "–" for a row measured before the split was."""
    if m.get("final_right") is None:
        return "–"
    regions = fmt(m["wrong_in_regions"], 2)
    if m.get("wrong_in_regions_overlapping") is not None:  # measured since the overlap count came
        regions += f" ({fmt(m['wrong_in_regions_overlapping'], 2)} overlapping)"
    return " / ".join([fmt(m["wrong_in_plan"], 2), regions, fmt(m["wrong_in_drawing"], 2)])


def _label_points(ax, names: dict[tuple[float, float], list[str]]) -> None:
    """Each spot's row ids beside it; a label that would overlap one already placed moves down
    (in axes fractions) and points at its spot with a thin line."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    placed: list[tuple[float, float, float]] = []  # left, right, height of each label
    for (x, y), ids in sorted(names.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        text = " = ".join(ids)
        fx, fy, width = (x - x0) / (x1 - x0) + 0.012, (y - y0) / (y1 - y0) + 0.015, 0.014 * len(text)
        while any(fx < right and left < fx + width and abs(fy - py) < 0.045 for left, right, py in placed):
            fy -= 0.045
        placed.append((fx, fx + width, fy))
        moved = abs(fy - (y - y0) / (y1 - y0) - 0.015) > 1e-9
        ax.annotate(
            text,
            (x, y),
            xytext=(fx, fy),
            textcoords="axes fraction",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if moved else None,
        )


def plot(rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 6.4))
    markers = {"baseline": "s", "process": "o", "ablation": "^"}
    for ax, bench in zip(axes, PLOTTED):
        names: dict[tuple[float, float], list[str]] = {}  # rows on one spot share one label
        for i, row in enumerate(rows):
            r = load(row, bench)
            if r is None or "flow_steps" not in r.get("compute", {}):  # the ORACLE runs no model
                continue
            x, y = r["compute"]["flow_steps"], r["overall"]
            color = plt.cm.tab20(i % 20)
            ax.scatter(
                x,
                y,
                marker=markers[row.group],
                s=60,
                facecolors="none" if i % 2 else color,
                edgecolors=color,
                linewidths=1.5,
                label=row.label + (" [GUIDED]" if row.guided else ""),
            )
            names.setdefault((round(x), round(y, 2)), []).append(row.id)
        ax.set_ylim(0, 1.08)
        _label_points(ax, names)
        ax.set_title(bench)
        ax.set_xlabel("flow steps per final image")
        ax.set_ylabel("accuracy (GenEval rules)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.3, 1, 1))
    fig.savefig(OUT / "accuracy-vs-flow-steps.png", dpi=110)
    plt.close(fig)

    shown = [r for r in rows if load(r, "shapes-geneval") is not None]
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / max(1, len(shown))
    for i, row in enumerate(shown):
        tasks = load(row, "shapes-geneval")["tasks"]
        ax.bar(
            [t + i * width for t in range(len(GENEVAL_TASKS))],
            [tasks[t] for t in GENEVAL_TASKS],
            width,
            label=row.label + (" [GUIDED]" if row.guided else ""),
            color=plt.cm.tab20(i % 20),
        )
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(GENEVAL_TASKS))], GENEVAL_TASKS)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("shapes-geneval per task")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(OUT / "geneval-tasks.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="evaluate the rows whose result files are missing")
    ap.add_argument("--row", action="append", help="only these rows (ids: " + ", ".join(r.id for r in ROWS) + ")")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper", help="where the rows' own weights are")
    ap.add_argument("--images", type=Path, default=None, help="where evaluated images go (default RUNS/images)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--benchmark", action="append", choices=BENCHMARKS, help="--run: only these benchmarks")
    args = ap.parse_args()
    rows = [r for r in ROWS if not args.row or r.id in args.row]
    unknown = set(args.row or []) - {r.id for r in ROWS}
    if unknown:
        sys.exit(f"error: unknown row {', '.join(sorted(unknown))}; rows: {', '.join(r.id for r in ROWS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    stages_file = OUT / "per-stage.json"
    per_stage = json.loads(stages_file.read_text()) if stages_file.is_file() else {}
    if args.run:
        for row in rows:
            if row.frozen:
                print(f"skip {row.id}: frozen at commit {row.frozen}", flush=True)
                continue
            if missing_checkpoint(row, args.runs):
                print(
                    f"skip {row.id}: {missing_checkpoint(row, args.runs)} not trained "
                    f"(bash scripts/train_paper_rows.sh {args.runs})",
                    flush=True,
                )
                continue
            for bench in args.benchmark or row.benchmarks:
                if bench in row.benchmarks and not result_path(row, bench).is_file():
                    run_row(row, bench, args.runs, args.workers, args.images or args.runs / "images")
            if row.per_stage and row.id not in per_stage:
                per_stage[row.id] = run_per_stage(row, args.runs)
                stages_file.write_text(json.dumps(per_stage, indent=1))
    every = [r for r in ROWS if r in rows or any(result_path(r, b).is_file() for b in BENCHMARKS)]
    (DOCS / "paper-table.md").write_text(write_table(every, per_stage, args.runs))
    plot(every)
    print(f"wrote {DOCS / 'paper-table.md'}, {OUT / 'accuracy-vs-flow-steps.png'}, {OUT / 'geneval-tasks.png'}")


if __name__ == "__main__":
    main()
