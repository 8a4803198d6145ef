"""The `sketchloop` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.table import Table

from .errors import SketchloopError
from .loop.staged import DEFAULT_MAX_REFINES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Process-driven image generation: plan, sketch, inspect, refine.")
console = Console(stderr=True)


def _check_png_path(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise SketchloopError(f"--out {out}: images are written as PNG; give a path ending in .png")


# The region sampling switches `eval` and `generate` share (backends/unified.py SamplingConfig).
_RELATE = "an add's regions meet the relations its own <ins> states (default: on; README)"
_ROOM = ("with --relate-regions, an add's regions also leave room for every object of the prompt still to come, "
         "with its count and relations (default: on; README)")
_KEEP = "paste a drawn crop back only over its region's box (the rest keeps the canvas) or whole (default: box; README)"
_EDITS = ("let a plan change, move or remove what earlier steps drew, as the training trajectories' detours do "
          "(default: every plan adds; a wrong step is corrected only after its inspection; README)")


@app.command()
def render(prompt: str = typer.Argument(..., help="e.g. 'a photo of a red circle above a blue square'"),
           out: Path = typer.Option(..., "--out", help="PNG file to write"),
           seed: int = typer.Option(0, help="layout seed"),
           size: int = typer.Option(64, help="canvas side in pixels"),
           layout: Optional[Path] = typer.Option(None, help="also write the layout as JSON here")) -> None:
    """Render a prompt exactly (parse, lay out, draw): ShapesWorld's ground truth."""
    from .io import atomic_write_text, save_png
    from .world.layout import sample_layout
    from .world.parser import parse_prompt
    from .world.render import render as render_layout

    _check_png_path(out)
    if not 16 <= size <= 4096:
        raise SketchloopError(f"--size {size}: use a canvas between 16 and 4096 pixels")
    graph = parse_prompt(prompt)
    placed = sample_layout(graph, seed)
    save_png(out, render_layout(placed, size))
    if layout:
        atomic_write_text(layout, json.dumps({"scene": graph.to_dict(), "layout": placed.to_dict()}, indent=2))
    console.print(f"wrote {out} ({graph.to_text()})")


