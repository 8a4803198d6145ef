"""The unified model's pieces: regions, training sequences, the sampler, the roles."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sketchloop.backends.unified import UnifiedRoles
from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset
from sketchloop.loop.roles import Plan, Roles
from sketchloop.loop.staged import run_single, run_staged
from sketchloop.models.regions import (
    REGION_GAP,
    Region,
    changed_regions,
    crop,
    free_sizes,
    parse_regions,
    paste,
    region_of,
    to_float,
)
from sketchloop.models.sampling import SamplingConfig, TextSession, euler_sample
from sketchloop.models.tokenizer import WordTokenizer
from sketchloop.models.unified import UnifiedConfig, UnifiedModel, phrase_mask
from sketchloop.pages.trajectory import save_trajectory
from sketchloop.training.sequences import collate, encode_row, single_example
from sketchloop.world.layout import Layout, PlacedObject
from sketchloop.world.render import render

TINY = UnifiedConfig(vocab_size=len(WordTokenizer()), n_layer=1, n_head=2, n_embd=32, unet_channels=(8, 8, 8))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = {}
    for kind in ("trajectories", "inspect", "refine"):
        d = tmp_path_factory.mktemp(kind)
        build(kind, 12, d, seed=3, shard_size=12, progress=False)
        out[kind] = read_dataset(d).to_pylist()
    return out


def test_region_tokens_round_trip_and_name_the_lattice_point():
    obj = PlacedObject("star", "red", x=(3 + 0.5) / 16, y=(12 + 0.5) / 16, size=8 / 32)
    r = region_of(obj)
    assert r == Region(3, 12, 8) and r.text == "x3 y12 s8"
    assert parse_regions("x3 y12 s8 x20 y1 s8 x1 y1 s8") == [Region(3, 12, 8), Region(1, 1, 8)]  # x20 is off-grid
    tok = WordTokenizer()
    assert tok.decode(tok.encode("<img> x3 y12 s8 </img>")) == "<img> x3 y12 s8 </img>"


def test_changed_regions_cover_add_move_recolour_and_remove():
    a = PlacedObject("circle", "red", 0.28125, 0.28125, 0.25)
    b = PlacedObject("square", "blue", 0.71875, 0.71875, 0.25)
    start = Layout((a,))
    assert changed_regions(Layout(), start) == [region_of(a)]
    assert changed_regions(start, start.add(b)) == [region_of(b)]
    assert changed_regions(start, start.recolor(0, "green")) == [region_of(a)]
    moved = start.move(0, 0.71875, 0.28125)
    assert changed_regions(start, moved) == [region_of(a), region_of(moved.objects[0])]
    assert changed_regions(start.add(b), start) == [region_of(b)]


def test_crops_paste_back_exactly_and_pad_beyond_the_edges():
    layout = Layout((PlacedObject("star", "red", 0.03125, 0.96875, 0.25),))
    canvas = np.asarray(render(layout, 64))
    r = region_of(layout.objects[0])
    patch = crop(canvas, r)
    assert patch.shape == (24, 24, 3)
    assert (paste(np.zeros_like(canvas), r, patch)[56:, :8] == canvas[56:, :8]).all()
    assert (patch[0, 0] == (128, 128, 128)).all()  # outside the canvas: background


def test_a_drawn_crop_changes_nothing_outside_its_planned_region():
    """Only the region's box (and PASTE_MARGIN pixels) of a drawn crop is pasted: the neighbours
    inside the crop stay exactly as they were (a random model repaints the whole crop)."""
    from sketchloop.models.regions import PASTE_MARGIN

    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    layout = Layout((PlacedObject("square", "blue", 0.34375, 0.5, 0.125),))  # within the crop of x8 y8
    before = render(layout, 64)
    plan = Plan("add a red circle right of the blue square", "a blue square and a red circle", "x9 y8 s6")
    region, px = parse_regions(plan.regions)[0], np.arange(64)
    x0, y0, x1, y1 = (np.array(region.box) * 64).round().astype(int)
    inside = (
        (px[None, :] >= x0 - PASTE_MARGIN)
        & (px[None, :] < x1 + PASTE_MARGIN)
        & (px[:, None] >= y0 - PASTE_MARGIN)
        & (px[:, None] < y1 + PASTE_MARGIN)
    )
    roles = UnifiedRoles(model, tok, SamplingConfig(flow_steps=2))
    after = np.asarray(roles.sketch("a photo of a red circle right of a blue square", [plan], before, 0))
    changed = np.any(after != np.asarray(before), axis=-1)
    assert changed[inside].any() and not changed[~inside].any()


def test_a_region_is_trained_on_the_context_the_sampler_gives_it():
    """Three stars close together in one step: the training context of each (the boxes of the
    step's earlier regions copied from the target) equals the canvas the sampler draws it on
    when the earlier ones came out exactly right; a whole crop of the target around an
    earlier star would show the next star itself (a leak the sampler never offers)."""
    from sketchloop.training.sequences import FlowItem

    layout = Layout(tuple(PlacedObject("star", "red", x, 0.5, 0.1875, group=0) for x in (0.3125, 0.5, 0.6875)))
    before, after = np.asarray(render(Layout(), 64)), np.asarray(render(layout, 64))
    regions = [region_of(o) for o in layout.objects]
    seen = []
    roles = UnifiedRoles(UnifiedModel(TINY).eval(), WordTokenizer())
    roles._flow = lambda context, region, cond, generator: (seen.append(context.copy()), crop(after, region))[1]
    roles._draw(Image.fromarray(before), [(r, None) for r in regions], None)
    for j, region in enumerate(regions):
        trained, _, _ = FlowItem(0, before, after, region, tuple(regions[:j])).arrays()
        assert np.allclose(trained, to_float(seen[j]))
    leaked = crop(paste(before, regions[0], crop(after, regions[0])), regions[1])
    assert not np.array_equal(leaked, seen[1])  # the old whole-crop copy showed the second star


def test_trajectory_rows_become_plan_and_region_sequences(rows):
    tok = WordTokenizer()
    for row in rows["trajectories"]:
        ex = encode_row(row, tok, 64)
        text = tok.decode(ex.ids)
        assert "<unk>" not in text and text.endswith("<end> <eos>")
        n_sketch = sum(s["type"] == "sketch" for s in row["steps"])
        assert text.count("<img>") == n_sketch
        assert len(ex.flows) == len(parse_regions(text)) >= n_sketch
        for f in ex.flows:  # each flow is conditioned on its region's size token
            assert tok.vocab[ex.ids[f.pos]].startswith("s")
            context, target, coords = f.arrays()
            assert context.shape == target.shape == (3, 24, 24) and coords.shape == (2, 24, 24)
        # replaying the regions on the canvas rebuilds every image exactly
        canvas = np.asarray(render(Layout(), 64))
        for f in ex.flows:
            canvas = paste(canvas, f.region, crop(f.after, f.region))
        assert (canvas == np.asarray(Image.open(io.BytesIO(row["images"][-1])).convert("RGB"))).all()
        prompt_len = len(tok.encode(f"<bos> <prompt> {row['prompt']} </prompt>"))
        assert not any(ex.target[:prompt_len]) and all(ex.target[prompt_len:])


def test_inspect_rows_learn_only_the_inspection(rows):
    tok = WordTokenizer()
    canvas_id = tok.token_id("<canvas>")
    for row in rows["inspect"]:
        ex = encode_row(row, tok, 64)
        first = ex.ids.index(canvas_id)
        assert ex.ids[first : first + 64] == [canvas_id] * 64 and len(ex.canvases) == 1
        assert not any(ex.target[: first + 64]) and all(ex.target[first + 64 :])
        assert not ex.flows
        learned = tok.decode([i for i, t in zip(ex.ids, ex.target) if t])
        assert learned.startswith("<inspect> " + row["label"])


def test_refine_rows_draw_the_correction(rows):
    tok = WordTokenizer()
    negatives = [r for r in rows["refine"] if r["label"] == "inconsistent"]
    assert negatives
    for row in negatives:
        ex = encode_row(row, tok, 64)
        text = tok.decode(ex.ids)
        assert "<refine>" in text and ex.flows  # the corrected image's regions are learned
        assert all(ex.target[f.pos] for f in ex.flows)


def test_collate_pads_masks_and_caps_flows(rows):
    tok = WordTokenizer()
    exs = [encode_row(r, tok, 64) for r in rows["trajectories"] + rows["inspect"]]
    exs.append(single_example(rows["trajectories"][0], tok))
    batch = collate(exs, tok.pad_id, 5, np.random.default_rng(0))
    assert batch["ids"].shape == batch["targets"].shape
    assert (batch["ids"] == tok.token_id("<canvas>")).sum() == 64 * len(batch["canvases"]) == 64 * 12
    assert len(batch["crop"]["pos"]) == 5 and batch["full"]["target"].shape == (1, 3, 64, 64)
    assert batch["crop"]["target"].abs().max() <= 1


def test_euler_sampler_follows_the_velocity_field():
    class Constant:  # velocity = data - noise for a known target: Euler lands on the target
        def velocity(self, x, t, context, coords, cond):
            target = torch.full_like(x, 0.5)
            return (target - x) / (1 - t[:, None, None, None]).clamp(min=1e-3)

    x = euler_sample(
        Constant(),
        torch.zeros(2, 3, 8, 8),
        torch.zeros(2, 2, 8, 8),
        torch.zeros(2, 4),
        8,
        torch.Generator().manual_seed(0),
    )
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-4)


def test_cached_sampling_matches_a_full_forward():
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    session = TextSession(model, tok.token_id("<canvas>"))
    ids = tok.encode("<bos> <prompt> a photo of a red circle </prompt> <ins>")
    session.feed(ids[:4])
    session.feed(ids[4:])
    full = model.hidden(torch.tensor([ids]))[0]
    assert torch.allclose(torch.stack(session.hidden), full, atol=1e-5)


def test_roles_run_the_staged_loop_and_single_mode_with_a_random_model(tmp_path):
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    roles = UnifiedRoles(model, tok, SamplingConfig(flow_steps=2, temperature=1.0))
    blank = render(Layout(), 64)
    traj = run_staged("a photo of a red circle", Roles(roles, roles, roles, roles), blank, seed=0, max_iters=2)
    assert traj.final.size == (64, 64)
    sketches = [s for s in traj.steps if s.type == "sketch"]
    plans = [s for s in traj.steps if s.type == "plan"]
    assert sum(s.flow_steps for s in sketches) == 2 * sum(len(parse_regions(p.text)) for p in plans)
    save_trajectory(traj, tmp_path / "t")
    record = json.loads((tmp_path / "t" / "trajectory.json").read_text())
    assert record["flow_steps"] == traj.flow_steps and (tmp_path / "t" / "index.html").is_file()
    single = run_single("a photo of a red circle", roles, blank, seed=0)
    assert single.flow_steps == 2 and single.final.size == (64, 64)
    # a plan's regions drive the sketch: pixels outside them never change
    step = Plan("add a red circle", "a red circle", "x3 y3 s8")
    out = np.asarray(roles.sketch("a photo of a red circle", [step], blank, seed=0))
    untouched = np.ones((64, 64), bool)
    untouched[:26, :26] = False
    assert (out[untouched] == np.asarray(blank)[untouched]).all()


def _apart(a: Region, b: Region) -> bool:
    return (
        abs(a.center[0] - b.center[0]) >= (a.size + b.size) / 2 + REGION_GAP - 1e-9
        or abs(a.center[1] - b.center[1]) >= (a.size + b.size) / 2 + REGION_GAP - 1e-9
    )


def test_free_sizes_keep_a_gap_to_placed_regions():
    placed = [Region(8, 8, 8)]
    assert free_sizes(8, 8, placed) == [] and free_sizes(0, 0, placed) == list(range(4, 11))
    for gx in range(16):
        for s in free_sizes(gx, 8, placed):
            assert _apart(Region(gx, 8, s), placed[0])


def test_the_planner_samples_the_regions_of_a_step_apart():
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    overlapped = 0
    for separate in (True, False):
        roles = UnifiedRoles(model, tok, SamplingConfig(guided=True, temperature=1.5, separate=separate))
        for k in range(6):  # a random model writes many regions per step
            session = roles._session("a photo of four stars", [])
            session.feed([tok.token_id("<img>")])
            regions = [r for r, _ in roles._regions(session, torch.Generator().manual_seed(k), "", "", [])]
            pairs = [(a, b) for i, a in enumerate(regions) for b in regions[i + 1 :]]
            if separate:
                assert all(_apart(a, b) for a, b in pairs)
            else:
                overlapped += sum(not _apart(a, b) for a, b in pairs)
    assert overlapped > 0  # without the constraint a random model does overlap them


def _condition(model: UnifiedModel, tok: WordTokenizer, text: str, object_read: bool = True) -> torch.Tensor:
    from sketchloop.format import OBJECT_ENDS, STEP_STARTS

    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        return model.condition(
            model.hidden(ids),
            ids,
            torch.tensor([0]),
            torch.tensor([ids.shape[1] - 1]),
            torch.tensor([tok.token_id(w) for w in STEP_STARTS]),
            torch.tensor([tok.token_id(w) for w in OBJECT_ENDS]) if object_read else None,
        )[0]


def test_condition_depends_on_the_words():
    """The image expert reads the step's words: a fresh model's condition already differs between
    two instructions naming different objects. Given the object ends, the mean of words stops where
    an `<ins>`'s object ends (its first relation word), so the object it relates to does not blur
    what to draw (without them it reads the whole step); single mode (a `<prompt>` step) still
    reads the whole prompt."""
    torch.manual_seed(0)
    tok, model = WordTokenizer(), UnifiedModel(TINY).eval()
    step = (
        "<bos> <prompt> a photo of it </prompt> <ins> add a red cross left of the blue diamond </ins> "
        "<des> a red cross left of a blue diamond </des> <img> x3 y3 s8"
    )
    other_object = step.replace("red cross", "green star")
    other_target = step.replace("blue diamond", "yellow circle")
    single = "<bos> <prompt> a photo of a red cross left of a blue diamond </prompt> <img> <full>"
    assert not torch.allclose(_condition(model, tok, step), _condition(model, tok, other_object), atol=1e-3)
    torch.nn.init.zeros_(model.reader.proj.weight)  # the mean of words alone
    torch.nn.init.zeros_(model.reader.proj.bias)
    for object_read, target_counts in ((False, True), (True, False)):
        a, b = _condition(model, tok, step, object_read), _condition(model, tok, other_target, object_read)
        assert (not torch.allclose(a, b, atol=1e-4)) == target_counts, object_read
        assert not torch.allclose(a, _condition(model, tok, other_object, object_read), atol=1e-4)
        assert not torch.allclose(
            _condition(model, tok, single, object_read),
            _condition(model, tok, single.replace("blue diamond", "yellow circle"), object_read),
            atol=1e-4,
        )


def test_each_region_reads_the_object_it_draws(rows):
    """A region of an `add`'s later object reads "<ins> add" and that object's noun phrase alone
    (objects in text order, with counts: a one-shot plan's second object reads its own words); the
    first object's regions, and every add of the loop's training data (one object each), get the
    first object's read exactly."""
    from sketchloop.format import OBJECT_ENDS, STEP_STARTS
    from sketchloop.models.phrases import region_words

    tok = WordTokenizer()
    text = (
        "<bos> <prompt> a photo of it </prompt> <ins> add a red cross left of a blue diamond and two green stars "
        "below the blue diamond </ins> <des> it </des> <img> x1 y1 s6 x4 y4 s6 x8 y8 s6 x12 y12 s6"
    )
    words = text.split()
    sizes = [k for k, w in enumerate(words) if w == "s6"]
    read = [region_words(words, k) for k in sizes]
    assert read[0] is None and [" ".join(words[i] for i in r) for r in read[1:]] == [
        "<ins> add a blue diamond",
        "<ins> add two green stars",
        "<ins> add two green stars",
    ]
    assert (
        region_words("<bos> <prompt> x </prompt> <ins> remove the red cross </ins> <img> x1 y1 s6".split(), 9) is None
    )
    torch.manual_seed(0)
    model = UnifiedModel(TINY).eval()
    starts = torch.tensor([tok.token_id(w) for w in STEP_STARTS])
    ends = torch.tensor([tok.token_id(w) for w in OBJECT_ENDS])
    checked = 0
    for row in rows["trajectories"]:  # the loop's training steps: no region reads a later object's phrase
        ex = encode_row(row, tok, TINY.canvas_tokens)
        ids = torch.tensor([ex.ids])
        pos = torch.tensor([f.pos for f in ex.flows])
        zero = torch.zeros(len(pos), dtype=torch.long)
        phrases = phrase_mask([f.phrase for f in ex.flows], ids.shape[1])
        assert all(f.phrase is None for f in ex.flows)
        checked += sum(tok.vocab[ex.ids[f.pos]].startswith("s") for f in ex.flows)
        with torch.no_grad():
            hidden = model.hidden(ids)
            a = model.condition(hidden, ids, zero, pos, starts, ends)
            b = model.condition(hidden, ids, zero, pos, starts, ends, phrases)
        assert torch.equal(a, b)
    assert checked > 20
    # ... and a one-shot step's second region reads the diamond alone: with the attention's query made
    # constant, what follows its phrase (here the stars' words) does not change its condition; read
    # without its phrase it does
    torch.nn.init.zeros_(model.reader.q.weight)
    torch.nn.init.zeros_(model.reader.q.bias)
    ids = torch.tensor([tok.encode(text)])
    other = torch.tensor([tok.encode(text.replace("green stars", "white squares"))])
    rows, pos = torch.zeros(2, dtype=torch.long), torch.tensor(sizes[:2])
    phrases = phrase_mask([region_words(words, k) for k in sizes[:2]], ids.shape[1])
    with torch.no_grad():
        conds, others = (model.condition(model.hidden(x), x, rows, pos, starts, ends, phrases) for x in (ids, other))
        same = model.condition(model.hidden(ids), ids, rows, pos, starts, ends)
        same_other = model.condition(model.hidden(other), other, rows, pos, starts, ends)
    assert torch.equal(conds[0], same[0]) and not torch.allclose(conds[1], same[1], atol=1e-4)
    assert torch.allclose(conds[1], others[1], atol=1e-6) and not torch.allclose(same[1], same_other[1], atol=1e-4)


def test_placement_relations_read_the_instruction_and_the_earlier_regions():
    from sketchloop.models.rules.lookahead import Placement

    tok = WordTokenizer()
    earlier = [("add a blue square", "x8 y8 s8"), ("add two green stars below the blue square", "x4 y13 s6 x11 y13 s6")]

    def relations(ins, steps=earlier):
        return Placement(tok, "", ins, steps).relations()

    assert relations("add a red circle left of the blue square and above the green stars") == (
        ("above", Region(4, 13, 6)),
        ("above", Region(11, 13, 6)),
        ("left of", Region(8, 8, 8)),
    )
    assert relations("add a red circle left of the yellow cross") == ()  # not drawn
    assert (
        relations("add a red circle left of the blue square", earlier + [("remove the blue square", "x8 y8 s8")]) == ()
    )  # drawn, then removed
    assert relations("move the blue square left of the green stars") == ()  # not an add
    assert relations("add a red circle of the blue square") == ()  # a free plan's broken relation
    assert Placement(tok, "", "add two green stars below the blue square", []).count == 2
    assert Placement(tok, "", "move the blue square left of the green stars", []).count is None


def test_a_one_shot_plan_places_each_object_against_those_written_before_it():
    from sketchloop.models.rules.lookahead import Placement

    tok = WordTokenizer()
    scene = (
        "a red circle left of a blue square, two green stars below the blue square and the red circle above "
        "the green stars"
    )
    placement = Placement(tok, "a photo of " + scene, "add " + scene, [])
    assert placement.count == 4  # one region per object, in text order
    circle, square, stars = Region(3, 4, 7), Region(12, 4, 7), [Region(4, 13, 6), Region(11, 13, 6)]
    assert placement.relations([]) == ()
    assert placement.relations([circle]) == (("right of", circle),)  # the square: right of the circle
    assert placement.relations([circle, square]) == (("below", circle), ("below", square))
    assert placement.relations([circle, square, stars[0]]) == (("below", circle), ("below", square))
    # the circle leaves room for the square right of it and the stars below both
    red, blue, green = ("red", "circle"), ("blue", "square"), ("green", "star")
    assert placement.rest([]) == (
        ((0, ()), (1, ()), (2, ())),
        tuple(
            sorted(
                [
                    (0, "left of", 1),
                    (1, "right of", 0),
                    (2, "below", 1),
                    (1, "above", 2),
                    (0, "above", 2),
                    (2, "below", 0),
                ]
            )
        ),
    )
    assert placement.rest([circle]) == (
        ((0, (("right of", circle),)), (2, (("below", circle),))),
        ((0, "above", 1), (1, "below", 0)),
    )
    assert placement.rest([circle, square]) == (((1, (("below", circle), ("below", square))),), ())
    assert placement.rest([circle, square, *stars]) is None and (red, blue, green)


def test_an_instruction_introduces_each_object_once():
    """A one-shot planner wrote "add a diamond and a diamond and a diamond" for "a photo of a
    diamond" (three regions for one object): an `<ins>` may not name an object again with "a"."""
    from sketchloop.models.rules.phrase_grammar import PhraseGrammar

    tok = WordTokenizer()
    words = [i for i, w in enumerate(tok.vocab) if not w.startswith("<") and not w[1:].isdigit()]
    grammar = PhraseGrammar(tok, "a photo of a diamond", description=False)
    assert tok.token_id("diamond") in grammar.allowed(tok.encode("add a"), words)
    assert tok.token_id("a") not in grammar.allowed(tok.encode("add a diamond and"), words)
    scene = PhraseGrammar(tok, "a photo of a red circle left of a blue square and a red star", description=False)
    assert tok.token_id("blue") in scene.allowed(tok.encode("add a red circle left of a"), words)
    after = scene.allowed(tok.encode("add a red circle left of a blue square and a red"), words)
    assert tok.token_id("star") in after and tok.token_id("circle") not in after


def test_an_instruction_goes_on_after_and_with_a_relation_the_prompt_states():
    """The planner wrote "add a black square left of the pink crosses and left of the purple
    triangle" for a square right of the triangle: after "and" every relation word was open."""
    from sketchloop.models.rules.phrase_grammar import PhraseGrammar

    tok = WordTokenizer()
    words = [i for i, w in enumerate(tok.vocab) if not w.startswith("<") and not w[1:].isdigit()]
    prompt = (
        "a photo of a black square left of two pink crosses, the black square right of a purple triangle "
        "and the pink crosses right of the purple triangle"
    )
    grammar = PhraseGrammar(tok, prompt, description=False, drawn="two pink crosses right of a purple triangle")
    after = {
        tok.vocab[i] for i in grammar.allowed(tok.encode("add a black square left of the pink crosses and"), words)
    }
    assert "right" in after and not after & {"left", "above", "below"}


def test_placement_rest_reads_the_prompt_for_the_objects_still_to_come():
    from sketchloop.models.rules.lookahead import Placement

    tok = WordTokenizer()
    prompt = (
        "a photo of a blue cross left of a yellow triangle, a red circle above the yellow triangle "
        "and a black star right of the yellow triangle"
    )

    def rest(prompt, ins, earlier=()):
        return Placement(tok, prompt, ins, list(earlier)).rest()

    # the anchor first: the three others (in the prompt's order) go left of, above and right of it
    assert rest(prompt, "add a yellow triangle") == (
        ((0, ()), (1, ()), (1, ()), (1, ())),
        (
            (0, "below", 2),
            (0, "left of", 3),
            (0, "right of", 1),
            (1, "left of", 0),
            (2, "above", 0),
            (3, "right of", 0),
        ),
    )
    # the cross first: the triangle goes right of it, the circle and the star relate to the triangle
    objects, links = rest(prompt, "add a blue cross")
    assert objects == ((0, ()), (1, ()), (1, ()), (1, ())) and (1, "right of", 0) in links and len(links) == 6
    # the star comes after the triangle and the circle: only the cross is still to come
    earlier = [("add a yellow triangle", "x8 y8 s7"), ("add a red circle above the yellow triangle", "x8 y3 s6")]
    assert rest(prompt, "add a black star right of the yellow triangle", earlier) == (
        ((0, (("right of", Region(8, 8, 7)),)), (1, (("left of", Region(8, 8, 7)),))),
        (),
    )
    # counts: an add of three draws two more after its first region; a counted later group comes with its count
    counted = "a photo of three purple stars right of two green squares"
    assert rest(counted, "add two green squares")[0] == ((1, ()), (3, ()))
    assert Placement(tok, counted, "add two green squares", []).rest([Region(3, 8, 6)])[0] == ((0, ()), (3, ()))
    # a removed object is to come again; a non-add has no rest
    chain = "a photo of a red circle left of a blue square and a green star below the red circle"
    assert rest(
        chain, "add a green star", [("add a blue square", "x12 y4 s7"), ("remove the blue square", "x12 y4 s7")]
    )[0] == ((0, ()), (1, ()), (1, ()))
    assert rest(chain, "move the red circle left of the blue square") is None


def _completion(anchor, rest, size=6):
    """A search independent of the grammar's: spots of `size` for every later object of `rest`
    (object 0 at `anchor`), inside the canvas, 0.03 apart, where the prompt's relations hold (a
    depth-first search that places the object with the fewest spots left next); None when there
    is none."""
    import numpy as np

    from sketchloop.world.layout import relation_mask

    objects, links = rest
    spots = [Region(x, y, size) for x in range(16) for y in range(16)]
    spots = [r for r in spots if min(r.box) >= 0 and max(r.box) <= 1]

    def fits(region, j, other, k):
        if all(abs(a - b) < (region.size + other.size) / 2 + 0.03 for a, b in zip(region.center, other.center)):
            return False
        return all(relation_mask(np.array([region.box]), r, other.box)[0] for a, r, b in links if a == j and b == k)

    def search(placed, todo):
        if not todo:
            return placed
        options = [[r for r in spots if all(fits(r, j, other, k) for other, k in placed)] for j in todo]
        best = min(range(len(todo)), key=lambda i: len(options[i]))
        for region in options[best]:
            found = search(placed + [(region, todo[best])], todo[:best] + todo[best + 1 :])
            if found:
                return found
        return None

    return search([(anchor, 0)], [j for j, (n, _) in enumerate(objects) for _ in range(n)])


def test_every_region_leaves_room_for_every_object_still_to_come():
    import random

    from sketchloop.models.rules.lookahead import Placement
    from sketchloop.models.rules.region_grammar import RegionGrammar

    tok = WordTokenizer()
    grammar = RegionGrammar(tok, min_size=6)

    def regions(rest, relations=()):
        return [
            Region(*(int(w[1:]) for w in tok.decode([x, y, s]).split()))
            for x in grammar.allowed([], rest=rest, relations=relations)
            if x != grammar.end
            for y in grammar.allowed([x], rest=rest, relations=relations)
            for s in grammar.allowed([x, y], rest=rest, relations=relations)
        ]

    every = regions(None)
    anchor = (((0, ()), (1, ()), (1, ()), (1, ())), ((1, "left of", 0), (2, "above", 0), (3, "right of", 0)))
    roomy = regions(anchor)
    assert 0 < len(roomy) < len(every) / 2 and set(roomy) <= set(every)
    assert min(r.gx for r in roomy) > min(r.gx for r in every) and max(r.gx for r in roomy) < max(r.gx for r in every)
    assert min(r.gy for r in roomy) > min(r.gy for r in every)
    # a crowded scene: the first of two squares leaves room for the other, three stars right of both, a
    # cross below them and two circles left of the cross; every region allowed has a completion
    prompt = (
        "a photo of three purple stars right of two green squares, a yellow cross below the green "
        "squares and two red circles left of the yellow cross"
    )
    crowded = Placement(tok, prompt, "add two green squares", []).rest()
    allowed = regions(crowded)
    assert 0 < len(allowed) < len(every) / 2
    for region in random.Random(0).sample(allowed, 5):
        assert _completion(region, crowded) is not None, region
    # a later object that has no spot whatever the region (right of a region at the right edge) asks for nothing
    assert regions((((0, ()), (1, (("right of", Region(15, 8, 10)),))), ((1, "left of", 0),))) == every
    # where the region's own relations leave no room (it goes left of a region at the left edge), the
    # look-ahead is dropped and the relations kept
    relations = (("left of", Region(3, 8, 6)),)
    assert regions((((0, relations), (1, ())), ((1, "left of", 0),)), relations) == regions(None, relations) != every
    # where the relations leave no room at the least size, the region is drawn smaller before they are dropped
    tight = (("left of", Region(3, 8, 10)),)  # no s6 fits left of it, an s4 or s5 does
    assert regions(None, tight) and all(r.s < 6 for r in regions(None, tight))


def test_related_regions_meet_the_relations_while_some_region_fits():
    from sketchloop.models.rules.region_grammar import RegionGrammar
    from sketchloop.world.layout import relation_mask

    tok = WordTokenizer()
    grammar = RegionGrammar(tok, min_size=6)
    target = Region(8, 8, 8)

    def spots(relations=()):
        return [
            (x, y)
            for x in grammar.allowed([], relations=relations)
            if x != grammar.end
            for y in grammar.allowed([x], relations=relations)
        ]

    for relation in ("left of", "right of", "above", "below"):
        relations = ((relation, target),)
        for x, y in spots(relations):
            sizes = grammar.allowed([x, y], relations=relations)
            assert sizes and all(
                relation_mask([parse_regions(tok.decode([x, y, s]))[0].box], relation, target.box)[0] for s in sizes
            ), (relation, tok.decode([x, y]))
        assert 0 < len(spots(relations)) < len(spots()) / 2
    # nothing can be left of a region at the left edge: the relation is dropped, not the step
    edge = (("left of", Region(0, 8, 8)),)
    assert grammar.allowed([], relations=edge) == grammar.allowed([])


def test_the_planner_places_an_add_where_its_instruction_says():
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    from sketchloop.world.layout import relation_mask

    history = [Plan("add a blue square", "a blue square", "x8 y8 s8")]
    for relate in (True, False):
        roles = UnifiedRoles(model, tok, SamplingConfig(guided=True, temperature=1.5, relate_regions=relate))
        left = []
        for k in range(6):
            session = roles._session("a photo of a red circle left of a blue square", history)
            session.feed(
                tok.encode(
                    "<ins> add a red circle left of the blue square </ins> "
                    "<des> a red circle left of a blue square </des> <img>"
                )
            )
            regions = [
                r
                for r, _ in roles._regions(
                    session,
                    torch.Generator().manual_seed(k),
                    "a photo of a red circle left of a blue square",
                    "add a red circle left of the blue square",
                    history,
                )
            ]
            left += [bool(relation_mask([r.box], "left of", Region(8, 8, 8).box)[0]) for r in regions]
        assert all(left) if relate else not all(left)  # a random model places it anywhere


def test_the_shipped_model_draws_what_the_plan_says():
    """The words of a plan, not the region alone, decide what the image expert draws."""
    from sketchloop.world.detect import ShapesDetector

    roles = UnifiedRoles.from_pretrained()
    blank, detector = render(Layout(), 64), ShapesDetector()
    for colour, shape in [("blue", "triangle"), ("yellow", "square"), ("red", "star"), ("green", "cross")]:
        plan = Plan(f"add a {colour} {shape}", f"a {colour} {shape}", "x8 y8 s8")
        found = detector.detect(roles.sketch(f"a photo of a {colour} {shape}", [plan], blank, seed=0))
        assert [(d.color, d.shape) for d in found] == [(colour, shape)]


def test_eval_generators_staged_and_single_report_compute(tmp_path):
    from sketchloop.evaluation.benchmark import load_benchmark
    from sketchloop.evaluation.run import evaluate, generate_images
    from sketchloop.generators import get_generator
    from sketchloop.world.detect import ShapesDetector

    torch.manual_seed(0)
    tok = WordTokenizer()
    UnifiedModel(TINY).save_pretrained(tmp_path / "ckpt", tok)
    prompts = load_benchmark("shapes-geneval")[::200]
    for name in ("staged", "single"):
        gen = get_generator(name, checkpoint=tmp_path / "ckpt", flow_steps=2, max_iters=2)
        stats = generate_images(prompts, gen, tmp_path / name, images_per_prompt=1, progress=False)
        results = evaluate(tmp_path / name, ShapesDetector(), prompts, generation=stats, progress=False)
        compute = results["compute"]
        assert {"flow_steps", "text_tokens", "seconds", "images"} <= set(compute)
        if name == "single":
            assert compute["flow_steps"] == 2 and compute["images"] == 1


def test_shipped_checkpoint_generates_from_a_fresh_install(tmp_path):
    import subprocess
    import sys

    from sketchloop.backends.unified import SHIPPED_CHECKPOINT

    model, tok = UnifiedModel.from_pretrained(SHIPPED_CHECKPOINT)
    assert tok.vocab == WordTokenizer().vocab  # the code's vocabulary, every id the same
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sketchloop.cli",
            "generate",
            "a photo of a red circle above a blue square",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((tmp_path / "trajectory.json").read_text())
    assert record["flow_steps"] > 0 and record["images"] >= 1 and any(s["type"] == "inspect" for s in record["steps"])
    # the picture shows the prompt, by GenEval's rule (seeds 0-3 and 5 were measured right; seed 4 is not)
    from sketchloop.evaluation.geneval import score_image
    from sketchloop.generators import model_generator
    from sketchloop.world.detect import ShapesDetector
    from sketchloop.world.parser import parse_prompt

    detector = ShapesDetector()
    meta = parse_prompt("a photo of a red circle above a blue square").to_geneval("position")
    with Image.open(tmp_path / "final.png") as final:
        assert score_image(
            detector.detect(final.convert("RGB")), meta, detector.threshold, detector.counting_threshold
        )[0]
    gen = model_generator("staged")
    for seed in (1, 2, 3):
        image = gen.generate(meta["prompt"], seed).image
        assert score_image(detector.detect(image), meta, detector.threshold, detector.counting_threshold)[0], seed


def test_region_grammar_allows_only_region_triples_then_the_end():
    from sketchloop.models.rules.region_grammar import MAX_REGIONS, RegionGrammar

    tok = WordTokenizer()
    for separate in (True, False):
        g = RegionGrammar(tok, separate)
        # a step paints at least one region, as every training step does, and inside the canvas: no size
        # fits on the outermost lattice columns (centre 1/32 from the edge), at most s6 on the next ones
        assert set(g.allowed([])) == set(g.x[1:-1])
        assert {tok.vocab[i] for i in g.allowed(tok.encode("x1 y8"))} == {"s4", "s5", "s6"}
        assert {tok.vocab[i] for i in g.allowed(tok.encode("x8"))} == {f"y{i}" for i in range(1, 15)}
        out = tok.encode("x8 y8 s8")
        assert g.end in g.allowed(out)
        assert set(g.allowed(out[:1])) <= set(g.y) and set(g.allowed(out[:2])) <= set(g.s)
        full = tok.encode(" ".join(f"x{2 * i} y{2 * (i % 2)} s4" for i in range(MAX_REGIONS)))
        assert g.allowed(full) == [g.end]
    # kept apart: nothing may start on the point a region already covers
    covered = RegionGrammar(tok, True).allowed(tok.encode("x8 y8 s10 x8"))
    assert tok.token_id("y8") not in covered
    assert tok.token_id("y8") in RegionGrammar(tok, False).allowed(tok.encode("x8 y8 s10 x8"))


def test_an_add_keeps_clear_of_what_earlier_steps_drew():
    """Regions of an `add` may not overlap an earlier step's regions (objects never overlap in
    the data; a white diamond drawn over a green one was seen); a full canvas falls back to
    the step's own separation. (Other edits, recolour, move, remove, paint there: not constrained.)"""
    from sketchloop.models.rules.region_grammar import RegionGrammar

    tok = WordTokenizer()
    g = RegionGrammar(tok, True)
    earlier = (Region(8, 8, 10),)
    assert tok.token_id("y8") in g.allowed(tok.encode("x8"))
    assert tok.token_id("y8") not in g.allowed(tok.encode("x8"), earlier)
    for k in range(40):  # a random model's add never lands on the earlier object
        torch.manual_seed(k)
        roles = UnifiedRoles(UnifiedModel(TINY).eval(), tok, SamplingConfig(guided=True, temperature=1.5))
        history = [Plan("add a red circle", "a red circle", "x8 y8 s10")]
        plan = roles.ground(
            "a photo of a red circle and a star", history + [Plan("add a star", "a red circle and a star")], k
        )
        assert all(r.s in free_sizes(r.gx, r.gy, list(earlier), gap=0.0) for r in parse_regions(plan.regions))
    everywhere = tuple(Region(x, y, 10) for x in range(0, 16, 2) for y in range(0, 16, 2))
    assert set(g.allowed([], everywhere)) == set(g.allowed([]))


def test_an_add_of_n_objects_writes_n_regions():
    """ "add three stars" writes three regions (the held-out counting prompts were drawn with
    two), read from the model's own instruction; other edits are not constrained."""
    from sketchloop.models.rules.lookahead import Placement
    from sketchloop.models.rules.region_grammar import RegionGrammar

    tok = WordTokenizer()
    g = RegionGrammar(tok, True)
    assert g.end not in g.allowed([], count=2) and g.end not in g.allowed(tok.encode("x2 y2 s6"), count=2)
    assert g.allowed(tok.encode("x2 y2 s6 x12 y12 s6"), count=2) == [g.end]
    circle = [("add a circle", "x8 y8 s8")]
    assert [
        Placement(tok, "", i, circle).count
        for i in (
            "add three stars left of a circle",
            "add a red circle",
            "remove the star",
            "change the two stars to red",
        )
    ] == [3, 1, None, None]
    assert Placement(tok, "", "add three stars left of a circle", []).count == 4  # a one-shot plan: both new
    torch.manual_seed(0)
    roles = UnifiedRoles(UnifiedModel(TINY).eval(), tok, SamplingConfig(guided=True, temperature=1.5))
    for k in range(5):
        plan = roles.ground("a photo of four stars", [Plan("add four stars", "four stars")], k)
        assert len(parse_regions(plan.regions)) == 4


def test_role_calls_depend_only_on_their_arguments():
    """No state carries between calls: the same call gives the same answer whatever came before."""
    roles = UnifiedRoles.from_pretrained()
    prompt, blank = "a photo of a red circle above a blue square", render(Layout(), 64)
    first = roles.plan(prompt, [], 5)
    canvas = roles.sketch(prompt, [first], blank, 7)
    roles.inspect(prompt, [first], canvas, 3)
    roles.plan(prompt, [first], 9)
    assert roles.plan(prompt, [], 5) == first
    assert roles.sketch(prompt, [first], blank, 7).tobytes() == canvas.tobytes()
    assert roles.inspect(prompt, [first], canvas, 3) == roles.inspect(prompt, [first], canvas, 3)


def test_a_full_context_ends_the_trajectory_instead_of_failing():
    """A planner that would keep going past the context ends there; a long inspection is cut
    to fit: one long prompt never stops a whole run."""
    from dataclasses import replace

    from sketchloop.teachers import blank_canvas

    torch.manual_seed(0)
    tok = WordTokenizer()
    model = UnifiedModel(replace(TINY, block_size=512)).eval()
    # free plans: a random planner's <des> would otherwise often name the whole prompt at once and end there
    roles = UnifiedRoles(model, tok, SamplingConfig(temperature=1.5, copy_phrases=False))
    prompt = "a photo of a red circle left of a blue square, a green star above the blue square and two white crosses"
    plans = []
    for seed in range(6):  # a random model plans long, odd steps: the context fills up
        traj = run_staged(
            prompt, Roles(roles, roles, roles, roles), blank_canvas().image, seed=seed, max_iters=8, max_refines=1
        )  # raises past the context
        assert traj.final is not None
        plans.append(sum(s.type == "plan" for s in traj.steps))
    assert max(plans) >= 2, plans


def _phrase_ids(tok: WordTokenizer, close: str) -> list[int]:
    """The words a plan's text may write (as UnifiedRoles offers them) and its closing tag."""
    return [i for i, w in enumerate(tok.vocab) if not w.startswith("<") and not w[1:].isdigit()] + [tok.token_id(close)]


def test_phrase_grammar_accepts_every_add_step_the_training_data_writes():
    """The planner is trained on these texts: the grammar it samples under at inference never
    forbids a word of them (random and composite scenes, `<ins>` and `<des>`)."""
    from sketchloop.backends.shapes import ShapesStepWriter
    from sketchloop.errors import LayoutError
    from sketchloop.models.rules.phrase_grammar import PhraseGrammar
    from sketchloop.world.sample import random_composite_scene, random_scene

    tok, rng, writer, checked = WordTokenizer(), np.random.default_rng(0), ShapesStepWriter(), 0
    for k in range(150):
        graph = random_composite_scene(rng) if k % 2 else random_scene(rng)
        try:
            steps = writer.write_steps(graph, rng, edit_ops=0.0)
        except LayoutError:
            continue
        for k, step in enumerate(steps):
            drawn = steps[k - 1].des if k else ""
            assert not PhraseGrammar(tok, graph.to_text()).complete(drawn)  # the plan does not end early
            for text, description, close in ((step.ins, False, "</ins>"), (step.des, True, "</des>")):
                grammar = PhraseGrammar(tok, graph.to_text(), description, drawn, step.ins if description else "")
                ids = tok.encode(text) + [tok.token_id(close)]
                for j, token in enumerate(ids):
                    assert token in grammar.allowed(ids[:j], _phrase_ids(tok, close)), (graph.to_text(), text, j)
                checked += 1
        assert PhraseGrammar(tok, graph.to_text()).complete(steps[-1].des)  # ... and ends where they end
    assert checked > 500


def test_phrase_grammar_copies_objects_and_relations_from_the_prompt():
    from sketchloop.models.rules.phrase_grammar import PhraseGrammar

    tok = WordTokenizer()
    prompt = "a photo of a pink circle above a blue triangle, two blue stars right of the blue triangle"
    des, ins = PhraseGrammar(tok, prompt), PhraseGrammar(tok, prompt, description=False)

    def words(g, text, close="</des>"):
        return {tok.vocab[i] for i in g.allowed(tok.encode(text), _phrase_ids(tok, close))}

    assert words(des, "a blue") == {"triangle"}  # the blue object of the prompt that "a" fits
    assert words(des, "two blue") == {"stars"}
    assert words(des, "a") == {"pink", "blue"} and "an" not in words(des, "")  # "a" before a consonant
    assert words(des, "a pink circle") & {"above", "below", "left", "right"} == {"above"}  # the prompt's relation
    assert words(des, "a pink circle above") - {"one"} == {"a"}  # the triangle is introduced, not mentioned again
    assert words(des, "a pink circle above a") == {"blue"}
    assert words(des, "a pink circle above a blue triangle") & {"left", "right", "above", "below"} == set()
    # the triangle has no relation left to be the subject of: the stars come next
    assert words(des, "a pink circle above a blue triangle,") == {"two"}
    assert words(des, "a pink circle above a blue triangle, two blue stars right of") == {"the"}  # mentioned again
    assert words(des, "a pink circle above a blue triangle, two blue stars right of the blue") == {"triangle"}
    # an <ins> says a relation either way round, about objects drawn earlier
    assert words(ins, "add a blue triangle", "</ins>") >= {"below", "</ins>"}
    assert words(ins, "add a blue triangle below", "</ins>") - {"one"} == {"a"}  # the circle is not drawn: no "the"
    after_circle = PhraseGrammar(tok, prompt, description=False, drawn="a pink circle")
    assert words(after_circle, "add a blue triangle below the", "</ins>") == {"pink"}
    # the <des> after an add names what is drawn and what the add adds: no other object, none left out
    added = PhraseGrammar(tok, prompt, drawn="a pink circle", adds="add a blue triangle below the pink circle")
    assert words(added, "") - {"one"} == {"a"} and words(added, "a") == {"pink", "blue"}
    assert "</des>" not in words(added, "a pink circle") and "two" not in words(added, "a pink circle and")
    assert "</des>" in words(added, "a pink circle above a blue triangle")
    # ... so it states no relation to an object it may not name (a dead end the model once left with
    # "a yellow star left of a brown diamond", an object the prompt does not have)
    star = PhraseGrammar(
        tok,
        "a photo of a red triangle and a yellow star left of a brown cross",
        drawn="a red triangle",
        adds="add a yellow star",
    )
    assert words(star, "a red triangle and a yellow star") & {"left", "right", "above", "below"} == set()
    assert "left" in words(
        PhraseGrammar(tok, "a photo of a red triangle and a yellow star left of a brown cross"),
        "a red triangle and a yellow star",
    )
    # nothing left to introduce: no "and", the description ends; the plan is complete
    full = "a pink circle above a blue triangle and two blue stars right of the blue triangle"
    assert (
        words(des, full) == {"</des>"}
        and des.complete(full)
        and not des.complete("a pink circle above a blue triangle")
    )
    # an `add` adds an object the last <des> does not have yet
    drawn = PhraseGrammar(tok, prompt, description=False, drawn="a pink circle above a blue triangle")
    assert words(drawn, "add", "</ins>") & {"a", "an", "the", "two"} == {"two"} and words(
        drawn, "add two blue stars right of the", "</ins>"
    ) == {"blue"}
    # a prompt the grammar cannot read (no noun phrase) holds nothing
    free = PhraseGrammar(tok, "a photo of nothing")
    assert free.allowed(tok.encode("a"), _phrase_ids(tok, "</des>")) == _phrase_ids(tok, "</des>")


def test_a_random_model_plans_only_the_prompts_objects():
    """Under the phrase grammar even an untrained planner names only the prompt's objects."""
    from sketchloop.models.phrases import Reading as _Reading

    torch.manual_seed(0)
    tok = WordTokenizer()
    roles = UnifiedRoles(UnifiedModel(TINY).eval(), tok, SamplingConfig(guided=True, temperature=1.0))
    prompt = "a photo of a pink circle above a blue triangle and two green stars"
    objects = {("pink", "circle"), ("blue", "triangle"), ("green", "star")}
    named = set()
    for seed in range(8):
        plan = roles.plan(prompt, [], seed)
        if plan is None:
            continue
        for text in (plan.ins, plan.des):
            keys = {key for _, key, _ in _Reading(tok.words(text)).phrases}
            assert keys <= objects, (text, keys)
            named |= keys
    assert named
    free = UnifiedRoles(
        UnifiedModel(TINY).eval(), tok, SamplingConfig(guided=True, temperature=1.0, copy_phrases=False)
    )
    texts = [p.des for p in (free.plan(prompt, [], s) for s in range(40)) if p]  # few random texts form a phrase
    assert any({key for _, key, _ in _Reading(tok.words(t)).phrases} - objects for t in texts), texts


def test_the_self_check_decides_the_verdict_and_counts_its_flow_calls():
    """With `self_check` the verdict words are the checks' (a plan conflict first), the text and
    the `<refine>` follow them; the image check costs two flow calls per region and draw."""
    from sketchloop.teachers import blank_canvas

    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    history = [Plan("add two red circles", "two red circles", "x2 y3 s6 x6 y3 s6")]
    before = blank_canvas(64).image
    canvas = UnifiedRoles(model, tok).sketch("a photo of two red circles", history, before, seed=0)
    inf = float("inf")
    for plan_check, image_check, said in (
        (inf, inf, "consistent"),
        (inf, -inf, "inconsistent image"),
        (-inf, -inf, "inconsistent plan"),
    ):
        roles = UnifiedRoles(
            model, tok, SamplingConfig(temperature=1.0, plan_check=plan_check, image_check=image_check, check_draws=3)
        )
        critique = roles.inspect("a photo of two red circles", history, canvas, seed=1, before=before)
        assert critique.text.startswith(said) and critique.consistent == (said == "consistent")
        assert critique.target == said.split()[-1] if not critique.consistent else critique.refine == ""
        assert roles.usage["flow_steps"] == 2 * 2 * 3
    roles = UnifiedRoles(model, tok, SamplingConfig(image_check=-inf))
    assert roles.inspect(
        "a photo of two red circles", history, canvas, seed=1
    ).consistent  # no `before`: no image check
    assert roles.usage["flow_steps"] == 0


def test_the_image_check_reads_each_region_where_and_as_the_sketcher_drew_it(monkeypatch):
    """The image check scores each region's crop on the context the sketcher drew it on (the
    canvas before the step with the step's earlier regions pasted), under the same condition."""
    from sketchloop.teachers import blank_canvas

    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    roles = UnifiedRoles(model, tok, SamplingConfig(check_draws=2))
    history = [
        Plan("add a red circle", "a red circle", "x2 y2 s6"),
        Plan("add two blue squares", "a red circle and two blue squares", "x2 y5 s6 x7 y5 s6"),
    ]
    prompt = "a photo of a red circle and two blue squares"
    first = roles.sketch(prompt, history[:1], blank_canvas(64).image, seed=0)
    drawn = []
    flow = roles._flow
    monkeypatch.setattr(
        roles, "_flow", lambda context, region, cond, g: drawn.append((context, cond)) or flow(context, region, cond, g)
    )
    second = roles.sketch(prompt, history, first, seed=3)
    read = []
    velocity = model.velocity
    monkeypatch.setattr(
        model,
        "velocity",
        lambda x, t, context, coords, cond: read.append((context, cond)) or velocity(x, t, context, coords, cond),
    )
    assert roles.checks(prompt, history, second, first)[1] is not None
    contexts, conds = read[0]
    assert len(drawn) == 2 and contexts.shape[0] == 2 * 2 * 2
    for j, (context, cond) in enumerate(drawn):
        for k in (2 * j, 2 * j + 1):  # both draws of region j, conditioned (the null half follows)
            assert torch.equal(contexts[k], torch.from_numpy(to_float(context)))
            assert torch.allclose(conds[k], cond, atol=1e-5)  # the same read, cached or not
    assert torch.equal(conds[4], model.null_cond)


def test_the_inspector_reads_in_training_what_it_reads_at_inference(rows):
    """An inspect row's sequence up to `<inspect>` is the inspector's session token for token,
    and the canvas fills the same slots: the same hidden states."""
    import re

    torch.manual_seed(0)
    tok = WordTokenizer()
    model = UnifiedModel(TINY).eval()
    roles = UnifiedRoles(model, tok)
    for row in rows["inspect"]:
        ex = encode_row(row, tok, model.config.canvas_tokens)
        end = ex.ids.index(tok.token_id("<inspect>")) + 1
        text = tok.decode(ex.ids[: ex.ids.index(tok.token_id("<canvas>"))])
        history = [Plan(*m) for m in re.findall(r"<ins> (.*?) </ins> <des> (.*?) </des> <img> (.*?) </img>", text)]
        canvas = Image.fromarray(ex.canvases[0])
        session = roles._inspect_session(row["prompt"], history, canvas)
        assert session.ids == ex.ids[:end]
        ids = torch.tensor([ex.ids[:end]])
        with torch.no_grad():
            trained = model.hidden(
                ids, torch.from_numpy(to_float(ex.canvases[0]))[None], ids == tok.token_id("<canvas>")
            )[0]
        assert torch.allclose(torch.stack(session.hidden), trained, atol=1e-5)


def test_region_temperature_samples_the_regions_alone():
    """`region_temperature` samples the region tokens while the words stay greedy; unset, the
    regions follow `temperature` (greedy: the same plan for every seed)."""
    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()

    def plans(config: SamplingConfig) -> list:
        out = [UnifiedRoles(model, tok, config).plan("a photo of three red circles", [], seed) for seed in range(6)]
        return [(p.ins, p.des, p.regions) for p in out if p is not None]

    greedy, sampled = plans(SamplingConfig()), plans(SamplingConfig(region_temperature=1.0))
    assert len(greedy) == len(sampled) == 6 and len(set(greedy)) == 1
    assert {(ins, des) for ins, des, _ in sampled} == {greedy[0][:2]}
    assert len({regions for _, _, regions in sampled}) > 1


def test_region_beams_find_the_regions_the_model_finds_likeliest():
    """Beam search over a step's region tokens: width 1 is the greedy choice token by token; a wider
    beam returns well-formed regions whose summed log-probability is at least the greedy one's,
    and leaves the session where `sample` would (the regions read, their hidden states kept)."""
    from sketchloop.errors import SketchloopError
    from sketchloop.models.sampling import RegionSyntax

    torch.manual_seed(0)
    model, tok = UnifiedModel(TINY).eval(), WordTokenizer()
    syntax = RegionSyntax(tok, max_regions=3)
    canvas_id, tags = tok.token_id("<canvas>"), (tok.token_id("<prompt>"), tok.token_id("</prompt>"))

    def session() -> TextSession:
        s = TextSession(model, canvas_id, tags)
        s.feed(tok.encode("<prompt> a photo of three red circles </prompt> <ins> add three red circles </ins> <img>"))
        return s

    def logprob(out: list[int]) -> float:
        s, total = session(), 0.0
        for i, token in enumerate(out):
            logp = torch.log_softmax(s.logits(s.last).cpu(), -1)
            total += float(logp[token] - torch.logsumexp(logp[syntax.allowed(out[:i])], -1))
            s.feed([token])
        return total

    greedy_session = session()
    greedy = greedy_session.sample(syntax.max_tokens, {syntax.end}, torch.Generator(), 0.0, syntax.allowed)
    assert session().beam(syntax.max_tokens, {syntax.end}, 1, syntax.allowed) == greedy
    wide_session = session()
    wide = wide_session.beam(syntax.max_tokens, {syntax.end}, 6, syntax.allowed)
    assert wide[-1] == syntax.end and (len(wide) - 1) % 3 == 0 and len(parse_regions(tok.decode(wide[:-1]))) >= 1
    assert logprob(wide) >= logprob(greedy) - 1e-4
    assert wide_session.ids[-len(wide) :] == wide and len(wide_session.hidden) == len(wide_session.ids)
    roles = UnifiedRoles(model, tok, SamplingConfig(region_beams=4))
    plan = roles.plan("a photo of three red circles", [], 0)
    assert plan is None or all(len(r.text.split()) == 3 for r in parse_regions(plan.regions))
    with pytest.raises(SketchloopError, match="region_beams 0"):
        SamplingConfig(region_beams=0)


class _SpyReader(torch.nn.Module):
    """Stands in for the condition's reader and keeps the spans it is given to read."""

    def forward(self, query, hidden, embedded, span, bag_span):
        self.spans = (span, bag_span)
        return torch.zeros(len(query), 4)


def test_a_recall_clause_is_not_what_the_image_expert_reads():
    """An `<ins>` that opens with a recall clause ("a ripe banana is yellow ; add ...") is read by the
    image expert from its ";" on: the same words, and the same later-object reads, as the plain step."""
    from sketchloop.format import OBJECT_ENDS, STEP_STARTS
    from sketchloop.models.phrases import region_words

    tok = WordTokenizer()
    starts = torch.tensor([tok.token_id(w) for w in STEP_STARTS])
    ends = torch.tensor([tok.token_id(w) for w in OBJECT_ENDS])
    plain = (
        "<bos> <prompt> it </prompt> <ins> add a yellow circle left of a red cross </ins> <des> it </des> "
        "<img> x1 y1 s6 x4 y4 s6"
    )
    recalled = plain.replace("<ins> add", "<ins> a ripe banana is yellow ; add")
    model = UnifiedModel(TINY).eval()
    model.reader = _SpyReader()

    def reads(text: str) -> tuple[list[str], list[str], list[str]]:
        words = text.split()
        sizes = [k for k, w in enumerate(words) if w == "s6"]
        later = [region_words(words, k) for k in sizes]
        assert later[0] is None
        ids = torch.tensor([tok.encode(text)])
        hidden = torch.zeros(1, ids.shape[1], TINY.n_embd)
        model.condition(hidden, ids, torch.tensor([0]), torch.tensor([sizes[0]]), starts, ends)
        span, bag = model.reader.spans
        return (
            [w for w, k in zip(words, span[0]) if k],
            [w for w, k in zip(words, bag[0]) if k],
            [" ".join(words[i] for i in r) for r in later[1:]],
        )

    span_p, bag_p, later_p = reads(plain)
    span_r, bag_r, later_r = reads(recalled)
    assert bag_p == ["<ins>", "add", "a", "yellow", "circle"] and bag_r == [";", "add", "a", "yellow", "circle"]
    assert span_r == [";"] + span_p[1:] and later_p == ["<ins> add a red cross"] and later_r == ["; add a red cross"]
