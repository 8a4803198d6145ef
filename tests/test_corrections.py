"""On-policy region corrections (data/corrections.py): the model's own plans with the teacher's regions."""

import json

import numpy as np
import pytest

from sketchloop.backends.shapes import DetectorJudge, add_step, shapes_teachers, writing_order
from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.build import build
from sketchloop.data.corrections import leaves_room, make_correction, make_plan_correction, teacher_regions
from sketchloop.data.schema import read_dataset
from sketchloop.data.trajectories import Rejections, heldout_free_scene
from sketchloop.errors import SketchloopError
from sketchloop.evaluation.heldout import row_allows
from sketchloop.evaluation.process import failure_stage, plan_layout
from sketchloop.models.regions import parse_regions, placed
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.training.sequences import encode_row
from sketchloop.world.layout import Layout, fits, placement_order, relation_needs
from sketchloop.world.parser import parse_prompt
from sketchloop.world.render import render


def objects_of(regions, group, spec, color):
    return tuple(placed(r, spec.shape, color, group, spec.points) for r in parse_regions(regions))


@pytest.mark.parametrize(
    "prompt, so_far",
    [
        ("a photo of two red circles left of a blue square", "two red circles left of a blue square"),
        (
            "a photo of three green stars above a yellow cross and a white diamond right of the yellow cross",
            "three green stars above a yellow cross",
        ),
        ("a photo of a red circle in front of a blue square", "a red circle in front of a blue square"),
    ],
)
def test_teacher_regions_meet_the_prompt_beside_what_is_drawn(prompt, so_far):
    """The teacher's regions for group 0, beside group 1 already drawn, render into a scene the
    judge passes: the group's count, apart, in its relation to the drawn group."""
    graph, judge = parse_prompt(prompt), DetectorJudge()
    anchor = objects_of("x7 y11 s8", 1, graph.groups[1], graph.groups[1].color or "red")
    for seed in range(4):
        regions = teacher_regions(np.random.default_rng(seed), graph, 0, [1], anchor)
        assert regions is not None and len(parse_regions(regions)) == graph.groups[0].count
        mine = objects_of(regions, 0, graph.groups[0], graph.groups[0].color or "red")
        assert judge.judge(render(Layout(anchor + mine)), parse_prompt(so_far)).consistent, (prompt, regions)


def test_teacher_regions_give_up_where_nothing_fits():
    """A group with no room for its relation (a square hugging the left edge, a circle to go left of it)."""
    graph = parse_prompt("a photo of a red circle left of a blue square")
    anchor = objects_of("x1 y8 s8", 1, graph.groups[1], "blue")
    assert teacher_regions(np.random.default_rng(0), graph, 0, [1], anchor) is None


def test_the_teacher_finds_room_in_crowded_scenes_as_the_layout_sampler_does():
    """On an empty canvas of a 4-5-group scene the teacher places the first group with room for
    all the rest (the layout sampler's schedule: smaller objects, tree cells); a greedy
    group-by-group completion at full size finds it for about a third of such scenes."""
    rng, mix = np.random.default_rng(5), shapes_teachers().scene_mix
    graphs = []
    while len(graphs) < 20:
        if len((graph := heldout_free_scene(rng, 1.0, mix)).groups) >= 4:
            graphs.append(graph)
    found = 0
    for graph in graphs:
        first = placement_order(graph)[0]
        regions = teacher_regions(np.random.default_rng(0), graph, first, [], ())
        if regions is None:
            continue
        found += 1
        spec = graph.groups[first]
        mine = objects_of(regions, first, spec, spec.color or "red")
        assert len(mine) == spec.count and leaves_room(np.random.default_rng(1), graph, [first], mine)
    assert found >= 18


@pytest.fixture(scope="module")
def shipped():
    return UnifiedRoles.from_pretrained(), shapes_teachers()


