import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sketchloop.backends.shapes import DetectorJudge, ShapesStepWriter
from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset
from sketchloop.errors import PromptError, SketchloopError
from sketchloop.format import scene_text
from sketchloop.models.regions import parse_regions
from sketchloop.models.sampling import SamplingConfig
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.training.sequences import encode_row
from sketchloop.world.critique import inspect_description
from sketchloop.world.instructions import Scene, apply, instruction_text, parse_instruction
from sketchloop.world.parser import parse_prompt
from sketchloop.world.sample import random_scene
from sketchloop.world.scene import scene_key


def test_not_drawn_yet_versus_drawn_wrong():
    prompt = parse_prompt("a red circle left of a blue square and a star")
    partial = inspect_description(parse_prompt("a red circle"), prompt)
    assert partial.consistent and partial.not_drawn_yet == ["a blue square", "a star"]
    wrong = inspect_description(parse_prompt("a green circle"), prompt)
    assert not wrong.consistent and wrong.problems[0].kind == "wrong_color"
    assert wrong.refine == "change the green circle to red"
    flipped = inspect_description(parse_prompt("a red circle right of a blue square"), prompt)
    assert [p.kind for p in flipped.problems] == ["wrong_relation"]
    assert flipped.refine == "move the red circle left of the blue square"
    extra = inspect_description(parse_prompt("a red circle and a pink cross"), prompt)
    assert [p.kind for p in extra.problems] == ["extra_object"] and extra.refine == "remove the pink cross"
    ended = inspect_description(parse_prompt("a red circle left of a blue square"), prompt, final=True)
    assert [p.kind for p in ended.problems] == ["missing_object"] and ended.refine == "add a star"
    assert inspect_description(prompt, prompt, final=True).consistent


def test_instructions_round_trip_the_step_writer():
    rng = np.random.default_rng(4)
    writer = ShapesStepWriter()
    for _ in range(300):
        graph = random_scene(rng)
        scene = Scene()
        steps = writer.write_steps(graph, rng, edit_ops=0.6)
        for step in steps:
            op = parse_instruction(step.ins, scene)
            assert instruction_text(op, scene) == step.ins
            scene = apply(scene, op)
            assert scene_key(scene.graph()) == scene_key(step.scene)
        assert scene_key(scene.graph()) == scene_key(graph)
        assert steps[-1].des == scene_text(graph.to_text())  # the last description is the prompt, word for word


@pytest.mark.parametrize(
    "text,needle",
    [
        ("paint a circle", "unknown word 'paint'"),
        ("remove the star", "no star on the canvas"),
        ("add the circle", "needs a new object"),
        ("move the circle", "expected a relation"),
    ],
)
def test_bad_instructions(text, needle):
    scene = apply(Scene(), {"op": "add", "group": 0, "shape": "circle", "color": "red", "count": 1, "relations": []})
    with pytest.raises(PromptError, match=needle):
        parse_instruction(text, scene)


def _last(steps, kind):
    return [s for s in steps if s["type"] == kind][-1]


@pytest.fixture(scope="module")
def inspect_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    return out, build("inspect", 120, out, seed=2, shard_size=60, workers=2, progress=False)


def test_inspect_labels_agree_with_the_judge(inspect_ds):
    out, summary = inspect_ds
    named = 0
    rows = read_dataset(out).to_pylist()
    for ex in rows:
        # labels follow how the example was made (a perturbed plan), not a re-run critique
        meta = json.loads(ex["meta"])
        perturbed = "perturbation" in meta
        assert ex["label"] == ("inconsistent" if perturbed else "consistent")
        named += perturbed and meta["perturbation"] in meta["problems"]
        assert _last(ex["steps"], "inspect")["text"].startswith(ex["label"])
        has_refine = any(s["type"] == "refine" for s in ex["steps"])
        assert has_refine == perturbed
    inconsistent = sum(ex["label"] == "inconsistent" for ex in rows)
    assert named >= 0.9 * inconsistent  # the critique names the perturbation made
    assert 0.35 <= summary["label_shares"]["consistent"] <= 0.6
    assert {"wrong_color", "wrong_count", "extra_object", "wrong_relation"} <= set(summary["problems"])


