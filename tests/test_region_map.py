"""The region map: a spatial head that scores region words from the regions written before
(`UnifiedConfig.region_map`, models/unified.py `_RegionMap`, `UnifiedModel.region_bias`)."""

import json
from dataclasses import replace

import pytest
import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.errors import SketchloopError
from sketchloop.models.regions import Region
from sketchloop.models.sampling import TextSession
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, prompt_memory, region_cells
from sketchloop.training.trainer import TrainConfig, train

TOK = WordTokenizer()
TAGS = (TOK.token_id("<prompt>"), TOK.token_id("</prompt>"))
IMG = TOK.token_id("<img>")
SMALL = UnifiedConfig(vocab_size=len(TOK), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
TEXT = (
    "<bos> <prompt> a photo of two red circles left of a blue square </prompt> <ins> add a blue square </ins> "
    "<img> x11 y7 s6 </img> <ins> add two red circles left of the blue square </ins> "
    "<img> x3 y4 s6 x3 y11 s5 </img>"
)


def test_a_region_covers_the_cells_of_its_box():
    for region in (Region(3, 4, 6), Region(0, 15, 10), Region(8, 8, 4)):
        cells = region_cells(*(torch.tensor([v]) for v in (region.gx, region.gy, region.s)))[0]
        x0, y0, x1, y1 = region.box
        inside = (min(x1, 1) - max(x0, 0)) * (min(y1, 1) - max(y0, 0)) * 16 * 16
        assert float(cells.sum()) == pytest.approx(inside)  # the box's area in cells, the canvas' edge cut off
        assert float(cells[region.gy, region.gx]) == 1.0 and float(cells.max()) == 1.0
        ys, xs = (cells > 0).nonzero(as_tuple=True)
        assert ys.min() >= (y0 * 16) // 1 and xs.max() <= (x1 * 16) // 1  # nothing outside the box


def test_a_region_map_added_to_a_checkpoint_keeps_its_predictions():
    with_map, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    shipped = UnifiedModel(replace(with_map.config, region_map=False)).eval()  # the shipped model without its map
    shipped.load_state_dict({k: v for k, v in with_map.state_dict().items() if not k.startswith("region_")})
    grown, same = shipped.grown(tok, region_map=True)
    assert grown.config.region_map and same.vocab == tok.vocab and grown.region_map is not None
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        hidden = grown.hidden(ids)
        assert torch.equal(hidden, shipped.hidden(ids))
        bias = grown.region_bias(hidden, ids, IMG)
        assert bias.abs().max() < 1e-5  # its last layer at zero: a map of zeros, centred


def test_anchor_heads_added_to_a_map_keep_its_predictions_and_pick_only_earlier_regions():
    torch.manual_seed(0)
    plain, tok = UnifiedModel(SMALL).grown(TOK, region_map=True)
    with torch.no_grad():
        for p in plain.region_map.parameters():
            p.normal_(0, 0.1)
    anchored, same = plain.eval().grown(tok, region_anchors=2)
    assert anchored.config.region_anchors == 2 and same.vocab == tok.vocab
    with pytest.raises(SketchloopError, match="--region-anchors"):
        anchored.grown(tok, region_anchors=3)
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        hidden = anchored.eval().hidden(ids)
        assert torch.equal(anchored.region_bias(hidden, ids, IMG), plain.region_bias(hidden, ids, IMG))
        cells = region_cells(torch.tensor([11, 3]), torch.tensor([7, 4]), torch.tensor([6, 6]))
        earlier = torch.tensor([[False, False], [True, False], [True, True]])
        said = torch.randn(5, 64)  # descriptions (`_RegionMap.describe`) of 3 places and 2 regions
        weights = anchored.region_map.attend(said[:3], said[3:], earlier)
        picks = (weights @ cells.flatten(1)).transpose(0, 1).reshape(3, 2, 16, 16)
    assert not picks[0].any()  # nothing written before: no anchor
    assert torch.allclose(picks[1], cells[0].expand(2, -1, -1))  # one region before: each head picks it
    # two before: a share of each, the shares adding up to one (at each region's own centre cell)
    first, second = picks[2][:, 7, 11], picks[2][:, 4, 3]
    assert torch.allclose(first + second, torch.ones(2)) and (first > 0).all() and (second > 0).all()


def test_a_description_pools_the_words_of_its_own_step_alone():
    model = _trained_looking(anchors=2)
    ids = torch.tensor([TOK.encode(TEXT)])
    words = TOK.encode(TEXT)
    second = [k for k, t in enumerate(words) if t == TOK.token_id("<ins>")][1]
    img = [k for k, t in enumerate(words) if t == IMG][1]
    start = torch.where(torch.arange(len(words)) >= second, second, 0)[None]
    with torch.no_grad():
        hidden, embeds = model.hidden(ids), model.tok(ids)
        place = (torch.tensor([0]), torch.tensor([img]))
        said = model.region_map.describe(hidden, embeds, *place, start)
        before, within = embeds.clone(), embeds.clone()
        before[0, second - 3] += 1.0  # a word of the first step
        within[0, second + 2] += 1.0  # a word of this step
        assert torch.equal(model.region_map.describe(hidden, before, *place, start), said)
        assert not torch.allclose(model.region_map.describe(hidden, within, *place, start), said)


def _trained_looking(anchors: int = 0) -> UnifiedModel:
    """A small model with a region map (with `anchors` heads) of random weights (as if trained)."""
    torch.manual_seed(0)
    model, _ = UnifiedModel(SMALL).grown(TOK, region_map=True, region_anchors=anchors)
    assert model.region_map is not None
    with torch.no_grad():
        for p in model.region_map.parameters():
            p.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("anchors", [0, 2])
def test_sampling_scores_each_region_word_as_training_does(anchors):
    model = _trained_looking(anchors)
    ids = TOK.encode(TEXT)
    with torch.no_grad():
        hidden = model.hidden(torch.tensor([ids]))
        bias = model.region_bias(hidden, torch.tensor([ids]), IMG)[0]
    region_words = [i for i, w in enumerate(TOK.vocab) if w[0] in "xys" and w[1:].isdigit()]
    others = [i for i in range(len(TOK)) if i not in region_words]
    assert not bias[:, others].any()  # only region words are scored
    scored = {k for k in range(len(ids)) if bias[k].any()}
    # after each <img> and each region's x, y and size words: 3 regions, 2 <img>
    assert len(scored) == 3 * 3 + 2
    session = TextSession(model, TOK.token_id("<canvas>"), TAGS, IMG)
    session.feed(ids[:5])
    for k in range(5, len(ids)):
        expected = model.logits(hidden[0, k - 1], session.prompt()) + bias[k - 1]
        assert torch.allclose(session.next_logits(), expected, rtol=1e-4, atol=1e-4), TOK.vocab[ids[k - 1]]
        session.feed([ids[k]])


@pytest.mark.parametrize("anchors", [0, 2])
def test_the_map_reads_the_regions_written_before_and_only_those(anchors):
    model = _trained_looking(anchors)
    ids = TOK.encode(TEXT)
    moved = TOK.encode(TEXT.replace("x11 y7 s6", "x12 y2 s8"))
    with torch.no_grad():
        first = model.region_bias(model.hidden(torch.tensor([ids])), torch.tensor([ids]), IMG)[0]
        second = model.region_bias(model.hidden(torch.tensor([moved])), torch.tensor([moved]), IMG)[0]
    img = [k for k, t in enumerate(ids) if t == IMG]
    x_words = [TOK.token_id(f"x{i}") for i in range(16)]
    assert torch.equal(first[img[0], x_words], second[img[0], x_words])  # nothing drawn yet: the same map
    assert not torch.allclose(first[img[1], x_words], second[img[1], x_words])  # the square moved


def test_the_regions_stage_trains_the_map_alone(trajectories24, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, save_every=2, lr=1e-2)
    train([trajectories24], tmp_path / "a", cfg, model_config=SMALL, progress=False)
    with pytest.raises(SketchloopError, match="--region-map"):
        train([trajectories24], tmp_path / "x", TrainConfig(stage="regions", steps=1), init=tmp_path / "a")
    regions = TrainConfig(stage="regions", steps=3, batch_size=4, save_every=3, lr=1e-2)
    train([trajectories24], tmp_path / "b", regions, init=tmp_path / "a", region_map=True, progress=False)
    before, _ = UnifiedModel.from_pretrained(tmp_path / "a")
    after, tok = UnifiedModel.from_pretrained(tmp_path / "b")
    assert after.config.region_map and after.region_map is not None
    old = before.state_dict()
    for name, value in after.state_dict().items():
        if name.startswith("region_"):
            continue
        assert torch.equal(value, old[name]), name  # every other weight bit for bit
    assert after.region_map.out.weight.abs().sum() > 0  # trained from zero
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        hidden = after.hidden(ids)
        assert after.region_bias(hidden, ids, IMG).abs().sum() > 0
        memory = prompt_memory(hidden, ids, *TAGS)
        assert torch.equal(after.logits(hidden, memory), before.logits(before.hidden(ids), memory))


def test_each_related_step_names_the_drawn_regions_of_the_group_it_is_placed_by(trajectories24):
    """`Example.anchors`: at the `<img>` of a teacher's add step related to a drawn group (and at
    the size words before its last region), the ordinals of that group's drawn regions."""
    from sketchloop.data.schema import read_dataset
    from sketchloop.models.regions import region_of
    from sketchloop.training.sequences import encode_row
    from sketchloop.world.layout import Layout
    from sketchloop.world.scene import SceneGraph

    checked = 0
    for row in read_dataset(trajectories24).to_pylist():
        if set(json.loads(row["meta"])["edit_ops"]) != {"add"}:
            continue  # every object stays where it was drawn: the last layout names each region's group
        ex = encode_row(row, TOK, 64)
        words = [TOK.vocab[i] for i in ex.ids]
        starts = [k for k in range(len(words) - 2) if [w[0] for w in words[k : k + 3]] == ["x", "y", "s"]]
        final = Layout.from_dict(json.loads(row["layouts"][-1]))
        group = {region_of(o).text: o.group for o in final.objects}
        related = {(r.subject, r.object) for r in SceneGraph.from_json(row["scene"]).relations}
        for pos, marks in ex.anchors:
            assert words[pos] == "<img>" or words[pos][0] == "s"
            drawn = [group[" ".join(words[k : k + 3])] for k in starts if k < pos]
            new = group[" ".join(words[next(k for k in starts if k > pos) : next(k for k in starts if k > pos) + 3])]
            anchors = {drawn[m] for m in marks}
            assert all((new, b) in related or (b, new) in related for b in anchors)
            assert [m for m, g in enumerate(drawn) if g in anchors] == list(marks)  # every region of theirs
            checked += 1
    assert checked >= 10


def test_the_anchor_loss_is_the_first_heads_share_on_the_named_regions():
    from sketchloop.training.trainer import _Loss

    weights = torch.zeros(2, 2, 3)
    weights[0, 0] = torch.tensor([0.5, 0.25, 0.0])  # row 0's query at 7: regions 0 and 1 before it
    weights[0, 1] = torch.tensor([0.0, 0.0, 0.8])  # row 1's query at 4: its one region
    picks = [(torch.tensor([0, 1]), torch.tensor([7, 4]), torch.tensor([0, 0, 1]), weights)]
    batch = {"ids": torch.zeros(2, 9, dtype=torch.long), "anchors": [(0, 7, (1,)), (1, 4, (0,)), (1, 5, (0,))]}
    parts: dict = {}
    loss = _Loss._anchor_loss(torch.tensor(1.0), parts, picks, batch)
    expected = (-torch.log(torch.tensor(0.25 + 1e-6)) - torch.log(torch.tensor(0.8 + 1e-6))) / 2
    assert torch.isclose(loss, 1 + expected) and parts["anchor"] == pytest.approx(float(expected))