def test_a_correction_is_the_models_own_plan_with_regions_the_judge_passes(shipped):
    """Each example: the model's own plans (as it writes them at its inference settings) up to a
    step, then that step's plan with the teacher's regions; rendered, the scene so far passes the
    judge against the step's `<des>`; the model's own regions there are kept in the meta."""
    model, teachers = shipped
    judge = DetectorJudge()
    rng = np.random.default_rng(4)
    labels = set()
    for _ in range(4):
        row = make_correction(rng, model, teachers, Rejections())
        assert row_allows(row) and row["images"] == []
        steps = row["steps"]
        plans = [steps[i : i + 3] for i in range(0, len(steps), 3)]
        assert all([s["type"] for s in p] == ["ins", "des", "sketch"] for p in plans)
        history = []
        for ins, des, _ in plans[:-1]:  # the model's own plans, replayed greedily, write the same text
            plan = model.plan(row["prompt"], history, 0)
            assert (plan.ins, plan.des) == (ins["text"], des["text"])
            history.append(plan)
        plan = model.plan(row["prompt"], history, 0)
        meta = json.loads(row["meta"])
        assert (plan.ins, plan.des, plan.regions) == (plans[-1][0]["text"], plans[-1][1]["text"], meta["model_regions"])
        graph = parse_prompt(row["prompt"])
        layout = plan_layout(graph, [(d["text"], s["text"]) for _, d, s in plans])
        assert layout is not None
        drawn_before = len(layout.objects) - len(parse_regions(plans[-1][2]["text"]))
        for i, o in enumerate(layout.objects[drawn_before:], drawn_before):  # apart from everything drawn before it,
            assert fits(o, layout.objects[:i], relation_needs(graph))  # in the prompt's relations to the drawn groups
        if meta["history_right"]:  # on a canvas with no earlier mistake, the whole scene so far passes
            assert judge.judge(render(layout), parse_prompt(plan.des)).consistent
        labels.add(row["label"])
        assert row["label"] == ("confirmed" if meta["model_right"] else "corrected")
    assert "corrected" in labels


def test_corrections_train_only_the_corrected_regions():
    """Encoded for training: the history and the plan carry no loss, the corrected step's regions
    and `</img>` do, and no flow example is made (the row holds no image)."""
    tok = WordTokenizer()
    row = {
        "kind": "corrections",
        "prompt": "a photo of two red circles left of a blue square",
        "steps": [
            {"type": "ins", "text": "add a blue square", "image": -1, "op": ""},
            {"type": "des", "text": "a blue square", "image": -1, "op": ""},
            {"type": "sketch", "text": "x12 y8 s8", "image": -1, "op": ""},
            {"type": "ins", "text": "add two red circles left of the blue square", "image": -1, "op": ""},
            {"type": "des", "text": "two red circles left of a blue square", "image": -1, "op": ""},
            {"type": "sketch", "text": "x3 y4 s8 x4 y11 s7", "image": -1, "op": ""},
        ],
        "images": [],
        "layouts": [],
    }
    ex = encode_row(row, tok, 64)
    learned = [tok.vocab[i] for i, t in zip(ex.ids, ex.target) if t]
    assert learned == ["<img>", "x3", "y4", "s8", "x4", "y11", "s7", "</img>"]
    assert ex.flows == [] and ex.canvases == []
    text = tok.decode(ex.ids)
    assert "<img> x12 y8 s8 </img> <ins> add two red circles" in text
    # `--region-order raster`: the corrected step's teacher regions in reading order, the model's own kept
    row["steps"][-1]["text"] = "x4 y11 s7 x3 y4 s8"
    row["steps"][2]["text"] = "x12 y8 s8 x2 y2 s6"
    raster = encode_row(row, tok, 64, "raster")
    assert [tok.vocab[i] for i, t in zip(raster.ids, raster.target) if t][1:7] == ["x3", "y4", "s8", "x4", "y11", "s7"]
    assert "<img> x12 y8 s8 x2 y2 s6 </img>" in tok.decode(raster.ids)


