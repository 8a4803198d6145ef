"""The trajectory page: each step's text beside its image, with its cost."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..io import atomic_write_text, save_png
from ..loop.staged import Trajectory


def save_trajectory(traj: Trajectory, out: Path) -> None:
    """final.png, one PNG per image step, trajectory.json and index.html in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    k = 0
    for step in traj.steps:
        if step.image is not None:
            step.image_file = f"step_{k:02d}_{step.type}.png"
            save_png(out / step.image_file, step.image)
            k += 1
    if traj.final is not None:
        save_png(out / "final.png", traj.final)
    atomic_write_text(out / "trajectory.json", json.dumps(traj.to_dict(), indent=1))
    atomic_write_text(out / "index.html", trajectory_html(traj))


def trajectory_html(traj: Trajectory) -> str:
    """A page that reads like the trajectory: each step's text beside its image."""
    rows = []
    for i, step in enumerate(traj.steps):
        img = (
            f'<img src="{html.escape(step.image_file)}" width="192" height="192" style="image-rendering:pixelated">'
            if step.image_file
            else ""
        )
        cost = (
            f"{step.seconds:.2f} s"
            + (f", {step.flow_steps} flow steps" if step.flow_steps else "")
            + (f", {step.text_tokens} tokens" if step.text_tokens else "")
        )
        label = {"end": "the planner ends the trajectory"}.get(step.type, step.text)
        following = traj.steps[i + 1] if i + 1 < len(traj.steps) else None
        acted_on = following is not None and following.attempt > 0  # a redraw or a new plan followed
        if step.type == "plan" and step.attempt:
            label = f"planned again (correction {step.attempt}): {label}"
        if step.type == "inspect" and not step.text.startswith("consistent") and not acted_on:
            limit = traj.meta.get("max_refines")
            label += (
                " (not refined: refinement is off, --max-refines 0)"
                if limit == 0
                else f" (not refined: {limit} refines per step reached)"
                if limit is not None
                else ""
            )
        rows.append(
            f"<tr class={step.type}><td>{i}</td><td><b>{step.type}</b></td>"
            f"<td>{html.escape(label)}{img}</td><td class=cost>{cost}</td></tr>"
        )
    status = "ended by the planner" if traj.ended else "STOPPED AT THE ITERATION CAP (the planner did not end it)"
    final = (
        '<img src="final.png" width="256" height="256" style="image-rendering:pixelated">'
        if traj.final is not None
        else ""
    )
    meta = "".join(f" · {html.escape(str(k))}: {html.escape(str(v))}" for k, v in traj.meta.items())
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>"
        + html.escape(traj.prompt)
        + "</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto} td{padding:.4em;"
        "vertical-align:top;border-bottom:1px solid #ddd} .cost{color:#888;white-space:nowrap} "
        "img{display:block;margin-top:.3em;border:1px solid #999} .inspect td{color:#a50} "
        ".refine td{color:#b12} .plan td{color:#164}</style></head><body>"
        f"<h1>{html.escape(traj.prompt)}</h1><p>{traj.mode} mode · {status} · {traj.flow_steps} flow steps · "
        f"{traj.text_tokens} text tokens · {traj.seconds:.2f} s{meta}</p>{final}"
        f"<table>{''.join(rows)}</table></body></html>"
    )
