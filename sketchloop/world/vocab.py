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
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}


def plural(shape: str, count: int) -> str:
    """The noun for `count` objects of `shape`."""
    return shape if count == 1 else PLURALS[shape]


def vocabulary_summary() -> str:
    """One line listing every word the prompt language knows."""
    return (
        f"shapes: {', '.join(SHAPES)}; colours: {', '.join(COLORS)}; "
        f"counts: a/an/one, two, three, four; relations: {', '.join(RELATION_PHRASES)}; "
        "facts: 'a circle the colour of THING', 'as many stars as THING has PARTS', 'a shape like THING' "
        "(world/knowledge.csv)"
    )