def test_corrections_build_needs_a_checkpoint_and_writes_its_card(tmp_path, shipped):
    with pytest.raises(SketchloopError, match="give its --checkpoint"):
        build("corrections", 4, tmp_path / "none", progress=False)
    from sketchloop.backends.unified import SHIPPED_CHECKPOINT

    summary = build("corrections", 4, tmp_path / "ds", seed=2, checkpoint=SHIPPED_CHECKPOINT, progress=False)
    assert summary["examples"] == 4 and summary["mean_intermediate_images"] == 0  # image steps named by regions only
    rows = read_dataset(tmp_path / "ds").to_pylist()
    assert {r["kind"] for r in rows} == {"corrections"}
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "the exact teacher places them" in card
    build("corrections", 2, tmp_path / "own", seed=2, checkpoint=SHIPPED_CHECKPOINT, own_regions=4, progress=False)
    card = (tmp_path / "own" / "README.md").read_text()
    assert "--own-regions 4" in card and "| regions labelled by |" in card
    with pytest.raises(SketchloopError, match="--relabel"):
        build("corrections", 2, tmp_path / "bad", checkpoint=SHIPPED_CHECKPOINT, relabel="words", progress=False)
    build("corrections", 2, tmp_path / "plans", seed=2, checkpoint=SHIPPED_CHECKPOINT, relabel="plans", progress=False)
    rows = read_dataset(tmp_path / "plans").to_pylist()
    assert len(rows) == 2 and all(json.loads(r["meta"])["teacher"] == "plan" for r in rows)
    card = (tmp_path / "plans" / "README.md").read_text()
    assert "--relabel plans" in card and "first wrong plan" in card


@pytest.mark.parametrize(
    "last, regions, final, stage",
    [
        ("a red circle left of a blue square", "x3 y8 s8", "exact", "right"),
        ("a red circle left of a blue square", "x3 y8 s8", "blank", "drawing"),
        ("a red circle left of a blue square", "x13 y2 s8", "exact", "regions"),  # right of the square
        ("a red circle left of a blue square", "x3 y8 s8 x3 y2 s8", "exact", "regions"),  # two regions for one
        ("a red circle right of a blue square", "x14 y8 s6", "exact", "plan"),
    ],
)
def test_failure_stage_says_where_a_final_image_went_wrong(last, regions, final, stage):
    """Plan (the last `<des>` is not the prompt), regions (the plan's regions, drawn exactly, fail
    the judge) or drawing (the regions pass, the image does not)."""
    from sketchloop.format import Plan
    from sketchloop.loop.staged import Trajectory
    from sketchloop.teachers import blank_canvas

    prompt = "a photo of a red circle left of a blue square"
    plans = [Plan("add a blue square", "a blue square", "x10 y8 s8"), Plan("add a red circle", last, regions)]
    layout = plan_layout(parse_prompt(prompt), [(p.des, p.regions) for p in plans])
    image = render(layout) if final == "exact" and layout is not None else blank_canvas(64).image
    traj = Trajectory(prompt, "staged", final=image, plans=plans)
    assert failure_stage(traj, DetectorJudge()) == stage


def test_a_step_planned_against_the_prompt_is_wrong_in_the_plan_though_the_last_des_is_right():
    """The star is planned below the square (the prompt puts it above) and drawn there; the last
    `<des>` copies the prompt. The image is wrong in the plan, not in the regions."""
    from sketchloop.format import Plan
    from sketchloop.loop.staged import Trajectory

    prompt = "a photo of a red circle left of a blue square and a green star above the blue square"
    plans = [
        Plan("add a blue square", "a blue square", "x10 y8 s6"),
        Plan("add a green star below the blue square", "a green star below a blue square", "x10 y13 s6"),
        Plan("add a red circle left of the blue square", prompt.removeprefix("a photo of "), "x3 y8 s6"),
    ]
    layout = plan_layout(parse_prompt(prompt), [(p.des, p.regions) for p in plans])
    assert layout is not None
    judge = DetectorJudge()
    traj = Trajectory(prompt, "staged", final=render(layout), plans=plans)
    assert failure_stage(traj, judge) == "plan"
    plans[1] = Plan("add a green star above the blue square", "a green star above a blue square", "x10 y13 s6")
    traj = Trajectory(prompt, "staged", final=render(layout), plans=plans)
    assert failure_stage(traj, judge) == "regions"  # planned right, placed below


