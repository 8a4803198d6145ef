import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sketchloop.data.critique import inspect_description
from sketchloop.data.store import build, read_dataset
from sketchloop.data.teachers import DetectorJudge, ShapesStepWriter
from sketchloop.errors import PromptError, SketchloopError
from sketchloop.backends.unified import UnifiedRoles
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.world.instructions import Scene, apply, instruction_text, parse_instruction
from sketchloop.world.parser import parse_prompt
from sketchloop.world.sample import random_scene


def test_not_drawn_yet_versus_drawn_wrong():
    prompt = parse_prompt("a red circle left of a blue square and a star")
    partial = inspect_description(parse_prompt("a red circle"), prompt)
    assert partial.consistent and partial.not_drawn_yet == ["a blue square", "a star"]
    wrong = inspect_description(parse_prompt("a green circle"), prompt)
    assert not wrong.consistent and wrong.problems[0].kind == "wrong_color"
    assert wrong.fix() == "change the green circle to red"
    flipped = inspect_description(parse_prompt("a red circle right of a blue square"), prompt)
    assert [p.kind for p in flipped.problems] == ["wrong_relation"]
    assert flipped.fix() == "move the red circle left of the blue square"
    extra = inspect_description(parse_prompt("a red circle and a pink cross"), prompt)
    assert [p.kind for p in extra.problems] == ["extra_object"] and extra.fix() == "remove the pink cross"
    ended = inspect_description(parse_prompt("a red circle left of a blue square"), prompt, final=True)
    assert [p.kind for p in ended.problems] == ["missing_object"] and ended.fix() == "add a star"
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
            assert scene.graph().normalized() == step.scene.normalized()
        assert scene.graph().normalized() == graph.normalized()


@pytest.mark.parametrize("text,needle", [
    ("paint a circle", "unknown word 'paint'"),
    ("remove the star", "no star on the canvas"),
    ("add the circle", "needs a new object"),
    ("move the circle", "expected a relation"),
])
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
    judge = DetectorJudge()
    for ex in read_dataset(out).to_pylist():
        prompt = SceneGraph_from(ex)
        final = any(s["type"] == "end" for s in ex["steps"])
        review = judge.critique(parse_prompt(_last(ex["steps"], "des")["text"]), prompt, final)
        assert ex["label"] == ("consistent" if review.consistent else "inconsistent")
        assert _last(ex["steps"], "inspect")["text"] == review.text()
        has_refine = any(s["type"] == "refine" for s in ex["steps"])
        assert has_refine == (ex["label"] == "inconsistent")
    assert 0.35 <= summary["label_shares"]["consistent"] <= 0.6
    assert {"wrong_color", "wrong_count", "extra_object", "missing_object"} <= set(summary["problems"])


def SceneGraph_from(ex):
    from sketchloop.world.scene import SceneGraph

    return SceneGraph.from_json(ex["scene"])


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


def test_self_sampled_inspect_with_a_random_model(tmp_path):
    torch.manual_seed(0)
    tok = WordTokenizer()
    UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32)).save_pretrained(tmp_path / "ckpt", tok)
    # two worker processes after the parent loaded torch: the pool must not hang (it did with fork)
    summary = build("inspect", 24, tmp_path / "ds", seed=1, shard_size=12, workers=2,
                    checkpoint=tmp_path / "ckpt", progress=False)
    rows = read_dataset(tmp_path / "ds").to_pylist()
    sampled = [r for r in rows if json.loads(r["meta"])["source"] == "self-sampled"]
    assert sampled, summary["sources"]
    for r in sampled:  # a random model's plans are never right: each is flagged with a fix
        assert r["label"] == "inconsistent"
        assert _last(r["steps"], "inspect")["text"].startswith("inconsistent")
        assert _last(r["steps"], "refine")["text"]
    # the balance is kept with teacher examples, and the card says where each came from
    assert set(summary["sources"]) <= {"self-sampled", "teacher"}


def test_checkpoint_round_trip_and_corruption(tmp_path):
    tok = WordTokenizer()
    model = UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32))
    model.save_pretrained(tmp_path / "ok", tok)
    loaded, tok2 = UnifiedModel.from_pretrained(tmp_path / "ok")
    assert tok2.vocab == tok.vocab
    ids = torch.tensor([tok.encode("<bos> <prompt> a red circle </prompt>")])
    assert torch.allclose(model.eval().hidden(ids), loaded.hidden(ids))
    step = UnifiedRoles(loaded, tok2, seed=0).plan("a photo of a red circle", [])
    assert step is None or isinstance(step.ins, str)
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SketchloopError, match="corrupt"):
        UnifiedModel.from_pretrained(tmp_path / "ok")
    with pytest.raises(SketchloopError, match="does not exist"):
        UnifiedModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(SketchloopError, match="not a sketchloop checkpoint"):
        UnifiedModel.from_pretrained(tmp_path / "half")
