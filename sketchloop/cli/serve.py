"""`sketchloop serve`: the web demo."""

from __future__ import annotations

import typer

from ..errors import SketchloopError
from . import options as o
from .common import console


def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine only)"),
    port: int = typer.Option(8000),
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
    """Serve the web demo: a page that shows each step as the model plans, sketches, inspects and refines."""
    from ..generators import model_generator

    try:
        import uvicorn

        from ..web.app import Demo, create_app
    except ImportError:
        raise SketchloopError("the web demo needs the web extra: pip install 'sketchloop[web]'") from None
    if not 0 <= port <= 65535:
        raise SketchloopError(f"--port {port}: give a port from 0 to 65535")
    settings = o.sampling_settings(
        steps, guidance, separate, copy_phrases, relate_regions, edit_steps, self_check, guided, region_beams
    )
    o.check_first_step(first_step, sketcher)
    roles = model_generator("staged", checkpoint=checkpoint, device=device, **settings).roles_factory()
    specs = o.role_specs(planner, inspector, sketcher, refiner)
    roles = o.named_roles(
        roles,
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
    demo = Demo(roles, o.roles_text(checkpoint, **specs), exclusive=any(specs.values()), model_plans=not planner)
    console.print(f"sketchloop demo on http://{host}:{port}/ ({demo.describe})", highlight=False)
    uvicorn.run(create_app(demo), host=host, port=port, log_level="warning")
