import io
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sketchloop.backends.shapes import DetectorJudge, LayoutEditor, ShapesStepWriter
from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset, shard_path
from sketchloop.teachers import blank_canvas
from sketchloop.world.parser import parse_prompt
from sketchloop.world.scene import SceneGraph


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    summary = build("trajectories", 60, out, seed=3, workers=2, shard_size=20, progress=False)
    return out, summary


def test_every_step_and_final_image_pass_the_judge(dataset):
    out, summary = dataset
    table = read_dataset(out)
    assert table.num_rows == 60 and summary["examples"] == 60
    judge = DetectorJudge()
    for ex in table.to_pylist():
        graph = SceneGraph.from_json(ex["scene"])
        assert ex["prompt"] == graph.to_text()
        sketches = [s for s in ex["steps"] if s["type"] == "sketch"]
        assert len(sketches) == len(ex["images"]) == len(ex["layouts"])
        assert ex["steps"][-1]["type"] == "end"
        final = Image.open(io.BytesIO(ex["images"][-1]))
        assert judge.judge(final, graph).consistent
        # each step's <des> is what its image shows
        des = [s["text"] for s in ex["steps"] if s["type"] == "des"]
        for text, png in zip(des, ex["images"]):
            assert judge.judge(Image.open(io.BytesIO(png)), parse_prompt(text)).consistent, text
    assert 3.0 <= summary["mean_intermediate_images"] <= 5.0


def test_resumed_build_equals_uninterrupted(dataset, tmp_path):
    out, _ = dataset
    build("trajectories", 60, tmp_path, seed=3, workers=1, shard_size=20, progress=False)
    # interrupt: a shard is lost and a half-written temporary file is left behind
    shard_path(tmp_path, "trajectories", 1, 3).unlink()
    (tmp_path / "data" / ".trajectories-00001-of-00003.parquet.999.tmp").write_bytes(b"partial")
    build("trajectories", 60, tmp_path, seed=3, workers=1, shard_size=20, progress=False)
    assert read_dataset(tmp_path).equals(read_dataset(out))


def test_additive_only_ablation_and_edit_ops(tmp_path):
    s = build("trajectories", 40, tmp_path / "a", seed=1, edit_ops=0.0, shard_size=40, progress=False)
    assert s["edit_op_shares"] == {"add": 1.0}
    s = build("trajectories", 40, tmp_path / "b", seed=1, edit_ops=0.6, shard_size=40, progress=False)
    assert s["edit_op_shares"]["add"] < 0.9 and len(s["edit_op_shares"]) >= 3


def test_editor_keeps_drawn_objects_in_place():
    rng = np.random.default_rng(0)
    graph = parse_prompt("a red circle left of a blue square, a green star above the blue square")
    steps = ShapesStepWriter().write_steps(graph, rng, edit_ops=0.0)
    canvas = blank_canvas()
    editor = LayoutEditor()
    for step in steps:
        new = editor.edit(canvas, step, rng)
        assert new.layout.objects[: len(canvas.layout.objects)] == canvas.layout.objects
        canvas = new
    assert DetectorJudge().judge(canvas.image, graph).consistent
    assert [s.ins for s in steps][0].startswith("add ")


