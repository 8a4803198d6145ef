"""`data build` with real-model teachers, offline: a chat model (a local OpenAI-compatible
server with scripted answers) as decomposer / step writer / judge and a tiny FLUX.1 Kontext
pipeline as editor; outages end in a clear error and the build resumes where it stopped."""

import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("openai")

from tiny_pipelines import tiny_flux_kontext  # noqa: E402

from sketchloop.data.build import build  # noqa: E402
from sketchloop.data.schema import read_dataset  # noqa: E402
from sketchloop.errors import SketchloopError  # noqa: E402

SCENE = {
    "objects": [
        {"name": "circle", "count": 1, "attributes": ["red"]},
        {"name": "square", "count": 1, "attributes": ["blue"]},
    ],
    "relations": [{"subject": 0, "relation": "above", "object": 1}],
}
STEPS = {
    "steps": [
        {"op": "add", "ins": "add a blue square", "des": "a blue square"},
        {"op": "add", "ins": "add a red circle above the blue square", "des": "a red circle above a blue square"},
    ]
}
FLAW = {"op": "add", "ins": "add a green circle above the blue square", "des": "a green circle above a blue square"}
PROBLEM = {
    "not_drawn_yet": [],
    "problems": [{"critique": "the circle should be red, not green", "fix": "change the green circle to red"}],
}