@app.command()
def detect(image: Path = typer.Argument(..., help="image file to read")) -> None:
    """Print the objects the ShapesWorld detector finds in an image, as JSON."""
    from .world.detect import ShapesDetector

    detector = ShapesDetector()
    try:
        with Image.open(image) as img:
            detections = detector.detect(img.convert("RGB"))
    except FileNotFoundError:
        raise SketchloopError(f"image {image} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SketchloopError(f"cannot read image {image}: {exc}") from None
    rows = [json.dumps(d.to_dict()) for d in detections]
    print("[\n  " + ",\n  ".join(rows) + "\n]" if rows else "[]")


@app.command("eval")
def eval_command(
    benchmark: Optional[str] = typer.Option(None, help="'shapes-geneval' or a GenEval JSONL file "
                                                      "(with --images: optional, checks the folder's prompts)"),
    generator: Optional[str] = typer.Option(None, help="staged or single (the model), t2i (the text-to-image "
                                                        "baseline, with --checkpoint), oracle or oracle-staged"),
    images: Optional[Path] = typer.Option(None, help="folder of images in GenEval's layout to score"),
    images_per_prompt: int = typer.Option(4, help="images per prompt (GenEval: 4)"),
    limit: Optional[int] = typer.Option(None, help="score only the first N prompts"),
    out: Optional[Path] = typer.Option(None, help="write the results JSON here"),
    images_out: Optional[Path] = typer.Option(None, help="with --generator: where to save the images "
                                                         "(default sketchloop-eval/BENCHMARK-GENERATOR)"),
    seed: int = typer.Option(0, help="base seed; sample j of prompt i uses a seed derived from (seed, i, j)"),
    size: int = typer.Option(64, help="canvas side for generated images"),
    checkpoint: Optional[Path] = typer.Option(None, help="staged/single: model checkpoint (default: the shipped one); "
                                                         "t2i: the baseline's checkpoint"),
    steps: int = typer.Option(16, help="staged/single: Euler flow steps per region drawn (t2i: per image)"),
    guidance: float = typer.Option(1.0, help="staged/single/t2i: classifier-free guidance scale (1 = off)"),
    max_iters: int = typer.Option(8, help="staged: most plan steps per image"),
    max_refines: int = typer.Option(DEFAULT_MAX_REFINES, help="staged, oracle-staged: most corrections per step "
                                                              "(a new plan or a redraw; 0: inspect, never correct; "
                                                              "see README for what they buy)"),
    workers: int = typer.Option(1, help="processes generating images (one per core)"),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="staged: let the planner's regions of one "
                                                                      "step overlap (off: sampled apart)"),
    min_size: Optional[int] = typer.Option(None, help="staged: smallest region size token (4-10) the planner may "
                                                      "write when a larger one fits (default: the sampling default)"),
    free_plans: bool = typer.Option(False, "--free-plans", help="staged: the planner's noun phrases and relations "
                                                                "are its own (off: copied from the prompt's; README)"),
    relate_regions: Optional[bool] = typer.Option(None, "--relate-regions/--free-regions", help="staged: " + _RELATE),
    leave_room: Optional[bool] = typer.Option(None, "--leave-room/--no-room", help="staged: " + _ROOM),
    keep_context: Optional[bool] = typer.Option(None, "--keep-context/--paste-crop", help="staged: " + _KEEP),
    edit_steps: Optional[bool] = typer.Option(None, "--edit-steps/--add-only", help="staged: " + _EDITS),
    inspect_threshold: Optional[float] = typer.Option(None, help="staged: the inspector finds a conflict when its "
                                                                 "P(inconsistent) reaches this (default: sampled; "
                                                                 "scripts/inspector_threshold.py)"),
    self_check: bool = typer.Option(True, "--self-check/--text-verdict", help="staged: the inspector's verdict "
                                    "from the model's own likelihoods of the step (off: the inspection's first word; "
                                    "README)"),
    no_inspect: bool = typer.Option(False, "--no-inspect", help="staged: plan and sketch only (no inspection, so "
                                                                "no correction)"),
    best_of: int = typer.Option(1, help="N > 1: best-of-N, N images of the generator (staged: without "
                                        "inspection) and the unified model's inspector keeps the one it doubts least"),
    inspector_checkpoint: Optional[Path] = typer.Option(None, help="--best-of: the unified checkpoint whose "
                                                                   "inspector chooses (default: the shipped one)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="generate again the samples whose generation "
                                                                    "failed in an earlier run (default: kept as failed)"),
    pages: int = typer.Option(0, help="staged/single/oracle-staged: keep the trajectory page of every sample of the "
                                      "first N prompts (linked from the folder's index.html)"),
    detector: str = typer.Option("shapes", help="shapes (ShapesWorld's pixel detector) or owlv2:MODEL_ID_OR_PATH "
                                                "(real photos: OWLv2 boxes + CLIP colours, e.g. "
                                                "owlv2:google/owlv2-base-patch16-ensemble)"),
    clip: str = typer.Option("openai/clip-vit-large-patch14", help="owlv2 detector: the CLIP model for colours"),
    threshold: Optional[float] = typer.Option(None, help="detection threshold (default: the detector's; GenEval 0.3)"),
    counting_threshold: Optional[float] = typer.Option(None, help="counting-task threshold (default: the "
                                                                  "detector's; GenEval 0.9)"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ...: where the embedded model and an owlv2 "
                                                    "detector run (with --workers on cuda: one GPU per worker)"),
) -> None:
    """Score images by GenEval's rules: generate them with --generator or read them with --images."""
    from .evaluation.benchmark import load_benchmark
    from .evaluation.run import evaluate, generate_images, generate_images_parallel
    from .io import atomic_write_text
    from .generators import get_generator, record_id

    if (generator is None) == (images is None):
        raise SketchloopError("give exactly one of --generator NAME or --images DIR")
    if images_per_prompt < 1 or (limit is not None and limit < 1):
        raise SketchloopError("--images-per-prompt and --limit must be at least 1")
    _check_min_size(min_size)
    prompts = load_benchmark(benchmark) if benchmark else None
    if prompts is not None and limit:
        prompts = prompts[:limit]
    generation = None
    header: dict = {"benchmark": benchmark, "generator": generator}
    if generator is not None:
        if prompts is None:
            raise SketchloopError("--generator needs --benchmark (shapes-geneval or a JSONL file)")
        if benchmark == "geneval" and generator in ("staged", "single", "oracle", "oracle-staged"):
            raise SketchloopError("the geneval benchmark names COCO objects, which ShapesWorld cannot draw; score a "
                                  "real model's images with --images DIR --benchmark geneval --detector owlv2:MODEL")
        model_args = {"checkpoint": checkpoint, "flow_steps": steps, "guidance": guidance, "max_iters": max_iters,
                      "max_refines": max_refines, "separate": not allow_overlap, "device": device,
                      "min_size": min_size, "copy_phrases": not free_plans,
                      "inspect_threshold": inspect_threshold, "self_check": self_check,
                      "relate_regions": relate_regions,
                      "leave_room": leave_room, "keep_context": keep_context, "edit_steps": edit_steps} \
            if generator in ("staged", "single") else \
            {"checkpoint": checkpoint, "flow_steps": steps, "guidance": guidance, "device": device} \
            if generator == "t2i" else \
            {"max_iters": max_iters, "max_refines": max_refines} if generator == "oracle-staged" else {}
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
        bench_name = Path(benchmark).stem if benchmark else "images"
        images = images_out or Path("sketchloop-eval") / f"{bench_name}-{generator}-{record_id(gen.record)}"
        if workers > 1:
            generation = generate_images_parallel(prompts, generator, {"size": size, **model_args}, images,
                                                  images_per_prompt, seed, workers, retry_failed=retry_failed,
                                                  pages=pages)
        else:
            generation = generate_images(prompts, gen, images, images_per_prompt, seed, retry_failed=retry_failed,
                                         pages=pages)
        header.update({"made_by": gen.record, "seed": seed, "generated": generation.generated,
                       "reused": generation.reused})
        console.print(f"{images}: generated {generation.generated} images, reused {generation.reused} made with "
                      f"the same settings" + (f", {generation.failed} failed" if generation.failed else ""),
                      highlight=False)
    results = evaluate(images, _detector(detector, clip, threshold, counting_threshold, device), prompts, limit,
                       generation)
    header.update({"images_dir": str(images),
                   "oracle": bool(generation and any(s["stats"].get("oracle") for s in generation.samples.values()))})
    results = {**header, **results}
    _print_table(results)
    if generator is not None:
        from .pages.gallery import write_gallery

        console.print(f"open {write_gallery(images, results)} to see every image"
                      + (" and the trajectory pages" if pages else ""), highlight=False)
    if out:
        atomic_write_text(out, json.dumps(results, indent=1))
        console.print(f"wrote {out}")


