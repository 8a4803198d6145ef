"""`sketchloop eval`: score images by GenEval's rules, generating them first with --generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import SketchloopError
from ..loop.staged import DEFAULT_MAX_REFINES
from . import options as o
from .common import console

MODEL_GENERATORS = ("staged", "single")
WORLD_GENERATORS = ("staged", "single", "oracle", "oracle-staged")


def eval_command(
    benchmark: Optional[str] = typer.Option(
        None,
        help="a shipped benchmark (shapes-geneval, shapes-complex, ...) or "
        "a GenEval JSONL file (with --images: optional, checks the "
        "folder's prompts)",
    ),
    generator: Optional[str] = typer.Option(
        None,
        help="staged or single (the model), t2i (the text-to-image "
        "baseline, with --checkpoint), oracle or oracle-staged",
    ),
    images: Optional[Path] = typer.Option(None, help="folder of images in GenEval's layout to score"),
    images_per_prompt: int = typer.Option(4, help="images per prompt (GenEval: 4)"),
    limit: Optional[int] = typer.Option(None, help="score only the first N prompts"),
    out: Optional[Path] = typer.Option(None, help="write the results JSON here"),
    images_out: Optional[Path] = typer.Option(
        None, help="with --generator: where to save the images (default sketchloop-eval/BENCHMARK-GENERATOR-ID)"
    ),
    seed: int = typer.Option(0, help="base seed; sample j of prompt i uses a seed derived from (seed, i, j)"),
    size: int = typer.Option(64, help="canvas side for generated images"),
    checkpoint: o.Checkpoint = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    max_iters: o.MaxIters = 8,
    max_refines: o.MaxRefines = DEFAULT_MAX_REFINES,
    separate: o.Separate = None,
    copy_phrases: o.CopyPhrases = None,
    relate_regions: o.RelateRegions = None,
    edit_steps: o.EditSteps = None,
    self_check: o.SelfCheck = None,
    guided: o.Guided = None,
    region_beams: o.RegionBeams = None,
    no_inspect: bool = typer.Option(
        False, "--no-inspect", help="staged: plan and sketch only (no inspection, so no correction)"
    ),
    best_of: int = typer.Option(
        1,
        help="N > 1: best-of-N, N images of the generator (staged: without "
        "inspection) and the unified model's inspector keeps the one it doubts least",
    ),
    inspector_checkpoint: Optional[Path] = typer.Option(
        None, help="--best-of: the unified checkpoint whose inspector chooses (default: the shipped one)"
    ),
    workers: int = typer.Option(1, help="processes generating images (one per core)"),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="generate again the samples whose generation failed in an earlier run (default: kept as failed)",
    ),
    pages: int = typer.Option(
        0,
        help="staged/single/oracle-staged: keep the trajectory page of every sample of the "
        "first N prompts (linked from the folder's index.html)",
    ),
    detector: str = typer.Option(
        "shapes",
        help="shapes (ShapesWorld's pixel detector) or owlv2:MODEL_ID_OR_PATH "
        "(real photos: OWLv2 boxes + CLIP colours, e.g. "
        "owlv2:google/owlv2-base-patch16-ensemble)",
    ),
    clip: str = typer.Option("openai/clip-vit-large-patch14", help="owlv2 detector: the CLIP model for colours"),
    threshold: Optional[float] = typer.Option(None, help="detection threshold (default: the detector's; GenEval 0.3)"),
    counting_threshold: Optional[float] = typer.Option(
        None, help="counting-task threshold (default: the detector's; GenEval 0.9)"
    ),
    device: o.Device = None,
    planner: o.Planner = None,
    inspector: o.Inspector = None,
    base_url: o.BaseUrl = None,
    templates: o.Templates = None,
) -> None:
    """Score images by GenEval's rules: generate them with --generator or read them with --images."""
    from ..evaluation.benchmark import load_benchmark
    from ..evaluation.run import evaluate, generate_images, generate_images_parallel
    from ..generators import get_generator, record_id
    from ..io import atomic_write_text

    if (generator is None) == (images is None):
        raise SketchloopError("give exactly one of --generator NAME or --images DIR")
    if images_per_prompt < 1 or (limit is not None and limit < 1):
        raise SketchloopError("--images-per-prompt and --limit must be at least 1")
    settings = o.sampling_settings(
        steps, guidance, separate, copy_phrases, relate_regions, edit_steps, self_check, guided, region_beams
    )
    prompts = load_benchmark(benchmark) if benchmark else None
    if prompts is not None and limit:
        prompts = prompts[:limit]
    generation = None
    header: dict[str, Any] = {"benchmark": benchmark, "generator": generator}
    if generator is not None:
        if prompts is None:
            raise SketchloopError("--generator needs --benchmark (shapes-geneval or a JSONL file)")
        if benchmark == "geneval" and generator in WORLD_GENERATORS:
            raise SketchloopError(
                "the geneval benchmark names COCO objects, which ShapesWorld cannot draw; score a "
                "real model's images with --images DIR --benchmark geneval --detector owlv2:MODEL"
            )
        model_args = _generator_args(generator, checkpoint, device, max_iters, max_refines, settings)
        if no_inspect or (best_of > 1 and generator == "staged"):
            if generator != "staged":
                raise SketchloopError("--no-inspect is an option of --generator staged")
            model_args["inspect"] = False
        if best_of > 1:
            if generator not in ("staged", "single", "t2i"):
                raise SketchloopError("--best-of chooses among images of --generator staged, single or t2i")
            model_args.update(best_of=best_of, inspector_checkpoint=inspector_checkpoint)
        elif best_of < 1:
            raise SketchloopError("--best-of must be at least 1")
        elif inspector_checkpoint is not None:
            raise SketchloopError("--inspector-checkpoint is the chooser of --best-of N (N > 1)")
        gen = get_generator(generator, size=size, **model_args)
        specs = o.role_specs(planner, inspector, None, None)
        if any(specs.values()):
            if generator != "staged" or best_of > 1 or workers > 1:
                raise SketchloopError(
                    "--planner / --inspector (a chat model) play their roles in --generator staged, in one "
                    "process (--workers 1: the server batches requests), without --best-of"
                )
            from ..generators.loop import LoopGenerator

            assert isinstance(gen, LoopGenerator)
            roles = o.named_roles(
                gen.roles_factory(), specs, None, 1024, steps, guidance, device, None, base_url, templates
            )
            gen = gen.with_roles(roles, {k: v for k, v in specs.items() if v})
        elif base_url or templates:
            raise SketchloopError("--base-url and --templates are for a chat --planner or --inspector (openai:MODEL)")
        bench_name = Path(benchmark).stem if benchmark else "images"
        images = images_out or Path("sketchloop-eval") / f"{bench_name}-{generator}-{record_id(gen.record)}"
        if workers > 1:
            generation = generate_images_parallel(
                prompts,
                generator,
                {"size": size, **model_args},
                images,
                images_per_prompt,
                seed,
                workers,
                retry_failed=retry_failed,
                pages=pages,
            )
        else:
            generation = generate_images(
                prompts, gen, images, images_per_prompt, seed, retry_failed=retry_failed, pages=pages
            )
        header.update(
            {"made_by": gen.record, "seed": seed, "generated": generation.generated, "reused": generation.reused}
        )
        console.print(
            f"{images}: generated {generation.generated} images, reused {generation.reused} made with "
            f"the same settings" + (f", {generation.failed} failed" if generation.failed else ""),
            highlight=False,
        )
    assert images is not None
    results = evaluate(
        images, _detector(detector, clip, threshold, counting_threshold, device), prompts, limit, generation
    )
    header.update(
        {
            "images_dir": str(images),
            "oracle": bool(generation and any(s["stats"].get("oracle") for s in generation.samples.values())),
            "guided": bool((header.get("made_by", {}).get("sampling") or {}).get("guided")),
        }
    )
    results = {**header, **results}
    print_table(results)
    if generator is not None:
        from ..pages.gallery import write_gallery

        console.print(
            f"open {write_gallery(images, results)} to see every image"
            + (" and the trajectory pages" if pages else ""),
            highlight=False,
        )
    if out:
        atomic_write_text(out, json.dumps(results, indent=1))
        console.print(f"wrote {out}")


