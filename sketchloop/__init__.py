"""sketchloop: process-driven image generation (plan, sketch, inspect, refine)."""

from .errors import LayoutError, PromptError, SketchloopError
from .world.parser import parse_prompt
from .world.scene import ObjectGroup, Relation, SceneGraph

__version__ = "0.18.0"
__all__ = ["LayoutError", "ObjectGroup", "PromptError", "Relation", "SceneGraph", "SketchloopError", "parse_prompt"]
