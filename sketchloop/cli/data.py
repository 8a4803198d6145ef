"""`sketchloop data ...`: build, subset, rewrite, export and look at staged training data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SketchloopError
from .common import console

data_app = typer.Typer(no_args_is_help=True, help="Build and look at staged training data.")


@data_app.command("build")
def data_build(
    kind: str = typer.Option(
        ...,
        help="trajectories, inspect, refine, facts (the knowledge base's text corpus), corrections (a "
        "--checkpoint's own plans with the teacher's regions) or plans (text-only trajectories: regions, no images)",
    ),
    n: int = typer.Option(..., help="number of examples"),
    out: Path = typer.Option(..., help="output folder (re-run to resume)"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(1, help="processes"),
    edit_ops: float = typer.Option(
        0.25, help="share of groups drawn through modify/move/swap/remove (0 = the paper's additive-only ablation)"
    ),
    shard_size: int = typer.Option(500, help="examples per parquet shard"),
    checkpoint: Optional[Path] = typer.Option(
        None,
        help="inspect: a model checkpoint whose own plans are judged (self-sampled; default symbolic); "
        "corrections: the model whose own plans get the teacher's regions",
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="with --checkpoint: a sampling setting NAME=VALUE its rollouts use instead of its sampling.json's "
        "(guided=true: under the world's decode rules; default: the learned model alone)",
    ),
    wording: float = typer.Option(
        0.0,
        help="trajectories: the share of prompts worded as people write them (synonyms, relations either way "
        "round, bare back-references, 'a photo of' or not; the plans stay canonical)",
    ),
    knowledge: float = typer.Option(
        0.0,
        help="trajectories (or inspect with --checkpoint): the share of prompts that name one colour, count or "
        "shape through a fact ('a circle the colour of a ripe banana'; trajectory-split facts of "
        "world/knowledge.csv)",
    ),
    depth: float = typer.Option(
        0.0, help="the share of ShapesWorld scenes with a pair in depth ('a red circle in front of a blue square')"
    ),
    parts: float = typer.Option(
        0.0, help="the share of ShapesWorld scenes with stars of a counted number of points ('a star with six points')"
    ),
    counts: float = typer.Option(
        0.0, help="the share of ShapesWorld scenes of one or two groups, every one counted ('three red circles')"
    ),
    trees: float = typer.Option(
        0.0,
        help="the share of ShapesWorld scenes of four or five groups related in a tree, many counted (as "
        "shapes-trees; with --wording, several relations often start from one group)",
    ),
    own_regions: int = typer.Option(
        0,
        help="corrections: label each step with the model's own right regions, or the first right one of N "
        "region sets it samples for the step's words, before the layout sampler's (0: the layout sampler's)",
    ),
    relabel: str = typer.Option(
        "regions",
        help="corrections: regions (the model's own plans with the teacher's regions for a step) or plans "
        "(its own history up to its first wrong plan, then the teacher's next step there: DAgger on the plans) "
        "or replans (the same with the wrong plan before the step as the rejected one: a replanner's examples)",
    ),
    own_conflicts: bool = typer.Option(
        False,
        help="inspect with --checkpoint: every conflict is the model's own, found anywhere in its rollouts "
        "(no perturbed plans or images)",
    ),
    planned_layouts: bool = typer.Option(
        False,
        help="ShapesWorld's step writer plans each layout (every group at the free spot nearest its cell in the "
        "relation tree) rather than drawing it uniformly from the free spots",
    ),
    linked_order: bool = typer.Option(
        False,
        help="ShapesWorld's step writer adds the first-named group, then each time the first-named group "
        "related to one drawn (one relation per step in a tree), rather than relation targets first",
    ),
    recall_facts: bool = typer.Option(
        False,
        help="with --knowledge: the step that adds the group a prompt names through a fact states the fact first, "
        "as the facts corpus does ('a ripe banana is yellow ; add a yellow circle')",
    ),
    teacher: Optional[str] = typer.Option(
        None, help="openai:MODEL: a chat/vision model decomposes prompts, writes steps and judges (with --editor)"
    ),
    editor: Optional[str] = typer.Option(
        None, help="diffusers:REPO_OR_PATH: the image-editing pipeline that draws each step (with --teacher)"
    ),
    prompts: Optional[Path] = typer.Option(
        None,
        help="with --teacher: prompts to decompose, a GenEval "
        "JSONL or a text file (one per line); default: "
        "ShapesWorld's random scenes",
    ),
    first_step: Optional[str] = typer.Option(
        None, help="diffusers:REPO_OR_PATH: a text-to-image pipeline for the first step"
    ),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server for --teacher"),
    templates: Optional[Path] = typer.Option(
        None, help="folder of prompt templates overriding the teacher's (decomposer.md, step_writer.md, ...)"
    ),
    image_size: int = typer.Option(1024, help="--editor: side of the images it writes"),
    steps: int = typer.Option(28, help="--editor: flow steps per image"),
    guidance: Optional[float] = typer.Option(None, help="--editor: guidance scale (default: the pipeline's)"),
    device: Optional[str] = typer.Option(None, help="--editor: cuda, cpu, ..."),
    dtype: Optional[str] = typer.Option(None, help="--editor: bfloat16, float16 or float32"),
    engine: str = typer.Option(
        "local",
        help="local (worker processes) or ray (Ray actors: one per "
        "GPU with --editor, else per CPU; --workers sets how many)",
    ),
    address: Optional[str] = typer.Option(
        None,
        help="--engine ray: the cluster's address (ray start --head prints it; 'auto' finds it); default: a local Ray",
    ),
) -> None:
    """Synthesise staged training data: ShapesWorld's exact teachers, or a chat model and an editing pipeline."""
    from ..data.build import build
    from ..models.sampling import parse_settings

    spec = None
    if (teacher is None) != (editor is None):
        raise SketchloopError(
            "--teacher openai:MODEL and --editor diffusers:REPO_OR_PATH go together (real teachers), "
            "or neither (ShapesWorld's exact teachers)"
        )
    if teacher is not None:
        from ..backends.chat import parse_role_spec
        from ..backends.diffusers_editor import parse_pipeline_spec

        parse_pipeline_spec(editor or "")
        spec = {
            "model": parse_role_spec(teacher)[1],
            "base_url": base_url,
            "editor": editor,
            "first_step": first_step,
            "templates": str(templates) if templates else None,
            "prompts_file": str(prompts) if prompts else None,
            "image": {"size": image_size, "steps": steps, "guidance": guidance, "device": device, "dtype": dtype},
            "prompts": _read_prompts(prompts) if prompts else None,
        }
    elif prompts or first_step or templates:
        raise SketchloopError("--prompts, --first-step and --templates are for real teachers (--teacher and --editor)")
    summary = build(
        kind,
        n,
        out,
        seed=seed,
        workers=workers,
        edit_ops=edit_ops,
        shard_size=shard_size,
        checkpoint=checkpoint,
        teacher=spec,
        engine=engine,
        address=address,
        sampling=parse_settings(settings),
        wording=wording,
        knowledge=knowledge,
        depth=depth,
        parts=parts,
        counts=counts,
        trees=trees,
        own_regions=own_regions,
        own_conflicts=own_conflicts,
        planned_layouts=planned_layouts,
        relabel=relabel,
        linked_order=linked_order,
        recall_facts=recall_facts,
    )
    rate = summary["examples_per_second"]
    console.print(
        f"{summary['examples']} examples in {out}; {summary['mean_intermediate_images']:.2f} "
        f"images per example on average; judge: {summary['steps_redrawn']} steps redrawn, "
        f"{summary['trajectories_dropped']} trajectories dropped"
        + (f"; {rate:.1f} examples/s" if rate else "; nothing left to build")
    )


