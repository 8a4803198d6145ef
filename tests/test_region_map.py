"""The region map: a spatial head that scores region words from the regions written before
(`UnifiedConfig.region_map`, models/unified.py `_RegionMap`, `UnifiedModel.region_bias`)."""

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


def _trained_looking() -> UnifiedModel:
    """A small model with a region map of random weights (as if trained)."""
    torch.manual_seed(0)
    model, _ = UnifiedModel(SMALL).grown(TOK, region_map=True)
    assert model.region_map is not None
    with torch.no_grad():
        for p in model.region_map.parameters():
            p.normal_(0, 0.1)
    return model.eval()


def test_sampling_scores_each_region_word_as_training_does():
    model = _trained_looking()
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


def test_the_map_reads_the_regions_written_before_and_only_those():
    model = _trained_looking()
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
