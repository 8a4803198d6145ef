"""The learned copy mechanism (models/unified.py `_Pointer`): a pointer over the prompt's words
mixed into the next-word head, read the same way in training and in sampling."""

from dataclasses import replace

import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.models.sampling import TextSession
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, prompt_memory
from sketchloop.training.trainer import TrainConfig, train

TOK = WordTokenizer()
TAGS = (TOK.token_id("<prompt>"), TOK.token_id("</prompt>"))
SMALL = UnifiedConfig(vocab_size=len(TOK), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8), copy_prompt=True)
TEXT = "<bos> <prompt> a photo of three purple stars left of a brown cross </prompt> <ins> add a brown cross </ins>"


def test_the_prompt_memory_holds_the_prompts_words_only():
    ids = torch.tensor([TOK.encode(TEXT)])
    memory = prompt_memory(torch.zeros(1, ids.shape[1], 4), ids, *TAGS)
    assert TOK.decode(ids[0][memory.mask[0]].tolist()) == "a photo of three purple stars left of a brown cross"


def test_an_open_gate_copies_the_word_the_pointer_attends_to():
    torch.manual_seed(0)
    model = UnifiedModel(SMALL).eval()
    assert model.pointer is not None
    ids = torch.tensor([TOK.encode(TEXT)])
    hidden = model.hidden(ids)
    memory = prompt_memory(hidden, ids, *TAGS)
    with torch.no_grad():
        model.pointer.gate.bias.fill_(30.0)  # all copy
        probs = model.logits(hidden, memory).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(1, ids.shape[1]), atol=1e-4)
    prompt_words = {int(i) for i in ids[0][memory.mask[0]]}
    others = [i for i in range(len(TOK)) if i not in prompt_words]
    assert float(probs[0, -1, others].sum()) < 1e-4  # only the prompt's words


def test_a_closed_pointer_added_to_a_checkpoint_keeps_its_predictions():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    base = UnifiedModel(replace(shipped.config, copy_prompt=False)).eval()  # the shipped weights, no pointer
    base.load_state_dict({k: v for k, v in shipped.state_dict().items() if not k.startswith("pointer.")})
    grown = UnifiedModel(replace(base.config, copy_prompt=True)).eval()
    grown.load_state_dict(base.state_dict(), strict=False)
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        hidden = base.hidden(ids)
        before = torch.softmax(base.logits(hidden), -1)
        after = grown.logits(hidden, prompt_memory(hidden, ids, *TAGS)).exp()
    assert float((before - after).abs().max()) < 0.06  # the gate starts at sigmoid(-3)
    assert int(before[0, -1].argmax()) == int(after[0, -1].argmax())


def test_sampling_reads_the_prompt_as_training_does():
    """The session's scores (the prompt read once, then token by token from the cache) equal the
    trainer's (the whole sequence at once, prompt_memory over it)."""
    torch.manual_seed(1)
    model = UnifiedModel(SMALL).eval()
    with torch.no_grad():
        model.pointer.gate.bias.fill_(0.0)
    ids = TOK.encode(TEXT)
    with torch.no_grad():
        hidden = model.hidden(torch.tensor([ids]))
        trained = model.logits(hidden, prompt_memory(hidden, torch.tensor([ids]), *TAGS))[0]
    session = TextSession(model, TOK.token_id("<canvas>"), TAGS)
    cut = ids.index(TAGS[1]) + 1
    session.feed(ids[:cut])
    for k in range(cut, len(ids)):
        assert torch.allclose(session.logits(session.last), trained[k - 1], atol=1e-4)
        session.feed([ids[k]])


def test_a_pointer_is_added_to_a_checkpoint_and_trained(trajectories24, tmp_path):
    plain = replace(SMALL, copy_prompt=False)
    cfg = TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, save_every=2)
    train([trajectories24], tmp_path / "a", cfg, model_config=plain, progress=False)
    assert UnifiedModel.from_pretrained(tmp_path / "a")[0].pointer is None
    train([trajectories24], tmp_path / "b", cfg, init=tmp_path / "a", copy_prompt=True, progress=False)
    model, _ = UnifiedModel.from_pretrained(tmp_path / "b")
    assert model.pointer is not None and model.config.copy_prompt
    assert not torch.equal(model.pointer.gate.bias, torch.tensor([-3.0]))  # trained from the closed start