def _detector(spec: str, clip: str, threshold: float | None, counting_threshold: float | None,
              device: str | None):
    """The detector `eval` scores with: ShapesWorld's, or OWLv2 + CLIP for real photos."""
    from .world.detect import ShapesDetector

    if spec == "shapes":
        detector = ShapesDetector()
    else:
        from .evaluation.photo_detector import OpenVocabDetector, PhotoDetectorSettings

        detector = OpenVocabDetector.from_spec(spec, clip, PhotoDetectorSettings(device=device))
    if threshold is not None:
        detector.threshold = threshold
    if counting_threshold is not None:
        detector.counting_threshold = counting_threshold
    return detector


@app.command()
def generate(prompt: str = typer.Argument(..., help="e.g. 'a photo of a red circle above a blue square'"),
             out: Path = typer.Option(Path("sketchloop-out"), help="folder for final.png, trajectory.json, index.html"),
             mode: str = typer.Option("staged", help="staged (plan, sketch, inspect, refine) or single (one image)"),
             seed: int = typer.Option(0),
             max_iters: int = typer.Option(8, help="most plan steps before the loop stops"),
             steps: Optional[int] = typer.Option(None, help="flow steps: per region drawn by the embedded model "
                                                            "(default 16), per image by a diffusers pipeline (28)"),
             guidance: Optional[float] = typer.Option(None, help="guidance scale (embedded: classifier-free, default 1 "
                                                                "= off; diffusers: the pipeline's default)"),
             max_refines: int = typer.Option(DEFAULT_MAX_REFINES, help="most corrections per step (a new plan or "
                                                                       "a redraw; 0: inspect, never correct; see "
                                                                       "README)"),
             checkpoint: Optional[Path] = typer.Option(None, help="model checkpoint folder (default: the shipped one)"),
             allow_overlap: bool = typer.Option(False, "--allow-overlap", help="let the planner's regions of one step "
                                                                               "overlap (off: sampled apart)"),
             min_size: Optional[int] = typer.Option(None, help="smallest region size token (4-10) the planner may write "
                                                               "when a larger one fits (default: the sampling default)"),
             relate_regions: Optional[bool] = typer.Option(None, "--relate-regions/--free-regions", help=_RELATE),
             leave_room: Optional[bool] = typer.Option(None, "--leave-room/--no-room", help=_ROOM),
             keep_context: Optional[bool] = typer.Option(None, "--keep-context/--paste-crop", help=_KEEP),
             edit_steps: Optional[bool] = typer.Option(None, "--edit-steps/--add-only", help=_EDITS),
             free_plans: bool = typer.Option(False, "--free-plans", help="the planner's noun phrases and relations are "
                                                                         "its own (off: copied from the prompt's)"),
             self_check: bool = typer.Option(True, "--self-check/--text-verdict", help="the inspector's verdict from "
                                             "the model's own likelihoods of the step (off: its inspection's first word)"),
             oracle: bool = typer.Option(False, "--oracle", help="play every role with ShapesWorld's teachers "
                                                                 "(an upper bound, not a model)"),
             planner: Optional[str] = typer.Option(None, help="openai:MODEL: a chat model plans (default: the "
                                                              "embedded model)"),
             inspector: Optional[str] = typer.Option(None, help="openai:MODEL: a vision chat model inspects"),
             sketcher: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: an image-editing pipeline "
                                                               "(FLUX.1 Kontext, Qwen-Image-Edit, ...) sketches"),
             refiner: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: an editing pipeline refines "
                                                              "(the sketcher's pipeline when the same)"),
             first_step: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: a text-to-image pipeline "
                                                                 "draws the first step from the blank canvas"),
             image_size: int = typer.Option(1024, help="diffusers: side of the images the pipeline writes"),
             device: Optional[str] = typer.Option(None, help="diffusers: cuda, cpu, ... (default: cuda if available)"),
             dtype: Optional[str] = typer.Option(None, help="diffusers: bfloat16, float16 or float32 "
                                                            "(default: bfloat16 on cuda, float32 on cpu)"),
             base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server for openai: roles "
                                                               "(default $SKETCHLOOP_BASE_URL or $OPENAI_BASE_URL)"),
             templates: Optional[Path] = typer.Option(None, help="folder of prompt templates overriding "
                                                               "planner.md / inspector.md")) -> None:
    """Run the staged loop (plan, sketch, inspect, refine) or single mode on a prompt."""
    from .generators import check_prompt, model_generator, oracle_generator
    from .pages.trajectory import save_trajectory

    if mode not in ("staged", "single"):
        raise SketchloopError(f"--mode {mode!r}: use staged or single")
    if max_iters < 1 or (steps is not None and steps < 1):
        raise SketchloopError("--max-iters and --steps must be at least 1")
    _check_min_size(min_size)
    if first_step and not sketcher:
        raise SketchloopError("--first-step is used by a diffusers sketcher; give --sketcher diffusers:REPO_OR_PATH too")
    check_prompt(prompt, oracle=oracle, model_reads_it=not planner)
    if refiner and max_refines == 0:
        console.print("[yellow]warning:[/yellow] --refiner is never called with --max-refines 0 (the default); "
                      "give --max-refines 1 or more", highlight=False)
    if oracle:
        gen = oracle_generator(mode, max_iters=max_iters, max_refines=max_refines, name="oracle")
    else:
        gen = model_generator(mode, checkpoint=checkpoint, flow_steps=steps or 16,
                              guidance=1.0 if guidance is None else guidance, max_iters=max_iters,
                              max_refines=max_refines, separate=not allow_overlap, min_size=min_size,
                              copy_phrases=not free_plans, relate_regions=relate_regions,
                              leave_room=leave_room, keep_context=keep_context, self_check=self_check,
                              edit_steps=edit_steps)
        if planner or inspector or sketcher or refiner:
            from .backends.diffusers_editor import DiffusersSettings

            image_settings = DiffusersSettings(device=device, dtype=dtype, steps=steps or 28, guidance=guidance,
                                               size=image_size)
            from .backends.wiring import with_named_roles

            specs = {"planner": planner, "sketcher": sketcher, "inspector": inspector, "refiner": refiner}
            roles = with_named_roles(gen.roles_factory(), specs, base_url, templates, image_settings, first_step)
            gen = gen.with_roles(roles, {k: v for k, v in specs.items() if v})
    traj = gen.run(prompt, seed)
    traj.meta["oracle"] = oracle
    traj.meta["roles"] = "ORACLE (ShapesWorld's teachers)" if oracle else _roles_text(
        checkpoint, planner=planner, sketcher=sketcher, inspector=inspector, refiner=refiner)
    save_trajectory(traj, out)
    console.print(f"wrote {out}/final.png, trajectory.json and index.html ({traj.mode}, {traj.meta['roles']}, "
                  f"{sum(1 for s in traj.steps if s.image is not None)} images, {traj.flow_steps} flow steps, "
                  f"{traj.seconds:.2f} s)")
    if not traj.ended:
        console.print(f"[yellow]warning:[/yellow] the loop reached --max-iters {max_iters} before the model "
                      f"ended the trajectory; final.png is the last canvas", highlight=False)


