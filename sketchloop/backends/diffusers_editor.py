"""diffusers image-editing pipelines (FLUX.1 Kontext, Qwen-Image-Edit, any pipeline called
as `pipe(image=..., prompt=...)`) as the loop's sketcher and refiner and the data
pipelines' editor.

- `diffusers:REPO_OR_PATH` names a pipeline: a hub id (from the local cache or the hub) or a
  folder written by `save_pretrained`. diffusers/transformers are the optional extra
  `sketchloop[diffusers]`.
- A sketch edits the canvas by the plan's `<ins>`; a refine edits it by the `<refine>`
  command. The first step from a blank canvas may use a text-to-image pipeline instead
  (`first_step`), prompted with the plan's `<des>`.
- Device, dtype, steps, guidance, output size and seed are settable; every call adds its
  `num_inference_steps` to `usage["flow_steps"]`, as the embedded model counts its Euler steps.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import SketchloopError
from ..format import scene_text
from ..loop.roles import Critique, Plan


@dataclass
class DiffusersSettings:
    device: str | None = None  # default: cuda when available, else cpu
    dtype: str | None = None  # default: bfloat16 on cuda, float32 on cpu
    steps: int = 28  # num_inference_steps per image
    guidance: float | None = None  # None: the pipeline's default
    size: int = 1024  # side of the images the pipeline writes (rounded to a multiple of 16)


def parse_pipeline_spec(spec: str) -> str:
    """'diffusers:REPO_OR_PATH' -> 'REPO_OR_PATH'."""
    kind, _, name = spec.partition(":")
    if kind != "diffusers" or not name:
        raise SketchloopError(
            f"{spec!r}: use diffusers:REPO_OR_PATH (e.g. diffusers:black-forest-labs/FLUX.1-Kontext-dev "
            f"or diffusers:./my-pipeline)"
        )
    return name


def _torch_setup(settings: DiffusersSettings) -> tuple[str, Any]:
    import torch

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = settings.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise SketchloopError(f"--dtype {name!r}: use float32, float16 or bfloat16")
    return device, dtype


def load_pipeline(name: str, settings: DiffusersSettings):
    """A diffusers pipeline from a hub id or a local folder, on the settings' device."""
    try:
        import diffusers
    except ImportError:
        raise SketchloopError(
            "diffusers backends need the diffusers extra: pip install 'sketchloop[diffusers]'"
        ) from None
    device, dtype = _torch_setup(settings)
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(name, **{_dtype_argument(diffusers): dtype})
    except ImportError as exc:
        raise SketchloopError(
            f"pipeline {name!r} needs a package that is not installed ({str(exc).splitlines()[0]}); "
            f"pip install 'sketchloop[diffusers]'"
        ) from None
    except (OSError, ValueError, EnvironmentError) as exc:
        raise SketchloopError(
            f"cannot load diffusers pipeline {name!r} ({str(exc).splitlines()[0][:160]}); give a "
            f"folder written by save_pretrained or a hub id that is cached or reachable"
        ) from None
    return pipe.to(device)


def _dtype_argument(diffusers) -> str:
    """diffusers >= 0.40 names it `dtype` (and deprecates `torch_dtype`)."""
    from packaging.version import Version

    return "dtype" if Version(diffusers.__version__.split(".dev")[0]) >= Version("0.40") else "torch_dtype"


class DiffusersEditor:
    """One editing pipeline (and optionally a text-to-image one for the first step) playing
    Sketcher, Refiner (loop.roles) and Editor (data.teachers)."""

    def __init__(self, pipe, settings: DiffusersSettings | None = None, first_step=None):
        self.settings = settings or DiffusersSettings()
        if self.settings.steps < 1 or self.settings.size < 16:
            raise SketchloopError("diffusers pipelines need at least 1 step and an image side of at least 16 px")
        self.pipe, self.first_step = pipe, first_step
        for p in (pipe, first_step):
            if p is not None and hasattr(p, "set_progress_bar_config"):
                p.set_progress_bar_config(disable=True)
        self.usage = {"flow_steps": 0, "images": 0}

    @classmethod
    def from_spec(
        cls, spec: str, settings: DiffusersSettings | None = None, first_step: str | None = None
    ) -> "DiffusersEditor":
        settings = settings or DiffusersSettings()
        first = load_pipeline(parse_pipeline_spec(first_step), settings) if first_step else None
        return cls(load_pipeline(parse_pipeline_spec(spec), settings), settings, first)

    # -------------------------------------------------------------- one pipeline call
    def _call(self, pipe, prompt: str, image: Image.Image | None, seed: int) -> Image.Image:
        import torch

        side = max(16, self.settings.size // 16 * 16)
        params = inspect.signature(pipe.__call__).parameters
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": self.settings.steps,
            "generator": torch.Generator("cpu").manual_seed(int(seed) % 2**63),
        }
        for key, value in (
            ("height", side),
            ("width", side),
            ("max_area", side * side),
            ("_auto_resize", False),
            ("output_type", "pil"),
        ):
            if key in params:
                kwargs[key] = value
        if image is not None:
            kwargs["image"] = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        if self.settings.guidance is not None:
            # Qwen-Image(-Edit) guides by true CFG; FLUX (Kontext) by its distilled guidance_scale
            if "true_cfg_scale" in params and (
                type(pipe).__name__.startswith("QwenImage") or "guidance_scale" not in params
            ):
                kwargs["true_cfg_scale"] = self.settings.guidance
                kwargs["negative_prompt"] = " "  # true CFG runs only with a negative prompt
            elif "guidance_scale" in params:
                kwargs["guidance_scale"] = self.settings.guidance
        with torch.inference_mode():
            out = pipe(**kwargs).images[0]
        self.usage["flow_steps"] += self.settings.steps
        self.usage["images"] += 1
        if not isinstance(out, Image.Image):  # some pipelines ignore output_type
            out = Image.fromarray(np.asarray(out))
        return out.convert("RGB")

    def _edit(self, image: Image.Image, instruction: str, description: str, seed: int, first: bool) -> Image.Image:
        if first and self.first_step is not None:
            return self._call(self.first_step, description or instruction, None, seed)
        return self._call(self.pipe, instruction, image, seed)

    # -------------------------------------------------------------- roles
    def sketch(self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int) -> Image.Image:
        if not history:  # single mode: the whole prompt at once
            return self._edit(canvas, scene_text(prompt), scene_text(prompt), seed, first=True)
        step = history[-1]
        return self._edit(canvas, step.ins, step.des, seed, first=len(history) == 1)

    def refine(
        self,
        prompt: str,
        history: list[Plan],
        canvas: Image.Image,
        critique: Critique,
        seed: int,
        before: Image.Image | None = None,
    ) -> Image.Image:
        """`canvas` edited by the critique's `<refine>` command (`before` is not needed)."""
        return self._call(self.pipe, critique.refine, canvas, seed)

    def edit(self, canvas, step, rng: np.random.Generator):
        """data.teachers.Editor: carry out `step.ins` on the canvas (no layout is known)."""
        from ..teachers import Canvas

        first = canvas.layout is not None and not canvas.layout.objects  # the blank canvas a build starts from
        return Canvas(self._edit(canvas.image, step.ins, step.des, int(rng.integers(2**31)), first), None)
