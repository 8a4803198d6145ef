"""Evaluation keeps what made each sample, reuses only what matches, and loses no work to
one failing sample."""

import json

import pytest
import torch
from cli_run import cli

from sketchloop.errors import PromptError
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.run import evaluate, generate_images
from sketchloop.generators import Generated, OracleGenerator, get_generator, record_id
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel
from sketchloop.world.detect import ShapesDetector

TINY = UnifiedConfig(n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))


def small_benchmark(tmp_path, step=97):
    lines = load_benchmark("shapes-geneval")[::step]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    return path, lines


def test_changed_settings_regenerate_in_the_same_folder(tmp_path):
    bench, lines = small_benchmark(tmp_path)
    imgs = tmp_path / "imgs"
    common = [
        "eval",
        "--benchmark",
        str(bench),
        "--generator",
        "staged",
        "--images-per-prompt",
        "1",
        "--images-out",
        str(imgs),
        "--text-verdict",
    ]  # flow steps: drawing only (no self-check calls)
    r = cli(*common, "--steps", "4", "--out", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["generated"] == len(lines) and a["reused"] == 0
    pngs_a = {p.name: p.read_bytes() for p in imgs.rglob("*.png")}
    r = cli(*common, "--steps", "2", "--out", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["generated"] == len(lines) and b["reused"] == 0, "another --steps must not reuse images"
    assert b["made_by"]["sampling"]["flow_steps"] == 2 and a["made_by"]["sampling"]["flow_steps"] == 4
    assert b["made_by"]["checkpoint_sha256"] == a["made_by"]["checkpoint_sha256"]
    assert b["compute"]["flow_steps"] == pytest.approx(a["compute"]["flow_steps"] / 2)
    assert any(p.read_bytes() != pngs_a[p.name] for p in imgs.rglob("*.png"))
    # --max-refines changes the record, so nothing is reused either
    r = cli(*common, "--steps", "2", "--max-refines", "2", "--out", str(tmp_path / "c.json"))
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["generated"] == len(lines) and c["made_by"]["max_refines"] == 2
    # the same settings again: everything reused, the same score and compute
    r = cli(*common, "--steps", "2", "--max-refines", "2", "--out", str(tmp_path / "d.json"))
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["generated"] == 0 and d["reused"] == len(lines) and f"reused {len(lines)}" in r.stderr
    assert d["overall"] == c["overall"] and d["compute"] == c["compute"]
    # --edit-steps reaches the sampler's record: another configuration, generated again
    r = cli(*common, "--steps", "2", "--edit-steps", "--limit", "1", "--out", str(tmp_path / "e.json"))
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["made_by"]["sampling"]["edit_steps"] is True and a["made_by"]["sampling"]["edit_steps"] is False
    assert e["generated"] == 1


def test_default_image_folder_is_per_configuration(tmp_path):
    bench, lines = small_benchmark(tmp_path, step=200)
    for steps in ("2", "3"):
        r = cli(
            "eval",
            "--benchmark",
            str(bench),
            "--generator",
            "single",
            "--images-per-prompt",
            "1",
            "--steps",
            steps,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
    folders = sorted(p.name for p in (tmp_path / "sketchloop-eval").iterdir())
    assert len(folders) == 2 and all(f.startswith("b-single-") for f in folders)
    assert record_id(OracleGenerator(64).record) != record_id(OracleGenerator(96).record)


def test_a_changed_checkpoint_forces_regeneration(tmp_path):
    torch.manual_seed(0)
    model = UnifiedModel(TINY)
    model.save_pretrained(tmp_path / "ckpt", WordTokenizer())
    prompts = load_benchmark("shapes-geneval")[::150]
    kw = {"checkpoint": tmp_path / "ckpt", "flow_steps": 2, "max_iters": 2}
    first = generate_images(prompts, get_generator("staged", **kw), tmp_path / "imgs", 1, progress=False)
    again = generate_images(prompts, get_generator("staged", **kw), tmp_path / "imgs", 1, progress=False)
    assert (first.generated, again.generated, again.reused) == (len(prompts), 0, len(prompts))
    with torch.no_grad():
        model.flow.out.bias += 0.1
    model.save_pretrained(tmp_path / "ckpt", WordTokenizer())
    changed = generate_images(prompts, get_generator("staged", **kw), tmp_path / "imgs", 1, progress=False)
    assert changed.generated == len(prompts) and changed.reused == 0
    sha = {s["made_by"]["checkpoint_sha256"] for g in (first, changed) for s in g.samples.values()}
    assert len(sha) == 2


class Flaky:
    """The oracle, except that it raises on prompts containing `bad` (or stops the run)."""

    name = "flaky"

    def __init__(self, bad: str, exc: BaseException):
        self.inner, self.bad, self.exc, self.calls = OracleGenerator(), bad, exc, 0
        self.record = {"generator": "flaky"}

    def generate(self, prompt: str, seed: int) -> Generated:
        self.calls += 1
        if self.bad in prompt:
            raise self.exc
        return self.inner.generate(prompt, seed)


def test_a_failing_sample_is_recorded_scored_wrong_and_the_run_goes_on(tmp_path):
    prompts = load_benchmark("shapes-geneval")[::60]
    bad = prompts[3]["prompt"]
    gen = Flaky(bad, RuntimeError("the trajectory reached 385 tokens, past the model's 384"))
    generation = generate_images(prompts, gen, tmp_path, 2, progress=False)
    assert generation.failed == 2 and generation.generated == 2 * len(prompts)
    results = evaluate(tmp_path, ShapesDetector(), prompts, generation=generation, progress=False)
    assert results["n_images"] == 2 * len(prompts) and results["n_failed"] == 2
    assert results["failed_by_task"][prompts[3]["tag"]] == 2
    assert results["failures"] == {"RuntimeError: the trajectory reached 385 tokens, past the model's 384": 2}
    failed = [r for r in results["images"] if r["failed"]]
    assert {r["prompt"] for r in failed} == {bad} and not any(r["correct"] for r in failed)
    others = [r for r in results["images"] if not r["failed"]]
    assert len(others) == 2 * (len(prompts) - 1) and all(r["correct"] for r in others)
    # a rerun keeps the failures (no new calls) unless asked to retry them
    gen.calls = 0
    again = generate_images(prompts, gen, tmp_path, 2, progress=False)
    assert gen.calls == 0 and again.failed == 2
    retried = generate_images(
        prompts, Flaky("nothing matches", RuntimeError()), tmp_path, 2, progress=False, retry_failed=True
    )
    assert retried.generated == 2 and retried.failed == 0
    assert evaluate(tmp_path, ShapesDetector(), prompts, progress=False)["n_failed"] == 0


def test_a_prompt_error_still_stops_the_run_with_one_line():
    prompts = [{"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}]
    with pytest.raises(PromptError):
        generate_images(prompts, OracleGenerator(), __import__("pathlib").Path("/tmp/never-written"), 1, progress=False)


def test_an_interrupted_run_resumes(tmp_path):
    prompts = load_benchmark("shapes-geneval")[::60]
    stop = Flaky(prompts[4]["prompt"], KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate_images(prompts, stop, tmp_path, 2, progress=False)
    resumed = generate_images(prompts, Flaky("nothing matches", RuntimeError()), tmp_path, 2, progress=False)
    assert resumed.reused == 8 and resumed.generated == 2 * len(prompts) - 8


def test_folders_past_the_benchmark_are_left_out_and_said(tmp_path):
    bench, lines = small_benchmark(tmp_path, step=50)
    imgs = tmp_path / "imgs"
    r = cli(
        "eval",
        "--benchmark",
        str(bench),
        "--generator",
        "oracle",
        "--images-per-prompt",
        "1",
        "--images-out",
        str(imgs),
    )
    assert r.returncode == 0, r.stderr
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps(m) + "\n" for m in lines[:3]))
    r = cli(
        "eval",
        "--benchmark",
        str(short),
        "--generator",
        "oracle",
        "--images-per-prompt",
        "1",
        "--images-out",
        str(imgs),
        "--out",
        str(tmp_path / "s.json"),
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["n_prompts"] == 3 and s["n_ignored_folders"] == len(lines) - 3 and s["reused"] == 3
    assert f"left out {len(lines) - 3} prompt folders" in r.stdout


def test_pages_keep_trajectories_and_the_gallery_links_them(tmp_path):
    bench, lines = small_benchmark(tmp_path, step=150)
    imgs = tmp_path / "imgs"
    args = [
        "eval",
        "--benchmark",
        str(bench),
        "--generator",
        "staged",
        "--images-per-prompt",
        "2",
        "--images-out",
        str(imgs),
        "--steps",
        "2",
    ]
    assert cli(*args).returncode == 0
    assert not (imgs / "00000" / "trajectories").exists()
    r = cli(*args, "--pages", "2", "--out", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    # samples without a page are made again so that their page exists; later prompts are reused
    assert json.loads((tmp_path / "p.json").read_text())["generated"] == 4
    for i in range(2):
        for j in range(2):
            page = imgs / f"{i:05d}" / "trajectories" / f"{j:04d}"
            record = json.loads((page / "trajectory.json").read_text())
            assert record["prompt"] == lines[i]["prompt"] and (page / "final.png").is_file()
            assert (page / "final.png").read_bytes() == (imgs / f"{i:05d}" / "samples" / f"{j:04d}.png").read_bytes()
    gallery = (imgs / "index.html").read_text()
    assert gallery.count("trajectory</a>") == 4 and gallery.count("<figure") == 2 * len(lines)
