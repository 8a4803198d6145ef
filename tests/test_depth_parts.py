"""Depth ("in front of", "behind") and counted parts (a star's points) in ShapesWorld: the
prompt language, scene graphs, layouts, the renderer, the detector, the judge, the
teachers' trajectories and critiques, and the benchmarks."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sketchloop.errors import PromptError
from sketchloop.world.critique import describe_detections, inspect_description
from sketchloop.world.detect import ShapesDetector
from sketchloop.world.judge import score_image
from sketchloop.world.layout import DEPTH_HIDDEN, Layout, PlacedObject, hidden_share, sample_layout
from sketchloop.world.parser import parse_prompt
from sketchloop.world.render import render, render_scene
from sketchloop.world.scene import SceneGraph
from sketchloop.world.vocab import DEPTH_CLASHES, STAR_POINTS, depth_colours_clash

DETECTOR = ShapesDetector()


def test_prompts_name_depth_and_points_in_every_phrasing():
    g = parse_prompt("a photo of a red circle in front of a blue square")
    assert [(r.relation) for r in g.relations] == ["in front of"]
    assert parse_prompt("a yellow square partly hiding a red circle").relations[0].relation == "in front of"
    for phrase in ("behind", "partly behind", "partly hidden by"):
        assert parse_prompt(f"a red circle {phrase} a blue square").relations[0].relation == "behind"
    for text in (
        "a red star with six points",
        "a red six-pointed star",
        "a six-pointed red star",
        "a red star with 6 points",
    ):
        assert parse_prompt(text).groups[0].points == 6, text
    g = parse_prompt(
        "a red star with seven points left of a blue star with six points and the star with six points above a circle"
    )
    assert [grp.points for grp in g.groups[:2]] == [7, 6] and g.relations[1].subject == 1
    assert parse_prompt(g.to_text()) == g  # canonical English round-trips


@pytest.mark.parametrize(
    "prompt, says",
    [
        ("a circle with six points", "only stars have points"),
        ("a star with nine points", "unknown word 'nine'"),
        ("a red circle in front of a red square", "the same colour"),
        ("a black circle in front of a white square", "seam reads as background"),
        ("a red circle in front of a blue square and the square in front of the circle", "cycle"),
        ("a red circle in front of a blue square and a green star in front of the square", "partly hidden by 2"),
    ],
)
def test_a_depth_or_points_prompt_that_cannot_be_drawn_gets_one_clear_error(prompt, says):
    with pytest.raises(PromptError, match=says):
        parse_prompt(prompt)


def test_a_star_outside_the_readable_range_is_refused():
    from sketchloop.world.scene import ObjectGroup

    with pytest.raises(PromptError, match="stars have 5 to 7 points"):
        ObjectGroup("star", "red", 1, 9)


def test_scene_json_and_geneval_metadata_carry_depth_and_points():
    g = parse_prompt("a red star with six points behind a blue circle")
    meta = g.to_geneval()
    assert meta["include"] == [
        {"class": "circle", "count": 1, "color": "blue"},
        {"class": "star", "count": 1, "color": "red", "points": 6, "position": ["behind", 0]},
    ]
    assert SceneGraph.from_geneval(meta).normalized() == g.normalized()
    assert SceneGraph.from_json(g.to_json()) == g
    plain = parse_prompt("a red circle above a blue square")
    assert "points" not in plain.to_json()  # scenes without points read and write as before


def test_layouts_overlap_depth_pairs_in_range_and_draw_what_is_behind_first():
    g = parse_prompt("a green triangle behind a red square and a blue circle left of the triangle")
    for seed in range(5):
        layout = sample_layout(g, seed)
        shapes = [o.shape for o in layout.objects]
        assert shapes.index("triangle") < shapes.index("square")  # drawn first, so behind
        tri, sq = (next(o for o in layout.objects if o.shape == s) for s in ("triangle", "square"))
        assert DEPTH_HIDDEN[0] <= hidden_share(sq, tri) <= DEPTH_HIDDEN[1]
        circle = next(o for o in layout.objects if o.shape == "circle")
        assert hidden_share(circle, tri) == 0 and hidden_share(tri, circle) == 0  # others keep apart
    for seed in range(10):  # uncoloured partners get colours the detector can tell apart
        a, b = sample_layout(parse_prompt("a circle in front of a square"), seed).objects
        assert not depth_colours_clash(a.color, b.color)
        # one colour per uncoloured group, not a random one: red, or the next that may overlap a partner
        assert {a.color, b.color} == {"red", "blue"}
        assert {o.color for o in sample_layout(parse_prompt("two triangles left of a star"), seed).objects} == {"red"}
        behind, front = sample_layout(parse_prompt("a diamond behind a red circle"), seed).objects
        assert (behind.color, front.color) == ("blue", "red")
    assert frozenset(("black", "white")) in DEPTH_CLASHES and frozenset(("red", "blue")) not in DEPTH_CLASHES


def test_the_renderer_draws_a_star_with_each_number_of_points():
    from sketchloop.world.outline import _unit_polygon

    for n in STAR_POINTS:
        assert len(_unit_polygon("star", n)) == 2 * n
    assert _unit_polygon("star") == _unit_polygon("star", 5)


def test_render_cli_draws_the_front_object_over_the_back_one(tmp_path):
    from cli_run import cli

    out = tmp_path / "depth.png"
    r = cli("render", "a photo of a red circle in front of a blue square", "--out", str(out))
    assert r.returncode == 0, r.stderr
    found = DETECTOR.detect(Image.open(out).convert("RGB"))
    circle = next(i for i, d in enumerate(found) if (d.shape, d.color) == ("circle", "red"))
    square = next(i for i, d in enumerate(found) if (d.shape, d.color) == ("square", "blue"))
    assert found[circle].in_front_of == (square,) and found[square].in_front_of == ()


def _swap_depth(layout: Layout) -> Layout:
    return Layout(tuple(reversed(layout.objects)))


@pytest.mark.parametrize("seed", range(4))
def test_the_detector_recovers_both_objects_of_a_depth_pair_and_their_order(seed):
    g = parse_prompt("a photo of a yellow triangle in front of a red circle")
    image, layout = render_scene(g, seed)
    found = DETECTOR.detect(image)
    assert sorted((d.shape, d.color) for d in found) == [("circle", "red"), ("triangle", "yellow")]
    for d in found:  # amodal boxes: the hidden circle's box is its whole box
        obj = next(o for o in layout.objects if o.shape == d.shape)
        assert np.abs(np.array(d.box) - np.array(obj.box) * 64).max() < 1.0
    assert score_image(found, g.to_geneval())[0]
    swapped = DETECTOR.detect(render(_swap_depth(layout)))
    ok, why = score_image(swapped, g.to_geneval())
    assert not ok and "the other way round" in why


def test_the_detector_reads_each_number_of_points():
    for n in STAR_POINTS:
        layout = Layout((PlacedObject("star", "red", 0.5, 0.5, 0.25, 0, n),))
        (d,) = DETECTOR.detect(render(layout))
        assert (d.shape, d.points) == ("star", n)


def test_a_blended_object_stays_one_object():
    """A generative model may paint one object in two blended colours: that is not two
    objects in depth."""
    layout = Layout((PlacedObject("circle", "red", 0.5, 0.5, 0.3, 0),))
    rgb = np.asarray(render(layout), dtype=np.float32)
    mask = np.abs(rgb - 128).sum(-1) > 60
    ramp = np.linspace(0, 1, 64)[None, :, None]
    blend = (1 - ramp) * np.array([220, 30, 30]) + ramp * np.array([250, 230, 40])
    rgb[mask] = blend.repeat(64, 0)[mask]
    found = DETECTOR.detect(Image.fromarray(rgb.astype(np.uint8)))
    assert len(found) == 1 and found[0].shape == "circle"


def test_the_judge_checks_points_like_colours():
    g = parse_prompt("a red star with six points left of a blue star with seven points")
    image, layout = render_scene(g, 0)
    assert score_image(DETECTOR.detect(image), g.to_geneval())[0]
    wrong = Layout(tuple(replace(o, points=5) if o.color == "red" else o for o in layout.objects))
    assert not score_image(DETECTOR.detect(render(wrong)), g.to_geneval())[0]
    single = parse_prompt("a red star with six points")
    five = Layout((PlacedObject("star", "red", 0.5, 0.5, 0.25, 0, 5),))
    ok, why = score_image(DETECTOR.detect(render(five)), single.to_geneval())
    assert not ok and why == "expected star>=1 with 6 points, found 1 with 5"


def test_critiques_name_the_depth_or_points_error_and_the_fix():
    g = parse_prompt(
        "a photo of a red circle in front of a blue square and a yellow star with six points left of the square"
    )
    image, layout = render_scene(g, 1)
    assert inspect_description(describe_detections(DETECTOR.detect(image), g), g, final=True).consistent
    behind = Layout(tuple(sorted(layout.objects, key=lambda o: o.shape != "circle")))
    c = inspect_description(describe_detections(DETECTOR.detect(render(behind)), g), g, final=True)
    assert c.problems[0].critique == "the red circle should be in front of the blue square, not behind"
    assert c.refine == "move the red circle in front of the blue square"
    seven = Layout(tuple(replace(o, points=7) if o.shape == "star" else o for o in layout.objects))
    c = inspect_description(describe_detections(DETECTOR.detect(render(seven)), g), g, final=True)
    assert c.problems[0].kind == "wrong_points" and c.refine == "change the yellow star with seven points to six points"


def test_teacher_trajectories_draw_what_is_behind_first_and_fix_depth_with_a_move():
    from sketchloop.backends.shapes import shapes_teachers
    from sketchloop.teachers import blank_canvas

    teachers = shapes_teachers()
    rng = np.random.default_rng(0)
    g = parse_prompt("a photo of a red circle behind a blue square")
    texts = set()
    for _ in range(6):
        steps = teachers.writer.write_steps(g, rng, 1.0)
        texts |= {s.ins for s in steps}
        canvas = blank_canvas(64)
        for step in steps:
            canvas = teachers.editor.edit(canvas, step, rng)
            assert teachers.judge.judge(canvas.image, step.scene).consistent, step.ins
        assert score_image(DETECTOR.detect(canvas.image), g.to_geneval())[0]
        adds = [s.ins for s in steps if s.ins.startswith("add")]
        assert next(k for k, t in enumerate(adds) if "circle" in t) < next(
            k for k, t in enumerate(adds) if "square" in t
        )
    assert "move the blue square in front of the red circle" in texts


def test_the_depth_and_parts_benchmarks_are_shipped_held_out_and_scored_exactly_by_the_oracle(tmp_path):
    from sketchloop.evaluation.benchmark import load_benchmark
    from sketchloop.evaluation.heldout import SHAPES_WORLD_BENCHMARKS
    from sketchloop.generators import get_generator

    for name, tag in (("shapes-depth", "depth"), ("shapes-parts", "parts")):
        lines, val = load_benchmark(name), load_benchmark(f"{name}-val")
        assert len(lines) >= 300 and len(val) >= 100 and name in SHAPES_WORLD_BENCHMARKS
        assert {m["tag"] for m in lines} == {tag}
        key = "position" if tag == "depth" else "points"
        assert all(any(key in str(i) for i in m["include"]) for m in lines)
        oracle = get_generator("oracle")
        for m in lines[:12]:
            image = oracle.generate(m["prompt"], 0).image
            assert score_image(DETECTOR.detect(image), m)[0], m["prompt"]


def test_data_builds_draw_depth_and_parts_scenes_in_the_shares_asked(tmp_path):
    import json

    from sketchloop.data.build import build
    from sketchloop.data.schema import read_dataset
    from sketchloop.errors import SketchloopError

    build("trajectories", 12, tmp_path / "t", seed=4, edit_ops=0.5, depth=0.5, parts=0.5, progress=False)
    rows = read_dataset(tmp_path / "t").to_pylist()
    graphs = [SceneGraph.from_json(r["scene"]) for r in rows]
    depth = [g for g in graphs if any(r.relation in ("in front of", "behind") for r in g.relations)]
    parts = [g for g in graphs if any(grp.points for grp in g.groups)]
    assert len(depth) + len(parts) >= 12 and depth and parts
    assert "--depth 0.5 --parts 0.5" in (tmp_path / "t" / "README.md").read_text()
    build("refine", 8, tmp_path / "r", seed=5, depth=1.0, progress=False)
    rows = read_dataset(tmp_path / "r").to_pylist()
    assert all(
        any(r.relation in ("in front of", "behind") for r in SceneGraph.from_json(x["scene"]).relations) for x in rows
    )
    assert any(json.loads(x["meta"]).get("flaw") for x in rows)
    with pytest.raises(SketchloopError, match="--depth, --parts, --counts and --trees"):
        build("trajectories", 4, tmp_path / "bad", depth=0.8, parts=0.5, progress=False)


def test_the_refine_pipeline_makes_depth_and_points_flaws_a_critique_names():
    from sketchloop.data.refine import DEPTH_FLAW, POINTS_FLAW, _flaw, flaw_kinds

    g = parse_prompt("a red circle in front of a blue square and a yellow star with six points above the square")
    assert flaw_kinds(g)[-2:] == (DEPTH_FLAW, POINTS_FLAW)
    assert flaw_kinds(parse_prompt("a red circle above a blue square")) == flaw_kinds(parse_prompt("a circle"))
    image, layout = render_scene(g, 2)
    circle = next(o for o in layout.objects if o.shape == "circle")
    square = next(o for o in layout.objects if o.shape == "square")
    op = {"op": "add", "group": circle.group, "relations": [["in front of", square.group]]}
    rng = np.random.default_rng(0)
    behind = _flaw(layout, op, DEPTH_FLAW, rng)
    c = inspect_description(describe_detections(DETECTOR.detect(render(behind)), g), g, final=True)
    assert [p.kind for p in c.problems] == ["wrong_relation"] and "not behind" in c.text
    star = next(o for o in layout.objects if o.shape == "star")
    wrong = _flaw(layout, {"op": "add", "group": star.group, "points": 6}, POINTS_FLAW, rng)
    c = inspect_description(describe_detections(DETECTOR.detect(render(wrong)), g), g, final=True)
    assert [p.kind for p in c.problems] == ["wrong_points"]


def test_perturbed_plans_keep_or_drop_points_as_their_shape_allows():
    """A perturbation never leaves points on a shape other than a star (such a scene is invalid
    and stopped inspect builds), keeps a star's points when it changes its colour or count, and
    can change the points themselves; a missing star's fix names its points."""
    from sketchloop.data.inspections import _perturb, _perturb_graph
    from sketchloop.data.refine import _flaw
    from sketchloop.world.instructions import Scene
    from sketchloop.world.scene import ObjectGroup

    g = parse_prompt("a red star with six points above a blue square")
    op = {"op": "add", "group": 0, "shape": "star", "color": "red", "count": 1, "points": 6, "relations": []}
    rng = np.random.default_rng(0)
    for kind in ("extra_object", "wrong_color", "wrong_count", "wrong_points"):
        for _ in range(5):
            new = _perturb(op, kind, Scene(), g, rng)
            assert new is not None and (new["shape"] == "star" or new.get("points") is None), (kind, new)
            assert (new["points"] != 6) == (kind == "wrong_points") or kind == "extra_object", (kind, new)
            wrong = _perturb_graph(g, kind, rng)
            assert wrong is None or all(x.points is None or x.shape == "star" for x in wrong.groups)
    lone = parse_prompt("a red star with six points")
    assert {_perturb_graph(lone, "wrong_points", np.random.default_rng(s)).groups[0].points for s in range(8)} == {5, 7}
    star = PlacedObject("star", "red", 0.3, 0.3, 0.25, group=0, points=6)
    for seed in range(8):
        obj = _flaw(Layout((star,)), {"op": "add", "group": 0}, "wrong_shape", np.random.default_rng(seed)).objects[0]
        assert obj.points is None and obj.shape != "star"
    two = parse_prompt("a photo of two red stars with six points")
    one = SceneGraph((ObjectGroup("star", "red", 1, 6),), ())
    assert inspect_description(one, two, final=True).refine == "add a red star with six points"


