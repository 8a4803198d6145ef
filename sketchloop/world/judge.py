"""GenEval's scoring rules over detections (djghosh13/geneval): ShapesWorld's judge is its
detector (detect.py) with these rules. The evaluator scores benchmarks with them
(evaluation/geneval.py), and the exact teachers judge their data steps with them.

`score_image` follows GenEval's `evaluate` step by step: for every include group the
`count` most confident detections of its class must exist, carry its colour and stand
in its position to every object of the target group; no exclude may hold. Task score =
mean over its images; overall = mean of the task scores.

Extensions, which never change a GenEval prompt's verdict:
- `position` may hold several [relation, target] pairs (a group related to several).
- When several include groups share a class (only in compositional prompts, never in
  GenEval's), that class's detections are shared out among them: groups that name a
  colour or a number of points take the most confident detections that match first,
  the others the rest.
- `points` (a star's number of points) is checked as `color` is: the group's detections
  must have it.
- Depth: "A in front of B" holds for two detections when the detector found that A partly
  hides B (`Detection.in_front_of`: their fitted shapes overlap, and where they overlap the
  image shows A's colour); "behind" is its inverse. Like the planar relations, it must hold
  for every object of the group against every object of the target group.
"""

from __future__ import annotations

from typing import Any

from .detect import Detection
from .layout import relative_position
from .scene import position_pairs
from .vocab import COLORS, DEPTH_RELATIONS

MAX_OBJECTS_PER_CLASS = 16  # GenEval's MAX_OBJECTS


def _by_class(detections: list[Detection], threshold: float) -> dict[str, list[Detection]]:
    objects: dict[str, list[Detection]] = {}
    for det in sorted(detections, key=lambda d: -d.confidence):
        if det.confidence >= threshold and len(objects.setdefault(det.shape, [])) < MAX_OBJECTS_PER_CLASS:
            objects[det.shape].append(det)
    return objects


def _found_objects(include: list[dict[str, Any]], objects: dict[str, list[Detection]]) -> list[list[Detection]]:
    """The detections each include group is judged on (GenEval: the class's top `count`)."""
    classes = [req["class"] for req in include]
    found: list[list[Detection]] = [[] for _ in include]
    claimed: set[int] = set()
    shared = [i for i, c in enumerate(classes) if classes.count(c) > 1]
    for i, req in enumerate(include):
        if i not in shared:
            found[i] = objects.get(req["class"], [])[: req["count"]]
    for i in sorted(shared, key=lambda i: ("color" not in include[i]) + ("points" not in include[i])):
        req = include[i]
        pool = [
            d
            for d in objects.get(req["class"], [])
            if id(d) not in claimed
            and ("color" not in req or d.color == req["color"])
            and ("points" not in req or d.points == req["points"])
        ]
        found[i] = pool[: req["count"]]
        claimed.update(id(d) for d in found[i])
    return found


def score_image(
    detections: list[Detection], metadata: dict[str, Any], threshold: float = 0.3, counting_threshold: float = 0.9
) -> tuple[bool, str]:
    """GenEval's verdict on one image: (correct, reasons it is not)."""
    cutoff = counting_threshold if metadata.get("tag") == "counting" else threshold
    objects = _by_class(detections, cutoff)
    position = {id(d): i for i, d in enumerate(detections)}  # what `in_front_of` indexes
    correct = True
    reasons: list[str] = []
    include = metadata.get("include", [])
    found_all = _found_objects(include, objects)
    matched_groups: list[list[Detection] | None] = []
    for req, found in zip(include, found_all):
        classname, count = req["class"], req["count"]
        matched = True
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [d.color for d in found]
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reasons.append(
                        f"expected {req['color']} {classname}>={count}, found "
                        f"{colors.count(req['color'])} {req['color']}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if matched and "points" in req:
                points = [d.points for d in found]
                if points.count(req["points"]) < count:
                    correct = matched = False
                    reasons.append(
                        f"expected {classname}>={count} with {req['points']} points, found "
                        + ", ".join(f"{points.count(p)} with {p}" for p in sorted(set(points), key=str))
                    )
            for expected_rel, target_group in position_pairs(req):
                if not matched:
                    break
                targets = matched_groups[target_group] if target_group < len(matched_groups) else None
                if targets is None:
                    correct = matched = False
                    reasons.append(f"no target for {classname} to be {expected_rel}")
                    break
                for obj in found:
                    for target in targets:
                        if expected_rel in DEPTH_RELATIONS:
                            front, back = (obj, target) if expected_rel == "in front of" else (target, obj)
                            if position[id(back)] not in front.in_front_of:
                                correct = matched = False
                                found_rel = (
                                    "the other way round" if position[id(front)] in back.in_front_of else "no overlap"
                                )
                                reasons.append(f"expected {classname} {expected_rel} target, found {found_rel}")
                                break
                            continue
                        true_rels = relative_position(obj.box, target.box)
                        if expected_rel not in true_rels:
                            correct = matched = False
                            reasons.append(
                                f"expected {classname} {expected_rel} target, found "
                                f"{' and '.join(sorted(true_rels)) or 'no relation to'} target"
                            )
                            break
                    if not matched:
                        break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        n = len(objects.get(req["class"], []))
        if n >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {n}")
    return correct, "\n".join(reasons)
