"""Every option `generate`, `eval` and `serve` share, declared once (as typed annotations),
and the helpers that turn them into a sampling config and a set of roles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import SketchloopError
from ..loop.roles import Roles

# --- the embedded model and how it samples (SamplingConfig; unset: the checkpoint's sampling.json)
Checkpoint = Annotated[Optional[Path], typer.Option(help="unified model checkpoint folder (default: the shipped one)")]
Steps = Annotated[
    Optional[int],
    typer.Option(
        help="flow steps: per region drawn by the embedded model (default: its sampling.json, 16), per image by "
        "the text-to-image baseline (16) or a diffusers pipeline (28)"
    ),
]
Guidance = Annotated[
    Optional[float],
    typer.Option(help="guidance scale (embedded: classifier-free, 1 = off; diffusers: the pipeline's default)"),
]
Separate = Annotated[
    Optional[bool],
    typer.Option(
        "--separate/--allow-overlap", help="the regions of one step keep apart, or may overlap (a decode rule)"
    ),
]
CopyPhrases = Annotated[
    Optional[bool],
    typer.Option(
        "--copy-phrases/--free-plans",
        help="the plans' noun phrases and relations are copied from the prompt's, or "
        "are the planner's own (a decode rule)",
    ),
]
RelateRegions = Annotated[
    Optional[bool],
    typer.Option(
        "--relate-regions/--free-regions",
        help="an add's regions meet the relations its <ins> states and leave room "
        "for the objects still to come, or go where the model puts them "
        "(a decode rule)",
    ),
]
EditSteps = Annotated[
    Optional[bool],
    typer.Option(
        "--edit-steps/--add-only", help="a plan may change, move or remove what earlier steps drew, or every plan adds"
    ),
]
Guided = Annotated[
    Optional[bool],
    typer.Option(
        "--guided/--model-only",
        help="the decode rules constrain plans and regions with the world's vocabulary and geometry (the four "
        "switches above), or the learned model writes them alone, under the output's syntax only",
    ),
]
SelfCheck = Annotated[
    Optional[bool],
    typer.Option(
        "--self-check/--text-verdict",
        help="the inspector's verdict from the model's own likelihoods of the step, "
        "or from its inspection's first word",
    ),
]
RegionBeams = Annotated[
    Optional[int],
    typer.Option(
        help="N > 1: each step's regions are the likeliest the model gives by beam search of width N "
        "(1: greedy, token by token)"
    ),
]
Device = Annotated[
    Optional[str],
    typer.Option(
        help="cpu, cuda, cuda:1 ...: where the embedded model (and a diffusers pipeline or an owlv2 detector) runs"
    ),
]

# --- the loop
MaxIters = Annotated[int, typer.Option(help="most plan steps before the loop stops")]
MaxRefines = Annotated[
    int, typer.Option(help="most corrections per step (a new plan or a redraw; 0: inspect, never correct)")
]

# --- real models in some roles
Planner = Annotated[Optional[str], typer.Option(help="openai:MODEL: a chat model plans (default: the embedded model)")]
Inspector = Annotated[Optional[str], typer.Option(help="openai:MODEL: a vision chat model inspects")]
Sketcher = Annotated[
    Optional[str],
    typer.Option(
        help="diffusers:REPO_OR_PATH: an image-editing pipeline (FLUX.1 Kontext, Qwen-Image-Edit, ...) sketches"
    ),
]
Refiner = Annotated[
    Optional[str],
    typer.Option(help="diffusers:REPO_OR_PATH: an editing pipeline refines (the sketcher's pipeline when the same)"),
]
FirstStep = Annotated[
    Optional[str],
    typer.Option(help="diffusers:REPO_OR_PATH: a text-to-image pipeline draws the first step from the blank canvas"),
]
ImageSize = Annotated[int, typer.Option(help="diffusers: side of the images the pipeline writes")]
Dtype = Annotated[
    Optional[str],
    typer.Option(help="diffusers: bfloat16, float16 or float32 (default: bfloat16 on cuda, float32 on cpu)"),
]
BaseUrl = Annotated[
    Optional[str],
    typer.Option(help="OpenAI-compatible server for openai: roles (default $SKETCHLOOP_BASE_URL or $OPENAI_BASE_URL)"),
]
Templates = Annotated[
    Optional[Path], typer.Option(help="folder of prompt templates overriding planner.md / inspector.md")
]


def sampling_settings(
    steps: int | None = None,
    guidance: float | None = None,
    separate: bool | None = None,
    copy_phrases: bool | None = None,
    relate_regions: bool | None = None,
    edit_steps: bool | None = None,
    self_check: bool | None = None,
    guided: bool | None = None,
    region_beams: int | None = None,
) -> dict[str, Any]:
    """The SamplingConfig fields the options set (None: the checkpoint's sampling.json decides)."""
    if steps is not None and steps < 1:
        raise SketchloopError("--steps must be at least 1")
    if region_beams is not None and region_beams < 1:
        raise SketchloopError(f"--region-beams {region_beams}: give 1 (greedy) or more")
    return {
        "flow_steps": steps,
        "guidance": guidance,
        "separate": separate,
        "copy_phrases": copy_phrases,
        "relate_regions": relate_regions,
        "edit_steps": edit_steps,
        "self_check": self_check,
        "guided": guided,
        "region_beams": region_beams,
    }


def role_specs(
    planner: str | None, inspector: str | None, sketcher: str | None, refiner: str | None
) -> dict[str, str | None]:
    """The real model each role names (None: the embedded model plays it)."""
    return {"planner": planner, "sketcher": sketcher, "inspector": inspector, "refiner": refiner}


def named_roles(
    roles: Roles,
    specs: dict[str, str | None],
    first_step: str | None,
    image_size: int,
    steps: int | None,
    guidance: float | None,
    device: str | None,
    dtype: str | None,
    base_url: str | None,
    templates: Path | None,
) -> Roles:
    """`roles` with the real models `specs` names in their roles (none named: `roles`)."""
    if not any(specs.values()):
        return roles
    from ..backends.diffusers_editor import DiffusersSettings
    from ..backends.wiring import with_named_roles

    image_settings = DiffusersSettings(
        device=device, dtype=dtype, steps=steps or 28, guidance=guidance, size=image_size
    )
    return with_named_roles(roles, specs, base_url, templates, image_settings, first_step)


def check_first_step(first_step: str | None, sketcher: str | None) -> None:
    if first_step and not sketcher:
        raise SketchloopError(
            "--first-step is used by a diffusers sketcher; give --sketcher diffusers:REPO_OR_PATH too"
        )


def roles_text(checkpoint: Path | None, **specs: str | None) -> str:
    """Who plays which role, in words."""
    model = f"model {checkpoint or 'shipped checkpoint'}"
    named = [f"{role} {spec}" for role, spec in specs.items() if spec]
    return ", ".join(named + ([f"other roles: {model}"] if len(named) < len(specs) else [])) if named else model
