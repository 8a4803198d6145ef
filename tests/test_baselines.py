"""The report's baselines and process variants (issue: the paper's table): the text-to-image
model, plan + sketch without inspection, best-of-N with the model's inspector choosing, and
the inspect-data subsets of the supervision ablation."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.data.build import build, inspect_target, one_step, subset
from sketchloop.data.schema import read_dataset
from sketchloop.errors import SketchloopError
from sketchloop.generators import BestOfGenerator, TextToImageGenerator, candidate_seed, get_generator
from sketchloop.models.t2i import TextToImageConfig, TextToImageModel
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.training.t2i import train_t2i
from sketchloop.training.trainer import TrainConfig

SMALL = TextToImageConfig(vocab_size=len(WordTokenizer()), n_layer=1, unet_channels=(8, 16, 16))


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("traj")
    build("trajectories", 24, out, seed=0, shard_size=24, progress=False)
    return out


def test_t2i_has_the_unified_models_parameter_count():
    """The baseline is the same size as the model it is compared with (within 1%)."""
    vocab = len(WordTokenizer())
    unified = sum(p.numel() for p in UnifiedModel(UnifiedConfig(vocab_size=vocab)).parameters())
    t2i = TextToImageModel(TextToImageConfig(vocab_size=vocab)).num_parameters()
    assert abs(t2i - unified) / unified < 0.01


def test_t2i_reads_the_prompt_through_cross_attention():
    """With a non-zero output layer, the velocity of one noisy canvas differs between two prompts
    that differ in one word, and the null text differs from both."""
    torch.manual_seed(0)
    model = TextToImageModel(SMALL)
    torch.nn.init.normal_(model.out.weight, std=0.1)
    for attn in (model.attn2, model.attn_mid1, model.attn_mid2, model.attn_dec2):
        torch.nn.init.normal_(attn.out.weight, std=0.1)
    tok = WordTokenizer()
    a = torch.tensor([tok.encode("a photo of a red circle left of a blue square")])
    b = torch.tensor([tok.encode("a photo of a red circle right of a blue square")])
    x, t = torch.randn(1, 3, 64, 64), torch.tensor([0.5])
    va = model.velocity(x, t, *model.encode(a, tok.pad_id))
    vb = model.velocity(x, t, *model.encode(b, tok.pad_id))
    vnull = model.velocity(x, t, *model.encode(a, tok.pad_id, torch.tensor([True])))
    assert (va - vb).abs().mean() > 1e-4
    assert (va - vnull).abs().mean() > 1e-4


def test_t2i_trains_resumes_and_generates(trajectories, tmp_path):
    """The loss falls; a run stopped and resumed ends with the weights of an uninterrupted one;
    the checkpoint draws a 64 px image through the `t2i` generator, reporting its compute."""
    cfg = TrainConfig(stage="t2i", steps=30, batch_size=4, lr=3e-3, warmup=5, save_every=10)
    whole = train_t2i([trajectories], tmp_path / "whole", cfg, SMALL, progress=False)
    assert whole["step"] == 30 and np.isfinite(whole["loss"])
    import sketchloop.training.t2i as t2i_trainer

    original = t2i_trainer._save_state

    class Stop(Exception):
        pass

    def save_then_stop(*args):  # killed right after the step-10 checkpoint
        original(*args)
        raise Stop

    t2i_trainer._save_state = save_then_stop
    try:
        with pytest.raises(Stop):
            train_t2i([trajectories], tmp_path / "parts", cfg, SMALL, progress=False)
    finally:
        t2i_trainer._save_state = original
    assert json.loads((tmp_path / "parts" / "trainer" / "state.json").read_text())["step"] == 10
    assert train_t2i([trajectories], tmp_path / "parts", cfg, SMALL, progress=False)["step"] == 30
    a, _ = TextToImageModel.from_pretrained(tmp_path / "whole")
    b, _ = TextToImageModel.from_pretrained(tmp_path / "parts")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    gen = get_generator("t2i", checkpoint=tmp_path / "whole", flow_steps=4)
    out = gen.generate("a photo of a red circle above a blue square", 3)
    assert out.image.size == (64, 64)
    assert out.stats["flow_steps"] == 4 and out.stats["images"] == 1
    again = gen.generate("a photo of a red circle above a blue square", 3)
    assert np.array_equal(np.asarray(out.image), np.asarray(again.image))  # the seed decides the image


def test_t2i_errors_are_one_line(tmp_path):
    with pytest.raises(SketchloopError, match="needs --checkpoint"):
        TextToImageGenerator(None)
    with pytest.raises(SketchloopError, match="not a text-to-image checkpoint"):
        TextToImageModel.from_pretrained(tmp_path)
    TextToImageModel(SMALL).save_pretrained(tmp_path / "c", WordTokenizer())
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SketchloopError, match="corrupt"):
        TextToImageModel.from_pretrained(tmp_path / "c")
    with pytest.raises(SketchloopError, match="sketchloop-unified"):  # a unified checkpoint is not a t2i one
        TextToImageModel.from_pretrained(SHIPPED_CHECKPOINT)


def test_plan_and_sketch_without_inspection_draws_the_same_picture():
    """Inspection without corrections changes no pixel (its seeds are its own): the loop with
    `inspect=False` ends with the default loop's image, with no inspect step."""
    prompt = "a photo of a red circle left of a blue square and a green star above the blue square"
    full = get_generator("staged", max_refines=0)
    plain = get_generator("staged", inspect=False)
    a, b = full.run(prompt, 5), plain.run(prompt, 5)
    assert any(s.type == "inspect" for s in a.steps)
    assert not any(s.type == "inspect" for s in b.steps)
    assert np.array_equal(np.asarray(a.final), np.asarray(b.final))
    assert plain.record["inspect"] is False and plain.record != full.record


