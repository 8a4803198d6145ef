import json

from cli_run import cli
from PIL import Image

from sketchloop.backends.oracle import OracleCanvas, OracleInspector, OraclePlanner
from sketchloop.backends.shapes import DetectorJudge
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.run import evaluate, generate_images
from sketchloop.generators import get_generator
from sketchloop.loop.roles import Critique, Plan, Roles
from sketchloop.loop.staged import run_staged
from sketchloop.pages.trajectory import save_trajectory
from sketchloop.teachers import blank_canvas
from sketchloop.world.detect import ShapesDetector
from sketchloop.world.parser import parse_prompt


class ForgetfulSketcher(OracleCanvas):
    """Skips the first drawing of every step, so the inspector must ask for a refine."""

    def sketch(self, prompt, history, canvas, seed):
        super().sketch(prompt, history[:-1] + [Plan("remove the nothing", "")], canvas, seed)
        return self.canvas.image


def test_staged_loop_inspects_and_refines():
    sketcher = ForgetfulSketcher()
    prompt = "a photo of a red circle above a blue square"
    traj = run_staged(
        prompt, Roles(OraclePlanner(), sketcher, OracleInspector(), sketcher), blank_canvas().image, max_refines=2
    )
    types = [s.type for s in traj.steps]
    assert types.count("refine") == 2 and types[-1] == "end" and traj.ended
    assert DetectorJudge().judge(traj.final, parse_prompt(prompt)).consistent
    refine = next(s for s in traj.steps if s.type == "refine")
    assert refine.text.startswith("add ")


class NeverEnds(OraclePlanner):
    def plan(self, prompt, history, seed):
        return Plan("add a star", "a star")


class AlwaysHappy:
    def inspect(self, prompt, history, canvas, seed, before=None):
        return Critique(True, "consistent")


def test_cap_is_reported(tmp_path):
    c = OracleCanvas()
    traj = run_staged("a photo of a star", Roles(NeverEnds(), c, AlwaysHappy(), c), blank_canvas().image, max_iters=3)
    assert not traj.ended and [s.type for s in traj.steps].count("plan") == 3
    save_trajectory(traj, tmp_path)
    assert "ITERATION CAP" in (tmp_path / "index.html").read_text()
    r = cli(
        "generate",
        "a photo of two stars and a circle left of a square",
        "--oracle",
        "--max-iters",
        "1",
        "--out",
        str(tmp_path / "g"),
    )
    assert r.returncode == 0 and "reached --max-iters 1" in r.stderr


def test_generate_writes_final_trajectory_and_page(tmp_path):
    r = cli("generate", "a photo of a red circle above a blue square", "--oracle", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "trajectory.json").read_text())
    assert record["ended"] and record["oracle"] is True
    assert {"type", "text", "image_file", "flow_steps", "seconds"} <= set(record["steps"][0])
    for step in record["steps"]:
        if step["image_file"]:
            assert (tmp_path / step["image_file"]).is_file()
    assert DetectorJudge().judge(Image.open(tmp_path / "final.png"), parse_prompt(record["prompt"])).consistent
    page = (tmp_path / "index.html").read_text()
    assert "final.png" in page and "&lt;ins&gt; add a blue square" in page
    for args, needle in [
        (["generate", "a hexagon", "--oracle"], "unknown word"),
        (["generate", "a hexagon"], "unknown word"),
        (["generate", "  "], "prompt is empty"),
        # refused as `render` refuses them, not drawn: a contradiction, an overfull scene
        (["generate", "a red circle left of a star and the star left of the red circle"], "contradiction"),
        (["generate", "four red circles, four blue squares and a star"], "do not fit the canvas"),
        (["generate", "a circle", "--checkpoint", "nowhere"], "does not exist"),
        (["generate", "a circle", "--oracle", "--mode", "twice"], "--mode"),
    ]:
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_oracle_staged_generator_scores_and_counts(tmp_path):
    prompts = load_benchmark("shapes-geneval")[::7]
    gen = get_generator("oracle-staged")
    stats = generate_images(prompts, gen, tmp_path, images_per_prompt=1, progress=False)
    results = evaluate(tmp_path, ShapesDetector(), prompts, generation=stats, progress=False)
    assert results["overall"] >= 0.95, results["tasks"]
    assert results["compute"]["images"] >= 1 and "seconds" in results["compute"]


