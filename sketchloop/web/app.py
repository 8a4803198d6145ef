"""`sketchloop serve`: a web page that draws as the model thinks.

- `GET /`: the page (web/index.html): a prompt box, seed, mode, max iterations and refines;
  each step appears as it happens (the plan with its regions drawn as boxes over the canvas,
  the sketch, the inspection, the refine), then the final image and the compute; earlier
  runs stay in a gallery.
- `GET /api/generate?prompt=&seed=&mode=&max_iters=&max_refines=`: a `text/event-stream`,
  one JSON event per step (`type`, `text`, `image` as a PNG data URL, `boxes`, compute),
  then a `final` event (image and totals); a run that fails sends one `error` event. A
  request that cannot start (empty prompt, unknown word, too long, bad option) is HTTP 400
  with the CLI's message.
- `GET /api/health`: status, roles, runs in progress.

Runs go to worker threads. The embedded model's weights are shared read-only and every
run gets role objects of its own (`Roles.fork`), so concurrent runs never mix; roles of
real models (chat, diffusers), which keep one pipeline, run one at a time. A client that
disconnects stops its run at the next step.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import SketchloopError, first_line
from ..generators import LoopGenerator, check_prompt, oracle_generator
from ..io import png_bytes
from ..loop.roles import Roles
from ..loop.staged import DEFAULT_MAX_REFINES, Step
from ..models.regions import parse_regions

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
except ImportError:
    raise SketchloopError("the web demo needs the web extra: pip install 'sketchloop[web]'") from None

MODES = ("staged", "single", "oracle")
MAX_ITERS_LIMIT = 16
MAX_REFINES_LIMIT = 4


class Cancelled(Exception):
    """The client went away: the run stops at its next step."""


def _data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


_IMG = re.compile(r"<img> (.*?) </img>")


def step_event(step: Step, index: int) -> dict[str, Any]:
    """One step as a JSON event; a plan's regions become boxes (x0, y0, x1, y1 in [0, 1])."""
    event: dict[str, Any] = {
        "type": step.type,
        "index": index,
        "text": step.text,
        "flow_steps": step.flow_steps,
        "text_tokens": step.text_tokens,
        "seconds": round(step.seconds, 4),
        "image": _data_url(step.image) if step.image is not None else None,
        "boxes": [],
    }
    found = _IMG.search(step.text) if step.type == "plan" else None
    if found:
        for r in parse_regions(found.group(1)):
            (cx, cy), half = r.center, r.size / 2
            event["boxes"].append([round(cx - half, 4), round(cy - half, 4), round(cx + half, 4), round(cy + half, 4)])
    return event


@dataclass
class Demo:
    """What the server runs: the roles of staged/single runs and how they are described."""

    roles: Roles
    describe: str
    size: int = 64
    exclusive: bool = False  # roles that cannot run concurrently (one pipeline): one run at a time
    model_plans: bool = True  # the embedded model reads the prompt (its words must be known)
    max_workers: int = 8
    _lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    finished: int = 0
    cancelled: int = 0

    def generator(self, mode: str, max_iters: int, max_refines: int) -> LoopGenerator:
        if mode == "oracle":
            return oracle_generator("staged", self.size, max_iters, max_refines, name="oracle")
        return LoopGenerator(mode, lambda: self.roles, mode, self.size, max_iters, max_refines=max_refines)


def create_app(demo: Demo) -> FastAPI:
    app = FastAPI(title="sketchloop", docs_url=None, redoc_url=None)
    pool = ThreadPoolExecutor(max_workers=demo.max_workers, thread_name_prefix="sketchloop-run")
    exclusive = threading.Lock()
    counters = threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        page = (resources.files("sketchloop") / "web" / "index.html").read_text(encoding="utf-8")
        return page.replace(
            'id="max_refines" type="number" value="0"', f'id="max_refines" type="number" value="{DEFAULT_MAX_REFINES}"'
        )

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "roles": demo.describe,
            "modes": list(MODES),
            "active": demo.active,
            "finished": demo.finished,
            "cancelled": demo.cancelled,
        }

    @app.get("/api/generate")
    async def generate(
        request: Request,
        prompt: str = Query(""),
        seed: int = 0,
        mode: str = "staged",
        max_iters: int = 8,
        max_refines: int = DEFAULT_MAX_REFINES,
    ):
        try:
            if mode not in MODES:
                raise SketchloopError(f"mode {mode!r}: use {', '.join(MODES)}")
            if not 1 <= max_iters <= MAX_ITERS_LIMIT or not 0 <= max_refines <= MAX_REFINES_LIMIT:
                raise SketchloopError(
                    f"max_iters must be 1 to {MAX_ITERS_LIMIT} and max_refines 0 to {MAX_REFINES_LIMIT}"
                )
            check_prompt(prompt, oracle=mode == "oracle", model_reads_it=demo.model_plans)
            gen = demo.generator(mode, max_iters, max_refines)
        except SketchloopError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        steps_sent = [0]

        def on_step(step: Step) -> None:
            if stop.is_set():
                raise Cancelled()
            emit(step_event(step, steps_sent[0]))
            steps_sent[0] += 1

        def run() -> None:
            with counters:
                demo.active += 1
            try:
                emit(
                    {
                        "type": "start",
                        "prompt": prompt,
                        "seed": seed,
                        "mode": mode,
                        "roles": "ORACLE (ShapesWorld's teachers)" if mode == "oracle" else demo.describe,
                    }
                )
                with exclusive if demo.exclusive and mode != "oracle" else nullcontext():
                    traj = gen.run(prompt, seed, on_step)
                emit(
                    {
                        "type": "final",
                        "image": _data_url(traj.final),
                        "ended": traj.ended,
                        "prompt": prompt,
                        "totals": {k: v for k, v in traj.stats().items() if k != "ended"},
                    }
                )
                with counters:
                    demo.finished += 1
            except Cancelled:
                with counters:
                    demo.cancelled += 1
            except Exception as exc:  # noqa: BLE001 - the client gets the message, the server goes on
                text = first_line(exc)
                emit({"type": "error", "message": text})
            finally:
                with counters:
                    demo.active -= 1
                emit({"type": "done"})

        pool.submit(run)

        async def events():
            try:
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=0.5)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            stop.set()
                            return
                        continue
                    if event["type"] == "done":
                        return
                    yield f"data: {json.dumps(event)}\n\n"
            finally:
                stop.set()  # the client went away (or the stream ended): stop the run if it still goes

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    app.state.demo = demo
    return app