def test_the_sampling_switches_are_recorded_with_the_results():
    """The checkpoint's sampling.json and the switches that change it reach the sampler and the
    results' record, so two result files made with different switches never pass for one another."""
    from sketchloop.backends.unified import SHIPPED_CHECKPOINT
    from sketchloop.models.sampling import SamplingConfig

    default = get_generator("staged")
    shipped = SamplingConfig.from_pretrained(SHIPPED_CHECKPOINT)
    assert default.record["sampling"] == asdict(shipped)
    assert default.roles_factory().planner.config == shipped
    assert shipped.relate_regions and shipped.copy_phrases and not shipped.edit_steps
    free = get_generator("staged", relate_regions=False)
    assert free.record["sampling"]["relate_regions"] is False
    assert free.roles_factory().planner.config.relate_regions is False
    edits = get_generator("staged", edit_steps=True)
    assert edits.record["sampling"]["edit_steps"] is True
    unset = get_generator("staged", edit_steps=None)  # None keeps the checkpoint's setting
    assert unset.record == default.record
    assert len({json.dumps(g.record, sort_keys=True) for g in (default, free, edits)}) == 3


def test_best_of_n_keeps_the_candidate_its_inspector_doubts_least():
    """Candidate 0 is the base generator's own image; the chosen one is the least doubted, and
    the compute adds up over every candidate."""
    base = get_generator("single")
    best = BestOfGenerator(base, 3)
    prompt = "a photo of a yellow triangle below a pink circle"
    out = best.generate(prompt, 11)
    candidates = [base.generate(prompt, candidate_seed(11, k)) for k in range(3)]
    assert candidate_seed(11, 0) == 11
    assert out.stats["chosen"] == int(np.argmin(out.stats["doubts"]))
    assert np.array_equal(np.asarray(out.image), np.asarray(candidates[out.stats["chosen"]].image))
    assert out.stats["flow_steps"] == sum(c.stats["flow_steps"] for c in candidates)
    assert out.stats["images"] == 3
    assert best.record["n"] == 3 and best.record["base"] == base.record
    staged = get_generator("staged", inspect=False, best_of=2)
    s = staged.generate(prompt, 4)
    assert s.stats["images"] >= 2 and len(s.stats["doubts"]) == 2


def test_inspect_subset_keeps_the_chosen_targets(tmp_path):
    """Symbolic inspect data teaches consistent steps and plan conflicts: a plan subset keeps
    exactly those, an image subset finds none, and a wrong target or a used folder is one line."""
    src = tmp_path / "inspect"
    build("inspect", 16, src, seed=0, shard_size=16, progress=False)
    rows = read_dataset(src).to_pylist()
    assert {inspect_target(r) for r in rows} == {"consistent", "plan"}
    n = subset(src, tmp_path / "plan", ["plan"])
    kept = read_dataset(tmp_path / "plan").to_pylist()
    assert read_dataset(str(tmp_path / "plan")).num_rows == len(kept)  # a path as text reads the same
    assert n == len(kept) == sum(r["label"] == "inconsistent" for r in rows) > 0
    assert {inspect_target(r) for r in kept} == {"plan"}
    assert json.loads((tmp_path / "plan" / "build.json").read_text())["params"]["targets"] == ["plan"]
    with pytest.raises(SketchloopError, match="no inspect example of image"):
        subset(src, tmp_path / "image", ["image"])
    with pytest.raises(SketchloopError, match="--target wrong: choose"):
        subset(src, tmp_path / "x", ["wrong"])
    with pytest.raises(SketchloopError, match="already holds"):
        subset(src, tmp_path / "plan", ["consistent"])


