"""`sketchloop train`: the unified model's stages, or the text-to-image baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SketchloopError
from .common import console


def train(
    stage: str = typer.Option(
        ...,
        help="plan-sketch, inspect, refine, joint, image or regions (the unified model; image trains the image "
        "expert alone, regions the region map alone), or t2i "
        "(the text-to-image baseline, models/t2i.py, on the trajectories' "
        "final images)",
    ),
    data: list[Path] = typer.Option(..., help="dataset folder(s) from 'sketchloop data build' (repeatable)"),
    out: Path = typer.Option(..., help="checkpoint folder (re-run to resume)"),
    init: Optional[Path] = typer.Option(None, help="start from this checkpoint (the previous stage)"),
    steps: int = typer.Option(2000),
    batch_size: int = typer.Option(24),
    lr: float = typer.Option(2e-3),
    text_weight: float = typer.Option(1.0, help="lambda: weight of the text cross-entropy"),
    seed: int = typer.Option(0),
    save_every: int = typer.Option(250),
    hard_crops: float = typer.Option(
        0.0,
        help="share of each step's crops drawn among the hard ones, as far as the data holds them: "
        "regions drawn over paint already there (objects in depth), objects with counted parts",
    ),
    region_order: str = typer.Option(
        "drawn",
        help="the regions of a teacher's add step in the order drawn, or raster: in reading order, top row "
        "first (one canonical order: a counted group's next region follows from the last)",
    ),
    plan_views: str = typer.Option(
        "off",
        help="canvas: each trajectory's plans also one by one, each read after the canvas it is drawn on "
        "(the planner that reads the canvas); blind: the same examples without the canvas",
    ),
    copy_prompt: bool = typer.Option(
        False,
        "--copy-prompt",
        help="the model copies words from the prompt through a learned pointer (added to an --init "
        "checkpoint without one)",
    ),
    region_coords: bool = typer.Option(
        False,
        "--region-coords",
        help="region words are also read and scored through their place on the lattice, so that what the "
        "model learns of x7 carries to x6 and x8 (added to an --init checkpoint without it)",
    ),
    region_map: bool = typer.Option(
        False,
        "--region-map",
        help="region words are also scored by a spatial head over the regions written before (added to an "
        "--init checkpoint without it, changing no prediction until trained; --stage regions trains it alone)",
    ),
    n_layer: int | None = typer.Option(
        None,
        "--n-layer",
        help="transformer blocks: an --init checkpoint grows to this many, the new blocks adding nothing at "
        "first (its predictions unchanged); without --init, the new model's depth",
        show_default=False,
    ),
) -> None:
    """Train the unified model: lambda * text CE + flow-matching MSE (AdamW, cosine, EMA; resumable; torchrun)."""
    import os

    from ..training.trainer import TrainConfig
    from ..training.trainer import train as run_training

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise SketchloopError("--steps, --batch-size and --lr must be positive")
    if not 0.0 <= hard_crops <= 1.0:
        raise SketchloopError(f"--hard-crops {hard_crops}: give a share between 0 and 1")
    cfg = TrainConfig(
        stage=stage,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        save_every=save_every,
        text_weight=text_weight,
        hard_crops=hard_crops,
        region_order=region_order,
        plan_views=plan_views,
    )
    if stage == "t2i":
        from ..training.t2i import train_t2i

        if init is not None:
            raise SketchloopError("--stage t2i trains the text-to-image baseline from scratch; leave --init out")
        result = train_t2i(data, out, cfg)
        console.print(
            f"checkpoint {out} at step {result['step']}"
            + (
                f", final flow loss {result['loss']:.4f}, {result['seconds'] / 60:.1f} min"
                if result.get("loss") is not None
                else " (already done)"
            )
        )
        return
    if n_layer is not None and n_layer < 1:
        raise SketchloopError(f"--n-layer {n_layer}: give a positive number of transformer blocks")
    result = run_training(
        data,
        out,
        cfg,
        init=init,
        copy_prompt=copy_prompt,
        region_coords=region_coords,
        n_layer=n_layer,
        region_map=region_map,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        losses = ", ".join(f"{k} {result[k]:.3f}" for k in ("ce", "crop", "full") if k in result)
        console.print(
            f"checkpoint {out} at step {result['step']}"
            + (
                f", final loss {result['loss']:.3f} ({losses}), {result['seconds'] / 60:.1f} min"
                if result.get("loss") is not None
                else " (already done)"
            )
        )
