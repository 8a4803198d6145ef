import json

import pytest

from sketchloop.evaluation.benchmark import GENEVAL_TASK_SIZES, load_benchmark, make_shapes_geneval
from sketchloop.evaluation.geneval import score_image, summarize
from sketchloop.world.detect import Detection
from sketchloop.world.parser import parse_prompt


def det(shape, color, x, y, conf=0.95, size=10):
    return Detection(shape, color, (x, y, x + size, y + size), conf)


def test_counting_is_exact_through_exclude():
    meta = parse_prompt("a photo of two stars").to_geneval()
    assert score_image([det("star", "red", 0, 0), det("star", "blue", 20, 0)], meta, 0.3, 0.9)[0]
    ok, reason = score_image(
        [det("star", "red", 0, 0), det("star", "red", 20, 0), det("star", "red", 40, 0)], meta, 0.3, 0.9
    )
    assert not ok and "expected star<3, found 3" in reason
    # counting uses the counting threshold: a 0.8-confidence star does not count
    assert not score_image([det("star", "red", 0, 0), det("star", "red", 20, 0, conf=0.8)], meta, 0.3, 0.9)[0]


def test_single_object_counts_at_least():
    meta = parse_prompt("a photo of a circle").to_geneval()
    assert score_image([det("circle", "red", 0, 0), det("circle", "red", 20, 0)], meta)[0]
    assert not score_image([det("square", "red", 0, 0)], meta)[0]


def test_colour_is_checked_on_the_most_confident_detections():
    meta = parse_prompt("a photo of a red circle").to_geneval()
    assert score_image([det("circle", "red", 0, 0)], meta)[0]
    # GenEval judges the top-1 circle: a more confident blue one hides the red one
    ok, reason = score_image([det("circle", "blue", 0, 0, 0.99), det("circle", "red", 20, 0, 0.9)], meta)
    assert not ok and "expected red circle>=1" in reason


def test_position_rule_against_every_target():
    meta = parse_prompt("a photo of a star right of a circle").to_geneval()
    assert score_image([det("circle", "red", 0, 0), det("star", "red", 30, 0)], meta)[0]
    ok, reason = score_image([det("circle", "red", 30, 0), det("star", "red", 0, 0)], meta)
    assert not ok and "expected star right of target, found left of target" in reason
    meta2 = parse_prompt("a photo of two stars above a circle").to_geneval()
    good = [det("circle", "red", 20, 40), det("star", "red", 10, 0), det("star", "red", 30, 0)]
    assert score_image(good, meta2)[0]
    bad = good[:2] + [det("star", "red", 60, 40)]
    assert not score_image(bad, meta2)[0]


def test_shared_class_groups_are_shared_out_by_colour():
    meta = parse_prompt("a red circle left of a blue circle").to_geneval()
    assert score_image([det("circle", "red", 0, 0, 0.9), det("circle", "blue", 30, 0, 0.95)], meta)[0]
    assert not score_image([det("circle", "blue", 0, 0), det("circle", "red", 30, 0)], meta)[0]
    assert not score_image([det("circle", "red", 0, 0), det("circle", "red", 30, 0)], meta)[0]


def test_overall_is_mean_of_task_means():
    recs = [{"tag": "a", "correct": True}] * 3 + [{"tag": "a", "correct": False}] + [{"tag": "b", "correct": False}]
    out = summarize(recs)
    assert out["tasks"] == {"a": 0.75, "b": 0.0}
    assert out["overall"] == pytest.approx(0.375)


def test_shipped_benchmark_is_the_scripts_output():
    shipped = load_benchmark("shapes-geneval")
    assert shipped == make_shapes_geneval()
    counts = {}
    for meta in shipped:
        counts[meta["tag"]] = counts.get(meta["tag"], 0) + 1
        # every prompt is in the prompt language and converts back to its own line
        assert parse_prompt(meta["prompt"]).to_geneval(meta["tag"]) == meta
    assert counts == GENEVAL_TASK_SIZES
    assert len({json.dumps(m) for m in shipped if m["tag"] == "position"}) == 100