def _read_prompts(path: Path) -> list[str]:
    """Prompts from a GenEval metadata JSONL (its 'prompt' fields) or a text file (one per line)."""
    if not path.is_file():
        raise SketchloopError(f"--prompts {path}: no such file")
    if path.suffix == ".jsonl":
        from ..evaluation.benchmark import load_benchmark

        return [m["prompt"] for m in load_benchmark(str(path))]
    found = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not found:
        raise SketchloopError(f"--prompts {path} holds no prompts")
    return found


@data_app.command("subset")
def data_subset(
    source: Path = typer.Argument(..., help="an inspect dataset folder"),
    out: Path = typer.Option(..., help="a new folder for the subset"),
    target: list[str] = typer.Option(
        ..., help="keep examples of this target: consistent, plan or image (repeat the option)"
    ),
) -> None:
    """Keep the inspect examples of some targets (the inspect-supervision ablation: plan or image conflicts only)."""
    from ..data.build import subset

    if not source.is_dir():
        raise SketchloopError(f"dataset {source} does not exist")
    n = subset(source, out, target)
    console.print(f"wrote {out}: {n} inspect examples ({', '.join(sorted(target))})")


@data_app.command("one-step")
def data_one_step(
    source: Path = typer.Argument(..., help="a trajectories dataset folder"),
    out: Path = typer.Option(..., help="a new folder for the one-step trajectories"),
) -> None:
    """Rewrite trajectories as one step each (the one-shot layout baseline): one <ins>/<des> for the whole
    scene, one image with every object, the same scenes and final images."""
    from ..data.build import one_step

    if not source.is_dir():
        raise SketchloopError(f"dataset {source} does not exist")
    n = one_step(source, out)
    console.print(f"wrote {out}: {n} one-step trajectories")


@data_app.command("export")
def data_export(
    datasets: list[Path] = typer.Argument(..., help="dataset folders from 'sketchloop data build'"),
    out: Path = typer.Option(..., help="a new folder for the export"),
    format: str = typer.Option(
        "bagel",
        "--format",
        help="bagel: BAGEL's t2i_pretrain, unified_edit and vlm_sft kinds, plus an interleaved kind",
    ),
    path_prefix: Optional[str] = typer.Option(
        None, help="where OUT will be on the training machine (default: its absolute path here)"
    ),
) -> None:
    """Export datasets for another trainer (BAGEL: parquet + JSONL, DATASET_INFO entries and a YAML config)."""
    from ..data.export import export_bagel

    if format != "bagel":
        raise SketchloopError(f"--format {format!r}: the export format is bagel")
    for d in datasets:
        if not d.is_dir():
            raise SketchloopError(f"dataset {d} does not exist")
    counts = export_bagel(datasets, out, path_prefix)
    console.print(
        f"wrote {out}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; see {out}/README.md, {out}/dataset_info.json and {out}/dataset_config.yaml",
        highlight=False,
    )


@data_app.command("show")
def data_show(
    directory: Path = typer.Argument(..., help="a dataset folder"),
    index: int = typer.Option(0, help="which example"),
    out: Path = typer.Option(..., help="HTML file to write"),
) -> None:
    """Write one example as a page of images and texts."""
    from ..data.schema import read_dataset
    from ..io import atomic_write_text
    from ..pages.dataset import example_html

    table = read_dataset(directory)
    if not 0 <= index < table.num_rows:
        raise SketchloopError(f"--index {index}: the dataset has examples 0 to {table.num_rows - 1}")
    atomic_write_text(out, example_html(table.slice(index, 1).to_pylist()[0]))
    console.print(f"wrote {out}")