def test_the_regions_stage_counts_regions_painted_over_each_other():
    """Of the trajectories wrong in their regions, those whose regions share area (an object painted over
    another) are counted apart; a prompt with a pair in depth overlaps on purpose and is not."""
    from collections import Counter

    from sketchloop.evaluation.process import measure, regions_overlap, summary
    from sketchloop.format import Plan
    from sketchloop.loop.staged import Trajectory
    from sketchloop.teachers import blank_canvas

    assert regions_overlap(["x10 y8 s8", "x11 y8 s8"]) and not regions_overlap(["x10 y8 s8", "x3 y8 s8"])
    assert regions_overlap(["x3 y8 s8 x4 y8 s8"])  # within one step too
    counts: Counter = Counter()
    for prompt, last, regions in [
        ("a photo of a red circle left of a blue square", "a red circle left of a blue square", "x11 y8 s8"),
        ("a photo of a red circle left of a blue square", "a red circle left of a blue square", "x13 y2 s6"),
        ("a photo of a red circle behind a blue square", "a red circle behind a blue square", "x11 y8 s6"),  # in front
    ]:
        plans = [Plan("add a blue square", "a blue square", "x10 y8 s8"), Plan("add a red circle", last, regions)]
        measure(Trajectory(prompt, "staged", final=blank_canvas(64).image, plans=plans), DetectorJudge(), counts)
    result = summary(counts)
    assert result["wrong_in_regions"] == 1.0
    assert result["wrong_in_regions_overlapping"] == round(1 / 3, 4)


class _ScriptedSampler:
    """A planner whose region samples are a script (what `own_regions` asks of UnifiedRoles)."""

    def __init__(self, regions: list[str]):
        self.regions, self.calls = list(regions), 0

    def resample_regions(self, prompt, history, plan, seed, temperature):
        from dataclasses import replace

        self.calls += 1
        return replace(plan, regions=self.regions.pop(0))


def test_own_regions_are_the_first_right_sample_of_the_models_own():
    """`--own-regions`: a wrong step's label is the first region set the model samples for its own
    words that the judge passes with room left; its own wrong regions and wrong samples are skipped;
    none right: None (the layout sampler labels it)."""
    from sketchloop.data.corrections import _State, own_regions
    from sketchloop.format import Plan

    prompt = "a photo of a red circle left of a blue square"
    graph, judge, rng = parse_prompt(prompt), DetectorJudge(), np.random.default_rng(0)
    square = placed(parse_regions("x10 y8 s8")[0], "square", "blue", 1, None)
    state = _State(1, [1], (square,), 0, False)
    history = [
        Plan("add a blue square", "a blue square", "x10 y8 s8"),
        Plan("add a red circle left of the blue square", "a red circle left of a blue square", "x13 y8 s6"),
    ]
    sampler = _ScriptedSampler(["x13 y8 s6", "x12 y2 s6", "x3 y8 s6", "x2 y8 s6"])
    assert own_regions(rng, sampler, prompt, history, state, graph, judge, 64, 8) == "x3 y8 s6"
    assert sampler.calls == 3  # the model's own regions and a set right of the square came first
    wrong = _ScriptedSampler(["x13 y8 s6", "x12 y2 s6", "x14 y12 s6"])
    assert own_regions(rng, wrong, prompt, history, state, graph, judge, 64, 3) is None


def test_own_region_corrections_keep_a_right_step_and_relabel_a_wrong_one_with_a_right_sample(shipped, tmp_path):
    model, teachers = shipped
    judge, rng = DetectorJudge(), np.random.default_rng(11)
    seen = set()
    for _ in range(5):
        row = make_correction(rng, model, teachers, Rejections(), own_samples=8)
        meta, regions = json.loads(row["meta"]), row["steps"][-1]["text"]
        seen.add((meta["model_right"], meta["teacher"]))
        if meta["model_right"]:
            assert meta["teacher"] == "own" and regions == meta["model_regions"]
        elif meta["teacher"] == "own":
            assert regions != meta["model_regions"]
        if meta["history_right"]:  # whoever labelled it, the scene so far passes the judge
            steps = row["steps"]
            plans = [(steps[i + 1]["text"], steps[i + 2]["text"]) for i in range(0, len(steps), 3)]
            layout = plan_layout(parse_prompt(row["prompt"]), plans)
            assert layout is not None and judge.judge(render(layout), parse_prompt(steps[-2]["text"])).consistent
    assert (False, "own") in seen or (False, "layout") in seen
    with pytest.raises(SketchloopError, match="--own-regions"):
        build("trajectories", 4, tmp_path / "t", own_regions=4, progress=False)