def test_one_step_trajectories_plan_and_draw_the_whole_scene_at_once(trajectories, tmp_path):
    """The one-shot layout baseline's data: per trajectory one `<ins>`/`<des>` naming the whole
    scene (text the phrase grammar accepts), one image (the final one) whose regions follow the
    text's order, and `<end>`; the same scenes as the source."""
    from sketchloop.models.regions import changed_regions
    from sketchloop.models.rules.phrase_grammar import PhraseGrammar
    from sketchloop.training.sequences import encode_row
    from sketchloop.world.layout import Layout
    from sketchloop.world.scene import SceneGraph

    n = one_step(trajectories, tmp_path / "one")
    source, rows = read_dataset(trajectories).to_pylist(), read_dataset(tmp_path / "one").to_pylist()
    assert n == len(rows) == len(source) and [r["scene"] for r in rows] == [r["scene"] for r in source]
    tok = WordTokenizer()
    words = [i for i, w in enumerate(tok.vocab) if not w.startswith("<") and not w[1:].isdigit()]
    for src, row in zip(source, rows):
        assert [s["type"] for s in row["steps"]] == ["ins", "des", "sketch", "end"]
        ins, des = row["steps"][0]["text"], row["steps"][1]["text"]
        assert des == [s["text"] for s in src["steps"] if s["type"] == "des"][-1] and ins == f"add {des}"
        assert row["images"] == [src["images"][-1]]
        for text, description, close in ((ins, False, "</ins>"), (des, True, "</des>")):
            grammar, ids = PhraseGrammar(tok, row["prompt"], description), tok.encode(text) + [tok.token_id(close)]
            offered = words + [tok.token_id(close)]
            assert all(t in grammar.allowed(ids[:j], offered) != offered for j, t in enumerate(ids))
        graph, layout = SceneGraph.from_json(row["scene"]), Layout.from_dict(json.loads(row["layouts"][0]))
        ranks = [graph.mention_order().index(o.group) for o in layout.objects]
        assert ranks == sorted(ranks) and len(layout.objects) == graph.n_objects
        ex = encode_row(row, tok, 64)
        assert len(ex.flows) == len(changed_regions(Layout(), layout)) == graph.n_objects
    with pytest.raises(SketchloopError, match="already holds"):
        one_step(trajectories, tmp_path / "one")


def test_paper_table_writes_the_table_and_plots(tmp_path, monkeypatch):
    """The report reads result files as `sketchloop eval --out` writes them: a row with results is
    in the table with its compute, a row whose checkpoint is missing is named as not trained, and
    both plots are PNGs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "paper_table", Path(__file__).parent.parent / "scripts" / "paper_table.py"
    )
    table = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "paper_table", table)  # dataclasses look their module up
    spec.loader.exec_module(table)
    monkeypatch.setattr(table, "ROOT", tmp_path)
    monkeypatch.setattr(table, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(table, "OUT", tmp_path / "docs" / "paper")
    (tmp_path / "docs" / "paper").mkdir(parents=True)
    row = table.Row("x", "row x", "process", "holds all", ["--generator", "staged"])
    untrained = table.Row("y", "row y", "baseline", "holds", ["--generator", "t2i", "--checkpoint", "{runs}/t2i"])
    tasks = {t: 0.5 for t in table.GENEVAL_TASKS}
    wise = {"wise-trajectory": 0.6, "wise-text": 0.3, "wise-heldout": 0.2}
    for bench, overall in zip(table.BENCHMARKS, (0.9, 0.4, 0.7, 0.35)):
        result = {
            "overall": overall,
            "tasks": tasks if bench == "shapes-geneval" else wise if bench == "shapes-wise" else {"complex": overall},
            "compute": {"flow_steps": 30.0, "images": 2.0, "text_tokens": 40.0, "seconds": 0.1},
        }
        (tmp_path / "docs" / "paper" / f"x-{bench}.json").write_text(json.dumps(result))
    monkeypatch.setattr(table, "ROWS", [row, untrained])
    text = table.write_table([row, untrained], {}, tmp_path / "runs")
    assert (
        "| row x | **0.900** | 0.500 | 0.500 | 0.500 | **0.400** | 0.700 | 0.350 (0.60 / 0.30 / 0.20) | – | – | "
        "30.0 / 30.0 | 2.00 | 40 | 0.10 | – |" in text
    )
    assert "row y: its checkpoint" in text and "not trained" in text
    table.plot([row, untrained])
    for name in ("accuracy-vs-flow-steps.png", "geneval-tasks.png"):
        assert (tmp_path / "docs" / "paper" / name).read_bytes()[:4] == b"\x89PNG"