def test_inspect_examples_end_in_the_format_the_loop_feeds_the_inspector(inspect_ds):
    """The inspector is trained on what it reads at inference: the history, the last plan
    with its regions, then the canvas (`... <img> R </img> <canvas> x 64 <inspect>`)."""
    out, _ = inspect_ds
    tok = WordTokenizer()
    for ex in read_dataset(out).to_pylist():
        ids = encode_row(ex, tok, 64).ids
        first_canvas = ids.index(tok.token_id("<canvas>"))
        assert tok.vocab[ids[first_canvas - 1]] == "</img>", ex["id"]
        assert tok.token_id("<end>") not in ids[:first_canvas], ex["id"]


def test_refine_labels_agree_with_the_judge(tmp_path):
    summary = build("refine", 80, tmp_path, seed=5, shard_size=80, progress=False)
    judge = DetectorJudge()
    for ex in read_dataset(tmp_path).to_pylist():
        des = parse_prompt([s for s in ex["steps"] if s["type"] == "des"][-1]["text"])
        last_des = max(i for i, s in enumerate(ex["steps"]) if s["type"] == "des")
        sketches = [s for s in ex["steps"][last_des:] if s["type"] == "sketch"]
        judged = Image.open(io.BytesIO(ex["images"][sketches[0]["image"]]))
        assert judge.judge(judged, des).consistent == (ex["label"] == "consistent")
        if ex["label"] == "inconsistent":
            assert len(sketches) == 2  # flawed, then corrected
            assert judge.judge(Image.open(io.BytesIO(ex["images"][sketches[1]["image"]])), des).consistent
            assert _last(ex["steps"], "refine")["text"]
            assert _last(ex["steps"], "inspect")["text"].startswith("inconsistent")
    assert 0.3 <= summary["label_shares"]["consistent"] <= 0.6


def _judged_step(row: dict) -> tuple[str, Image.Image]:
    """The last `<des>` and the last image of an inspect example (the step it inspects)."""
    des = [s for s in row["steps"] if s["type"] == "des"][-1]["text"]
    image = [s for s in row["steps"] if s["type"] == "sketch"][-1]["image"]
    return des, Image.open(io.BytesIO(row["images"][image]))


def test_own_inspect_with_a_random_model(tmp_path):
    torch.manual_seed(0)
    tok = WordTokenizer()
    UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32)).save_pretrained(tmp_path / "ckpt", tok)
    # two worker processes after the parent loaded torch: the pool must not hang (it did with fork)
    summary = build(
        "inspect", 6, tmp_path / "ds", seed=1, shard_size=3, workers=2, checkpoint=tmp_path / "ckpt", progress=False
    )
    rows = read_dataset(tmp_path / "ds").to_pylist()
    own = [r for r in rows if json.loads(r["meta"])["source"] != "teacher"]
    assert own, summary["sources"]
    judge = DetectorJudge()
    for r in rows:  # every label is the judge's verdict of the inspected step, in the loop's format
        ids = encode_row(r, tok, 64).ids
        assert tok.vocab[ids[ids.index(tok.token_id("<canvas>")) - 1]] == "</img>"
        truth = judge.inspect_step(parse_prompt(r["prompt"]), *_judged_step(r))
        assert _last(r["steps"], "inspect")["text"] == truth.text
        assert r["label"] == ("consistent" if truth.consistent else "inconsistent")
    for r in own:  # a random model's steps are never right (its plans name the prompt's objects under the
        # phrase grammar, its sketches are noise): each is flagged with where and a fix
        text = _last(r["steps"], "inspect")["text"]
        assert r["label"] == "inconsistent" and text.startswith(("inconsistent plan", "inconsistent image"))
        assert [s for s in r["steps"] if s["type"] == "sketch"] and all(
            s["text"] == "" or parse_regions(s["text"]) for s in r["steps"] if s["type"] == "sketch"
        )


def test_sampling_settings_need_a_checkpoint(tmp_path):
    with pytest.raises(SketchloopError, match="--set"):
        build("inspect", 4, tmp_path / "ds", sampling={"guided": True}, progress=False)


