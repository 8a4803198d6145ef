"""Held-out evaluation: no shipped benchmark's scene, and no held-out colour-shape pair,
appears in any data build; the held-out benchmarks are what they say."""

import json
import re

import numpy as np
import pytest

from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.heldout import HELDOUT_PAIRS, SHAPES_WORLD_BENCHMARKS, data_allows, heldout_keys
from sketchloop.world.parser import parse_prompt
from sketchloop.world.scene import SceneGraph, scene_key
from sketchloop.world.vocab import PLURALS, SHAPES


def test_scene_keys_ignore_phrasing():
    a = parse_prompt("a photo of a red circle above a blue square and a green star")
    b = parse_prompt("a photo of a green star, a blue square below a red circle")
    assert scene_key(a) == scene_key(b)
    assert scene_key(a) != scene_key(parse_prompt("a photo of a red circle below a blue square and a green star"))


def test_the_heldout_benchmarks_are_what_they_say():
    complex_, val, gen = (load_benchmark(n) for n in ("shapes-complex", "shapes-complex-val", "shapes-generalise"))
    assert (len(complex_), len(val), len(gen)) == (300, 300, 150)
    keys = {
        name: {scene_key(parse_prompt(m["prompt"])) for m in load_benchmark(name)} for name in SHAPES_WORLD_BENCHMARKS
    }
    names = list(keys)
    assert all(not keys[a] & keys[b] for i, a in enumerate(names) for b in names[i + 1 :])  # disjoint
    for m in complex_ + val:
        g = parse_prompt(m["prompt"])
        assert 3 <= len(g.groups) <= 5 and 2 <= len(g.relations) <= 4 and all(x.color for x in g.groups)
        assert not any((x.color, x.shape) in HELDOUT_PAIRS for x in g.groups)
        assert scene_key(SceneGraph.from_geneval(m)) == scene_key(g)  # the metadata and the prompt agree
    several = sum(1 for m in complex_ if max(np.bincount([r.object for r in parse_prompt(m["prompt"]).relations])) > 1)
    chains = sum(
        1
        for m in complex_
        if any(
            r.subject in {q.object for q in parse_prompt(m["prompt"]).relations}
            for r in parse_prompt(m["prompt"]).relations
        )
    )
    assert several > 50 and chains > 50 and sum(any(x["count"] > 1 for x in m["include"]) for m in complex_) > 30
    assert all(
        any((x.color, x.shape) in HELDOUT_PAIRS for x in parse_prompt(m["prompt"]).groups)
        and parse_prompt(m["prompt"]).relations
        for m in gen
    )


def test_the_trees_and_phrasing_benchmarks_are_what_they_say():
    """4-5 coloured groups in a tree, many counted, and 2-4 related groups as people write them:
    synonyms, relations stated either way round, bare back-references, "a photo of" or not;
    every prompt parses to its metadata's scene."""
    from sketchloop.world.vocab import RELATION_PHRASES

    trees, trees_val, people, people_val = (
        load_benchmark(n) for n in ("shapes-trees", "shapes-trees-val", "shapes-phrasing", "shapes-phrasing-val")
    )
    assert (len(trees), len(trees_val), len(people), len(people_val)) == (300, 300, 200, 100)
    for m in trees + trees_val:
        g = parse_prompt(m["prompt"])
        assert 4 <= len(g.groups) <= 5 and len(g.relations) == len(g.groups) - 1 and all(x.color for x in g.groups)
        assert scene_key(SceneGraph.from_geneval(m)) == scene_key(g)
    assert sum(any(x["count"] > 1 for x in m["include"]) for m in trees) > 150
    for m in people + people_val:
        g = parse_prompt(m["prompt"])
        assert 2 <= len(g.groups) <= 4 and g.relations and scene_key(SceneGraph.from_geneval(m)) == scene_key(g)
    prompts = [m["prompt"] for m in people]
    synonyms = [p for p in RELATION_PHRASES if p != RELATION_PHRASES[p]]
    assert sum(any(f" {s} " in p for s in synonyms) for p in prompts) > 100
    assert 60 < sum(p.startswith("a photo of") for p in prompts) < 140
    nouns = "|".join([*SHAPES, *PLURALS.values()])
    assert sum(bool(re.search(rf"\bthe ({nouns})\b", p)) for p in prompts) > 50  # "the square": no colour


def test_a_phrasing_always_parses_back_to_its_scene():
    from sketchloop.world.phrasing import phrase
    from sketchloop.world.sample import random_composite_scene

    rng = np.random.default_rng(0)
    texts = set()
    for m in load_benchmark("shapes-complex-val")[:30]:
        graph = parse_prompt(m["prompt"])
        for _ in range(3):
            text = phrase(graph, rng, prefix=0.5, synonyms=1.0, bare=1.0, digits=0.5)
            assert scene_key(parse_prompt(text)) == scene_key(graph), text
            texts.add(text)
    assert len(texts) > 80  # three different wordings of nearly every scene
    graph = random_composite_scene(rng)
    assert scene_key(parse_prompt(phrase(graph, rng))) == scene_key(graph)


