import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.build import build
from sketchloop.errors import SketchloopError
from sketchloop.models.sampling import SamplingConfig
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.training.trainer import TrainConfig, lr_at, train

SMALL = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("traj")
    build("trajectories", 40, out, seed=0, shard_size=40, progress=False)
    return out


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=0.01)
    assert lr_at(50, cfg) < lr_at(20, cfg)


def test_loss_falls_and_checkpoint_loads(data, tmp_path):
    cfg = TrainConfig(steps=40, batch_size=8, lr=3e-3, warmup=5, save_every=20, max_flows=8, single_per_step=2)
    first = train(
        [data],
        tmp_path / "a",
        TrainConfig(steps=1, batch_size=8, max_flows=8, single_per_step=2),
        model_config=SMALL,
        progress=False,
    )
    result = train([data], tmp_path / "b", cfg, model_config=SMALL, progress=False)
    assert result["ce"] < first["ce"] - 0.5  # text cross-entropy
    assert result["crop"] < first["crop"] and result["full"] > 0  # flow-matching MSE on crops, whole canvases
    model, tok = UnifiedModel.from_pretrained(tmp_path / "b")
    ids = torch.tensor([tok.encode("<bos> <prompt> a photo of a red circle </prompt> <ins> add a red")])
    assert model.logits(model.hidden(ids)).shape == (1, ids.shape[1], len(tok))
    # trained on trajectories, the model opens a plan after the prompt, and greedy planning writes one
    after_prompt = tok.encode("<bos> <prompt> a photo of a red circle </prompt>")
    assert int(model.logits(model.hidden(torch.tensor([after_prompt])))[0, -1].argmax()) == tok.token_id("<ins>")
    step = UnifiedRoles(model, tok, SamplingConfig(flow_steps=2, temperature=0.0)).plan(
        "a photo of a red circle", [], 0
    )
    assert step is not None and step.ins and step.des
    assert (tmp_path / "b" / "trainer" / "state.json").is_file()


def test_later_stages_train_from_the_previous_checkpoint(data, tmp_path):
    inspect, refine = tmp_path / "inspect", tmp_path / "refine"
    build("inspect", 12, inspect, seed=0, shard_size=12, progress=False)
    build("refine", 12, refine, seed=0, shard_size=12, progress=False)
    small = dict(batch_size=4, max_flows=4, single_per_step=1, warmup=1, save_every=100)
    train(
        [data], tmp_path / "s1", TrainConfig(stage="plan-sketch", steps=2, **small), model_config=SMALL, progress=False
    )
    r = train(
        [inspect], tmp_path / "s2", TrainConfig(stage="inspect", steps=2, **small), init=tmp_path / "s1", progress=False
    )
    assert "crop" not in r and r["examples"] == 12  # text only: inspections read the canvas, draw nothing
    r = train(
        [refine], tmp_path / "s3", TrainConfig(stage="refine", steps=2, **small), init=tmp_path / "s2", progress=False
    )
    assert r["examples"] == 12
    r = train(
        [data, inspect, refine],
        tmp_path / "s4",
        TrainConfig(stage="joint", steps=2, **small),
        init=tmp_path / "s3",
        progress=False,
    )
    assert r["examples"] == 40 + 12 + 12 and r["single_examples"] == 40
    UnifiedModel.from_pretrained(tmp_path / "s4")


def test_the_image_stage_trains_the_image_expert_alone_and_favours_hard_crops(tmp_path):
    """`--stage image` moves the image expert's weights only (every text weight kept bit for bit,
    so plans and the plan check read the same likelihoods), and `hard_crops` fills that share of
    a step's crops with hard ones: regions drawn over paint already there (the front object of a
    pair in depth) and objects with a counted number of parts."""
    from sketchloop.training.sequences import collate, load_examples

    data = tmp_path / "depth-parts"
    build("trajectories", 16, data, seed=3, edit_ops=0.0, depth=0.5, parts=0.5, shard_size=16, progress=False)
    small = dict(batch_size=4, max_flows=4, single_per_step=1, warmup=1, save_every=100)
    train([data], tmp_path / "s1", TrainConfig(steps=2, **small), model_config=SMALL, progress=False)
    r = train(
        [data],
        tmp_path / "img",
        TrainConfig(stage="image", steps=3, lr=1e-2, hard_crops=0.5, **small),
        init=tmp_path / "s1",
        progress=False,
    )
    assert "ce" not in r and r["crop"] > 0 and r["hard_examples"] > 0
    before, after = (
        load_file(str(tmp_path / "s1" / "model.safetensors")),
        load_file(str(tmp_path / "img" / "model.safetensors")),
    )
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved and moved <= {"reader", "flow", "null_cond"}, moved

    examples, _ = load_examples([data], {"trajectories"}, WordTokenizer(), 512, SMALL.canvas_tokens, progress=False)
    crops = [f for e in examples for f in e.flows if f.region is not None]
    # each depth scene draws one object over another, each parts scene stars with points; most crops are plain
    assert any(f.overlaps for f in crops) and any(f.counted for f in crops)
    assert sum(f.hard for f in crops) < len(crops) / 2
    batch = [e for e in examples if len(e.flows) > 2][:6]
    hard = {(i, f.pos) for i, e in enumerate(batch) for f in e.flows if f.region is not None and f.hard}
    total = sum(f.region is not None for e in batch for f in e.flows)
    assert 0 < len(hard) < total - 1
    for share, least in ((1.0, len(hard)), (0.0, 0)):
        crops = collate(batch, 0, len(hard), np.random.default_rng(0), hard_share=share)["crop"]
        picked = set(zip(crops["row"].tolist(), crops["pos"].tolist()))
        assert len(picked) == len(hard) and len(picked & hard) >= least