def _check_min_size(min_size: int | None) -> None:
    if min_size is not None and not 4 <= min_size <= 10:
        raise SketchloopError(f"--min-size {min_size}: region sizes are s4 to s10")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine only)"),
          port: int = typer.Option(8000),
          checkpoint: Optional[Path] = typer.Option(None, help="model checkpoint folder (default: the shipped one)"),
          steps: Optional[int] = typer.Option(None, help="flow steps: per region (embedded, 16) or per image "
                                                         "(diffusers, 28)"),
          guidance: Optional[float] = typer.Option(None, help="guidance scale (embedded default 1 = off)"),
          allow_overlap: bool = typer.Option(False, "--allow-overlap", help="let the regions of one step overlap"),
          planner: Optional[str] = typer.Option(None, help="openai:MODEL: a chat model plans"),
          inspector: Optional[str] = typer.Option(None, help="openai:MODEL: a vision chat model inspects"),
          sketcher: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: an editing pipeline sketches"),
          refiner: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: an editing pipeline refines"),
          first_step: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: text-to-image first step"),
          image_size: int = typer.Option(1024, help="diffusers: side of the images the pipeline writes"),
          device: Optional[str] = typer.Option(None, help="diffusers: cuda, cpu, ..."),
          dtype: Optional[str] = typer.Option(None, help="diffusers: bfloat16, float16 or float32"),
          base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server for openai: roles"),
          templates: Optional[Path] = typer.Option(None, help="folder of prompt templates (planner.md, ...)")) -> None:
    """Serve the web demo: a page that shows each step as the model plans, sketches, inspects and refines."""
    from .backends.unified import SamplingConfig
    from .backends.wiring import model_roles, with_named_roles

    try:
        import uvicorn

        from .web.app import Demo, create_app
    except ImportError:
        raise SketchloopError("the web demo needs the web extra: pip install 'sketchloop[web]'") from None
    if not 0 <= port <= 65535:
        raise SketchloopError(f"--port {port}: give a port from 0 to 65535")
    if first_step and not sketcher:
        raise SketchloopError("--first-step is used by a diffusers sketcher; give --sketcher diffusers:REPO_OR_PATH too")
    roles = model_roles(checkpoint, SamplingConfig(flow_steps=steps or 16, guidance=1.0 if guidance is None else guidance,
                                                   separate=not allow_overlap))
    specs = {"planner": planner, "sketcher": sketcher, "inspector": inspector, "refiner": refiner}
    if any(specs.values()):
        from .backends.diffusers_editor import DiffusersSettings

        image_settings = DiffusersSettings(device=device, dtype=dtype, steps=steps or 28, guidance=guidance,
                                           size=image_size)
        roles = with_named_roles(roles, specs, base_url, templates, image_settings, first_step)
    demo = Demo(roles, _roles_text(checkpoint, **specs), exclusive=any(specs.values()), model_plans=not planner)
    console.print(f"sketchloop demo on http://{host}:{port}/ ({demo.describe})", highlight=False)
    uvicorn.run(create_app(demo), host=host, port=port, log_level="warning")


