"""What a critique names (evaluation/critiques.py), and the per-stage counts that use it."""

from collections import Counter

import pytest

from sketchloop.evaluation.critiques import acts_on, clause_key, command_key, critique_keys, names_error, names_object
from sketchloop.evaluation.process import summary
from sketchloop.world.critique import inspect_description
from sketchloop.world.parser import parse_prompt

CASES = [  # (prompt, description, the kind clause_key reads, what the error is about)
    ("a photo of a red circle left of a blue square", "a red circle right of a blue square", "relation", "red circle"),
    ("a photo of a red circle left of a blue square", "a green circle left of a blue square", "colour", "green circle"),
    ("a photo of three red circles", "two red circles", "count", "circle"),
    ("a photo of a red circle", "a red circle and a blue star", "extra", "blue star"),
    ("a photo of a red circle and a blue star", "a red circle", "missing", "blue star"),
    ("a photo of a star with six points", "a star with five points", "points", "star with five points"),
    (
        "a photo of a red circle in front of a blue square",
        "a red circle behind a blue square",
        "relation",
        "red circle",
    ),
    ("a photo of a red circle in front of a blue square", "a red circle and a blue square", "relation", "red circle"),
]


def _problems(prompt: str, des: str):
    return inspect_description(parse_prompt(des), parse_prompt(prompt), final=True).problems


@pytest.mark.parametrize("prompt, des, kind, about", CASES)
def test_every_kind_of_error_the_world_writes_is_read_back(prompt, des, kind, about):
    """Each critique the world's inspection writes is read as its kind and object; the text names
    its own error and object, and the problem's fix acts on it."""
    (problem,) = _problems(prompt, des)
    key = clause_key(problem.critique)
    assert key[0] == kind and key[1].split("|")[0] == about
    text = f"inconsistent plan: {problem.critique}"
    assert critique_keys(text) == {key}
    assert names_error(text, [problem.critique]) and names_object(text, [problem.critique])
    assert acts_on(problem.fix, [problem.fix])


def test_a_critique_of_another_error_does_not_name_the_judges():
    judged = [p.critique for p in _problems(*CASES[0][:2])]  # the red circle should be left of the square
    other_relation = "inconsistent plan: the red circle should be above the blue square, not below"
    other_object = "inconsistent image: the blue square is not in the prompt"
    assert not names_error(other_relation, judged) and names_object(other_relation, judged)
    assert not names_error(other_object, judged) and not names_object(other_object, judged)
    assert not names_error("consistent: the scene matches the prompt", judged)
    assert critique_keys("consistent so far; not drawn yet: a red circle") == set()
    # articles do not matter, a clause among others does
    assert names_error(
        "inconsistent: a green star is still missing; a red circle should be left of a blue square, not right of",
        judged,
    )


def test_a_refine_command_acts_on_a_fix_with_the_same_verb_and_object():
    fixes = ["move the red circle left of the blue square"]
    assert command_key("move the red circle above the blue square") == ("move", "red circle")
    assert acts_on("move a red circle left of the square", fixes)
    assert not acts_on("remove the red circle", fixes)
    assert not acts_on("move the blue square right of the red circle", fixes)
    assert command_key("change the two stars to yellow") == ("change", "star")
    assert acts_on("add two squares", ["add a square"])  # the right object, another count
    assert not acts_on("add two squares", ["remove a square"]) and not acts_on("add a red square", ["add a square"])
    assert command_key("draw it better") is None and not acts_on("draw it better", fixes)


def test_the_summary_reports_critique_shares_of_the_flagged_wrong_steps():
    counts = Counter(
        plan_steps=4,
        plan_flagged=3,
        image_steps=6,
        image_flagged=2,
        consistent_steps=10,
        named_error=4,
        named_object=5,
        refines=4,
        refines_acting=3,
    )
    out = summary(counts)
    assert out["critique_names_error"] == 0.8 and out["critique_names_object"] == 1.0
    assert out["wrong_steps_named"] == 0.4 and out["refine_acts_on_error"] == 0.75
    assert "wrong_flagged" not in counts  # the summary reads the counts, never writes them


def test_measure_counts_the_flagged_wrong_steps_whose_critique_names_the_judges_error():
    """A loop's wrong plan, flagged with a critique that names its wrong relation and a `<refine>`
    that moves the object, counts as named and acted on; a flag that names another object does not."""
    from sketchloop.backends.shapes import DetectorJudge
    from sketchloop.evaluation.process import measure
    from sketchloop.format import Plan, step_text
    from sketchloop.loop.staged import Step, Trajectory
    from sketchloop.teachers import blank_canvas

    prompt = "a photo of a red circle left of a blue square"
    plan = Plan("add a red circle and a blue square", "a red circle right of a blue square", "x12 y8 s6 x4 y8 s6")
    canvas = blank_canvas(64).image
    counts: Counter = Counter()
    for critique, command in [
        (
            "inconsistent plan: the red circle should be left of the blue square, not right of",
            "move the red circle left of the blue square",
        ),
        ("inconsistent plan: the blue square is not in the prompt", "remove the blue square"),
    ]:
        steps = [
            Step("plan", step_text(plan)),
            Step("sketch", "", canvas),
            Step("inspect", critique, refine=command),
        ]
        measure(Trajectory(prompt, "staged", steps=steps, final=canvas, plans=[plan]), DetectorJudge(), counts)
    out = summary(counts)
    assert out["recall_plan_conflicts"] == 1.0
    assert out["critique_names_error"] == 0.5 and out["critique_names_object"] == 0.5
    assert out["critique_names_error_plan"] == 0.5 and out["critique_names_error_image"] is None
    assert out["refine_acts_on_error"] == 0.5
