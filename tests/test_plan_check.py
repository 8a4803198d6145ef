"""The plan check: the planner's surprise at each word of a plan, and the head that weighs it."""

import numpy as np
import pytest
import torch

from sketchloop.backends.unified import IMAGE_CHECK, PLAN_CHECK, UnifiedRoles
from sketchloop.errors import SketchloopError
from sketchloop.loop.roles import Plan
from sketchloop.models.plan_check import CONFIG_FILE, FEATURES, WEIGHTS_FILE, PlanCheck, PlanCheckConfig
from sketchloop.models.sampling import SamplingConfig
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, checkpoint_sha256

TINY = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))
PROMPT = "a photo of a red circle left of two blue squares"
HISTORY = [
    Plan("add a red circle", "a red circle", "x2 y4 s6"),
    Plan("add two blue squares right of the red circle", "a red circle left of two blue squares", "x7 y3 s6 x7 y8 s6"),
]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return UnifiedModel(TINY).eval(), WordTokenizer()


def test_plan_features_read_each_word_of_the_last_plan(tiny):
    """One row per word of the last `<ins> ... </des>` but the forced `<des>`, with the word
    before it; the kind gap is the gap among words of the written word's kind (never above
    the gap, 0 for other words); the part turns to `<des>` at `</ins>`."""
    model, tok = tiny
    roles = UnifiedRoles(model, tok)
    words, previous, parts, features = roles.plan_features(roles._session(PROMPT, HISTORY))
    said = tok.encode(
        "add two blue squares right of the red circle </ins> a red circle left of two blue squares </des>"
    )
    assert words.tolist() == said and features.shape == (len(said), len(FEATURES))
    assert previous.tolist() == tok.encode("<ins>") + said[:9] + tok.encode("<des>") + said[10:-1]
    gap, kind_gap = features[:, FEATURES.index("gap")], features[:, FEATURES.index("category_gap")]
    assert (gap >= -1e-5).all() and (kind_gap <= gap + 1e-5).all() and (kind_gap >= -1e-5).all()
    for w, k in zip([tok.vocab[i] for i in said], kind_gap):
        if w in ("add", "of", "the", "</ins>", "</des>"):
            assert k == 0
    assert parts.tolist() == [0] * 9 + [1] * (len(said) - 9)
    assert (features[:, FEATURES.index("bias")] == 1).all() and (features[:, FEATURES.index("entropy")] > 0).all()
    assert roles.plan_features(roles._session(PROMPT, [])) is None


def test_without_a_head_the_plan_score_is_the_largest_gap_and_a_head_sets_the_thresholds(tiny):
    """Without a head the plan's score is its largest gap, against PLAN_CHECK (the image doubt
    against IMAGE_CHECK); with one, its score against its own threshold unless `plan_check` is
    given, and the image doubt against the image threshold chosen with it unless `image_check` is."""
    from sketchloop.teachers import blank_canvas

    model, tok = tiny
    canvas = blank_canvas(64).image
    bare = UnifiedRoles(model, tok)
    read = bare.plan_features(bare._session(PROMPT, HISTORY))
    assert bare._plan_doubt(bare._session(PROMPT, HISTORY)) == pytest.approx(float(read[-1][:, 1].max()))
    assert bare.plan_threshold == PLAN_CHECK
    torch.manual_seed(1)
    head = PlanCheck(PlanCheckConfig(vocab_size=len(tok.vocab)))
    with torch.no_grad():
        score = float(head(*(x[None] for x in read), torch.ones(1, len(read[0]), dtype=torch.bool)))
    head.config.threshold = score - 1e-3
    headed = UnifiedRoles(model, tok, SamplingConfig(image_check=float("inf")), head)
    assert headed._plan_doubt(headed._session(PROMPT, HISTORY)) == pytest.approx(score, abs=1e-5)
    assert headed.plan_threshold == score - 1e-3 and headed.fork().plan_check is head
    assert headed.inspect(PROMPT, HISTORY, canvas, seed=0).text.startswith("inconsistent plan")
    lenient = UnifiedRoles(model, tok, SamplingConfig(plan_check=score + 1, image_check=float("inf")), head)
    assert lenient.plan_threshold == score + 1
    assert lenient.inspect(PROMPT, HISTORY, canvas, seed=0).text.startswith("consistent")
    assert bare.image_threshold == IMAGE_CHECK and lenient.image_threshold == float("inf")  # given: it decides
    head.config.image_threshold = float("-inf")  # chosen with the plan threshold, saved with the head
    picky = UnifiedRoles(model, tok, SamplingConfig(plan_check=score + 1), head)
    assert picky.image_threshold == float("-inf")
    assert picky.inspect(PROMPT, HISTORY, canvas, seed=0, before=canvas).text.startswith("inconsistent image")