def _roles_text(checkpoint: Path | None, **specs: str | None) -> str:
    model = f"model {checkpoint or 'shipped checkpoint'}"
    named = [f"{role} {spec}" for role, spec in specs.items() if spec]
    return ", ".join(named + ([f"other roles: {model}"] if len(named) < len(specs) else [])) if named else model


@app.command()
def train(stage: str = typer.Option(..., help="plan-sketch, inspect, refine or joint (the unified model), or t2i "
                                              "(the text-to-image baseline, models/t2i.py, on the trajectories' "
                                              "final images)"),
          data: list[Path] = typer.Option(..., help="dataset folder(s) from 'sketchloop data build' (repeatable)"),
          out: Path = typer.Option(..., help="checkpoint folder (re-run to resume)"),
          init: Optional[Path] = typer.Option(None, help="start from this checkpoint (the previous stage)"),
          steps: int = typer.Option(2000),
          batch_size: int = typer.Option(24),
          lr: float = typer.Option(2e-3),
          text_weight: float = typer.Option(1.0, help="lambda: weight of the text cross-entropy"),
          seed: int = typer.Option(0),
          save_every: int = typer.Option(250),
          bag: Optional[str] = typer.Option(None, help="the words the image condition averages: step (the whole "
                                                       "step's), object (an <ins>'s first object only) or phrase "
                                                       "(the object each region draws); default: the --init "
                                                       "checkpoint's, else step"),
          look_grid: Optional[int] = typer.Option(None, help="give the --init model a close look at each region "
                                                             "it inspects: the region's crop read as N x N <look> "
                                                             "tokens (default: the checkpoint's; 0: none)")) -> None:
    """Train the unified model: lambda * text CE + flow-matching MSE (AdamW, cosine, EMA; resumable; torchrun)."""
    import os

    from .training.trainer import TrainConfig, train as run_training

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise SketchloopError("--steps, --batch-size and --lr must be positive")
    cfg = TrainConfig(stage=stage, steps=steps, batch_size=batch_size, lr=lr, seed=seed, save_every=save_every,
                      text_weight=text_weight)
    if stage == "t2i":
        from .training.t2i import train_t2i

        if init is not None:
            raise SketchloopError("--stage t2i trains the text-to-image baseline from scratch; leave --init out")
        result = train_t2i(data, out, cfg)
        console.print(f"checkpoint {out} at step {result['step']}" + (
            f", final flow loss {result['loss']:.4f}, {result['seconds'] / 60:.1f} min"
            if result.get("loss") is not None else " (already done)"))
        return
    result = run_training(data, out, cfg, init=init, bag=bag, look_grid=look_grid)
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"checkpoint {out} at step {result['step']}" +
                      (f", final loss {result['loss']:.3f} ({', '.join(f'{k} {result[k]:.3f}' for k in ('ce', 'crop', 'full') if k in result)}), "
                       f"{result['seconds'] / 60:.1f} min" if result.get("loss") is not None else " (already done)"))


