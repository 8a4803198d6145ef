"""The sampling settings live beside the checkpoint (sampling.json) and every command reads
them the same way; a switch changes one setting and is declared once."""

import json
import subprocess
import sys
from dataclasses import asdict
from typing import get_type_hints

import pytest

from sketchloop.backends.unified import SHIPPED_CHECKPOINT
from sketchloop.errors import SketchloopError
from sketchloop.generators import model_generator
from sketchloop.models.sampling import SAMPLING_FILE, SamplingConfig, parse_settings
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel

TINY = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))


def test_the_shipped_checkpoint_carries_its_sampling_defaults():
    saved = json.loads((SHIPPED_CHECKPOINT / SAMPLING_FILE).read_text())
    assert SamplingConfig.from_pretrained(SHIPPED_CHECKPOINT) == SamplingConfig(**saved)
    assert set(saved) == set(asdict(SamplingConfig()))


def test_a_checkpoints_sampling_json_is_what_its_generator_samples_with(tmp_path):
    """A folder's sampling.json decides the settings nobody passes; a passed setting wins; the
    record says which were used; without the file the defaults hold."""
    UnifiedModel(TINY).save_pretrained(tmp_path, WordTokenizer())
    assert SamplingConfig.from_pretrained(tmp_path) == SamplingConfig()
    SamplingConfig(flow_steps=3, edit_steps=True, temperature=1.0).save_pretrained(tmp_path)
    gen = model_generator("staged", checkpoint=tmp_path, max_iters=1, self_check=False)
    assert gen.record["sampling"]["flow_steps"] == 3 and gen.record["sampling"]["edit_steps"] is True
    # an untrained model: some seed opens a plan rather than ending at once
    sketches = next(
        found
        for seed in range(20)
        if (found := [s for s in gen.run("a photo of a red circle", seed).steps if s.type == "sketch"])
    )
    assert sketches and all(s.flow_steps % 3 == 0 for s in sketches)
    assert model_generator("staged", checkpoint=tmp_path, flow_steps=5).record["sampling"]["flow_steps"] == 5


def test_a_bad_sampling_file_or_setting_is_one_clear_line(tmp_path):
    (tmp_path / SAMPLING_FILE).write_text('{"flow_steps": 16, "leave_room": true}')
    with pytest.raises(SketchloopError, match="is not a sampling config"):
        SamplingConfig.from_pretrained(tmp_path)
    with pytest.raises(SketchloopError, match="min_size 11"):
        SamplingConfig(min_size=11)
    assert parse_settings(["edit_steps=true", "flow_steps=8"]) == {"edit_steps": True, "flow_steps": 8}
    with pytest.raises(SketchloopError, match="no sampling setting 'keep_context'"):
        parse_settings(["keep_context=false"])
    with pytest.raises(SketchloopError, match="as JSON"):
        parse_settings(["edit_steps=yes"])


def test_generate_eval_and_serve_share_each_option_declaration():
    """An option the three commands share is one annotation in cli/options.py, so its flags,
    help and type are the same in each."""
    from sketchloop.cli import options
    from sketchloop.cli.eval import eval_command
    from sketchloop.cli.generate import generate
    from sketchloop.cli.serve import serve

    shared = (
        "checkpoint",
        "steps",
        "guidance",
        "separate",
        "copy_phrases",
        "relate_regions",
        "edit_steps",
        "self_check",
        "device",
    )
    declared = [v for k, v in vars(options).items() if k[:1].isupper()]
    hints = {c: get_type_hints(c, include_extras=True) for c in (generate, eval_command, serve)}
    for name in shared:
        first, *others = (hints[c][name] for c in hints)
        assert any(first is d for d in declared) and all(a is first for a in others), name


def test_the_switches_are_on_the_command_line_and_the_lost_ones_are_gone():
    r = subprocess.run(
        [sys.executable, "-m", "sketchloop.cli", "generate", "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert r.returncode == 0, r.stderr
    for flag in ("--free-plans", "--free-regions", "--allow-overlap", "--edit-steps", "--text-verdict"):
        assert flag in r.stdout
    for gone in ("--no-room", "--paste-crop", "--min-size", "--inspect-threshold"):
        assert gone not in r.stdout


def test_the_default_path_is_the_model_alone_and_reads_no_rule_and_no_world():
    """The default (`guided=False`, `--model-only`): plans and regions come from the learned model
    under the output's syntax alone. A trace of every Python call made while generating finds no decode
    rule (models/rules/) and no part of the world (parser, scene graphs, layout and its relation
    geometry, renderer, detector, judge, critique), the blank canvas aside."""
    import sys as _sys
    from pathlib import Path

    import sketchloop

    package = Path(sketchloop.__file__).parent
    forbidden = [package / "models" / "rules", package / "world"]
    allowed = {("render.py", "blank_image")}
    gen = model_generator("staged", max_iters=3)
    assert gen.record["sampling"]["guided"] is False
    reached = set()

    def profile(frame, event, arg):
        if event == "call":
            path = Path(frame.f_code.co_filename)
            if any(path.is_relative_to(f) for f in forbidden) and (path.name, frame.f_code.co_name) not in allowed:
                reached.add(f"{path.relative_to(package)}:{frame.f_code.co_name}")

    _sys.setprofile(profile)
    try:
        traj = gen.run("a photo of two red circles left of a blue square", 0)
    finally:
        _sys.setprofile(None)
    assert traj.final is not None and any(s.type == "plan" for s in traj.steps)
    assert not reached, sorted(reached)
    # the same harness sees the rules on the guided path (`--guided`)
    guided = model_generator("staged", guided=True, max_iters=3)
    _sys.setprofile(profile)
    try:
        guided.run("a photo of two red circles left of a blue square", 0)
    finally:
        _sys.setprofile(None)
    assert any(r.startswith("models/rules/") for r in reached) and any(r.startswith("world/layout") for r in reached)


def test_the_region_syntax_allows_well_formed_triples_and_nothing_more():
    from sketchloop.models.sampling import RegionSyntax

    tok = WordTokenizer()
    syntax = RegionSyntax(tok, max_regions=2)
    words = lambda ids: {tok.vocab[i] for i in ids}  # noqa: E731
    assert words(syntax.allowed([])) == {f"x{i}" for i in range(16)}  # at least one region
    one = tok.encode("x3")
    assert words(syntax.allowed(one)) == {f"y{i}" for i in range(16)}
    assert words(syntax.allowed(tok.encode("x3 y4"))) == {f"s{i}" for i in range(4, 11)}
    assert "</img>" in words(syntax.allowed(tok.encode("x3 y4 s6")))
    assert words(syntax.allowed(tok.encode("x3 y4 s6 x1 y1 s4"))) == {"</img>"}  # at most max_regions