def test_a_head_scores_a_plan_by_its_positions_and_ignores_padding():
    """The plan's score is the log-sum-exp of its positions' scores; padding changes nothing."""
    torch.manual_seed(0)
    head = PlanCheck(PlanCheckConfig(vocab_size=10)).eval()
    words, previous = torch.tensor([[3, 4, 5]]), torch.tensor([[1, 3, 4]])
    parts, feats = torch.tensor([[0, 0, 1]]), torch.randn(1, 3, len(FEATURES))
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        score = head(words, previous, parts, feats, mask)
        positions = head.position_scores(words, previous, parts, feats, mask)
        padded = head(*(torch.cat([x, torch.zeros_like(x[:, :2])], 1) for x in (words, previous, parts, feats, mask)))
    assert score.item() == pytest.approx(torch.logsumexp(positions, -1).item())
    assert padded.item() == pytest.approx(score.item(), abs=1e-6)


def test_a_plan_check_round_trips_and_joins_the_checkpoint_identity(tiny, tmp_path):
    """Saved beside a checkpoint (safetensors + JSON), loaded with it, part of its SHA-256; a
    corrupt one is refused with one line."""
    model, tok = tiny
    model.save_pretrained(tmp_path, tok)
    before = checkpoint_sha256(tmp_path)
    assert UnifiedRoles.from_pretrained(tmp_path).plan_check is None
    head = PlanCheck(
        PlanCheckConfig(vocab_size=len(tok.vocab), threshold=1.5, image_threshold=0.25, trained_on={"examples": 3})
    )
    head.save_pretrained(tmp_path)
    loaded = UnifiedRoles.from_pretrained(tmp_path).plan_check
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), head.state_dict().values()))
    assert loaded.config == head.config
    assert checkpoint_sha256(tmp_path) != before
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(SketchloopError, match="plan check .* corrupt") as err:
        UnifiedRoles.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / CONFIG_FILE).unlink()
    (tmp_path / WEIGHTS_FILE).unlink()
    assert checkpoint_sha256(tmp_path) == before


def test_the_trainer_learns_which_surprise_counts_and_keeps_false_alarms_under_the_bound():
    """`fit` learns that a gap after one word is benign and after another is not; `threshold`
    is the lowest score at which at most the bound of right steps are flagged by either check."""
    from sketchloop.training.plan_check import fit, threshold

    rng = np.random.default_rng(0)
    n, length = 300, 6
    words = torch.from_numpy(rng.integers(0, 4, (n, length)))
    previous = torch.cat([torch.zeros(n, 1, dtype=torch.long), words[:, :-1]], 1)
    gaps = torch.from_numpy(rng.uniform(0, 10, (n, length))).float()
    labels = ((previous == 1) & (gaps > 5)).any(-1).float()  # only a surprise after word 1 means a wrong plan
    feats = torch.stack([torch.ones_like(gaps), gaps, torch.zeros_like(gaps), torch.zeros_like(gaps)], -1)
    data = (words, previous, torch.zeros_like(words), feats, torch.ones(n, length, dtype=torch.bool))
    head = fit(PlanCheckConfig(vocab_size=4), data, labels, 1e-3)
    with torch.no_grad():
        scores = head(*data).numpy()
    right, wrong = scores[labels.numpy() == 0], scores[labels.numpy() == 1]
    raw = gaps.max(-1).values.numpy()
    assert np.mean([w > r for w in wrong for r in right]) > 0.95
    assert np.mean([w > r for w in raw[labels.numpy() == 1] for r in raw[labels.numpy() == 0]]) < 0.8
    steps = [{"kind": "consistent", "target": "consistent", "image_doubt": d} for d in (-1.0,) * 18 + (1.0, None)]
    plan = np.arange(20, dtype=float)
    assert threshold(plan, steps, image_check=0.0, false_alarms=0.1) == 18.0  # step 18 by the image, 19 by the plan
    assert threshold(plan, steps, image_check=0.0, false_alarms=0.0) > 19.0


def test_the_two_thresholds_are_chosen_together_under_one_false_alarm_bound():
    """Raising the image threshold past a right step's doubt frees room under the bound for the
    plan check, when that finds more of the conflict kind found least."""
    from sketchloop.training.plan_check import thresholds

    right = [{"kind": "consistent", "target": "consistent", "image_doubt": d} for d in [0.5] + [-1.0] * 9]
    wrong_plans = [{"kind": "plan", "target": "plan", "image_doubt": -1.0} for _ in range(4)]
    wrong_images = [{"kind": "image", "target": "image", "image_doubt": 2.0} for _ in range(4)]
    steps = right + wrong_plans + wrong_images
    scores = np.array([0.0] + [float(i) for i in range(1, 10)] + [9.0] * 4 + [0.0] * 4)
    plan, image, r = thresholds(scores, steps, false_alarms=0.1, image_default=0.0)
    assert image > 0.5 and plan == 9.0  # the image check passes the right step it doubted; the plan check flags one
    assert (r["recall_plan"], r["recall_image"], r["false_alarms"]) == (1.0, 1.0, 0.1)
    plan, image, r = thresholds(scores, steps, false_alarms=0.0, image_default=0.0)
    assert image > 0.5 and plan > 9.0  # no pair flags no right step and finds the wrong plans: kept under the bound
    assert (r["recall_plan"], r["recall_image"], r["false_alarms"]) == (0.0, 1.0, 0.0)