def test_own_inspect_of_the_shipped_model_has_all_three_kinds():
    """Plans and sketches of the shipped model: consistent steps, plan conflicts and image
    conflicts, each labelled (and worded) as the judge sees the step."""
    from sketchloop.backends.shapes import shapes_teachers
    from sketchloop.data.inspections import make_inspect_own
    from sketchloop.data.trajectories import Rejections

    model, teachers, judge = UnifiedRoles.from_pretrained(), shapes_teachers(), DetectorJudge()
    rng = np.random.default_rng(3)
    for target, start in (
        ("consistent", "consistent"),
        ("plan", "inconsistent plan:"),
        ("image", "inconsistent image:"),
    ):
        for _ in range(2):
            row = make_inspect_own(rng, model, teachers, Rejections(), target=target)
            text = _last(row["steps"], "inspect")["text"]
            assert text.startswith(start), (target, text, row["meta"])
            assert judge.inspect_step(parse_prompt(row["prompt"]), *_judged_step(row)).text == text
            assert json.loads(row["meta"])["source"] != "teacher"


def test_own_conflicts_are_the_models_own_never_perturbed(monkeypatch, tmp_path):
    """`--own-conflicts`: a conflict example is a wrong step of the model's own rollout, judged as
    the loop's inspector meets it; no plan or image is perturbed to make one."""
    from sketchloop.backends.shapes import shapes_teachers
    from sketchloop.data import inspections
    from sketchloop.data.trajectories import Rejections

    def never(*args, **kwargs):
        raise AssertionError("a conflict was made by perturbing")

    monkeypatch.setattr(inspections, "_wrong_plan", never)
    monkeypatch.setattr(inspections, "_wrong_image", never)
    model, teachers, judge = UnifiedRoles.from_pretrained(), shapes_teachers(), DetectorJudge()
    rng = np.random.default_rng(5)
    for target in ("plan", "image"):
        row = inspections.make_inspect_own(rng, model, teachers, Rejections(), target=target, own_conflicts=True)
        meta = json.loads(row["meta"])
        text = _last(row["steps"], "inspect")["text"]
        assert meta["source"] == "model" and text.startswith("inconsistent"), (target, text, meta)
        assert judge.inspect_step(parse_prompt(row["prompt"]), *_judged_step(row)).text == text
    with pytest.raises(SketchloopError, match="--own-conflicts"):
        from sketchloop.data.build import build

        build("inspect", 2, tmp_path / "ds", own_conflicts=True, progress=False)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    tok = WordTokenizer()
    model = UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32))
    model.save_pretrained(tmp_path / "ok", tok)
    loaded, tok2 = UnifiedModel.from_pretrained(tmp_path / "ok")
    assert tok2.vocab == tok.vocab
    ids = torch.tensor([tok.encode("<bos> <prompt> a red circle </prompt>")])
    assert torch.allclose(model.eval().hidden(ids), loaded.hidden(ids))
    # the loaded model plans exactly as the saved one (a random model: long, odd plans, but equal ones)
    plans = [
        [
            UnifiedRoles(m, tok2, SamplingConfig(temperature=1.0)).plan("a photo of a red circle", [], seed)
            for seed in range(6)
        ]
        for m in (model, loaded)
    ]
    assert plans[0] == plans[1] and any(p is not None and p.ins for p in plans[0])
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SketchloopError, match="corrupt"):
        UnifiedModel.from_pretrained(tmp_path / "ok")
    with pytest.raises(SketchloopError, match="does not exist"):
        UnifiedModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(SketchloopError, match="not a sketchloop checkpoint"):
        UnifiedModel.from_pretrained(tmp_path / "half")