class Teacher:
    """Answers by the schema asked for; after a flawed step, the next image analysis finds the flaw."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after, self.flaw_pending = 0, fail_after, False

    def __call__(self, body):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            return ("status", 503)  # the server went down
        schema = body["response_format"]["json_schema"]["name"]
        text = body["messages"][0]["content"][0]["text"]
        has_image = len(body["messages"][0]["content"]) > 1
        if schema == "SceneAnswer":
            return ("json", SCENE)
        if schema == "StepsAnswer":
            return ("json", STEPS)
        if schema == "StepAnswer":
            self.flaw_pending = True
            return ("json", FLAW)
        if schema == "VerdictAnswer":
            return ("json", {"consistent": True, "reason": "it shows the scene"})
        found = ("green" in text) if not has_image else self.flaw_pending
        self.flaw_pending = False
        return ("json", PROBLEM if found else {"not_drawn_yet": [], "problems": []})


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipes") / "tiny-flux-kontext"
    tiny_flux_kontext().save_pretrained(path)
    return path


def spec(url, flux_dir, **extra):
    return {
        "model": "teacher",
        "base_url": url,
        "editor": f"diffusers:{flux_dir}",
        "first_step": None,
        "templates": None,
        "prompts_file": None,
        "image": {"size": 32, "steps": 2},
        "prompts": None,
        "client": {"backoff": 0.01, "max_retries": 2, "timeout": 10},
        **extra,
    }


def test_trajectories_from_a_prompt_file_through_the_cli(server_factory, flux_dir, tmp_path):
    srv = server_factory(Teacher())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a red circle above a blue square\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sketchloop.cli",
            "data",
            "build",
            "--kind",
            "trajectories",
            "--n",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--teacher",
            "openai:teacher",
            "--base-url",
            srv.url,
            "--editor",
            f"diffusers:{flux_dir}",
            "--prompts",
            str(prompts),
            "--image-size",
            "32",
            "--steps",
            "2",
            "--edit-ops",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_dataset(tmp_path / "d").to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["prompt"] == "a photo of a red circle above a blue square"
        assert json.loads(row["scene"])["objects"][0]["name"] == "circle"
        assert [s["type"] for s in row["steps"]] == ["ins", "des", "sketch"] * 2 + ["end"]
        assert row["steps"][0]["text"] == "add a blue square" and row["layouts"] == ["", ""]
        assert all(Image.open(io.BytesIO(b)).size == (32, 32) for b in row["images"])
    card = (tmp_path / "d" / "README.md").read_text()
    assert "real teachers" in card and "--teacher openai:teacher" in card


@pytest.mark.parametrize("kind", ["inspect", "refine"])
def test_inspect_and_refine_examples_from_flawed_steps(server_factory, flux_dir, tmp_path, kind):
    srv = server_factory(Teacher())
    build(kind, 6, tmp_path / kind, seed=3, teacher=spec(srv.url, flux_dir), progress=False)
    rows = read_dataset(tmp_path / kind).to_pylist()
    assert len(rows) == 6 and {r["label"] for r in rows} == {"consistent", "inconsistent"}
    for row in rows:
        types = [s["type"] for s in row["steps"]]
        if row["label"] == "inconsistent":
            assert types[-2] == "inspect" or types[-3] == "inspect"
            refine = next(s for s in row["steps"] if s["type"] == "refine")
            assert refine["text"] == "change the green circle to red"
        else:
            assert types[-1] == "inspect" and "refine" not in types
        if kind == "refine" and row["label"] == "inconsistent":
            assert types[-4:] == ["sketch", "inspect", "refine", "sketch"]  # flawed image, analysis, fix, corrected


def outage_then_resume(server_factory, flux_dir, tmp_path, engine: str = "local") -> None:
    """A chat server that goes down mid-build stops it with a clear error; a rerun against a
    healthy server resumes mid-shard and ends with the rows of an uninterrupted build."""
    healthy = server_factory(Teacher())
    build("trajectories", 4, tmp_path / "whole", seed=5, teacher=spec(healthy.url, flux_dir), progress=False)
    whole = read_dataset(tmp_path / "whole").to_pylist()

    down = server_factory(Teacher(fail_after=12))  # about two examples in, the server goes away
    out = tmp_path / "resumed"
    with pytest.raises(SketchloopError, match="failed 3 times"):
        build("trajectories", 4, out, seed=5, teacher=spec(down.url, flux_dir), progress=False, engine=engine)
    kept = sorted((out / "data" / ".partial").rglob("*.parquet"))
    assert 1 <= len(kept) < 4  # finished examples are on disk
    back = server_factory(Teacher())
    build("trajectories", 4, out, seed=5, teacher=spec(back.url, flux_dir), progress=False, engine=engine)
    assert read_dataset(out).to_pylist() == whole  # as if never interrupted
    assert back.script.calls < healthy.script.calls  # the finished examples were not asked for again
    assert not (out / "data" / ".partial" / "trajectories-00000").exists()


def test_a_server_outage_stops_the_build_and_a_rerun_resumes_it(server_factory, flux_dir, tmp_path):
    outage_then_resume(server_factory, flux_dir, tmp_path)


def test_shapesworld_builds_resume_mid_shard_too(tmp_path, monkeypatch):
    import sketchloop.data.trajectories as trajectories

    build("trajectories", 6, tmp_path / "whole", seed=1, progress=False)
    real, made = trajectories.make_trajectory, []

    def stop_after_four(*args, **kwargs):
        if len(made) == 4:
            raise KeyboardInterrupt
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trajectories, "make_trajectory", stop_after_four)
    with pytest.raises(KeyboardInterrupt):
        build("trajectories", 6, tmp_path / "resumed", seed=1, progress=False)
    monkeypatch.setattr(trajectories, "make_trajectory", real)
    build("trajectories", 6, tmp_path / "resumed", seed=1, progress=False)
    a = pq.read_table(next((tmp_path / "whole" / "data").glob("*.parquet"))).to_pylist()
    b = pq.read_table(next((tmp_path / "resumed" / "data").glob("*.parquet"))).to_pylist()
    assert a == b


def test_teacher_and_editor_go_together(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sketchloop.cli",
            "data",
            "build",
            "--kind",
            "trajectories",
            "--n",
            "1",
            "--out",
            str(tmp_path / "d"),
            "--teacher",
            "openai:x",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "go together" in r.stderr and "Traceback" not in r.stderr


def test_a_build_with_qwen_image_edit_drawing(server_factory, tmp_path, monkeypatch):
    from tiny_pipelines import small_qwen_condition_images, tiny_qwen_image_edit

    import sketchloop.backends.diffusers_editor as editor_module

    small_qwen_condition_images(monkeypatch)
    pipe = tiny_qwen_image_edit()  # built in memory (its test processor cannot be saved and loaded)
    monkeypatch.setattr(editor_module, "load_pipeline", lambda name, settings: pipe)
    srv = server_factory(Teacher())
    build("refine", 2, tmp_path / "q", seed=0, teacher=spec(srv.url, "tiny-qwen-image-edit"), progress=False)
    rows = read_dataset(tmp_path / "q").to_pylist()
    assert len(rows) == 2 and all(Image.open(io.BytesIO(b)).size == (32, 32) for r in rows for b in r["images"])


def test_open_world_datasets_export_to_bagel(server_factory, flux_dir, tmp_path):
    """Both worlds export: real-teacher datasets (no layouts, 32 px editor images) too."""
    from sketchloop.data.export import export_bagel

    srv = server_factory(Teacher())
    for kind in ("trajectories", "inspect", "refine"):
        build(kind, 3, tmp_path / kind, seed=2, teacher=spec(srv.url, flux_dir), progress=False)
    counts = export_bagel([tmp_path / k for k in ("trajectories", "inspect", "refine")], tmp_path / "bagel")
    assert counts["t2i_pretrain"] == 3 and counts["vlm_sft"] == 9 and counts["interleaved"] == 9
    info = json.loads((tmp_path / "bagel" / "dataset_info.json").read_text())
    images = {
        b
        for k in ("trajectories", "inspect", "refine")
        for r in read_dataset(tmp_path / k).to_pylist()
        for b in r["images"]
    }
    edit = pq.read_table(info["unified_edit"]["sketchloop_edit"]["data_dir"] + "/edit-00000.parquet").to_pylist()
    assert all(img in images for row in edit for img in row["image_list"][1:])
    vlm = info["vlm_sft"]["sketchloop_vlm"]
    for line in open(vlm["jsonl_path"]):
        record = json.loads(line)
        for file in record["image"] if isinstance(record["image"], list) else [record["image"]]:
            data = open(f"{vlm['data_dir']}/{file}", "rb").read()
            assert data in images or Image.open(io.BytesIO(data)).size == (32, 32)
