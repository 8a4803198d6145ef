"""The architecture holds: imports flow one way, the trajectory format lives in one module,
and model inference runs no scorer component."""

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sketchloop"

# Lower layers never import higher ones (CONTRIBUTING.md, "Layout"); no exception is listed.
LAYERS = [
    {"errors", "io"},
    {"world", "format", "teachers"},
    {"models"},
    {"loop", "backends", "pages"},
    {"generators", "data", "training", "evaluation", "web"},
    {"cli"},
]


def _unit(module: str) -> str:
    parts = module.split(".")[1:]  # without "sketchloop"
    if not parts or parts == ["__init__"]:
        return "__init__"
    name = ".".join(parts[:2])
    for layer in LAYERS:
        if name in layer:
            return name
    return parts[0]


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports() -> dict[str, set[str]]:
    """module -> the sketchloop modules it imports (anywhere in the file, lazy imports too)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        if path.name == "__init__.py":
            module = module.removesuffix(".__init__")
            package = module
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("sketchloop"):
                    names = [f"{target}.{a.name}" for a in node.names]
                    found |= {
                        n
                        for n in names
                        if (PACKAGE.parent / (n.replace(".", "/") + ".py")).is_file()
                        or (PACKAGE.parent / n.replace(".", "/")).is_dir()
                    } or {target}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("sketchloop")}
        graph[module] = found
    return graph


def test_imports_flow_one_way():
    wrong = []
    for module, targets in _imports().items():
        here = _unit(module)
        if here == "__init__":
            continue
        for target in targets:
            there = _unit(target)
            if there != "__init__" and _layer(there) > _layer(here):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_units():
    edges: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        here = _unit(module)
        for target in targets:
            there = _unit(target)
            if there not in (here, "__init__") and here != "__init__":
                edges.setdefault(here, set()).add(there)

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_no_import_cycle_between_modules():
    """No module reaches itself through the modules it imports (lazy imports too), a package's
    `__init__` re-exporting its own modules aside."""
    imports = _imports()
    graph = {
        m: {t for t in ts if t in imports and t != m and not m.startswith(t + ".") and not t.startswith(m + ".")}
        for m, ts in imports.items()
    }
    reach: dict[str, set[str]] = {}
    for module in graph:  # everything each module reaches
        seen, todo = set(), list(graph[module])
        while todo:
            nxt = todo.pop()
            if nxt not in seen:
                seen.add(nxt)
                todo.extend(graph.get(nxt, ()))
        reach[module] = seen
    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a in reach[b])
    assert not cycles, cycles


def test_the_trajectory_format_is_written_in_one_module():
    """Tagged texts (`<ins> {...} </ins>`, ...) are built only by format.py, and only it
    strips GenEval's "a photo of " prefix."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE) == Path("format.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                for part, following in zip(node.values, node.values[1:]):
                    if (
                        isinstance(part, ast.Constant)
                        and isinstance(following, ast.FormattedValue)
                        and re.search(r"<(ins|des|inspect|refine|prompt)> $", part.value)
                    ):
                        offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} builds a tagged text")
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "removeprefix"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("a photo")
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} strips the prompt prefix")
    assert not offenders, offenders


SCORER_FREE = textwrap.dedent("""
    import sys
    import sketchloop.world.parser as parser, sketchloop.world.layout as layout, sketchloop.world.render as render
    import sketchloop.world.detect as detect, sketchloop.world.critique as critique
    import sketchloop.world.judge as judge, sketchloop.backends.shapes as shapes

    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"model inference called the scorer component {name}")
        return call

    originals = {"parse_prompt": parser.parse_prompt, "tokenize": parser.tokenize}
    for module, names in [(parser, ["parse_prompt", "tokenize"]), (layout, ["sample_layout", "place_object"]),
                          (render, ["render", "draw_shape"]),
                          (critique, ["inspect_description", "describe_detections"]),
                          (judge, ["score_image"])]:
        for name in names:
            setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    detect.ShapesDetector.detect = forbidden("ShapesDetector.detect")
    for name in ("judge", "critique", "analyse"):
        setattr(shapes.DetectorJudge, name, forbidden(f"DetectorJudge.{name}"))
    import sketchloop.generators as generators
    check_prompt = generators.check_prompt

    def checked_before_the_run(*args, **kwargs):
        # the prompt check may parse, as `render` does (refusing contradictions, overfull scenes): input
        # validation before the loop starts, not a scorer inside it
        patched = {name: getattr(parser, name) for name in originals}
        vars(parser).update(originals)
        try:
            return check_prompt(*args, **kwargs)
        finally:
            vars(parser).update(patched)

    generators.check_prompt = checked_before_the_run
    from sketchloop.cli import main
    sys.argv = ["sketchloop", *sys.argv[1:]]
    main()
""")


def test_model_inference_calls_no_scorer_component(tmp_path):
    for args in (["--max-refines", "2", "--seed", "1"], ["--mode", "single"]):
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                SCORER_FREE,
                "generate",
                "a photo of a red circle above a blue square",
                "--out",
                str(tmp_path / args[-1]),
                *args,
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / args[-1] / "final.png").is_file()
    # the same harness catches a scorer call: the oracle uses all of them
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            SCORER_FREE,
            "generate",
            "a photo of a red circle",
            "--oracle",
            "--out",
            str(tmp_path / "oracle"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "called the scorer component" in r.stderr