data_app = typer.Typer(no_args_is_help=True, help="Build and look at staged training data.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(kind: str = typer.Option(..., help="trajectories, inspect or refine"),
               n: int = typer.Option(..., help="number of examples"),
               out: Path = typer.Option(..., help="output folder (re-run to resume)"),
               seed: int = typer.Option(0),
               workers: int = typer.Option(1, help="processes"),
               edit_ops: float = typer.Option(0.25, help="share of groups drawn through modify/move/swap/remove "
                                                         "(0 = the paper's additive-only ablation)"),
               shard_size: int = typer.Option(500, help="examples per parquet shard"),
               checkpoint: Optional[Path] = typer.Option(None, help="inspect: a model checkpoint (stage 1) whose own "
                                                                    "plans are judged (self-sampled); default symbolic"),
               free_plans: bool = typer.Option(False, "--free-plans", help="with --checkpoint: the model plans in its "
                                                                           "own phrases (no phrase grammar)"),
               teacher: Optional[str] = typer.Option(None, help="openai:MODEL: a chat/vision model decomposes prompts, "
                                                                "writes steps and judges (with --editor)"),
               editor: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: the image-editing pipeline "
                                                               "that draws each step (with --teacher)"),
               prompts: Optional[Path] = typer.Option(None, help="with --teacher: prompts to decompose, a GenEval "
                                                                 "JSONL or a text file (one per line); default: "
                                                                 "ShapesWorld's random scenes"),
               first_step: Optional[str] = typer.Option(None, help="diffusers:REPO_OR_PATH: a text-to-image pipeline "
                                                                   "for the first step"),
               base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server for --teacher"),
               templates: Optional[Path] = typer.Option(None, help="folder of prompt templates overriding the "
                                                                   "teacher's (decomposer.md, step_writer.md, ...)"),
               image_size: int = typer.Option(1024, help="--editor: side of the images it writes"),
               steps: int = typer.Option(28, help="--editor: flow steps per image"),
               guidance: Optional[float] = typer.Option(None, help="--editor: guidance scale (default: the pipeline's)"),
               device: Optional[str] = typer.Option(None, help="--editor: cuda, cpu, ..."),
               dtype: Optional[str] = typer.Option(None, help="--editor: bfloat16, float16 or float32"),
               engine: str = typer.Option("local", help="local (worker processes) or ray (Ray actors: one per "
                                                        "GPU with --editor, else per CPU; --workers sets how many)"),
               address: Optional[str] = typer.Option(None, help="--engine ray: the cluster's address (ray start "
                                                                "--head prints it; 'auto' finds it); default: a "
                                                                "local Ray")) -> None:
    """Synthesise staged training data: ShapesWorld's exact teachers, or a chat model and an editing pipeline."""
    from .data.build import build

    spec = None
    if (teacher is None) != (editor is None):
        raise SketchloopError("--teacher openai:MODEL and --editor diffusers:REPO_OR_PATH go together (real teachers), "
                              "or neither (ShapesWorld's exact teachers)")
    if teacher is not None:
        from .backends.chat import parse_role_spec
        from .backends.diffusers_editor import parse_pipeline_spec

        parse_pipeline_spec(editor)
        spec = {"model": parse_role_spec(teacher)[1], "base_url": base_url, "editor": editor, "first_step": first_step,
                "templates": str(templates) if templates else None, "prompts_file": str(prompts) if prompts else None,
                "image": {"size": image_size, "steps": steps, "guidance": guidance, "device": device, "dtype": dtype},
                "prompts": _read_prompts(prompts) if prompts else None}
    elif prompts or first_step or templates:
        raise SketchloopError("--prompts, --first-step and --templates are for real teachers (--teacher and --editor)")
    summary = build(kind, n, out, seed=seed, workers=workers, edit_ops=edit_ops, shard_size=shard_size,
                    checkpoint=checkpoint, teacher=spec, engine=engine, address=address, free_plans=free_plans)
    rate = summary["examples_per_second"]
    console.print(f"{summary['examples']} examples in {out}; {summary['mean_intermediate_images']:.2f} "
                  f"images per example on average; judge: {summary['steps_redrawn']} steps redrawn, "
                  f"{summary['trajectories_dropped']} trajectories dropped"
                  + (f"; {rate:.1f} examples/s" if rate else "; nothing left to build"))


