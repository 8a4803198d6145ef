"""Training the plan check (models/plan_check.py): the features the self-check reads from a
step's plan, the head's fit, and the choice of both self-check thresholds on validation
steps. scripts/train_plan_check.py builds the steps and runs these."""

from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm import tqdm

from ..backends.unified import UnifiedRoles
from ..evaluation.process import flag_rates
from ..format import Plan
from ..models.plan_check import PlanCheck, PlanCheckConfig

EPOCHS, LR = 300, 0.01  # full-batch Adam


def features(roles: UnifiedRoles, steps: list[dict]) -> tuple[torch.Tensor, ...]:
    """Padded (words, previous words, parts, features, mask) of each step's last plan, as the
    self-check reads it."""
    read = []
    for s in steps:
        plan = roles.plan_features(roles._session(s["prompt"], [Plan(*p) for p in s["plans"]]))
        if plan is None:
            raise ValueError(f"a step without a plan: {s['prompt']!r}")
        read.append(plan)
    n, length = len(read), max(len(r[0]) for r in read)
    words, previous, parts = (torch.zeros(n, length, dtype=torch.long) for _ in range(3))
    feats, mask = torch.zeros(n, length, read[0][-1].shape[-1]), torch.zeros(n, length, dtype=torch.bool)
    for i, (w, b, p, x) in enumerate(read):
        k = len(w)
        words[i, :k], previous[i, :k], parts[i, :k], feats[i, :k], mask[i, :k] = w, b, p, x, True
    return words, previous, parts, feats, mask


def fit(config: PlanCheckConfig, data: tuple[torch.Tensor, ...], labels: torch.Tensor, l2: float) -> PlanCheck:
    """The head fitted to `labels` (1: a plan conflict) by full-batch Adam with weight decay `l2`."""
    torch.manual_seed(0)
    head = PlanCheck(config)
    opt = torch.optim.Adam(head.parameters(), LR, weight_decay=l2)
    for _ in tqdm(range(EPOCHS), desc=f"fit (l2 {l2:g})", file=sys.stderr, leave=False):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(head(*data), labels).backward()
        opt.step()
    return head.eval()


def _right(step: dict) -> bool:
    """A right step that counts as one (the reworded controls are kept apart)."""
    return step["kind"] == "consistent" and step["target"] != "rephrased"


def _image_flags(steps: list[dict], image_check: float) -> np.ndarray:
    """Which steps the image check flags at `image_check` (none without an image doubt)."""
    return np.array([s["image_doubt"] is not None and s["image_doubt"] >= image_check for s in steps])


def threshold(scores: np.ndarray, steps: list[dict], image_check: float, false_alarms: float) -> float:
    """The lowest plan score at which at most `false_alarms` of the right steps are flagged by
    either check."""
    right = [i for i, s in enumerate(steps) if _right(s)]
    image, plan = _image_flags([steps[i] for i in right], image_check), scores[right]
    for t in sorted(set(plan.tolist())) + [float(plan.max()) + 1e-3]:
        if np.mean(image | (plan >= t)) <= false_alarms:
            return float(t)
    return float(plan.max()) + 1e-3


def thresholds(
    scores: np.ndarray, steps: list[dict], false_alarms: float, image_default: float
) -> tuple[float, float, dict]:
    """(plan threshold, image threshold, their rates): of the image thresholds tried (`image_default`,
    and just above each right step's image doubt), the one whose plan threshold (`threshold`) finds
    most of the conflict kind found least (then most of both), the right steps flagged by either
    check staying at most `false_alarms`."""
    right = [s for s in steps if _right(s)]
    doubts = [s["image_doubt"] for s in right if s["image_doubt"] is not None]
    best: tuple[tuple[float, float], float, float, dict] | None = None
    for image in sorted({image_default, *(float(np.nextafter(d, np.inf)) for d in doubts)}):
        if np.mean(_image_flags(right, image)) > false_alarms:  # the image check alone flags too many
            continue
        plan = threshold(scores, steps, image, false_alarms)
        r = rates(scores, steps, plan, image)
        key = (min(r["recall_plan"], r["recall_image"]), r["recall_plan"] + r["recall_image"])
        if best is None or key > best[0]:
            best = (key, plan, image, r)
    if best is None:
        raise ValueError(f"the image check alone flags more than {false_alarms} of the right steps at every threshold")
    return best[1], best[2], best[3]


def rates(scores: np.ndarray, steps: list[dict], t: float, image_check: float) -> dict:
    """`flag_rates` of the two checks at (plan `t`, `image_check`), and the share of reworded
    right plans (the controls) flagged, to 3 decimals."""
    flags = (scores >= t) | _image_flags(steps, image_check)
    judged = [{"kind": s["kind"], "flagged": f} for s, f in zip(steps, flags) if s["target"] != "rephrased"]
    controls = [f for s, f in zip(steps, flags) if s["target"] == "rephrased"]
    out = {**flag_rates(judged, lambda s: s["flagged"]), "rephrased_flagged": np.mean(controls) if controls else np.nan}
    return {k: round(float(v), 3) for k, v in out.items()}
