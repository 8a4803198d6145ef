"""Wiring: which backend plays which role or teacher, from the names users give
(`openai:MODEL`, `diffusers:REPO_OR_PATH`, a checkpoint folder). The CLI, the generators
and the data build call these; the backends themselves never look each other up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..loop.roles import Roles
from ..models.sampling import SamplingConfig
from ..world.render import DEFAULT_SIZE


def make_teachers(teacher: dict[str, Any] | None):
    """ShapesWorld's exact teachers, or (given `teacher`: model, base_url, templates, editor,
    first_step, image settings, prompts) a chat model and a diffusers editor."""
    from ..teachers import Teachers

    if teacher is None:
        from .shapes import shapes_teachers

        return shapes_teachers()
    from .chat import ChatClient, ChatSettings
    from .chat_teachers import ChatDecomposer, ChatJudge, ChatStepWriter
    from .diffusers_editor import DiffusersEditor, DiffusersSettings

    client = ChatClient(
        ChatSettings(
            model=teacher["model"],
            base_url=teacher.get("base_url"),
            prompts_dir=Path(teacher["templates"]) if teacher.get("templates") else None,
            **teacher.get("client", {}),
        )
    )  # timeout, max_retries, backoff
    editor = DiffusersEditor.from_spec(
        teacher["editor"], DiffusersSettings(**teacher.get("image", {})), teacher.get("first_step")
    )
    return Teachers(
        writer=ChatStepWriter(client),
        editor=editor,
        judge=ChatJudge(client),
        decomposer=ChatDecomposer(client),
        prompts=teacher.get("prompts"),
    )


def oracle_roles(size: int = DEFAULT_SIZE) -> Roles:
    """ShapesWorld's teachers as planner, sketcher, inspector and refiner (an ORACLE): a new
    canvas tracker for each trajectory."""
    from .oracle import OracleCanvas, OracleInspector, OraclePlanner

    canvas = OracleCanvas(size)
    return Roles(OraclePlanner(), canvas, OracleInspector(), canvas)


def model_roles(
    checkpoint: Path | None = None, config: SamplingConfig | None = None, device: str | None = None
) -> Roles:
    """The embedded unified model (the shipped checkpoint unless `checkpoint`) in every role,
    sampling with `config` (default: the checkpoint's sampling.json)."""
    from .unified import UnifiedRoles

    model = UnifiedRoles.from_pretrained(checkpoint, config, device)
    return Roles(model, model, model, model)


def with_named_roles(
    roles: Roles,
    specs: dict[str, str | None],
    base_url: str | None = None,
    templates: Path | None = None,
    image_settings=None,
    first_step: str | None = None,
) -> Roles:
    """`roles` with those named in `specs` played by OpenAI-compatible chat models
    (planner, inspector: `openai:MODEL`) or diffusers editing pipelines (sketcher, refiner:
    `diffusers:REPO_OR_PATH`); one pipeline serves both when named twice."""
    from .chat import (
        ChatClient,
        ChatInspector,
        ChatPlanner,
        ChatSettings,
        parse_role_spec,
    )
    from .diffusers_editor import DiffusersEditor

    chosen: dict[str, Any] = {}
    editors: dict[str, DiffusersEditor] = {}
    for role in ("planner", "sketcher", "inspector", "refiner"):
        spec = specs.get(role)
        if not spec:
            continue
        if role in ("planner", "inspector"):
            _, model = parse_role_spec(spec)
            chat_role = ChatPlanner if role == "planner" else ChatInspector
            chosen[role] = chat_role(ChatClient(ChatSettings(model=model, base_url=base_url, prompts_dir=templates)))
        else:
            if spec not in editors:
                editors[spec] = DiffusersEditor.from_spec(
                    spec, image_settings, first_step if role == "sketcher" else None
                )
            chosen[role] = editors[spec]
    return roles.with_roles(**chosen)
