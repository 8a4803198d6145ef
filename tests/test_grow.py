"""Growing a checkpoint's depth (`UnifiedModel.grown(n_layer=...)`, `train --n-layer`)."""

import pytest
import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.errors import SketchloopError
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, prompt_memory
from sketchloop.training.trainer import TrainConfig, train

TEXT = "<prompt> a photo of a red circle left of a blue square </prompt> <ins> add a red circle </ins>"


def test_blocks_added_to_a_checkpoint_keep_its_predictions():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    deeper, same = shipped.grown(tok, n_layer=shipped.config.n_layer + 2)
    assert deeper.config.n_layer == len(deeper.blocks) == shipped.config.n_layer + 2
    assert same.vocab == tok.vocab
    ids = torch.tensor([tok.encode(TEXT)])
    open_id, close_id = tok.index["<prompt>"], tok.index["</prompt>"]
    with torch.no_grad():
        before, after = shipped.hidden(ids), deeper.hidden(ids)
        assert torch.allclose(before, after, atol=1e-6)
        memory = prompt_memory(before, ids, open_id, close_id)
        assert torch.allclose(shipped.logits(before, memory), deeper.logits(after, memory), atol=1e-5)
    # the new blocks learn: their output maps get a gradient at once
    deeper.train()
    deeper.logits(deeper.hidden(ids)).logsumexp(-1).sum().backward()
    assert deeper.blocks[-1].proj.weight.grad.abs().sum() > 0


def test_a_model_only_grows():
    shipped, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    with pytest.raises(SketchloopError, match="only grows"):
        shipped.grown(tok, n_layer=shipped.config.n_layer - 1)


def test_train_grows_an_init_checkpoint_and_its_new_blocks_learn(trajectories24, tmp_path):
    tok = WordTokenizer()
    small = UnifiedConfig(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
    cfg = TrainConfig(steps=2, batch_size=4, max_flows=4, single_per_step=1, save_every=2, lr=1e-2)
    train([trajectories24], tmp_path / "a", cfg, model_config=small, progress=False)
    train([trajectories24], tmp_path / "b", cfg, init=tmp_path / "a", n_layer=3, progress=False)
    model, _ = UnifiedModel.from_pretrained(tmp_path / "b")
    assert model.config.n_layer == len(model.blocks) == 3
    assert all(block.proj.weight.abs().sum() > 0 for block in model.blocks[1:])  # trained from zero
    train([trajectories24], tmp_path / "c", cfg, model_config=small, n_layer=2, progress=False)  # from scratch
    assert UnifiedModel.from_pretrained(tmp_path / "c")[0].config.n_layer == 2
