"""The layout check: a head over the planner's hidden states at a step's regions, the inspection
verdict it sets, and the correction that samples new regions for the same words."""

import numpy as np
import pytest
import torch

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.errors import SketchloopError
from sketchloop.format import Critique
from sketchloop.loop.roles import Plan, Roles
from sketchloop.loop.staged import run_staged
from sketchloop.models.layout_check import CONFIG_FILE, FLAGS, LayoutCheck, LayoutCheckConfig, region_rows
from sketchloop.models.sampling import SamplingConfig
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.teachers import blank_canvas
from sketchloop.training.layout_check import (
    auc,
    features_of,
    fit,
    layout_right,
    scores_of,
    threshold_for,
    within_auc,
)

TINY = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
PROMPT = "a photo of a red circle left of two blue squares"
HISTORY = [Plan("add a red circle", "a red circle", "x2 y4 s6")]
STEP = Plan(
    "add two blue squares right of the red circle", "a red circle left of two blue squares", "x9 y3 s6 x9 y9 s6"
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return UnifiedModel(TINY).eval(), WordTokenizer()


def head_for(width: int, threshold: float = 0.0) -> LayoutCheck:
    torch.manual_seed(2)
    return LayoutCheck(LayoutCheckConfig(n_embd=width, threshold=threshold)).eval()


def score(roles: UnifiedRoles, history: list[Plan], plan: Plan) -> float:
    return roles.layout_check.score(torch.tensor(features_of(roles, PROMPT, history, plan)))


def test_region_rows_read_each_region_and_the_steps_end():
    """A row after each region's size word, flagged when it is the last step's, and one after
    the last `</img>`, flagged as the end; None when the last step has no regions."""
    img, end, x = 1, 2, 9
    ids = [0, img, x, x, x, end, 0, img, x, x, x, x, x, x, end, 0]
    hidden = torch.arange(len(ids), dtype=torch.float32)[:, None]
    rows = region_rows(hidden, ids, img, end)
    assert rows[:, 0].tolist() == [4, 10, 13, 14]
    assert rows[:, 1:].tolist() == [[0, 0], [1, 0], [1, 0], [0, 1]]
    assert region_rows(hidden[:9], ids[:7] + [img, end], img, end) is None
    assert region_rows(hidden[:1], [0], img, end) is None


def test_the_features_trained_on_are_the_ones_the_inspection_reads(tiny):
    """Training reads a step after its history (training/layout_check.py `features_of`); the loop's
    inspection reads it with the canvas after it, and a correction reads it as it samples the
    regions: the same numbers (the hidden states are causal)."""
    model, tok = tiny
    roles = UnifiedRoles(model, tok)
    trained = features_of(roles, PROMPT, HISTORY, STEP)
    inspected = roles.layout_features(roles._inspect_session(PROMPT, HISTORY + [STEP], blank_canvas(64).image))
    assert trained.shape == (3 + 1, TINY.n_embd + FLAGS) and np.allclose(trained, inspected.numpy(), atol=1e-5)
    base = roles._session(PROMPT, HISTORY)
    base.feed(tok.encode(f"<ins> {STEP.ins} </ins> <des> {STEP.des} </des> <img>"))
    sampled = base.fork()
    sampled.feed(tok.encode(f"{STEP.regions} </img>"))
    assert np.allclose(trained, roles.layout_features(sampled).numpy(), atol=1e-5)
    assert roles.layout_features(roles._session(PROMPT, [])) is None


def test_a_doubted_layout_is_a_plan_conflict(tiny):
    model, tok = tiny
    canvas = blank_canvas(64).image
    head = head_for(TINY.n_embd)
    bare = UnifiedRoles(model, tok, SamplingConfig(plan_check=1e9, image_check=float("inf")), layout_check=head)
    doubt = score(bare, HISTORY, STEP)
    strict = UnifiedRoles(
        model,
        tok,
        SamplingConfig(plan_check=1e9, image_check=float("inf"), layout_check=doubt - 1e-3),
        layout_check=head,
    )
    lenient = UnifiedRoles(
        model,
        tok,
        SamplingConfig(plan_check=1e9, image_check=float("inf"), layout_check=doubt + 1e-3),
        layout_check=head,
    )
    assert strict.inspect(PROMPT, HISTORY + [STEP], canvas, seed=0).text.startswith("inconsistent plan")
    assert lenient.inspect(PROMPT, HISTORY + [STEP], canvas, seed=0).text.startswith("consistent")
    assert UnifiedRoles(model, tok).layout_threshold is None and bare.fork().layout_check is head
    head.config.threshold = doubt - 1e-3  # the threshold saved with the head, unless the settings give one
    assert UnifiedRoles(model, tok, SamplingConfig(plan_check=1e9), layout_check=head).layout_threshold == doubt - 1e-3


def test_replan_keeps_the_words_and_the_regions_it_doubts_least(tiny):
    """The correction samples region sets for the rejected step's words and keeps the least
    doubted, if it is doubted less than the rejected one; otherwise it keeps the step (None)."""
    model, tok = tiny
    head = head_for(TINY.n_embd)
    roles = UnifiedRoles(model, tok, SamplingConfig(plan_check=1e9, replan_candidates=6), layout_check=head)
    rejected = score(roles, HISTORY, STEP)
    again = roles.replan(PROMPT, HISTORY, STEP, seed=3)
    assert again is not None and (again.ins, again.des) == (STEP.ins, STEP.des) and again.regions != STEP.regions
    assert score(roles, HISTORY, again) < rejected
    spent = roles.usage["text_tokens"]
    assert spent > 0  # the sampled regions count as text written
    with torch.no_grad():  # a head that doubts every step alike: nothing to gain
        head.out.weight.zero_()
    assert roles.replan(PROMPT, HISTORY, STEP, seed=3) is None


def test_replan_never_returns_the_rejected_regions_again(tiny, monkeypatch):
    """A sample that repeats the rejected regions is no correction, however the check scores it."""
    model, tok = tiny
    roles = UnifiedRoles(
        model,
        tok,
        SamplingConfig(plan_check=1e9, replan_candidates=4, replan_temperature=1e-4),
        layout_check=head_for(TINY.n_embd),
    )
    greedy = roles.resample_regions(PROMPT, HISTORY, STEP, seed=0, temperature=1e-4)  # what every sample repeats
    doubts = iter([1.0, 0.9, 0.8, 0.7, 0.6])  # each later score lower, as float noise may make it
    monkeypatch.setattr(roles, "_layout_doubt", lambda session: next(doubts))
    assert roles.replan(PROMPT, HISTORY, greedy, seed=3) is None


def test_replan_plans_again_when_the_words_are_doubted(tiny):
    model, tok = tiny
    roles = UnifiedRoles(model, tok, SamplingConfig(plan_check=-1e9), layout_check=head_for(TINY.n_embd))
    assert roles.replan(PROMPT, HISTORY, STEP, seed=0) == roles.plan(PROMPT, HISTORY, 0)
    no_head = UnifiedRoles(model, tok, SamplingConfig(plan_check=1e9))
    assert no_head.replan(PROMPT, HISTORY, STEP, seed=0) == no_head.plan(PROMPT, HISTORY, 0)


class _Scripted:
    """A planner (with or without `replan`), a sketcher and an inspector that flags the first step once."""

    def __init__(self, with_replan: bool):
        self.calls: list[str] = []
        self.inspected = 0
        if with_replan:
            self.replan = self._replan

    def plan(self, prompt, history, seed):
        self.calls.append("plan")
        return None if history else Plan("add a red circle", "a red circle", "x2 y4 s6")

    def _replan(self, prompt, history, rejected, seed):
        self.calls.append(f"replan {rejected.regions}")
        return Plan(rejected.ins, rejected.des, "x3 y4 s6")

    def sketch(self, prompt, history, canvas, seed):
        return canvas

    def inspect(self, prompt, history, canvas, seed, before=None):
        self.inspected += 1
        if self.inspected == 1:
            return Critique(False, "inconsistent plan: the circle", target="plan")
        return Critique(True, "consistent")

    def refine(self, prompt, history, canvas, critique, seed, before=None):
        return canvas


@pytest.mark.parametrize("with_replan", [True, False])
def test_the_loop_corrects_a_plan_conflict_with_the_planners_replan(with_replan):
    role = _Scripted(with_replan)
    traj = run_staged("a photo of a red circle", Roles(role, role, role, role), blank_canvas(64).image, max_refines=1)
    if with_replan:
        assert role.calls[:2] == ["plan", "replan x2 y4 s6"] and traj.plans[0].regions == "x3 y4 s6"
    else:
        assert role.calls[:2] == ["plan", "plan"] and traj.plans[0].regions == "x2 y4 s6"
    assert [s.attempt for s in traj.steps if s.type == "plan"] == [0, 1]


def test_fit_separates_and_ranks_and_the_threshold_keeps_false_alarms(tmp_path):
    """Examples of 1-3 rows whose first column says wrong or right: the head learns it across and
    within steps, round-trips, and a corrupt file is one clear error."""
    rng = np.random.default_rng(0)
    width, rows, wrong = 6, [], []
    for _ in range(400):
        r = rng.normal(size=(int(rng.integers(1, 4)), width + FLAGS)).astype(np.float32)
        r[:, -FLAGS:] = [1, 0]
        rows.append(r)
        wrong.append(bool(r[:, 0].mean() + 0.2 * rng.normal() > 0.5))
    wrong, groups = np.array(wrong), np.arange(400) // 4
    head = fit(rows, wrong, groups, LayoutCheckConfig(n_embd=width, hidden=16, n_head=2), steps=300, batch=64)
    s = scores_of(head, rows)
    assert auc(s, wrong) > 0.9 and within_auc(s, wrong, groups) > 0.85
    t = threshold_for(s[~wrong], 0.1)
    assert (s[~wrong] >= t).mean() <= 0.1 and (s[wrong] >= t).mean() > 0.5
    head.config.threshold = t
    head.save_pretrained(tmp_path)
    again = LayoutCheck.from_pretrained(tmp_path)
    assert again.config.threshold == t and np.allclose(scores_of(again, rows), s, atol=1e-5)
    assert again.score(torch.tensor(rows[0])) == pytest.approx(float(s[0]), abs=1e-5)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(SketchloopError, match="layout check .* corrupt"):
        LayoutCheck.from_pretrained(tmp_path)
    assert LayoutCheck.from_pretrained(tmp_path / "none") is None


def test_layout_right_judges_the_regions_drawn_exactly():
    from sketchloop.backends.shapes import DetectorJudge

    judge = DetectorJudge()
    assert layout_right(HISTORY, STEP, judge) is True
    turned = Plan(STEP.ins, STEP.des, "x0 y3 s6 x0 y12 s6")  # both squares left of the circle
    assert layout_right(HISTORY, turned, judge) is False
    stacked = Plan(STEP.ins, STEP.des, "x9 y3 s6 x9 y3 s6")  # one spot: the judge sees one square
    assert layout_right(HISTORY, stacked, judge) is False
    assert layout_right(HISTORY, Plan(STEP.ins, "a red zebra", STEP.regions), judge) is None


def test_the_check_and_the_correction_read_no_world(tiny):
    """The layout check and `replan` are the model's own: a trace of every Python call they make
    finds no decode rule and no part of the world (the judge labels training data only)."""
    import sys as _sys
    from pathlib import Path

    import sketchloop

    model, tok = tiny
    package = Path(sketchloop.__file__).parent
    forbidden = [package / "models" / "rules", package / "world"]
    roles = UnifiedRoles(model, tok, SamplingConfig(plan_check=1e9, layout_check=-1e9), layout_check=head_for(32))
    canvas = blank_canvas(64).image
    reached = set()

    def profile(frame, event, arg):
        path = Path(frame.f_code.co_filename)
        if event == "call" and any(path.is_relative_to(f) for f in forbidden):
            reached.add(f"{path.relative_to(package)}:{frame.f_code.co_name}")

    _sys.setprofile(profile)
    try:
        critique = roles.inspect(PROMPT, HISTORY + [STEP], canvas, seed=0)
        again = roles.replan(PROMPT, HISTORY, STEP, seed=3)
    finally:
        _sys.setprofile(None)
    assert critique.target == "plan" and again is not None
    assert not reached, sorted(reached)
