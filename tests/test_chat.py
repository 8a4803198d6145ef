"""The OpenAI-compatible chat backend against a real HTTP server on 127.0.0.1 with
scripted answers: valid JSON, malformed JSON, 429s, dropped connections, an unknown model,
a server that is gone."""

import json

import pytest
from PIL import Image

from sketchloop.backends.chat import ChatClient, ChatInspector, ChatPlanner, ChatSettings, parse_role_spec
from sketchloop.errors import SketchloopError
from sketchloop.loop.roles import Plan


def client(url, **kw):
    return ChatClient(ChatSettings(model="test-model", base_url=url, backoff=0.01, timeout=5, **kw))


def test_planner_steps_and_ends(server_factory):
    srv = server_factory(
        [("json", {"done": False, "ins": "add a red circle", "des": "a red circle"}), ("json", {"done": True})]
    )
    planner = ChatPlanner(client(srv.url))
    step = planner.plan("a photo of a red circle", [])
    assert step == Plan("add a red circle", "a red circle")
    assert planner.plan("a photo of a red circle", [step]) is None
    request = srv.requests[1]
    assert request["model"] == "test-model" and request["response_format"]["type"] == "json_schema"
    assert "add a red circle" in request["messages"][0]["content"][0]["text"]  # the history is in the prompt
    assert planner.usage["text_tokens"] == 14


def test_inspector_sends_the_canvas_as_a_png_data_url(server_factory):
    srv = server_factory([("json", {"consistent": False, "critique": "the circle is blue", "fix": "make it red"})])
    critique = ChatInspector(client(srv.url)).inspect("a photo of a red circle", [], Image.new("RGB", (8, 8)))
    assert not critique.consistent and critique.refine == "make it red"
    assert critique.text.startswith("inconsistent:")
    parts = srv.requests[0]["messages"][0]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_malformed_json_is_repaired_once_then_a_clear_error(server_factory):
    srv = server_factory([("text", "{not json"), ("json", {"done": False, "ins": "add a star", "des": "a star"})])
    assert ChatPlanner(client(srv.url)).plan("a photo of a star", []).ins == "add a star"
    assert "not valid JSON" in srv.requests[1]["messages"][-1]["content"]  # the repair round
    srv = server_factory([("text", "nope"), ("text", '{"ins": 3}')])
    with pytest.raises(SketchloopError, match="invalid JSON twice"):
        ChatPlanner(client(srv.url)).plan("a photo of a star", [])


def test_rate_limits_and_dropped_connections_are_retried(server_factory):
    srv = server_factory(
        [("status", 429), ("drop",), ("status", 503), ("json", {"done": False, "ins": "add a star", "des": "a star"})]
    )
    assert ChatPlanner(client(srv.url)).plan("a photo of a star", []).ins == "add a star"
    assert len(srv.requests) == 4


def test_retries_are_bounded(server_factory):
    srv = server_factory([("status", 429)] * 10)
    with pytest.raises(SketchloopError, match="failed 3 times"):
        ChatPlanner(client(srv.url, max_retries=2)).plan("a photo of a star", [])
    assert len(srv.requests) == 3


def test_unknown_model_and_server_gone_are_one_line_errors(server_factory):
    srv = server_factory([("status", 404)])
    with pytest.raises(SketchloopError, match="unknown to"):
        ChatPlanner(client(srv.url)).plan("a photo of a star", [])
    srv.close()
    with pytest.raises(SketchloopError, match="server is running"):
        ChatPlanner(client(srv.url, max_retries=1)).plan("a photo of a star", [])


def test_templates_can_be_overridden(server_factory, tmp_path):
    (tmp_path / "planner.md").write_text("PLAN {prompt} AFTER {history}")
    srv = server_factory([("json", {"done": True})])
    ChatPlanner(client(srv.url, prompts_dir=tmp_path)).plan("a photo of a star", [])
    assert srv.requests[0]["messages"][0]["content"][0]["text"] == "PLAN a photo of a star AFTER (none yet)"


def test_role_specs():
    assert parse_role_spec("openai:gpt-4o") == ("openai", "gpt-4o")
    with pytest.raises(SketchloopError, match="openai:MODEL"):
        parse_role_spec("gpt-4o")


def test_generate_with_a_chat_planner_and_the_embedded_sketcher(server_factory, tmp_path):
    import subprocess
    import sys

    from sketchloop.models.tokenizer import WordTokenizer
    from sketchloop.models.unified import UnifiedConfig, UnifiedModel

    tok = WordTokenizer()
    UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32, unet_channels=(8, 8, 8))).save_pretrained(
        tmp_path / "ckpt", tok
    )
    srv = server_factory(
        [("json", {"done": False, "ins": "add a red circle", "des": "a red circle"}), ("json", {"done": True})]
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sketchloop.cli",
            "generate",
            "a photo of a red circle",
            "--planner",
            "openai:test-model",
            "--base-url",
            srv.url,
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--steps",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert record["ended"] and record["steps"][0]["text"].startswith("<ins> add a red circle </ins>")
    assert (tmp_path / "out" / "final.png").is_file() and (tmp_path / "out" / "index.html").is_file()


def test_without_the_chat_extra_the_command_says_what_to_install():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['openai'] = None; "
        "sys.argv = ['sketchloop', 'generate', 'a photo of a circle', '--planner', 'openai:m']; "
        "from sketchloop.cli import main; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "sketchloop[chat]" in r.stderr and "Traceback" not in r.stderr
