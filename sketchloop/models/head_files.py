"""Saving and loading a small verdict head (the plan check, the layout check) beside a checkpoint:
its weights as safetensors and its config as JSON, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import SketchloopError, first_line


def save_head(head: nn.Module, config: dict[str, Any], directory: Path, weights_file: str, config_file: str) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (weights_file + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(tmp))
    tmp.replace(directory / weights_file)
    atomic_write_text(directory / config_file, json.dumps(config, indent=1))


def load_head(
    directory: Path,
    weights_file: str,
    config_file: str,
    build: Callable[[dict[str, Any]], nn.Module],
    name: str,
    script: str,
) -> Any:
    """`build(config)` with the saved weights, in eval mode; None when `directory` holds no
    `config_file`. Corrupt or mismatched files raise one clear line naming the head (`name`) and
    the `script` that retrains it."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / config_file).is_file():
        return None
    try:
        head = build(json.loads((directory / config_file).read_text()))
        head.load_state_dict(load_file(str(directory / weights_file)))
    except Exception as exc:  # corrupt or mismatched files: one clear line
        raise SketchloopError(
            f"{name} in {directory} is corrupt or incompatible ({first_line(exc)[:160]}); "
            f"retrain it with {script} or delete {config_file}"
        ) from None
    return head.eval()
