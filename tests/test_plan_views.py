"""The planner that reads the canvas (`train --plan-views canvas`): its training examples, and the
same context at inference as in training."""

import numpy as np
import pytest
import torch
from PIL import Image

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.build import build
from sketchloop.data.schema import decode_png, read_dataset
from sketchloop.errors import SketchloopError
from sketchloop.format import Plan
from sketchloop.loop.roles import Roles
from sketchloop.loop.staged import run_staged
from sketchloop.models.regions import to_float
from sketchloop.models.sampling import SamplingConfig, TextSession
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.training.sequences import blank_array, encode_row, plan_view_examples
from sketchloop.training.trainer import TrainConfig, train

SMALL = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("views")
    build("trajectories", 12, out, seed=3, edit_ops=0.0, shard_size=12, progress=False)
    return out, read_dataset(out).to_pylist()


def test_each_plan_is_learned_after_the_canvas_it_is_drawn_on(rows):
    """One example per plan and one for `<end>`; each learns only its own step, read after the
    canvas it is drawn on (blank, then each sketch in turn); "blind" is the same without the canvas."""
    tok = WordTokenizer()
    canvas_id = tok.token_id("<canvas>")
    for row in rows[1]:
        full = encode_row(row, tok, 64)
        seen, blind = plan_view_examples(row, tok, 64, "canvas"), plan_view_examples(row, tok, 64, "blind")
        sketches = [s for s in row["steps"] if s["type"] == "sketch"]
        assert len(seen) == len(blind) == len(sketches) + 1
        images = [blank_array(64)] + [decode_png(row["images"][s["image"]]) for s in sketches]
        learned_in_all: list[int] = []
        for k, (view, plain) in enumerate(zip(seen, blind)):
            slots = [i for i, t in enumerate(view.ids) if t == canvas_id]
            assert len(slots) == 64 and slots == list(range(slots[0], slots[0] + 64))
            after = view.ids[slots[-1] + 1]
            assert tok.vocab[after] == ("<end>" if k == len(sketches) else "<ins>")
            assert np.array_equal(view.canvases[0], images[k])
            assert not any(view.target[: slots[-1] + 1])  # the history and the canvas: read, not learned
            assert [t for t, keep in zip(view.ids, view.target) if keep] == [
                t for t, keep in zip(plain.ids, plain.target) if keep
            ]
            assert plain.ids == view.ids[: slots[0]] + view.ids[slots[-1] + 1 :] and not plain.canvases
            assert view.ids[: slots[0]] == full.ids[: slots[0]] and not view.flows
            learned_in_all += [t for t, keep in zip(view.ids, view.target) if keep]
        # together they learn what the whole row learns, but for its closing <eos>
        assert learned_in_all == [t for t, keep in zip(full.ids, full.target) if keep][:-1]


def test_the_loop_shows_the_planner_the_canvas_as_training_did(rows, tmp_path):
    """A checkpoint trained with --plan-views canvas says so in its config; the loop hands its planner
    the canvas each step is drawn on, and the planner reads the prompt, the history and that canvas
    exactly as the training example of that step holds them."""
    data, table = rows
    torch.manual_seed(0)
    train(
        [data],
        tmp_path / "v",
        TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, plan_views="canvas"),
        model_config=SMALL,
        progress=False,
    )
    model, tok = UnifiedModel.from_pretrained(tmp_path / "v")
    assert model.config.plan_view
    roles = UnifiedRoles(model, tok, SamplingConfig(flow_steps=1))
    assert roles.reads_canvas

    row = table[0]
    sketches = [s for s in row["steps"] if s["type"] == "sketch"]
    texts = [s["text"] for s in row["steps"] if s["type"] in ("ins", "des")]
    example = plan_view_examples(row, tok, 64, "canvas")[1]  # the second plan, on the first sketch
    canvas = decode_png(row["images"][sketches[0]["image"]])
    regions = tok.decode(example.ids[: example.ids.index(tok.token_id("</img>"))]).split("<img>")[1].strip()
    history = [Plan(texts[0], texts[1], regions)]
    read: list = []
    feed = TextSession.feed

    def record(session, ids, canvases=None):
        read.append((list(ids), canvases))
        return feed(session, ids, canvases)

    TextSession.feed = record
    try:
        roles.plan(row["prompt"], history, 0, Image.fromarray(canvas))
    finally:
        TextSession.feed = feed
    context = [t for ids, _ in read[:2] for t in ids]
    opening = example.ids.index(tok.token_id("<canvas>")) + 64
    assert context == example.ids[:opening]
    assert torch.equal(read[1][1][0], torch.from_numpy(to_float(canvas)))
    with pytest.raises(SketchloopError, match="reads the canvas"):
        roles.plan(row["prompt"], history, 0)
    with pytest.raises(SketchloopError, match="--plan-views teaches plans"):
        TrainConfig(stage="inspect", plan_views="canvas")
    with pytest.raises(SketchloopError, match="choose one of off, canvas, blind"):
        TrainConfig(plan_views="pixels")

    shown = []

    def spy(prompt, history, seed, canvas):  # two steps of its own, then the end
        shown.append(np.asarray(canvas).copy())
        return Plan("add a red circle", "a red circle", f"x{4 * len(shown)} y4 s6") if len(shown) < 3 else None

    roles.plan = spy  # type: ignore[method-assign]
    blank = Image.new("RGB", (64, 64), (128, 128, 128))
    traj = run_staged(
        "a photo of a red circle", Roles(roles, roles, roles, roles), blank, seed=0, max_iters=3, inspect=False
    )
    assert np.array_equal(shown[0], np.asarray(blank))
    sketched = [s.image for s in traj.steps if s.type == "sketch"]
    assert len(shown) == 3 and len(sketched) == 2  # two steps planned and drawn, the third refused by the spy
    for before, seen in zip(sketched, shown[1:]):
        assert np.array_equal(np.asarray(before), seen)