def test_card_schema_and_cli(dataset, tmp_path):
    out, _ = dataset
    card = (out / "README.md").read_text()
    assert "images per example" in card and "judge rejections" in card
    assert (out / "contact_sheet.png").is_file()
    f = sorted((out / "data").glob("*.parquet"))[0]
    names = pq.read_schema(f).names
    assert names == ["id", "kind", "prompt", "scene", "steps", "images", "layouts", "label", "meta"]
    page = tmp_path / "t.html"
    r = subprocess.run(
        [sys.executable, "-m", "sketchloop.cli", "data", "show", str(out), "--index", "2", "--out", str(page)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert page.read_text().count("<img") == len(read_dataset(out).slice(2, 1).to_pylist()[0]["images"])
    for args, needle in [
        (["data", "build", "--kind", "videos", "--n", "5", "--out", str(tmp_path / "x")], "unknown data kind"),
        (["data", "build", "--kind", "trajectories", "--n", "61", "--out", str(out)], "other parameters"),
        (["data", "show", str(tmp_path), "--out", str(page)], "no dataset shards"),
        (["data", "show", str(out), "--index", "99", "--out", str(page)], "examples 0 to 59"),
    ]:
        r = subprocess.run([sys.executable, "-m", "sketchloop.cli", *args], capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_worded_trajectories_read_any_wording_and_plan_canonically(tmp_path):
    """`--wording`: a share of the prompts worded as people write them, each parsing back to
    the row's scene; the plans are plain English in the prompt's own order and directions (the
    last `<des>` is the prompt's scene as the parser reads it, never the scene sampled before
    the wording); a default build is unchanged."""
    import json
    import re

    from sketchloop.errors import SketchloopError
    from sketchloop.format import scene_text
    from sketchloop.world.parser import parse_prompt
    from sketchloop.world.scene import SceneGraph, scene_key

    build("trajectories", 12, tmp_path / "w", seed=5, shard_size=12, progress=False, wording=1.0)
    build("trajectories", 12, tmp_path / "plain", seed=5, shard_size=12, progress=False)
    worded, plain = (read_dataset(tmp_path / d).to_pylist() for d in ("w", "plain"))
    assert all(r["prompt"] == SceneGraph.from_json(r["scene"]).to_text() for r in plain)
    changed = turned = 0
    for w in worded:
        graph = SceneGraph.from_json(w["scene"])
        as_read = parse_prompt(w["prompt"])
        assert scene_key(as_read) == scene_key(graph)
        assert json.loads(w["meta"])["worded"] and not re.search("[0-9]", w["prompt"])
        changed += w["prompt"] != graph.to_text()
        des = [s["text"] for s in w["steps"] if s["type"] == "des"]
        assert des[-1] == scene_text(as_read.to_text())  # the prompt's order and directions
        turned += any(r.relation in ("below", "right of", "behind") for r in as_read.relations)
    assert changed >= 6 and turned >= 2
    with pytest.raises(SketchloopError, match="--wording"):
        build("inspect", 4, tmp_path / "i", seed=5, progress=False, wording=0.5)


def test_counts_share_draws_scenes_of_counted_groups():
    from sketchloop.data.trajectories import heldout_free_scene

    rng = np.random.default_rng(0)
    graphs = [heldout_free_scene(rng, mix={"counts": 1.0}) for _ in range(40)]
    assert all(1 <= len(g.groups) <= 2 and all(grp.count >= 2 for grp in g.groups) for g in graphs)
    assert {grp.count for g in graphs for grp in g.groups} == {2, 3, 4}
    rng = np.random.default_rng(0)
    plain = [heldout_free_scene(rng) for _ in range(40)]
    assert sum(all(grp.count >= 2 for grp in g.groups) for g in plain) < 20


def test_trees_share_draws_long_coloured_trees_and_mixes_with_the_other_shares(tmp_path):
    from sketchloop.data.trajectories import heldout_free_scene
    from sketchloop.errors import SketchloopError

    rng = np.random.default_rng(0)
    graphs = [heldout_free_scene(rng, mix={"trees": 1.0}) for _ in range(30)]
    assert all(len(g.groups) in (4, 5) and all(grp.color for grp in g.groups) for g in graphs)
    assert all(len(g.relations) >= len(g.groups) - 1 for g in graphs)  # every group related: a tree, or more
    assert 6 <= sum(grp.count >= 2 for g in graphs for grp in g.groups) <= 70  # many counted (0.4 of the groups)
    rng = np.random.default_rng(0)
    mixed = [heldout_free_scene(rng, mix={"counts": 0.5, "trees": 0.5}) for _ in range(40)]
    assert 8 <= sum(len(g.groups) >= 4 for g in mixed) <= 32 and 8 <= sum(len(g.groups) <= 2 for g in mixed)
    build("trajectories", 4, tmp_path / "t", seed=4, edit_ops=0.0, shard_size=4, progress=False, trees=0.5)
    assert json.loads((tmp_path / "t" / "build.json").read_text())["params"]["trees"] == 0.5
    assert "--trees 0.5" in (tmp_path / "t" / "README.md").read_text()
    with pytest.raises(SketchloopError, match="--trees"):
        build("trajectories", 4, tmp_path / "x", progress=False, counts=0.6, trees=0.6)


def test_planned_layouts_are_recorded_and_drawn_by_the_planning_writer(tmp_path):
    from sketchloop.errors import SketchloopError
    from sketchloop.world.layout import sample_layout

    build("trajectories", 6, tmp_path / "p", seed=4, edit_ops=0.0, shard_size=6, progress=False, planned_layouts=True)
    assert json.loads((tmp_path / "p" / "build.json").read_text())["params"]["layouts"] == "planned"
    assert "--planned-layouts" in (tmp_path / "p" / "README.md").read_text()
    assert "layouts" not in json.loads(_plain_build(tmp_path / "d").read_text())["params"]  # older builds resume
    graph = parse_prompt("a photo of a red circle left of a blue square and a green star above the blue square")
    steps = ShapesStepWriter(planned=True).write_steps(graph, np.random.default_rng(0), edit_ops=0.0)
    planned = sample_layout(graph, np.random.default_rng(0), planned=True)  # the writer's first draw
    drawn = sorted((t["x"], t["y"]) for step in steps for t in (step.op or {}).get("targets", []))
    assert drawn == sorted((o.x, o.y) for o in planned.objects)
    with pytest.raises(SketchloopError, match="planned-layouts"):
        build("facts", 4, tmp_path / "f", planned_layouts=True, progress=False)


def test_linked_order_adds_each_group_by_one_drawn_group_and_draws_behind_first(tmp_path):
    from sketchloop.backends.shapes import linked_order, writing_order
    from sketchloop.errors import SketchloopError

    hub = parse_prompt(
        "a photo of a purple triangle below two white crosses, the purple triangle above three yellow stars, "
        "the purple triangle left of a brown diamond"
    )
    assert writing_order(hub) == [1, 2, 3, 0]  # targets first: the triangle last, with three relations
    assert linked_order(hub) == [0, 1, 2, 3]  # the triangle first, then each group by it
    steps = ShapesStepWriter(linked=True).write_steps(hub, np.random.default_rng(0), edit_ops=0.0)
    assert [s.ins for s in steps] == [
        "add a purple triangle",
        "add two white crosses above the purple triangle",
        "add three yellow stars below the purple triangle",
        "add a brown diamond right of the purple triangle",
    ]
    assert hub.to_text().endswith(steps[-1].des)  # the last <des> is the prompt's scene, as in every order
    depth = parse_prompt("a photo of a red circle in front of a blue square and a green star left of the red circle")
    assert linked_order(depth)[0] == 1  # the square behind is drawn before the circle in front of it
    build("trajectories", 4, tmp_path / "l", seed=4, edit_ops=0.0, shard_size=4, progress=False, linked_order=True)
    assert json.loads((tmp_path / "l" / "build.json").read_text())["params"]["order"] == "linked"
    assert "--linked-order" in (tmp_path / "l" / "README.md").read_text()
    with pytest.raises(SketchloopError, match="linked-order"):
        build("facts", 4, tmp_path / "f", linked_order=True, progress=False)


def _plain_build(out):
    build("trajectories", 2, out, seed=4, edit_ops=0.0, shard_size=2, progress=False)
    return out / "build.json"


def test_text_only_plans_are_the_trajectories_sequences_without_images(tmp_path):
    """`--kind plans` writes what a trajectory's training sequence holds (the same prompt, plans
    and regions for the same random draws) with no image and no flow example; the trainer's
    text stages read it, the image stage does not."""
    from sketchloop.backends.shapes import shapes_teachers
    from sketchloop.data.trajectories import Rejections, make_trajectory
    from sketchloop.errors import SketchloopError
    from sketchloop.models.tokenizer import WordTokenizer
    from sketchloop.training.sequences import encode_row
    from sketchloop.training.trainer import STAGES

    teachers = shapes_teachers()
    tok = WordTokenizer()
    for seed in range(6):
        row = {
            "kind": "trajectories",
            **make_trajectory(np.random.default_rng(seed), teachers, 0.0, Rejections(), wording=0.5),
        }
        text = {
            "kind": "plans",
            **make_trajectory(np.random.default_rng(seed), teachers, 0.0, Rejections(), wording=0.5, images=False),
        }
        assert text["images"] == [] and text["prompt"] == row["prompt"]
        a, b = encode_row(row, tok, 16), encode_row(text, tok, 16)
        assert a.ids == b.ids and a.target == b.target
        assert a.flows and not b.flows
    summary = build("plans", 3, tmp_path / "p", seed=2, edit_ops=0.0, wording=0.5, progress=False)
    assert summary["examples"] == 3
    from sketchloop.pages.dataset import example_html

    first = read_dataset(tmp_path / "p").to_pylist()[0]
    page = example_html(first)  # its image steps shown by their region words
    assert all(s["text"] in page for s in first["steps"] if s["type"] == "sketch") and "<img src" not in page
    assert "plans" in STAGES["plan-sketch"] and "plans" in STAGES["regions"] and "plans" not in STAGES["image"]
    with pytest.raises(SketchloopError, match="plans"):
        build("plans", 1, tmp_path / "t", teacher={"model": "openai:x", "editor": "kontext"}, progress=False)