def test_region_error_names_what_is_wrong_with_one_steps_regions():
    """A step's regions beside what earlier steps drew: one per new object, clear of each other and
    of what is drawn (a pair in depth may overlap), every stated relation to a drawn group held by
    GenEval's rule; the first error found is named (scripts/region_errors.py)."""
    from sketchloop.evaluation.process import region_error
    from sketchloop.models.regions import Region
    from sketchloop.world.layout import PlacedObject, relation_needs

    square = PlacedObject("square", "blue", 0.66, 0.53, 0.25, 1)  # group 1 of each prompt, drawn first
    need = relation_needs(parse_prompt("a photo of two red circles left of a blue square"))
    circles = [PlacedObject("circle", "red", 0.2, 0.3, 0.2, 0), PlacedObject("circle", "red", 0.2, 0.7, 0.2, 0)]
    assert region_error(circles, [square], need, [Region(3, 4, 6), Region(3, 11, 6)]) is None
    assert region_error(circles, [square], need, [Region(3, 4, 6)]) == "count"
    assert region_error(circles, [square], need, [Region(3, 4, 6), Region(4, 5, 6)]) == "overlap in step"
    assert region_error(circles, [square], need, [Region(3, 4, 6), Region(9, 8, 6)]) == "overlap earlier"
    assert region_error(circles, [square], need, [Region(3, 4, 6), Region(14, 14, 6)]) == "relation"
    behind = relation_needs(parse_prompt("a photo of a red circle behind a blue square"))
    circle = [PlacedObject("circle", "red", 0.5, 0.5, 0.25, 0)]
    assert region_error(circle, [square], behind, [Region(9, 8, 8)]) is None  # in depth: may overlap


class _Planner:
    """A planner that writes the step writer's plans, except at step `wrong` (a `<des>` that
    states a relation the prompt turns round), and ends after `stop` steps (None: when done)."""

    def __init__(self, wrong: int | None = None, stop: int | None = None):
        self.wrong, self.stop = wrong, stop

    def plan(self, prompt, history, seed):
        graph = parse_prompt(prompt)
        order = writing_order(graph)
        k = len(history)
        if k == (self.stop if self.stop is not None else len(order) + 1):
            return None
        if k >= len(order):  # one step more than the scene has
            step = add_step(graph, order[:-1], order[-1])
            return type(step)(step.ins, step.des, "x2 y2 s4")
        step = add_step(graph, order[:k], order[k])
        if k == self.wrong:
            flip = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
            des = next((step.des.replace(a, b, 1) for a, b in flip.items() if a in step.des), "a pink nothing")
            step = type(step)(step.ins, des)
        return type(step)(
            step.ins,
            step.des,
            (teacher_regions(np.random.default_rng(k), graph, order[k], order[:k], ()) or "x2 y2 s4")
            if k == 0
            else "x%d y%d s4" % (2 + 3 * k, 2 + 3 * k),
        )