def test_no_data_build_holds_a_benchmark_scene_or_a_heldout_pair(tmp_path, monkeypatch):
    # a real build: every row's scene is allowed
    for kind, n in (("trajectories", 120), ("inspect", 30), ("refine", 30)):
        build(kind, n, tmp_path / kind, seed=9, shard_size=n, progress=False)
        for row in read_dataset(tmp_path / kind).to_pylist():
            graph = SceneGraph.from_json(row["scene"])
            assert data_allows(graph), row["prompt"]
            for step in row["steps"]:
                assert not any(f"{c} {s}" in step["text"] for c, s in HELDOUT_PAIRS), step["text"]
    # and the exclusion is what keeps them out: a sampler that proposes benchmark scenes first
    import sketchloop.data.trajectories as trajectories

    proposals = [parse_prompt(m["prompt"]) for m in load_benchmark("shapes-geneval")[:20]]
    for sampler in ("random_scene", "random_composite_scene"):  # both halves of the scene mix
        real = getattr(trajectories, sampler)
        monkeypatch.setattr(
            trajectories, sampler, lambda rng, real=real, **kw: proposals.pop(0) if proposals else real(rng, **kw)
        )
    build("trajectories", 5, tmp_path / "forced", seed=1, shard_size=5, progress=False)
    assert not proposals  # all 20 were proposed
    assert (
        not {scene_key(SceneGraph.from_json(r["scene"])) for r in read_dataset(tmp_path / "forced").to_pylist()}
        & heldout_keys()
    )
    assert json.loads((tmp_path / "forced" / "build.json").read_text())["params"]["n"] == 5


def test_long_compositions_only_are_still_held_out(monkeypatch):
    """`heldout_free_scene(rng, composite_share=1.0)` (the plan check's long training steps) draws
    only long compositions, and still never a benchmark's scene."""
    import sketchloop.data.trajectories as trajectories

    monkeypatch.setattr(trajectories, "random_scene", lambda *a, **k: pytest.fail("a general scene was drawn"))
    proposals = [parse_prompt(m["prompt"]) for m in load_benchmark("shapes-complex")[:3]]
    real = trajectories.random_composite_scene
    monkeypatch.setattr(
        trajectories, "random_composite_scene", lambda rng, **kw: proposals.pop(0) if proposals else real(rng, **kw)
    )
    rng = np.random.default_rng(0)
    drawn = [trajectories.heldout_free_scene(rng, composite_share=1.0) for _ in range(5)]
    assert not proposals and not {scene_key(g) for g in drawn} & heldout_keys()
    assert all(len(g.relations) >= len(g.groups) - 1 for g in drawn)  # every later group related


def test_the_counting_validation_split_is_what_it_says():
    """One or two groups, every one counted (2-4), in GenEval's counting wording, scenes of
    their own (not shapes-geneval's), and no data build may draw them."""
    lines = load_benchmark("shapes-counting-val")
    assert len(lines) == 100 and {m["tag"] for m in lines} == {"counting"}
    graphs = [parse_prompt(m["prompt"]) for m in lines]
    assert all(m["prompt"].startswith("a photo of ") for m in lines)
    assert all(1 <= len(g.groups) <= 2 and all(2 <= x.count <= 4 for x in g.groups) for g in graphs)
    assert sum(len(g.groups) == 1 for g in graphs) == 60 and all(g.groups[0].color for g in graphs[:60])
    assert {x.count for g in graphs for x in g.groups} == {2, 3, 4}
    assert all(scene_key(SceneGraph.from_geneval(m)) == scene_key(g) for m, g in zip(lines, graphs))
    assert not any(data_allows(g) for g in graphs)


def test_the_counted_validation_split_is_what_it_says():
    """Three groups related in a tree, the first counted, in GenEval's wording, uncoloured
    counted groups among them, scenes of their own, and no data build may draw them."""
    lines = load_benchmark("shapes-counted-val")
    assert len(lines) == 200 and {m["tag"] for m in lines} == {"counted"}
    graphs = [parse_prompt(m["prompt"]) for m in lines]
    assert all(m["prompt"].startswith("a photo of ") for m in lines)
    assert all(len(g.groups) == 3 and len(g.relations) == 2 and any(x.count > 1 for x in g.groups) for g in graphs)
    uncoloured_counted = sum(any(x.count > 1 and x.color is None for x in g.groups) for g in graphs)
    assert 60 <= uncoloured_counted <= 140
    assert all(scene_key(SceneGraph.from_geneval(m)) == scene_key(g) for m, g in zip(lines, graphs))
    assert not any(data_allows(g) for g in graphs)