def _generator_args(
    generator: str,
    checkpoint: Path | None,
    device: str | None,
    max_iters: int,
    max_refines: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """What the named generator is built with, from the options (each generator takes its own)."""
    if generator in MODEL_GENERATORS:
        return {
            "checkpoint": checkpoint,
            "device": device,
            "max_iters": max_iters,
            "max_refines": max_refines,
            **settings,
        }
    if generator == "t2i":
        return {
            "checkpoint": checkpoint,
            "device": device,
            "flow_steps": settings["flow_steps"] or 16,
            "guidance": 1.0 if settings["guidance"] is None else settings["guidance"],
        }
    if generator == "oracle-staged":
        return {"max_iters": max_iters, "max_refines": max_refines}
    return {}


def _detector(
    spec: str, clip: str, threshold: float | None, counting_threshold: float | None, device: str | None
) -> Any:
    """The detector `eval` scores with: ShapesWorld's, or OWLv2 + CLIP for real photos."""
    from ..world.detect import ShapesDetector

    detector: Any
    if spec == "shapes":
        detector = ShapesDetector()
    else:
        from ..evaluation.photo_detector import OpenVocabDetector, PhotoDetectorSettings

        detector = OpenVocabDetector.from_spec(spec, clip, PhotoDetectorSettings(device=device))
    if threshold is not None:
        detector.threshold = threshold
    if counting_threshold is not None:
        detector.counting_threshold = counting_threshold
    return detector


def print_table(results: dict[str, Any]) -> None:
    """The task table, compute and failures of a results dict, on stdout."""
    from rich.markup import escape

    title = f"GenEval protocol: {results.get('generator') or results.get('images_dir')}"
    if results.get("oracle"):
        title += " (ORACLE: uses the world's parser, layout and renderer; an upper bound)"
    if results.get("guided"):
        title += " (GUIDED: decoded under the world's rules, --guided; not the learned model alone)"
    table = Table(title=title)
    table.add_column("task")
    table.add_column("score", justify="right")
    for tag, score in results["tasks"].items():
        table.add_row(tag, f"{score:.3f}")
    table.add_row("overall", f"{results['overall']:.3f}", style="bold")
    out = Console()
    out.print(table)
    out.print(f"{results['n_prompts']} prompts, {results['n_images']} images, detector: {results['detector']}")
    if results.get("compute"):
        out.print("per final image: " + ", ".join(f"{k} {v:.3g}" for k, v in results["compute"].items()))
    if results.get("n_ignored_folders"):
        out.print(
            f"left out {results['n_ignored_folders']} prompt folders past the benchmark's "
            f"{results['n_prompts']} prompts"
        )
    if results.get("n_failed"):
        errors = "; ".join(f"{n} x {e}" for e, n in list(results["failures"].items())[:3])
        out.print(
            f"[red]{results['n_failed']} of {results['n_images']} images failed to generate "
            f"(scored as wrong):[/red] {escape(errors)}",
            highlight=False,
        )