class AlwaysUnhappy:
    def inspect(self, prompt, history, canvas, seed, before=None):
        return Critique(False, "inconsistent: the star should be red", "change the star to red")


def test_the_page_says_when_an_inconsistent_inspection_was_not_refined(tmp_path):
    c = OracleCanvas()
    for limit, note in [(0, "refinement is off, --max-refines 0"), (1, "1 refines per step reached")]:
        traj = run_staged(
            "a photo of a star", Roles(OraclePlanner(), c, AlwaysUnhappy(), c), blank_canvas().image, max_refines=limit
        )
        save_trajectory(traj, tmp_path / str(limit))
        page = (tmp_path / str(limit) / "index.html").read_text()
        assert (
            note in page and json.loads((tmp_path / str(limit) / "trajectory.json").read_text())["max_refines"] == limit
        )


def test_oracle_generate_honours_max_refines(tmp_path):
    for limit in ("0", "3"):
        r = cli(
            "generate",
            "a photo of a red circle above a blue square",
            "--oracle",
            "--max-refines",
            limit,
            "--out",
            str(tmp_path / limit),
        )
        assert r.returncode == 0, r.stderr
        assert json.loads((tmp_path / limit / "trajectory.json").read_text())["max_refines"] == int(limit)


class Scripted:
    """Roles that record their calls: plans P0, P1, ...; the inspector reads its verdicts
    from a script ("plan", "image" or "ok" per inspection)."""

    def __init__(self, verdicts):
        self.verdicts, self.calls, self.n = list(verdicts), [], 0

    def plan(self, prompt, history, seed):
        if len(history) == 2:
            return None
        self.n += 1
        self.calls.append(("plan", len(history)))
        return Plan(f"add plan {self.n}", f"des {self.n}")

    def sketch(self, prompt, history, canvas, seed):
        self.calls.append(("sketch", history[-1].ins, canvas.info.get("name")))
        out = canvas.copy()
        out.info["name"] = history[-1].ins
        return out

    def inspect(self, prompt, history, canvas, seed, before=None):
        verdict = self.verdicts.pop(0) if self.verdicts else "ok"
        if verdict == "ok":
            return Critique(True, "consistent so far")
        return Critique(False, f"inconsistent {verdict}: x", "fix it", target=verdict)

    def refine(self, prompt, history, canvas, critique, seed, before=None):
        self.calls.append(("refine", history[-1].ins, canvas.info.get("name"), before.info.get("name")))
        out = before.copy()
        out.info["name"] = "refined " + history[-1].ins
        return out


def test_a_wrong_plan_is_planned_again_and_a_wrong_image_redrawn_from_the_canvas_before_it():
    roles = Scripted(["plan", "ok", "image", "ok"])
    blank = blank_canvas().image
    blank.info["name"] = "blank"
    traj = run_staged("a photo of a star", Roles(roles, roles, roles, roles), blank, max_refines=2)
    assert roles.calls == [
        ("plan", 0),
        ("sketch", "add plan 1", "blank"),
        ("plan", 0),
        ("sketch", "add plan 2", "blank"),  # a new plan, drawn on the canvas before the step
        ("plan", 1),
        ("sketch", "add plan 3", "add plan 2"),  # the history holds the plan that replaced the wrong one
        ("refine", "add plan 3", "add plan 3", "add plan 2"),  # the refiner gets the canvas before the step
    ]
    assert [s.type for s in traj.steps] == [
        "plan",
        "sketch",
        "inspect",
        "plan",
        "sketch",
        "inspect",
        "plan",
        "sketch",
        "inspect",
        "refine",
        "inspect",
        "end",
    ]
    assert traj.final.info["name"] == "refined add plan 3"