def _read_prompts(path: Path) -> list[str]:
    """Prompts from a GenEval metadata JSONL (its 'prompt' fields) or a text file (one per line)."""
    if not path.is_file():
        raise SketchloopError(f"--prompts {path}: no such file")
    if path.suffix == ".jsonl":
        from .evaluation.benchmark import load_benchmark

        return [m["prompt"] for m in load_benchmark(str(path))]
    found = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not found:
        raise SketchloopError(f"--prompts {path} holds no prompts")
    return found


@data_app.command("subset")
def data_subset(source: Path = typer.Argument(..., help="an inspect dataset folder"),
                out: Path = typer.Option(..., help="a new folder for the subset"),
                target: list[str] = typer.Option(..., help="keep examples of this target: consistent, plan or image "
                                                           "(repeat the option)")) -> None:
    """Keep the inspect examples of some targets (the inspect-supervision ablation: plan or image conflicts only)."""
    from .data.build import subset

    if not source.is_dir():
        raise SketchloopError(f"dataset {source} does not exist")
    n = subset(source, out, target)
    console.print(f"wrote {out}: {n} inspect examples ({', '.join(sorted(target))})")


@data_app.command("one-step")
def data_one_step(source: Path = typer.Argument(..., help="a trajectories dataset folder"),
                  out: Path = typer.Option(..., help="a new folder for the one-step trajectories")) -> None:
    """Rewrite trajectories as one step each (the one-shot layout baseline): one <ins>/<des> for the whole
    scene, one image with every object, the same scenes and final images."""
    from .data.build import one_step

    if not source.is_dir():
        raise SketchloopError(f"dataset {source} does not exist")
    n = one_step(source, out)
    console.print(f"wrote {out}: {n} one-step trajectories")


