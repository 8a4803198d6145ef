"""The staged loop (plan, sketch, inspect, refine until the planner ends) and single mode.

The loop knows nothing of ShapesWorld: it calls the four roles of `loop.roles` and
records every step with its text, image, flow steps, text tokens and seconds.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .roles import Inspector, PlanStep, Planner, Refiner, Sketcher


@dataclass
class LoopStep:
    type: str  # plan, sketch, inspect, refine, end
    text: str = ""
    image: Image.Image | None = field(default=None, repr=False)
    image_file: str = ""
    flow_steps: int = 0
    text_tokens: int = 0
    seconds: float = 0.0


@dataclass
class Trajectory:
    prompt: str
    mode: str
    steps: list[LoopStep] = field(default_factory=list)
    final: Image.Image | None = field(default=None, repr=False)
    ended: bool = False  # the planner ended it (False: the iteration cap stopped it)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def flow_steps(self) -> int:
        return sum(s.flow_steps for s in self.steps)

    @property
    def text_tokens(self) -> int:
        return sum(s.text_tokens for s in self.steps)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def stats(self) -> dict[str, Any]:
        return {"flow_steps": self.flow_steps, "text_tokens": self.text_tokens, "seconds": round(self.seconds, 4),
                "images": sum(1 for s in self.steps if s.image is not None), "ended": self.ended}

    def save(self, out: Path) -> None:
        """final.png, one PNG per image step, trajectory.json and index.html in `out`."""
        from ..io import atomic_write_text, save_png

        out.mkdir(parents=True, exist_ok=True)
        k = 0
        for step in self.steps:
            if step.image is not None:
                step.image_file = f"step_{k:02d}_{step.type}.png"
                save_png(out / step.image_file, step.image)
                k += 1
        if self.final is not None:
            save_png(out / "final.png", self.final)
        record = {"prompt": self.prompt, "mode": self.mode, "ended": self.ended, **self.stats(), **self.meta,
                  "steps": [{k: v for k, v in asdict(s).items() if k != "image"} for s in self.steps]}
        atomic_write_text(out / "trajectory.json", json.dumps(record, indent=1))
        atomic_write_text(out / "index.html", trajectory_html(self))


def _usage(role: Any) -> tuple[int, int]:
    usage = getattr(role, "usage", None) or {}
    return usage.get("flow_steps", 0), usage.get("text_tokens", 0)


def _timed(role: Any, fn, *args):
    f0, t0 = _usage(role)
    start = time.perf_counter()
    result = fn(*args)
    f1, t1 = _usage(role)
    return result, f1 - f0, t1 - t0, time.perf_counter() - start


def run_staged(prompt: str, planner: Planner, sketcher: Sketcher, inspector: Inspector, refiner: Refiner,
               blank: Image.Image, seed: int = 0, max_iters: int = 8, max_refines: int = 2) -> Trajectory:
    """Plan, sketch, inspect and refine until the planner ends the trajectory or `max_iters` plans."""
    traj = Trajectory(prompt, "staged", meta={"max_refines": max_refines})
    canvas = blank
    history: list[PlanStep] = []
    for it in range(max_iters):
        plan, f, t, s = _timed(planner, planner.plan, prompt, history)
        if plan is None:
            traj.steps.append(LoopStep("end", "", None, "", f, t, s))
            traj.ended = True
            break
        text = f"<ins> {plan.ins} </ins> <des> {plan.des} </des>" + (f" <img> {plan.regions} </img>"
                                                                     if plan.regions else "")
        traj.steps.append(LoopStep("plan", text, None, "", f, t, s))
        planned = history + [plan]
        image, f, t, s = _timed(sketcher, sketcher.sketch, prompt, planned, canvas, seed * 1000 + it)
        traj.steps.append(LoopStep("sketch", "", image, "", f, t, s))
        for r in range(max_refines + 1):
            critique, f, t, s = _timed(inspector, inspector.inspect, prompt, planned, image)
            traj.steps.append(LoopStep("inspect", critique.text, None, "", f, t, s))
            if critique.consistent or r == max_refines:
                break
            image, f, t, s = _timed(refiner, refiner.refine, prompt, planned, image, critique.refine,
                                    seed * 1000 + it * 10 + r + 1)
            traj.steps.append(LoopStep("refine", critique.refine, image, "", f, t, s))
        canvas = image
        history = planned
    traj.final = canvas
    return traj


def run_single(prompt: str, sketcher: Sketcher, blank: Image.Image, seed: int = 0) -> Trajectory:
    """One image straight from the prompt: the sketcher with no plan (the baseline)."""
    traj = Trajectory(prompt, "single")
    plan = PlanStep(ins=prompt.removeprefix("a photo of "), des=prompt.removeprefix("a photo of "))
    image, f, t, s = _timed(sketcher, sketcher.sketch, prompt, [plan], blank, seed)
    traj.steps.append(LoopStep("sketch", "", image, "", f, t, s))
    traj.final, traj.ended = image, True
    return traj


def trajectory_html(traj: Trajectory) -> str:
    """A page that reads like the trajectory: each step's text beside its image."""
    rows = []
    for i, step in enumerate(traj.steps):
        img = (f'<img src="{html.escape(step.image_file)}" width="192" height="192" '
               f'style="image-rendering:pixelated">' if step.image_file else "")
        cost = f"{step.seconds:.2f} s" + (f", {step.flow_steps} flow steps" if step.flow_steps else "") \
            + (f", {step.text_tokens} tokens" if step.text_tokens else "")
        label = {"end": "the planner ends the trajectory"}.get(step.type, step.text)
        following = traj.steps[i + 1].type if i + 1 < len(traj.steps) else ""
        if step.type == "inspect" and not step.text.startswith("consistent") and following != "refine":
            limit = traj.meta.get("max_refines")
            label += (" (not refined: refinement is off, --max-refines 0)" if limit == 0 else
                      f" (not refined: {limit} refines per step reached)" if limit is not None else "")
        rows.append(f"<tr class={step.type}><td>{i}</td><td><b>{step.type}</b></td>"
                    f"<td>{html.escape(label)}{img}</td><td class=cost>{cost}</td></tr>")
    status = "ended by the planner" if traj.ended else "STOPPED AT THE ITERATION CAP (the planner did not end it)"
    final = '<img src="final.png" width="256" height="256" style="image-rendering:pixelated">' \
        if traj.final is not None else ""
    meta = "".join(f" · {html.escape(str(k))}: {html.escape(str(v))}" for k, v in traj.meta.items())
    return ("<!doctype html><html><head><meta charset=utf-8><title>" + html.escape(traj.prompt) +
            "</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto} td{padding:.4em;"
            "vertical-align:top;border-bottom:1px solid #ddd} .cost{color:#888;white-space:nowrap} "
            "img{display:block;margin-top:.3em;border:1px solid #999} .inspect td{color:#a50} "
            ".refine td{color:#b12} .plan td{color:#164}</style></head><body>"
            f"<h1>{html.escape(traj.prompt)}</h1><p>{traj.mode} mode · {status} · {traj.flow_steps} flow steps · "
            f"{traj.text_tokens} text tokens · {traj.seconds:.2f} s{meta}</p>{final}"
            f"<table>{''.join(rows)}</table></body></html>")
