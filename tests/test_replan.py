"""The replanner: with `replan_reads_rejected`, a flagged step is planned again after the
rejected plan and the verdict, the context a replan row of the training data gives it."""

import pytest
import torch

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.format import replan_text
from sketchloop.loop.roles import Plan
from sketchloop.models.sampling import SamplingConfig
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel

TINY = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
PROMPT = "a photo of a red circle left of two blue squares"
HISTORY = [Plan("add a red circle", "a red circle", "x2 y4 s6")]
REJECTED = Plan("add two blue squares left of the red circle", "two blue squares left of a red circle", "x9 y3 s6")
RIGHT = Plan("add two blue squares right of the red circle", "a red circle left of two blue squares", "x9 y3 s6")


@pytest.fixture(scope="module")
def roles():
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    return UnifiedRoles(model, tok, SamplingConfig(replan_reads_rejected=True))


@pytest.mark.parametrize("written, expected", [(RIGHT, RIGHT), (REJECTED, None), (None, None)])
def test_the_replanner_reads_the_rejected_plan_and_keeps_the_step_when_it_repeats_it(
    roles, monkeypatch, written, expected
):
    """It writes after exactly `replan_text` (the history, the rejected words, the verdict); the
    same words again, or an `<end>`, keep the step (None)."""
    seen = []

    def write(session, generator, prompt, history, described):
        seen.append(list(session.ids))
        return written

    monkeypatch.setattr(roles, "_write_plan", write)
    assert roles.replan(PROMPT, HISTORY, REJECTED, seed=0) == expected
    assert seen == [roles.tok.encode(replan_text(PROMPT, HISTORY, REJECTED))]


def test_without_the_setting_a_plan_conflict_is_planned_again_from_the_history(roles):
    plain = UnifiedRoles(roles.model, roles.tok, SamplingConfig(plan_check=-1e9))
    assert plain.replan(PROMPT, HISTORY, REJECTED, seed=0) == plain.plan(PROMPT, HISTORY, 0)
