"""The embedded unified model as a generator: the staged loop with the model in every role,
or single mode (the whole image in one flow)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..loop.staged import DEFAULT_MAX_REFINES
from ..world.render import DEFAULT_SIZE
from .base import device_type
from .loop import LoopGenerator


def model_generator(
    mode: str = "staged",
    size: int = DEFAULT_SIZE,
    checkpoint: Path | None = None,
    sampling: Any = None,
    max_iters: int = 8,
    max_refines: int = DEFAULT_MAX_REFINES,
    device: str | None = None,
    inspect: bool = True,
    **settings: Any,
) -> LoopGenerator:
    """The unified model (the shipped checkpoint unless `checkpoint`) in `mode` staged or single.
    It samples with `sampling` (a SamplingConfig; default: the checkpoint's sampling.json) with
    `settings` (SamplingConfig fields; None keeps a setting) changed. `inspect=False`: plan and
    sketch only, no inspection."""
    from ..backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
    from ..backends.wiring import model_roles
    from ..models.sampling import SamplingConfig
    from ..models.unified import checkpoint_sha256

    directory = checkpoint or SHIPPED_CHECKPOINT
    config = (sampling or SamplingConfig.from_pretrained(directory)).replace(**settings)
    roles = model_roles(directory, config, device)
    model = roles.inspector
    assert isinstance(model, UnifiedRoles)
    record: dict[str, Any] = {
        "checkpoint": str(checkpoint or "shipped"),
        "checkpoint_sha256": checkpoint_sha256(directory),
        "device": device_type(device),
    }
    if mode == "single":
        record.update(flow_steps=config.flow_steps, guidance=config.guidance)
    else:
        record["sampling"] = asdict(config)
        if config.self_check:
            record["self_check"] = {
                "plan": model.plan_threshold,
                "image": model.image_threshold,
                "plan_check": "trained" if model.plan_check else "surprise",
            }
    return LoopGenerator(
        mode, lambda: roles, mode, size, max_iters, max_refines=max_refines, roles_record=record, inspect=inspect
    )
