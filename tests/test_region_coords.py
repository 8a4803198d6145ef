"""Region words read and scored through their lattice value (`UnifiedConfig.region_coords`,
models/unified.py `UnifiedModel.embed`, models/regions.py `region_word_features`)."""

from dataclasses import replace

import numpy as np
import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.models.regions import REGION_FREQUENCIES, REGION_WORDS, region_word_features
from sketchloop.models.sampling import TextSession
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, prompt_memory
from sketchloop.training.trainer import TrainConfig, train

TOK = WordTokenizer()
TAGS = (TOK.token_id("<prompt>"), TOK.token_id("</prompt>"))
SMALL = UnifiedConfig(vocab_size=len(TOK), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
TEXT = (
    "<bos> <prompt> a photo of a red circle left of a blue square </prompt> <ins> add a blue square </ins> "
    "<img> x11 y7 s6 </img> <ins> add a red circle left of the blue square </ins> <img> x4 y7 s6 </img>"
)


def test_neighbouring_lattice_points_have_neighbouring_features():
    features = region_word_features(TOK.vocab)
    row = {w: features[TOK.token_id(w)] for w in REGION_WORDS}

    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(row[a] - row[b]))

    width = 1 + 2 * REGION_FREQUENCIES
    for slot, (axis, values) in enumerate((("x", range(16)), ("y", range(16)), ("s", range(4, 11)))):
        for a in values:  # the lattice neighbours are the nearest words of an axis
            near = max(dist(f"{axis}{a}", f"{axis}{b}") for b in values if abs(a - b) == 1)
            assert all(near < dist(f"{axis}{a}", f"{axis}{b}") for b in values if abs(a - b) > 1)
        # and a linear read-out orders it: the first frequency's cosine falls along the axis
        cosines = [row[f"{axis}{a}"][slot * width + 1 + REGION_FREQUENCIES] for a in values]
        assert all(np.diff(cosines) < 0)
    assert float(row["x7"] @ row["y7"]) == float(row["y7"] @ row["s7"]) == 0.0  # each axis its own slot
    others = [i for i, w in enumerate(TOK.vocab) if w not in REGION_WORDS]
    assert not features[others].any() and all(row[w].any() for w in REGION_WORDS)


def test_lattice_values_added_to_a_checkpoint_keep_its_predictions():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    grown, same = shipped.grown(tok, region_coords=True)
    assert grown.config.region_coords and same.vocab == tok.vocab
    assert torch.equal(grown.region_features, torch.from_numpy(region_word_features(tok.vocab)))
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        before, after = shipped.hidden(ids), grown.hidden(ids)
        memory = prompt_memory(before, ids, *TAGS)
        assert torch.equal(before, after)
        assert torch.equal(shipped.logits(before, memory), grown.logits(after, memory))


def test_sampling_reads_the_lattice_values_as_training_does():
    torch.manual_seed(0)
    model, _ = UnifiedModel(SMALL).grown(TOK, region_coords=True)
    model.eval()
    assert model.coord_in is not None and model.coord_out is not None
    with torch.no_grad():
        model.coord_in.weight.normal_()
        model.coord_out.weight.normal_()
    ids = TOK.encode(TEXT)
    with torch.no_grad():
        hidden = model.hidden(torch.tensor([ids]))[0]
        trained = model.logits(hidden)
        plain = UnifiedModel(SMALL).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("coord", "region"))})
        plain_hidden = plain.hidden(torch.tensor([ids]))[0]
        without = plain.logits(plain_hidden)
    first = ids.index(TOK.token_id("<img>")) + 1  # the first region word
    regions = [TOK.token_id(w) for w in REGION_WORDS]
    others = [i for i in range(len(TOK)) if i not in regions]
    assert torch.equal(hidden[:first], plain_hidden[:first])  # read in: only region words change
    assert not torch.allclose(hidden[first:], plain_hidden[first:])
    assert torch.equal(trained[:first, others], without[:first, others])  # scored: only region words change
    assert not torch.allclose(trained[:first, regions], without[:first, regions])
    session = TextSession(model, TOK.token_id("<canvas>"), TAGS)
    session.feed(ids[:5])
    for k in range(5, len(ids)):
        assert torch.allclose(session.logits(session.last), trained[k - 1], atol=1e-4)
        session.feed([ids[k]])


def test_lattice_values_are_added_to_a_checkpoint_trained_and_saved(trajectories24, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, save_every=2, lr=1e-2)
    train([trajectories24], tmp_path / "a", cfg, model_config=SMALL, progress=False)
    assert not UnifiedModel.from_pretrained(tmp_path / "a")[0].config.region_coords
    train([trajectories24], tmp_path / "b", cfg, init=tmp_path / "a", region_coords=True, progress=False)
    model, tok = UnifiedModel.from_pretrained(tmp_path / "b")
    assert model.config.region_coords and model.coord_in is not None and model.coord_out is not None
    assert model.coord_in.weight.abs().sum() > 0 and model.coord_out.weight.abs().sum() > 0  # trained from zero
    assert torch.equal(model.region_features, torch.from_numpy(region_word_features(tok.vocab)))
    again, _ = UnifiedModel.from_pretrained(tmp_path / "b")
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        assert torch.equal(model.logits(model.hidden(ids)), again.logits(again.hidden(ids)))
    fresh = replace(SMALL, region_coords=True)
    train([trajectories24], tmp_path / "c", cfg, model_config=fresh, progress=False)  # from scratch: features filled
    scratch, _ = UnifiedModel.from_pretrained(tmp_path / "c")
    assert scratch.region_features.abs().sum() > 0