@pytest.mark.parametrize("wrong, stop, last", [(1, None, "ins"), (None, 1, "ins"), (None, None, "end")])
def test_a_plan_correction_is_the_models_right_history_and_the_teachers_next_step(wrong, stop, last):
    """A wrong plan, an `<end>` with groups still to draw, or a step after the scene is complete:
    the row keeps the model's plans before it and ends with the step writer's next step (with
    the layout sampler's regions) or `<end>`; only that step is learned."""
    teachers, tok = shapes_teachers(), WordTokenizer()
    planner = _Planner(wrong, stop)
    row = make_plan_correction(np.random.default_rng(3), planner, teachers, Rejections())
    graph = parse_prompt(row["prompt"])
    order, steps = writing_order(graph), row["steps"]
    assert row_allows(row) and json.loads(row["meta"])["teacher"] == "plan"
    assert steps[-1]["type"] == ("end" if last == "end" else "sketch")
    history = len(steps) // 3
    if last == "end":
        assert history == len(order)
    else:
        assert history == (wrong if wrong is not None else stop) + 1
        expected = add_step(graph, order[: history - 1], order[history - 1])
        assert (steps[-3]["text"], steps[-2]["text"]) == (expected.ins, expected.des)
        assert len(parse_regions(steps[-1]["text"])) == graph.groups[order[history - 1]].count
    ex = encode_row({**row, "kind": "corrections"}, tok, 64)  # the kind the build gives its rows
    learned = tok.decode([i for i, t in zip(ex.ids, ex.target) if t])
    if last == "end":
        assert learned == "<end>"
    else:
        ins, des, regions = (s["text"] for s in steps[-3:])
        assert learned == f"<ins> {ins} </ins> <des> {des} </des> <img> {regions} </img>"
    assert ex.flows == []


@pytest.mark.parametrize("seed", range(6))
def test_a_replan_row_puts_the_rejected_plan_before_the_step_it_learns(seed):
    """`--relabel replans`: the wrong plan stands before the teacher's step as the rejected one, or
    (a quarter of the rows) a right step is rejected and the label keeps it; the sequence up to
    the label is exactly the replanner's context (`format.replan_text`), and only the label is
    learned."""
    from sketchloop.format import Plan, plan_text, replan_text

    teachers, tok = shapes_teachers(), WordTokenizer()
    row = make_plan_correction(np.random.default_rng(seed), _Planner(2), teachers, Rejections(), replan=True)
    meta, steps = json.loads(row["meta"]), row["steps"]
    graph = parse_prompt(row["prompt"])
    assert meta["teacher"] == "replan" and steps[-4]["type"] == "rejected"
    rejected_ins, rejected_des = meta["model_plan"].split(" | ")
    assert steps[-4]["text"] == plan_text(rejected_ins, rejected_des)
    label = (steps[-3]["text"], steps[-2]["text"])
    history = [Plan(*(s["text"] for s in steps[i : i + 3])) for i in range(0, len(steps) - 4, 3)]
    order = writing_order(graph)
    assert label == (lambda p: (p.ins, p.des))(add_step(graph, order[: len(history)], order[len(history)]))
    assert (label == (rejected_ins, rejected_des)) == meta["kept"]
    ex = encode_row({**row, "kind": "corrections"}, tok, 64)
    context = tok.encode(replan_text(row["prompt"], history, Plan(rejected_ins, rejected_des)))
    assert ex.ids[: len(context)] == context and not any(ex.target[: len(context)])
    learned = tok.decode([i for i, t in zip(ex.ids, ex.target) if t])
    assert learned == f"<ins> {label[0]} </ins> <des> {label[1]} </des> <img> {steps[-1]['text']} </img>"


def test_replan_rows_keep_some_right_steps():
    """Over a few rows both kinds come: wrong plans corrected and right ones kept."""
    teachers = shapes_teachers()
    rng = np.random.default_rng(0)
    kept = [
        json.loads(make_plan_correction(rng, _Planner(2), teachers, Rejections(), replan=True)["meta"])["kept"]
        for _ in range(16)
    ]
    assert any(kept) and not all(kept)


def test_add_step_writes_the_step_writers_add():
    graph = parse_prompt(
        "a photo of three purple crosses right of a red triangle and the red triangle left of a red square"
    )
    assert writing_order(graph)[0] == 2
    step = add_step(graph, [2], 1)
    assert (step.ins, step.des) == ("add a red triangle left of the red square", "a red triangle left of a red square")
    step = add_step(graph, [2, 1], 0)
    assert step.ins == "add three purple crosses right of the red triangle"
    assert step.des == "three purple crosses right of a red triangle and the red triangle left of a red square"