def test_the_guided_decode_rules_refuse_depth_and_points_prompts_with_one_line():
    from sketchloop.backends.unified import _planar_only
    from sketchloop.errors import SketchloopError

    _planar_only("a red circle above a blue square and a shape like a playing-card suit with four points")
    for prompt in ("a red circle behind a blue square", "a photo of a six-pointed star", "a star with six points"):
        with pytest.raises(SketchloopError, match="without --guided"):
            _planar_only(prompt)


def test_the_tokenizer_holds_the_depth_and_points_words_after_every_older_word():
    import json
    from pathlib import Path

    from sketchloop.models.tokenizer import DEPTH_AND_PARTS_WORDS, WordTokenizer

    tok = WordTokenizer()
    assert not tok.unknown_words("a red six-pointed star partly hiding a circle, the circle behind a square")
    assert not tok.unknown_words("a green star with seven points in front of a blue square partly hidden by a circle")
    new = {"behind", "by", "five", "front", "have", "hidden", "hiding", "partly", "pointed", "seven", "six"}
    assert new <= DEPTH_AND_PARTS_WORDS and set(tok.vocab[-len(new) :]) == new  # appended last: older ids kept
    shipped = json.loads(
        (Path(__file__).parents[1] / "sketchloop/checkpoints/shapes-unified/tokenizer.json").read_text()
    )
    assert tok.vocab[: len(shipped["vocab"])] == shipped["vocab"]


def test_the_scene_mix_draws_depth_and_parts_scenes_in_the_shares_asked():
    """A draw that fails its kind (a depth scene with no pair in depth) draws that kind again,
    so the shares hold (redrawing the kind once cut a 0.35 depth share to 0.16)."""
    from sketchloop.data.trajectories import heldout_free_scene

    rng = np.random.default_rng(0)
    graphs = [heldout_free_scene(rng, mix={"depth": 0.35, "parts": 0.3}) for _ in range(150)]
    depth = np.mean([any(r.relation in ("in front of", "behind") for r in g.relations) for g in graphs])
    parts = np.mean([any(grp.points for grp in g.groups) for g in graphs])
    assert 0.27 <= depth <= 0.43 and 0.23 <= parts <= 0.38, (depth, parts)
