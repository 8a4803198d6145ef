"""`sketchloop generate`: one staged trajectory (or a single-mode image) for a prompt."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import SketchloopError
from ..loop.staged import DEFAULT_MAX_REFINES
from . import options as o
from .common import console


def generate(
    prompt: str = typer.Argument(..., help="e.g. 'a photo of a red circle above a blue square'"),
    out: Path = typer.Option(Path("sketchloop-out"), help="folder for final.png, trajectory.json, index.html"),
    mode: str = typer.Option("staged", help="staged (plan, sketch, inspect, refine) or single (one image)"),
    seed: int = typer.Option(0),
    max_iters: o.MaxIters = 8,
    max_refines: o.MaxRefines = DEFAULT_MAX_REFINES,
    checkpoint: o.Checkpoint = None,
    steps: o.Steps = None,
    guidance: o.Guidance = None,
    separate: o.Separate = None,
    copy_phrases: o.CopyPhrases = None,
    relate_regions: o.RelateRegions = None,
    edit_steps: o.EditSteps = None,
    self_check: o.SelfCheck = None,
    guided: o.Guided = None,
    region_beams: o.RegionBeams = None,
    oracle: bool = typer.Option(
        False, "--oracle", help="play every role with ShapesWorld's teachers (an upper bound, not a model)"
    ),
    planner: o.Planner = None,
    inspector: o.Inspector = None,
    sketcher: o.Sketcher = None,
    refiner: o.Refiner = None,
    first_step: o.FirstStep = None,
    image_size: o.ImageSize = 1024,
    device: o.Device = None,
    dtype: o.Dtype = None,
    base_url: o.BaseUrl = None,
    templates: o.Templates = None,
) -> None:
    """Run the staged loop (plan, sketch, inspect, refine) or single mode on a prompt."""
    from .. import generators
    from ..pages.trajectory import save_trajectory

    if mode not in ("staged", "single"):
        raise SketchloopError(f"--mode {mode!r}: use staged or single")
    if max_iters < 1:
        raise SketchloopError("--max-iters must be at least 1")
    settings = o.sampling_settings(
        steps, guidance, separate, copy_phrases, relate_regions, edit_steps, self_check, guided, region_beams
    )
    o.check_first_step(first_step, sketcher)
    generators.check_prompt(prompt, oracle=oracle, model_reads_it=not planner)
    if refiner and max_refines == 0:
        console.print(
            "[yellow]warning:[/yellow] --refiner is never called with --max-refines 0 (the default); "
            "give --max-refines 1 or more",
            highlight=False,
        )
    specs = o.role_specs(planner, inspector, sketcher, refiner)
    if oracle:
        gen = generators.oracle_generator(mode, max_iters=max_iters, max_refines=max_refines, name="oracle")
    else:
        gen = generators.model_generator(
            mode, checkpoint=checkpoint, max_iters=max_iters, max_refines=max_refines, device=device, **settings
        )
        roles = o.named_roles(
            gen.roles_factory(),
            specs,
            first_step,
            image_size,
            steps,
            guidance,
            device,
            dtype,
            base_url,
            templates,
        )
        if any(specs.values()):
            gen = gen.with_roles(roles, {k: v for k, v in specs.items() if v})
    traj = gen.run(prompt, seed)
    traj.meta["oracle"] = oracle
    traj.meta["roles"] = "ORACLE (ShapesWorld's teachers)" if oracle else o.roles_text(checkpoint, **specs)
    if not oracle and (gen.record.get("sampling") or {}).get("guided"):
        traj.meta["roles"] += ", GUIDED by the world's decode rules"
    save_trajectory(traj, out)
    console.print(
        f"wrote {out}/final.png, trajectory.json and index.html ({traj.mode}, {traj.meta['roles']}, "
        f"{sum(1 for s in traj.steps if s.image is not None)} images, {traj.flow_steps} flow steps, "
        f"{traj.seconds:.2f} s)"
    )
    if not traj.ended:
        console.print(
            f"[yellow]warning:[/yellow] the loop reached --max-iters {max_iters} before the model "
            f"ended the trajectory; final.png is the last canvas",
            highlight=False,
        )
