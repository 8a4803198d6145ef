"""The region map's anchors: the drawn objects a step's relations name, found by their words
(`UnifiedConfig.region_anchors`, models/phrases.py `step_anchors` / `region_object`,
models/unified.py `_RegionMap.anchor_maps`)."""

import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.models.phrases import MAX_ANCHORS, region_object, step_anchors
from sketchloop.models.sampling import TextSession
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, region_cells
from sketchloop.training.trainer import TrainConfig, train

TOK = WordTokenizer()
TAGS = (TOK.token_id("<prompt>"), TOK.token_id("</prompt>"))
IMG = TOK.token_id("<img>")
SMALL = UnifiedConfig(vocab_size=len(TOK), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
TEXT = (
    "<bos> <prompt> a photo of two red circles left of a blue square and a green star above the square </prompt> "
    "<ins> add a blue square </ins> <img> x11 y7 s6 </img> "
    "<ins> add two red circles left of the blue square </ins> <img> x3 y4 s6 x3 y11 s5 </img> "
    "<ins> add a green star above the blue square and right of the red circles </ins> <img> x11 y2 s5 </img>"
)


def _words(text: str) -> list[str]:
    return text.split()


def test_a_step_names_its_anchors_by_relation_and_words():
    words = _words(TEXT)
    imgs = [i for i, w in enumerate(words) if w == "<img>"]
    assert step_anchors(words, imgs[0]) == []  # the first step places by nothing drawn
    ((relation, anchor),) = step_anchors(words, imgs[1])
    assert [words[i] for i in relation] == ["left", "of"] and [words[i] for i in anchor] == ["blue", "square"]
    found = step_anchors(words, imgs[2] + 3)  # any place a region of the step may start
    assert [[words[i] for i in a] for _, a in found] == [["blue", "square"], ["red", "circles"]]
    assert [[words[i] for i in r] for r, _ in found] == [["above"], ["right", "of"]]
    depth = _words("<ins> add a red circle in front of the white squares </ins> <img>")
    ((relation, anchor),) = step_anchors(depth, len(depth) - 1)
    assert [depth[i] for i in relation] == ["in", "front", "of"] and [depth[i] for i in anchor] == ["white", "squares"]
    recall = _words("<ins> chocolate is brown ; add a brown star below the black cross </ins> <img>")
    assert [[recall[i] for i in a] for _, a in step_anchors(recall, len(recall) - 1)] == [["black", "cross"]]
    many = _words("<ins> add a star left of the cross and left of the circle and above the square </ins> <img>")
    assert len(step_anchors(many, len(many) - 1)) == MAX_ANCHORS
    new_pair = _words("<ins> add a red cross left of a blue diamond </ins> <img>")
    assert step_anchors(new_pair, len(new_pair) - 1) == []  # "a": drawn in this step, not before
    assert step_anchors(_words("<refine> remove the red circle left of the blue square </refine> <img>"), 9) == []


def test_each_region_is_known_by_the_words_of_the_object_it_draws():
    words = _words(TEXT)
    sizes = [i for i, w in enumerate(words) if w in ("s5", "s6")]
    assert [[words[i] for i in region_object(words, p) or []] for p in sizes] == [
        ["blue", "square"],
        ["red", "circles"],
        ["red", "circles"],
        ["green", "star"],
    ]
    pair = _words("<ins> add a red cross left of a blue diamond </ins> <img> x1 y2 s5 x6 y2 s5 </img>")
    assert [pair[i] for i in region_object(pair, 14) or []] == ["red", "cross"]
    assert [pair[i] for i in region_object(pair, 17) or []] == ["blue", "diamond"]


def test_anchors_added_to_the_shipped_checkpoint_keep_its_predictions():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    grown, same = shipped.grown(tok, region_anchors=True)
    assert grown.config.region_anchors and grown.region_map is not None and same.vocab == tok.vocab
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        hidden = shipped.hidden(ids)
        assert torch.equal(grown.region_bias(hidden, ids, IMG), shipped.region_bias(hidden, ids, IMG))


def _anchor_input(model: UnifiedModel, text: str) -> tuple[torch.Tensor, list[int]]:
    """The anchor maps at each <img> of `text`, and those positions."""
    ids = torch.tensor([TOK.encode(text)])
    words = _words(text)
    starts = [i for i in range(len(words) - 2) if words[i][0] == "x" and words[i + 2][0] == "s"]
    imgs = [i for i, w in enumerate(words) if w == "<img>"]
    value = model.region_value[ids[0]]
    rows, pos = torch.zeros(len(starts), dtype=torch.long), torch.tensor(starts)
    cells = region_cells(value[pos], value[pos + 1], value[pos + 2] + 4)
    rows_q, pos_q = torch.zeros(len(imgs), dtype=torch.long), torch.tensor(imgs)
    earlier = pos[None, :] + 2 <= pos_q[:, None]
    with torch.no_grad():
        return model._anchor_maps(ids, rows, pos, cells, rows_q, pos_q, earlier), imgs


def test_the_anchor_map_paints_the_drawn_object_the_relation_names():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    torch.manual_seed(0)
    model, _ = shipped.grown(tok, region_anchors=True)
    assert model.region_map is not None
    with torch.no_grad():
        model.region_map.anchor_match.copy_(torch.tensor([40.0, 0.9]))  # a sharp match, as if trained
    maps, _ = _anchor_input(model, TEXT)
    plain = maps[:, :: maps.shape[1] // MAX_ANCHORS]  # each anchor's plain map (Nq, A, G, G)
    assert plain[0].abs().sum() == 0  # the first step names no anchor
    square, circle = (7, 11), (4, 3)  # (y, x) of the blue square's and a red circle's centre cells
    assert plain[1, 0][square] > 0.8 and plain[1, 0][circle] < 0.2  # "left of the blue square"
    assert plain[1, 1].abs().sum() == 0  # one anchor only
    assert plain[2, 0][square] > 0.8 > 0.2 > plain[2, 0][circle]  # "above the blue square"
    assert plain[2, 1][circle] > 0.8 > 0.2 > plain[2, 1][square]  # "and right of the red circles"


def _trained_looking() -> UnifiedModel:
    torch.manual_seed(0)
    model, _ = UnifiedModel(SMALL).grown(TOK, region_anchors=True)
    assert model.region_map is not None
    with torch.no_grad():
        for p in model.region_map.parameters():
            p.normal_(0, 0.1)
        model.region_map.anchor_match.copy_(torch.tensor([40.0, 0.9]))
    return model.eval()


def test_sampling_scores_each_region_word_as_training_does_with_anchors():
    model = _trained_looking()
    ids = TOK.encode(TEXT)
    with torch.no_grad():
        hidden = model.hidden(torch.tensor([ids]))
        bias = model.region_bias(hidden, torch.tensor([ids]), IMG)[0]
    session = TextSession(model, TOK.token_id("<canvas>"), TAGS, IMG)
    session.feed(ids[:5])
    for k in range(5, len(ids)):
        expected = model.logits(hidden[0, k - 1], session.prompt()) + bias[k - 1]
        assert torch.allclose(session.next_logits(), expected, rtol=1e-4, atol=1e-4), TOK.vocab[ids[k - 1]]
        session.feed([ids[k]])


def test_the_map_moves_with_the_named_anchor_not_with_another_drawn_object():
    model = _trained_looking()
    moved_named = TEXT.replace("x11 y7 s6", "x12 y12 s6")  # the blue square, named by the last step
    base, imgs = _anchor_input(model, TEXT)
    named, _ = _anchor_input(model, moved_named)
    assert not torch.equal(base[2], named[2])
    renamed = TEXT.replace("above the blue square and", "above the green square and")  # names nothing drawn
    other, _ = _anchor_input(model, renamed)
    plain = other[:, :: other.shape[1] // MAX_ANCHORS]
    assert plain[2, 0].max() < 0.1 < plain[2, 1].max()


def test_the_regions_stage_trains_the_anchors(trajectories24, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, save_every=2, lr=1e-2)
    train([trajectories24], tmp_path / "a", cfg, model_config=SMALL, progress=False)
    regions = TrainConfig(stage="regions", steps=3, batch_size=4, save_every=3, lr=1e-2)
    train([trajectories24], tmp_path / "b", regions, init=tmp_path / "a", region_anchors=True, progress=False)
    after, _ = UnifiedModel.from_pretrained(tmp_path / "b")
    assert after.config.region_map and after.config.region_anchors and after.region_map is not None
    assert after.region_map.anchor_in.weight.abs().sum() > 0  # trained from zero
    assert after.vocab_words is not None  # the words the anchors read, known after loading