def test_own_inspect_examples_on_a_given_prompt_measure_the_inspector_there():
    """scripts/inspector_benchmark.py: a benchmark's prompt in every rollout, each kind asked
    for, and the inspected step read back as the loop would hand it to the inspector."""

    from sketchloop.backends.wiring import make_teachers
    from sketchloop.data.inspect_steps import inspected_step, score
    from sketchloop.data.inspections import make_inspect_own
    from sketchloop.data.trajectories import Rejections

    torch.manual_seed(0)
    tok = WordTokenizer()
    roles = UnifiedRoles(
        UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32)).eval(),
        tok,
        SamplingConfig(flow_steps=2, temperature=1.0),  # an untrained model: sampled, not greedy
    )
    prompt = "a photo of a red circle left of a blue square"
    teachers, judge = make_teachers(None), DetectorJudge()
    own = 0
    for k, target in enumerate(("consistent", "plan", "image")):
        row = make_inspect_own(
            np.random.default_rng(k), roles, teachers, Rejections(), target=target, prompt=prompt, tries=3
        )
        if json.loads(row["meta"])["source"] == "teacher":  # an untrained model may find no step of its own
            continue
        own += 1
        assert row["prompt"] == prompt
        plans, canvas, before = inspected_step(row)
        assert plans and all(p.regions for p in plans) and canvas.size == before.size == (64, 64)
        truth = judge.inspect_step(parse_prompt(prompt), plans[-1].des, canvas)
        assert truth.consistent == (row["label"] == "consistent")
        scored = score(roles, row, "test", 0, seed=0)
        assert (scored["kind"] == "consistent") == truth.consistent and 0 <= scored["doubt"] <= 1
        assert scored["plan_doubt"] >= 0 and scored["image_doubt"] is not None
    assert own


def test_inspector_rates_and_the_doubt_ranking():
    from sketchloop.evaluation.process import doubt_auc, flag_rates

    steps = [
        {"kind": "consistent", "doubt": 0.2},
        {"kind": "consistent", "doubt": 0.7},
        {"kind": "plan", "doubt": 0.9},
        {"kind": "image", "doubt": 0.7},
        {"kind": "image", "doubt": 0.1},
    ]
    assert flag_rates(steps, lambda s: s["doubt"] >= 0.5) == {
        "recall_plan": 1.0,
        "recall_image": 0.5,
        "false_alarms": 0.5,
    }
    # wrong above right: 0.9 beats both, 0.7 beats 0.2 and ties 0.7, 0.1 beats neither -> 3.5 of 6
    assert doubt_auc(steps) == pytest.approx(3.5 / 6)
    assert doubt_auc([s for s in steps if s["kind"] == "consistent"]) is None
    assert doubt_auc(steps, kind="image") == pytest.approx(1.5 / 4)  # the wrong sketches alone
    assert doubt_auc([{**s, "image_doubt": -s["doubt"]} for s in steps], "image_doubt", "plan") == 0.0


def test_own_inspect_examples_skip_a_random_scene_whose_text_is_ambiguous(monkeypatch):
    """A random scene with two groups alike ("four blue circles ... three blue circles right of the
    blue circles") does not parse back; the self-sampled inspect build draws another scene
    instead of failing (it stopped a data build once)."""
    import sketchloop.data.inspections as inspections
    from sketchloop.backends.wiring import make_teachers
    from sketchloop.data.trajectories import Rejections
    from sketchloop.world.scene import ObjectGroup, Relation, SceneGraph

    ambiguous = SceneGraph(
        (ObjectGroup("square", "black", 1), ObjectGroup("circle", "blue", 4), ObjectGroup("circle", "blue", 3)),
        (Relation(0, "left of", 1), Relation(2, "right of", 1)),
    )
    fine = SceneGraph((ObjectGroup("circle", "red", 1),), ())
    scenes = iter([ambiguous, fine, fine, fine])
    monkeypatch.setattr(inspections, "heldout_free_scene", lambda rng, mix=None: next(scenes))
    torch.manual_seed(0)
    tok = WordTokenizer()
    roles = UnifiedRoles(
        UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32)).eval(),
        tok,
        SamplingConfig(flow_steps=2, temperature=1.0),  # an untrained model: sampled, not greedy
    )
    row = inspections.make_inspect_own(
        np.random.default_rng(0), roles, make_teachers(None), Rejections(), target="consistent", tries=3
    )
    assert "blue circles" not in row["prompt"]