@data_app.command("export")
def data_export(datasets: list[Path] = typer.Argument(..., help="dataset folders from 'sketchloop data build'"),
                out: Path = typer.Option(..., help="a new folder for the export"),
                format: str = typer.Option("bagel", "--format", help="bagel: BAGEL's t2i_pretrain, unified_edit and "
                                                                     "vlm_sft kinds, plus an interleaved kind"),
                path_prefix: Optional[str] = typer.Option(None, help="where OUT will be on the training machine "
                                                                     "(default: its absolute path here)")) -> None:
    """Export datasets for another trainer (BAGEL: parquet + JSONL, DATASET_INFO entries and a YAML config)."""
    from .data.export import export_bagel

    if format != "bagel":
        raise SketchloopError(f"--format {format!r}: the export format is bagel")
    for d in datasets:
        if not d.is_dir():
            raise SketchloopError(f"dataset {d} does not exist")
    counts = export_bagel(datasets, out, path_prefix)
    console.print(f"wrote {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) +
                  f"; see {out}/README.md, {out}/dataset_info.json and {out}/dataset_config.yaml", highlight=False)


@data_app.command("show")
def data_show(directory: Path = typer.Argument(..., help="a dataset folder"),
              index: int = typer.Option(0, help="which example"),
              out: Path = typer.Option(..., help="HTML file to write")) -> None:
    """Write one example as a page of images and texts."""
    from .pages.dataset import example_html
    from .data.schema import read_dataset
    from .io import atomic_write_text

    table = read_dataset(directory)
    if not 0 <= index < table.num_rows:
        raise SketchloopError(f"--index {index}: the dataset has examples 0 to {table.num_rows - 1}")
    atomic_write_text(out, example_html(table.slice(index, 1).to_pylist()[0]))
    console.print(f"wrote {out}")


def _print_table(results: dict) -> None:
    from rich.markup import escape

    title = f"GenEval protocol: {results.get('generator') or results.get('images_dir')}"
    if results.get("oracle"):
        title += " (ORACLE: uses the world's parser, layout and renderer; an upper bound)"
    table = Table(title=title)
    table.add_column("task")
    table.add_column("score", justify="right")
    for tag, score in results["tasks"].items():
        table.add_row(tag, f"{score:.3f}")
    table.add_row("overall", f"{results['overall']:.3f}", style="bold")
    Console().print(table)
    Console().print(f"{results['n_prompts']} prompts, {results['n_images']} images, "
                    f"detector: {results['detector']}")
    if results.get("compute"):
        Console().print("per final image: " + ", ".join(f"{k} {v:.3g}" for k, v in results["compute"].items()))
    if results.get("n_ignored_folders"):
        Console().print(f"left out {results['n_ignored_folders']} prompt folders past the benchmark's "
                        f"{results['n_prompts']} prompts")
    if results.get("n_failed"):
        errors = "; ".join(f"{n} x {e}" for e, n in list(results["failures"].items())[:3])
        Console().print(f"[red]{results['n_failed']} of {results['n_images']} images failed to generate "
                        f"(scored as wrong):[/red] {escape(errors)}", highlight=False)


def main() -> None:
    """Entry point: user errors print one line and exit 2, without a traceback."""
    try:
        app()
    except SketchloopError as exc:
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
