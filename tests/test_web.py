"""The web demo: the event stream, concurrent streams, disconnects, bad input, and the page
in a real browser (headless Chromium driven by Playwright)."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from sketchloop.backends.wiring import model_roles, oracle_roles  # noqa: E402
from sketchloop.generators import model_generator  # noqa: E402
from sketchloop.io import png_bytes  # noqa: E402
from sketchloop.web.app import Demo, create_app  # noqa: E402

PROMPT = "a photo of a red circle above a blue square"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, demo: Demo):
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(demo), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, body

    def stream(self, **params) -> list[dict]:
        return list(self.events(**params))

    def events(self, **params):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/api/generate?" + urllib.parse.urlencode(params))
        r = conn.getresponse()
        assert r.status == 200, r.read()
        assert r.getheader("content-type").startswith("text/event-stream")
        try:
            for line in r:
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    s = Server(Demo(model_roles(), "model shipped checkpoint"))
    yield s
    s.stop()


def final_png(event: dict) -> bytes:
    import base64

    return base64.b64decode(event["image"].split(",", 1)[1])


def test_a_stream_shows_each_step_then_the_final_image(server):
    events = server.stream(prompt=PROMPT, seed=1, mode="staged")
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "final"
    assert types[1] == "plan" and "sketch" in types and "inspect" in types and types[-2] == "end"
    plan = events[1]
    assert plan["text"].startswith("<ins>") and plan["boxes"] and all(0 <= v <= 1 for v in plan["boxes"][0])
    sketch = next(e for e in events if e["type"] == "sketch")
    assert sketch["image"].startswith("data:image/png;base64,") and sketch["flow_steps"] == 16
    final = events[-1]
    assert final["totals"]["flow_steps"] == sum(e.get("flow_steps", 0) for e in events[1:-1])
    # the same trajectory as the CLI's for this seed
    assert final_png(final) == png_bytes(model_generator("staged").generate(PROMPT, 1).image)
    status, body = server.get("/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = server.get("/")
    assert status == 200 and b"<form" in body


def test_eight_streams_at_once_do_not_mix(server):
    prompts = [
        PROMPT,
        "a photo of three stars",
        "a photo of a green cross left of a yellow diamond",
        "a photo of a purple triangle",
        "a photo of two circles",
        "a photo of an orange square",
        "a photo of a white star below a black circle",
        "a photo of four diamonds",
    ]
    results: dict[int, list[dict]] = {}

    def run(k: int) -> None:
        results[k] = server.stream(prompt=prompts[k], seed=k, mode="staged" if k % 3 else "single")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 8
    for k, events in results.items():
        assert events[0]["prompt"] == prompts[k] and events[-1]["type"] == "final"
        expected = model_generator("staged" if k % 3 else "single").generate(prompts[k], k)
        assert final_png(events[-1]) == png_bytes(expected.image), prompts[k]
        assert events[-1]["totals"]["flow_steps"] == expected.stats["flow_steps"]


def test_bad_requests_are_refused_with_the_cli_message(server):
    for params, needle in [
        ({"prompt": "a photo of a hexagon"}, "unknown word 'hexagon'"),
        ({"prompt": "  "}, "the prompt is empty"),
        ({"prompt": "a circle " * 40}, "at most 64"),
        ({"prompt": PROMPT, "mode": "twice"}, "mode 'twice'"),
        ({"prompt": "a circle above a square and the square above the circle", "mode": "oracle"}, "contradiction"),
    ]:
        status, body = server.get("/api/generate?" + urllib.parse.urlencode(params))
        assert status == 400 and needle in json.loads(body)["error"], body
    r = subprocess.run(
        [sys.executable, "-m", "sketchloop.cli", "generate", "a photo of a hexagon"], capture_output=True, text=True
    )
    status, body = server.get("/api/generate?" + urllib.parse.urlencode({"prompt": "a photo of a hexagon"}))
    assert json.loads(body)["error"] in r.stderr


class SlowSketcher:
    """The oracle's canvas, slowed down, so a run lasts long enough to be interrupted."""

    def __init__(self, inner):
        self.inner = inner

    def sketch(self, *args):
        time.sleep(0.4)
        return self.inner.sketch(*args)

    def refine(self, *args, **kwargs):
        return self.inner.refine(*args, **kwargs)


class Broken:
    def inspect(self, *args):
        raise RuntimeError("the inspector's server is gone")


def test_a_client_that_leaves_stops_its_run_and_errors_arrive_as_events():
    roles = oracle_roles()
    demo = Demo(roles.with_roles(sketcher=SlowSketcher(roles.sketcher)), "slow oracle", model_plans=False)
    s = Server(demo)
    try:
        events = s.events(
            prompt="a photo of two stars, a circle left of a square and a cross above the square",
            mode="staged",
            max_iters=16,
        )
        assert next(events)["type"] == "start" and next(events)["type"] == "plan"
        events.close()  # the client leaves mid-run
        deadline = time.time() + 10
        while (health := json.loads(s.get("/api/health")[1]))["active"] and time.time() < deadline:
            time.sleep(0.1)
        assert health == {**health, "active": 0, "cancelled": 1, "finished": 0}
        # other runs are unharmed, and a failing role arrives as one error event
        demo.roles = roles.with_roles(inspector=Broken())
        got = s.stream(prompt="a photo of a star", mode="staged")
        assert got[-1] == {"type": "error", "message": "the inspector's server is gone"}
        demo.roles = roles
        assert s.stream(prompt="a photo of a star", mode="staged")[-1]["type"] == "final"
    finally:
        s.stop()


def test_serve_binds_this_machine_only_by_default(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sketchloop.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
        local = {entry[1] for entry in listening if entry[3] == "0A"}  # 0A: LISTEN
        assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return playwright


def test_the_page_in_a_browser_draws_a_run_and_keeps_it(server, tmp_path):
    playwright = _browser()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url())
        page.fill("#prompt", PROMPT)
        page.fill("#seed", "1")
        page.click("#go")
        page.wait_for_selector("#final-image", timeout=60000)
        kinds = page.eval_on_selector_all(".step", "rows => rows.map(r => r.dataset.type)")
        assert kinds[0] == "plan" and "sketch" in kinds and "inspect" in kinds and kinds[-1] == "end"
        assert page.locator(".step.plan .box").count() >= 2  # each plan's regions drawn over the canvas
        assert page.inner_text(".step.plan .box span") == "1"  # numbered, so that overlapping boxes stay apart
        assert "flow steps" in page.inner_text("#totals")
        assert page.locator("#gallery figure").count() == 1
        page.fill("#seed", "2")
        page.click("#go")
        page.wait_for_function("document.querySelectorAll('#gallery figure').length == 2", timeout=60000)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()


def test_the_page_in_a_browser_shows_the_error_for_a_bad_prompt(server):
    playwright = _browser()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url())
        page.fill("#prompt", "a photo of a hexagon")
        page.click("#go")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30000)
        assert "unknown word 'hexagon'" in page.inner_text("#error")
        assert page.locator(".step").count() == 0
        browser.close()
