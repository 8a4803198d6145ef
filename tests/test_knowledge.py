"""Knowledge prompts (the WISE half): the knowledge base as data, the phrases the prompt
language accepts, the `shapes-wise` benchmark and its splits, the data that uses facts, and
a chat planner whose knowledge is its own."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset
from sketchloop.errors import PromptError
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.heldout import data_allows, row_allows
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.world.knowledge import KINDS, SPLITS, facts, load_facts
from sketchloop.world.parser import parse_prompt, prompt_facts
from sketchloop.world.phrasing import reword_with_fact
from sketchloop.world.scene import SceneGraph, scene_key


def test_the_knowledge_base_is_documented_data():
    kb = load_facts()
    assert len(kb) >= 150
    assert Counter(f.kind for f in kb).keys() == set(KINDS)
    assert {f.split for f in kb} == set(SPLITS)
    assert all(f.source and f.statement for f in kb)
    for kind in KINDS:  # every split of every kind has facts, and text-only facts cover answers trajectories teach
        assert all(facts(kind, (split,)) for split in SPLITS)
    tok = WordTokenizer()
    assert not [w for f in kb for s in [f.thing, *f.statements()] for w in tok.unknown_words(s)]


@pytest.mark.parametrize(
    "prompt, scene",
    [
        ("a photo of a circle the colour of a ripe banana", "a photo of a yellow circle"),
        ("as many stars as a bicycle has wheels", "a photo of two stars"),
        ("a shape like a plus sign, coloured like coal", "a photo of a black cross"),
        ("two squares colored like fresh snow", "a photo of two white squares"),
        (
            "a red shape like a kite left of as many blue stars as a dog has legs",
            "a photo of a red diamond left of four blue stars",
        ),
        (
            "a photo of a circle the color of coal and the circle above a green shape like the face of a die",
            "a photo of a black circle above a green square",
        ),
    ],
)
def test_knowledge_phrases_resolve_to_plain_attributes(prompt, scene):
    assert scene_key(parse_prompt(prompt)) == scene_key(parse_prompt(scene))
    assert prompt_facts(prompt)


@pytest.mark.parametrize(
    "prompt, needle",
    [
        ("a circle the colour of a purple unicorn", "no colour fact in the knowledge base for 'a purple unicorn'"),
        ("as many stars as a spider has legs", "no count fact"),
        ("a red circle the colour of coal", "both red and black"),
        ("a circle coloured like", "at the end of the prompt"),
        ("as many star as a dog has legs", "a plural shape"),
    ],
)
def test_a_phrase_with_no_fact_behind_it_is_one_clear_line(prompt, needle):
    with pytest.raises(PromptError, match=needle) as info:
        parse_prompt(prompt)
    assert "\n" not in str(info.value)


def test_shapes_wise_is_held_out_and_tagged():
    test, val = load_benchmark("shapes-wise"), load_benchmark("shapes-wise-val")
    assert (len(test), len(val)) == (300, 100)
    tags = Counter(m["tag"] for m in test)
    assert set(tags) == {f"wise-{s}" for s in SPLITS} and min(tags.values()) >= 60
    assert {m["category"] for m in test} == set(KINDS)
    for m in test + val:
        used = prompt_facts(m["prompt"])
        assert len(used) == 1 and m["tag"] == f"wise-{used[0].split}" and m["category"] == used[0].kind
        assert m["fact"] == used[0].statement
        graph = parse_prompt(m["prompt"])
        assert scene_key(SceneGraph.from_geneval(m)) == scene_key(graph)  # the judge scores the plain attributes
        assert not data_allows(graph)  # no data build holds its scene


def test_knowledge_data_uses_only_trajectory_facts_and_plain_plans(tmp_path):
    build("trajectories", 24, tmp_path / "t", seed=3, edit_ops=0.0, knowledge=1.0, progress=False)
    rows = read_dataset(tmp_path / "t").to_pylist()
    worded = [r for r in rows if "fact" in json.loads(r["meta"])]
    assert len(worded) >= 12
    for r in worded:
        used = prompt_facts(r["prompt"])
        assert [f.statement for f in used] == [json.loads(r["meta"])["fact"]] and used[0].split == "trajectory"
        plans = " ".join(s["text"] for s in r["steps"] if s["type"] in ("ins", "des"))
        assert used[0].thing not in plans  # the plan says what it draws: "add a yellow circle"
        assert scene_key(parse_prompt(r["prompt"])) == scene_key(SceneGraph.from_json(r["scene"]))
    build("facts", 300, tmp_path / "f", seed=3, progress=False)
    sentences = read_dataset(tmp_path / "f").to_pylist()
    split = {f.statement: f.split for f in load_facts()}
    assert {split[json.loads(r["meta"])["fact"]] for r in sentences} == {"trajectory", "text"}
    assert all(r["steps"][0]["type"] == "text" and not r["images"] for r in sentences)


def test_a_row_naming_a_text_only_or_heldout_fact_is_refused():
    rng = np.random.default_rng(0)
    graph = parse_prompt("a photo of a black circle left of two blue squares")
    for split in ("text", "heldout"):
        text, fact, _ = reword_with_fact(graph, rng, (split,))
        row = {"kind": "trajectories", "prompt": text, "scene": graph.to_json(), "steps": [], "meta": "{}"}
        assert fact.split == split and not row_allows(row)
    text, _, _ = reword_with_fact(graph, rng, ("trajectory",))
    assert row_allows({"kind": "trajectories", "prompt": text, "scene": graph.to_json(), "steps": [], "meta": "{}"})


def test_facts_rows_are_learned_as_plain_text():
    from sketchloop.training.sequences import encode_row

    tok = WordTokenizer()
    row = {"kind": "facts", "prompt": "", "steps": [{"type": "text", "text": "coal is black"}], "images": []}
    row["layouts"] = []
    ex = encode_row(row, tok, 64)
    assert tok.decode(ex.ids) == "<bos> coal is black <eos>" and ex.target == [False, True, True, True, True]


def test_a_grown_vocabulary_keeps_every_old_word_and_weight():
    import torch

    from sketchloop.models.unified import UnifiedConfig, UnifiedModel

    full = WordTokenizer()
    old = WordTokenizer(full.vocab[:200])
    model = UnifiedModel(UnifiedConfig(vocab_size=len(old), n_layer=1, n_embd=32, unet_channels=(8, 8, 8)))
    grown, tok = model.grown(old)
    assert tok.vocab[:200] == old.vocab and set(tok.vocab) == set(full.vocab)
    assert torch.equal(grown.tok.weight[:200], model.tok.weight) and torch.equal(
        grown.head.weight[:200], model.head.weight
    )
    assert grown.grown(tok)[0] is grown


def test_render_draws_a_knowledge_prompt_and_refuses_an_unknown_fact(tmp_path):
    from PIL import Image

    from sketchloop.world.detect import ShapesDetector

    out = tmp_path / "coal.png"
    cmd = [sys.executable, "-m", "sketchloop.cli", "render"]
    r = subprocess.run(
        [*cmd, "a photo of a circle the colour of coal", "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0 and "black circle" in " ".join((r.stdout + r.stderr).split()), r.stderr
    found = ShapesDetector().detect(Image.open(out).convert("RGB"))
    assert [(d.shape, d.color) for d in found] == [("circle", "black")]
    r = subprocess.run(
        [*cmd, "a circle the colour of a purple unicorn", "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode != 0 and "no colour fact" in r.stderr and "Traceback" not in r.stderr


def test_a_chat_planner_brings_its_own_knowledge(server_factory):
    """Offline, a local server stands in for a chat model: the prompt reaches it as written,
    its `<des>` carries the attribute it resolved, and the judge's score follows (the right
    colour: correct; a wrong one: not). The exact renderer draws the plans."""
    from sketchloop.backends.chat import ChatClient, ChatPlanner, ChatSettings
    from sketchloop.backends.wiring import oracle_roles
    from sketchloop.loop.staged import run_staged
    from sketchloop.teachers import blank_canvas
    from sketchloop.world.detect import ShapesDetector
    from sketchloop.world.judge import score_image

    prompt = "a photo of a shape like a plus sign, coloured like coal"
    metadata = parse_prompt(prompt).to_geneval()
    for des, correct in (("a black cross", True), ("a green cross", False)):
        srv = server_factory([("json", {"done": False, "ins": f"add {des}", "des": des}), ("json", {"done": True})])
        planner = ChatPlanner(ChatClient(ChatSettings(model="test-model", base_url=srv.url, backoff=0.01, timeout=5)))
        roles = oracle_roles().with_roles(planner=planner)
        traj = run_staged(prompt, roles, blank_canvas(64).image, inspect=False)
        assert prompt in srv.requests[0]["messages"][0]["content"][0]["text"]
        assert traj.ended and traj.plans[0].des == des
        verdict, _ = score_image(ShapesDetector().detect(traj.final), metadata)
        assert verdict is correct


def test_eval_runs_a_benchmark_with_a_chat_planner(server_factory, tmp_path):
    """`sketchloop eval --planner openai:MODEL`: the chat model plans every prompt of the
    benchmark as written (its knowledge is its own), the record names it, and several
    worker processes are refused in one line."""
    from sketchloop.models.unified import UnifiedConfig, UnifiedModel

    tok = WordTokenizer()
    UnifiedModel(UnifiedConfig(vocab_size=len(tok), n_layer=1, n_embd=32, unet_channels=(8, 8, 8))).save_pretrained(
        tmp_path / "ckpt", tok
    )
    prompts = [m["prompt"] for m in load_benchmark("shapes-wise")[:2]]
    step = {"done": False, "ins": "add a black cross", "des": "a black cross"}
    srv = server_factory([("json", step), ("json", {"done": True})] * 2)
    cmd = [sys.executable, "-m", "sketchloop.cli", "eval", "--benchmark", "shapes-wise", "--limit", "2"]
    cmd += ["--generator", "staged", "--images-per-prompt", "1", "--checkpoint", str(tmp_path / "ckpt")]
    cmd += ["--planner", "openai:test-model", "--base-url", srv.url, "--max-refines", "0", "--steps", "1"]
    r = subprocess.run(
        cmd + ["--out", str(tmp_path / "r.json"), "--images-out", str(tmp_path / "img")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    sent = [q["messages"][0]["content"][0]["text"] for q in srv.requests]
    assert all(any(p in text for text in sent) for p in prompts)
    assert json.loads((tmp_path / "r.json").read_text())["made_by"]["planner"] == "openai:test-model"
    r = subprocess.run(cmd + ["--workers", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--workers 1" in r.stderr and "Traceback" not in r.stderr


def test_a_plan_critique_names_the_fact_it_got_wrong():
    from sketchloop.world.critique import explain, inspect_description

    prompt = "a photo of a circle the colour of coal left of a red square"
    critique = inspect_description(parse_prompt("a green circle"), parse_prompt(prompt)).text
    assert explain(critique, prompt, "a green circle").endswith("should be black, not green; coal is black")
    critique = inspect_description(parse_prompt("a circle"), parse_prompt(prompt)).text  # the colour left out
    assert "not None" not in critique and not WordTokenizer().unknown_words(critique)
    assert explain(critique, prompt, "a circle").endswith("; coal is black")
    assert explain("inconsistent plan: x", prompt, "a black circle") == "inconsistent plan: x"  # resolved right
    counted = "a photo of as many stars as a dog has legs"
    assert explain("inconsistent plan: x", counted, "three stars").endswith("; a dog has four legs")


def test_recall_facts_state_the_fact_before_the_step_that_draws_it(tmp_path):
    """`data build --recall-facts`: the step that adds the group a prompt names through a fact opens
    its `<ins>` with the fact's sentence as the facts corpus says it, then ";" and the plain step,
    which the world reads as before; some such prompts leave out "a photo of"."""
    from sketchloop.world.instructions import Scene, apply, parse_instruction, split_recall

    assert split_recall("a ripe banana is yellow ; add a yellow circle") == (
        "a ripe banana is yellow",
        "add a yellow circle",
    )
    assert split_recall("add a yellow circle") == ("", "add a yellow circle")
    op = parse_instruction("a ripe banana is yellow ; add a yellow circle", Scene())
    assert (op["op"], op["shape"], op["color"]) == ("add", "circle", "yellow")
    build("trajectories", 40, tmp_path / "r", seed=7, edit_ops=0.0, knowledge=1.0, recall_facts=True, progress=False)
    statements = {f.statement: f for f in load_facts()}
    bare = seen = 0
    for r in read_dataset(tmp_path / "r").to_pylist():
        fact = json.loads(r["meta"]).get("fact")
        ins = [k for k, s in enumerate(r["steps"]) if s["type"] == "ins"]
        recalls = [k for k in ins if split_recall(r["steps"][k]["text"])[0]]
        if fact is None:
            assert not recalls
            continue
        seen += 1
        bare += not r["prompt"].startswith("a photo of")
        assert [split_recall(r["steps"][k]["text"])[0] for k in recalls] == [fact]  # once, as the corpus says it
        assert fact == statements[fact].statements()[0]
        scene = Scene()
        for k in ins:  # the plain steps after the recall are what the world reads
            scene = apply(scene, parse_instruction(r["steps"][k]["text"], scene))
        assert scene_key(scene.graph()) == scene_key(SceneGraph.from_json(r["scene"]))
        assert scene_key(parse_prompt(r["prompt"])) == scene_key(SceneGraph.from_json(r["scene"]))
        known = statements[fact]
        drawn = parse_prompt(r["steps"][recalls[0] + 1]["text"]).groups  # the step's description holds the answer
        attribute = {"colour": "color", "count": "count", "shape": "shape"}[known.kind]
        assert str(known.answer) in {str(getattr(g, attribute)) for g in drawn}
    assert seen >= 15 and 0 < bare < seen
    params = json.loads((tmp_path / "r" / "build.json").read_text())["params"]
    assert params["recall"] is True and "--recall-facts" in (tmp_path / "r" / "README.md").read_text()
    with pytest.raises(Exception, match="--recall-facts"):
        build("trajectories", 4, tmp_path / "x", recall_facts=True, progress=False)
