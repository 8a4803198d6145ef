"""ShapesWorld's fixed vocabulary: shapes, GenEval's ten colours, counts and relations.

Other modules, benchmarks and tokenizers rely on these names and their order; do not
reorder or rename them.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "star": "stars",
    "cross": "crosses",
}
SINGULARS: dict[str, str] = {plural: shape for shape, plural in PLURALS.items()}

# GenEval's colour names, with the RGB values ShapesWorld paints them in. The values
# are far apart from each other and from the mid-grey background (see world/render.py).
COLORS: tuple[str, ...] = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 40),
    "green": (30, 160, 60),
    "blue": (40, 80, 230),
    "purple": (140, 40, 190),
    "pink": (255, 140, 210),
    "brown": (120, 70, 25),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
BACKGROUND: tuple[int, int, int] = (128, 128, 128)

COUNT_WORDS: dict[str, int] = {"one": 1, "two": 2, "three": 3, "four": 4}
NUMBER_WORDS: dict[int, str] = {n: w for w, n in COUNT_WORDS.items()}
MAX_COUNT = 4

# Canonical relations (GenEval's names) and the phrasings accepted for each.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
RELATION_PHRASES: dict[str, str] = {
    "left of": "left of",
    "to the left of": "left of",
    "right of": "right of",
    "to the right of": "right of",
    "above": "above",
    "on top of": "above",
    "below": "below",
    "under": "below",
    "beneath": "below",
}
# Relations in depth: two objects overlap partly and one is drawn over the other. They are
# ShapesWorld's extension of GenEval (world/judge.py states the rule) and kept apart from
# RELATIONS, which stay GenEval's four planar ones.
DEPTH_RELATIONS: tuple[str, ...] = ("in front of", "behind")
DEPTH_PHRASES: dict[str, str] = {
    "in front of": "in front of",
    "partly hiding": "in front of",
    "behind": "behind",
    "partly behind": "behind",
    "partly hidden by": "behind",
}
ALL_RELATIONS: tuple[str, ...] = RELATIONS + DEPTH_RELATIONS
SEAM = 60.0
"""Two colours may overlap in depth only if every blend of them stays this far (RGB distance)
from the background: the anti-aliased seam between them must not read as background."""
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
    "in front of": "behind",
    "behind": "in front of",
}

# Counted parts: a star's points. STAR_POINTS is the range the detector reads exactly at
# 64 px (docs/shapesworld.md, scripts/bench_detector.py: four points read as a cross on small
# objects); a star named without a count is drawn with DEFAULT_POINTS.
STAR_POINTS: tuple[int, ...] = (5, 6, 7)
DEFAULT_POINTS = 5
POINT_WORDS: dict[str, int] = {"five": 5, "six": 6, "seven": 7}


def _clashes() -> frozenset[frozenset[str]]:
    import itertools

    import numpy as np

    bg = np.array(BACKGROUND, float)
    clashes = set()
    for a, b in itertools.combinations(COLORS, 2):
        pa, pb = np.array(PALETTE[a], float), np.array(PALETTE[b], float)
        if min(float(np.linalg.norm(pa * t + pb * (1 - t) - bg)) for t in np.linspace(0, 1, 41)) < SEAM:
            clashes.add(frozenset((a, b)))
    return frozenset(clashes)


DEPTH_CLASHES: frozenset[frozenset[str]] = _clashes()
"""The colour pairs that may not overlap in depth (their seam reads as background): orange and
blue, yellow and blue, yellow and purple, green and purple, green and pink, pink and black,
brown and white, black and white."""


def depth_colours_clash(a: str, b: str) -> bool:
    """Whether objects of colours `a` and `b` cannot overlap in depth (the same colour, or a clash)."""
    return a == b or frozenset((a, b)) in DEPTH_CLASHES


def plural(shape: str, count: int) -> str:
    """The noun for `count` objects of `shape`."""
    return shape if count == 1 else PLURALS[shape]


def vocabulary_summary() -> str:
    """One line listing every word the prompt language knows."""
    return (
        f"shapes: {', '.join(SHAPES)}; colours: {', '.join(COLORS)}; "
        f"counts: a/an/one, two, three, four; relations: {', '.join(RELATION_PHRASES)}; "
        "depth: in front of, behind, partly hiding, partly behind, partly hidden by; "
        f"star points: 'a star with six points', 'a six-pointed star' ({STAR_POINTS[0]} to {STAR_POINTS[-1]}); "
        "facts: 'a circle the colour of THING', 'as many stars as THING has PARTS', 'a shape like THING' "
        "(world/knowledge.csv)"
    )