def test_a_checkpoint_of_retired_settings_is_refused_in_one_line(tmp_path):
    """A checkpoint trained with settings this version no longer has (an image condition that read
    the whole step's words, `bag` "step") is refused, not read another way."""
    import json

    UnifiedModel(SMALL).save_pretrained(tmp_path / "ok", WordTokenizer())
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    UnifiedModel.from_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**config, "bag": "phrase", "look_grid": 0}))
    UnifiedModel.from_pretrained(tmp_path / "ok")  # the values this version reads the same way
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**config, "bag": "step"}))
    with pytest.raises(SketchloopError, match="no longer has"):
        UnifiedModel.from_pretrained(tmp_path / "ok")


def test_resumed_training_equals_uninterrupted(data, tmp_path):
    cfg = TrainConfig(steps=12, batch_size=4, warmup=2, save_every=6, max_flows=4, single_per_step=1)
    train([data], tmp_path / "full", cfg, model_config=SMALL, progress=False)
    run = tmp_path / "resumed"
    _interrupted_run(data, run, cfg)  # killed right after the step-6 checkpoint
    assert '"step": 6' in (run / "trainer" / "state.json").read_text()
    resumed = train([data], run, cfg, model_config=SMALL, progress=False)
    assert resumed["step"] == 12
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    c = load_file(str(run / "model.safetensors"))
    assert all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)


def _interrupted_run(data, run, cfg):
    """Run `cfg` but stop right after the step-6 checkpoint, like a killed job."""
    import sketchloop.training.trainer as trainer

    original = trainer._save_state

    class Stop(Exception):
        pass

    def save_then_stop(out, model, ema, opt, step, cfg_, tok):
        original(out, model, ema, opt, step, cfg_, tok)
        raise Stop

    trainer._save_state = save_then_stop
    try:
        train([data], run, cfg, model_config=SMALL, progress=False)
    except Stop:
        pass
    finally:
        trainer._save_state = original


def test_unknown_stage_and_wrong_data(data, tmp_path):
    with pytest.raises(SketchloopError, match="--stage"):
        train([data], tmp_path / "x", TrainConfig(stage="plan"), model_config=SMALL)
    inspect = tmp_path / "inspect"
    build("inspect", 4, inspect, shard_size=4, progress=False)
    with pytest.raises(SketchloopError, match="trains on corrections, facts, plans, trajectories"):
        train([inspect], tmp_path / "y", TrainConfig(steps=1), model_config=SMALL)


def test_torchrun_two_processes_on_cpu(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "sketchloop.cli",
            "train",
            "--stage",
            "plan-sketch",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "ddp"),
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--save-every",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "checkpoint" in r.stderr and (tmp_path / "ddp" / "model.safetensors").is_file()
    UnifiedModel.from_pretrained(tmp_path / "ddp")


def test_raster_region_order_writes_a_teachers_add_in_reading_order(tmp_path):
    """`--region-order raster`: each add step's regions in reading order (top row first, then left
    to right), the same regions as in drawn order; the default keeps the teacher's order, which
    for counted groups is often not reading order; an unknown order is refused in one line."""
    from cli_run import cli

    from sketchloop.data.schema import read_dataset
    from sketchloop.models.regions import parse_regions
    from sketchloop.training.sequences import encode_row

    def steps(ids: list[int]) -> list[list]:
        return [parse_regions(s.split("</img>")[0]) for s in tok.decode(ids).split("<img>")[1:]]

    data = tmp_path / "counts"
    build("trajectories", 24, data, seed=5, edit_ops=0.0, counts=1.0, shard_size=24, progress=False)
    tok = WordTokenizer()
    unsorted = 0
    for row in read_dataset(data).to_pylist():
        drawn, raster = steps(encode_row(row, tok, 64).ids), steps(encode_row(row, tok, 64, "raster").ids)
        assert len(drawn) == len(raster) == sum(s["type"] == "sketch" for s in row["steps"])
        for d, r in zip(drawn, raster):
            assert r == sorted(d, key=lambda q: (q.gy, q.gx))
            unsorted += d != r
    assert unsorted > 3
    out = cli("train", "--stage", "joint", "--data", str(data), "--out", str(tmp_path / "x"), "--region-order", "z")
    assert out.returncode != 0 and "--region-order 'z': choose one of drawn, raster" in out.stderr + out.stdout
