"""diffusers editing pipelines as sketcher / refiner / editor, with tiny random-weight
FluxKontextPipeline and QwenImageEditPipeline built offline (tests/tiny_pipelines.py)."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from cli_run import cli  # noqa: E402
from tiny_pipelines import small_qwen_condition_images, tiny_flux_kontext, tiny_qwen_image_edit  # noqa: E402

from sketchloop.backends.diffusers_editor import DiffusersEditor, DiffusersSettings, load_pipeline, parse_pipeline_spec  # noqa: E402
from sketchloop.errors import SketchloopError  # noqa: E402
from sketchloop.generators import LoopGenerator, model_generator  # noqa: E402
from sketchloop.loop.roles import Critique, Plan  # noqa: E402

PROMPT = "a photo of a red circle above a blue square"
SETTINGS = DiffusersSettings(steps=2, size=32, guidance=2.5)


def _cli(*args, cwd=None):
    return cli(*args, cwd=cwd, timeout=300)  # a diffusers pipeline loads in the subprocess


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipes") / "tiny-flux-kontext"
    tiny_flux_kontext().save_pretrained(path)
    return path


@pytest.mark.parametrize("make", [tiny_flux_kontext, tiny_qwen_image_edit])
def test_sketch_and_refine_count_flow_steps_and_are_seeded(make, monkeypatch):
    small_qwen_condition_images(monkeypatch)
    editor = DiffusersEditor(make(), SETTINGS)
    canvas = Image.new("RGB", (64, 64), (250, 250, 250))
    history = [Plan("add a red circle", "a red circle")]
    a = editor.sketch(PROMPT, history, canvas, seed=3)
    b = editor.sketch(PROMPT, history, canvas, seed=3)
    c = editor.refine(PROMPT, history, a, Critique(False, "inconsistent", "change the circle to red"), seed=4)
    assert a.size == b.size == c.size == (32, 32)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # same seed, same image
    assert editor.usage == {"flow_steps": 6, "images": 3}


def test_a_text_to_image_pipeline_draws_the_first_step():
    calls = []

    class TextToImage:  # any pipeline called as pipe(prompt=...) -> .images
        def __call__(self, prompt, num_inference_steps, generator, height, width, output_type="pil"):
            calls.append(prompt)
            return type("Out", (), {"images": [Image.new("RGB", (width, height), (200, 10, 10))]})()

    editor = DiffusersEditor(tiny_flux_kontext(), SETTINGS, first_step=TextToImage())
    blank = Image.new("RGB", (64, 64), (250, 250, 250))
    first = editor.sketch(PROMPT, [Plan("add a blue square", "a blue square")], blank, 0)
    assert calls == ["a blue square"] and first.getpixel((0, 0)) == (200, 10, 10)
    editor.sketch(
        PROMPT,
        [Plan("add a blue square", "a blue square"), Plan("add a red circle above the blue square", "...")],
        first,
        1,
    )
    assert calls == ["a blue square"]  # later steps edit the canvas


def test_qwen_image_edit_runs_the_staged_loop(monkeypatch):
    small_qwen_condition_images(monkeypatch)
    embedded = model_generator("staged", max_iters=3)
    editor = DiffusersEditor(tiny_qwen_image_edit(), SETTINGS)
    roles = embedded.roles_factory().with_roles(sketcher=editor, refiner=editor)
    gen = LoopGenerator("qwen", lambda: roles, "staged", max_iters=3)
    traj = gen.run(PROMPT, seed=0)
    sketches = [s for s in traj.steps if s.type == "sketch"]
    assert sketches and all(s.flow_steps == 2 and s.image.size == (32, 32) for s in sketches)
    assert traj.final.size == (32, 32)


def test_generate_with_a_flux_kontext_sketcher_writes_the_usual_files(flux_dir, tmp_path):
    r = _cli(
        "generate",
        PROMPT,
        "--sketcher",
        f"diffusers:{flux_dir}",
        "--image-size",
        "32",
        "--steps",
        "2",
        "--max-iters",
        "3",
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    record = json.loads((out / "trajectory.json").read_text())
    sketches = [s for s in record["steps"] if s["type"] == "sketch"]
    assert sketches and all(s["flow_steps"] == 2 and (out / s["image_file"]).is_file() for s in sketches)
    assert "sketcher diffusers:" in record["roles"]
    assert Image.open(out / "final.png").size == (32, 32) and (out / "index.html").is_file()
    embedded = _cli("generate", PROMPT, "--max-iters", "3", "--out", str(tmp_path / "embedded"))
    assert embedded.returncode == 0
    assert {p.suffix for p in out.iterdir()} == {p.suffix for p in (tmp_path / "embedded").iterdir()}


def test_bad_pipelines_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(SketchloopError, match="diffusers:REPO_OR_PATH"):
        parse_pipeline_spec("flux")
    r = _cli("generate", PROMPT, "--sketcher", f"diffusers:{tmp_path / 'nothing-here'}", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "cannot load diffusers pipeline" in r.stderr and "Traceback" not in r.stderr
    monkeypatch.setitem(sys.modules, "diffusers", None)  # the extra is not installed
    with pytest.raises(SketchloopError, match=r"sketchloop\[diffusers\]"):
        load_pipeline(str(tmp_path), SETTINGS)


def test_every_role_a_real_model_chat_plans_and_inspects_flux_draws_and_refines(flux_dir, server_factory, tmp_path):
    srv = server_factory(
        [
            ("json", {"done": False, "ins": "add a wooden chair", "des": "a wooden chair"}),
            ("json", {"consistent": False, "critique": "the chair is missing", "fix": "add a wooden chair"}),
            ("json", {"consistent": True, "critique": "a wooden chair"}),
            ("json", {"done": True}),
        ]
    )
    r = _cli(
        "generate",
        "a photo of a wooden chair",
        "--planner",
        "openai:vlm",
        "--inspector",
        "openai:vlm",
        "--sketcher",
        f"diffusers:{flux_dir}",
        "--refiner",
        f"diffusers:{flux_dir}",
        "--base-url",
        srv.url,
        "--image-size",
        "32",
        "--steps",
        "2",
        "--max-refines",
        "1",
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert [s["type"] for s in record["steps"]] == ["plan", "sketch", "inspect", "refine", "inspect", "end"]
    assert record["steps"][3]["text"] == "add a wooden chair" and record["steps"][3]["flow_steps"] == 2
    assert record["ended"] and record["flow_steps"] == 4 and record["text_tokens"] == 4 * 7
    assert len(srv.requests) == 4 and srv.requests[1]["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
