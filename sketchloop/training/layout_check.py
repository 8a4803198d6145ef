"""Training data and fitting for the layout check (models/layout_check.py).

Examples are the model's own steps: on a scene held out of every benchmark the planner runs
greedily, as in the loop; at each step its greedy regions and `candidates` region sets
sampled for the same words (`UnifiedRoles.resample_regions`, as `replan` samples them) are each judged exactly:
the regions of the steps so far, each drawn as one object of the groups its `<des>` adds, must
show the step's `<des>` (evaluation/process.py `plan_layout`). The rollout goes on while the
greedy step is right. The judge labels training data only; the head never calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import PromptError
from ..evaluation.process import plan_layout
from ..format import Plan, step_text
from ..models.layout_check import LayoutCheck, LayoutCheckConfig
from ..world.parser import parse_prompt
from ..world.render import render


def layout_right(history: list[Plan], plan: Plan, judge) -> bool | None:
    """Whether the regions of `history` and `plan`, each drawn exactly as one object of the
    groups its `<des>` adds, show `plan`'s `<des>` (None: that `<des>` does not parse)."""
    try:
        graph = parse_prompt(plan.des)
    except PromptError:
        return None
    layout = plan_layout(graph, [(p.des, p.regions) for p in history + [plan]])
    return layout is not None and judge.judge(render(layout), graph).consistent


def features_of(roles, prompt: str, history: list[Plan], plan: Plan) -> np.ndarray:
    """The layout check's rows for `plan` after `history` (models/layout_check.py `region_rows`),
    as the loop's inspection reads them."""
    session = roles._session(prompt, history)
    session.feed(roles.tok.encode(step_text(plan)))
    read = roles.layout_features(session)
    assert read is not None, "a plan without regions"
    return read.cpu().numpy()


def own_layout_rows(
    roles, judge, prompt: str, rng: np.random.Generator, candidates: int, temperatures: tuple[float, ...], group: int
) -> list[dict[str, Any]]:
    """The judged steps of one greedy rollout of `prompt` (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    history: list[Plan] = []
    for it in range(8):
        plan = roles.plan(prompt, history, it)
        if plan is None or not plan.regions:
            break
        right = layout_right(history, plan, judge)
        if right is None:
            break
        tries = [plan] + [
            roles.resample_regions(prompt, history, plan, int(rng.integers(2**31)), float(rng.choice(temperatures)))
            for _ in range(candidates)
        ]
        for k, p in enumerate(tries):
            label = right if k == 0 else layout_right(history, p, judge)
            if not p.regions or label is None:
                continue
            rows.append(
                {
                    "rows": features_of(roles, prompt, history, p).astype(np.float16),
                    "wrong": not label,
                    "group": group * 16 + it,
                    "greedy": k == 0,
                }
            )
        if not right:
            break
        history.append(plan)
    return rows


def auc(scores: np.ndarray, wrong: np.ndarray) -> float | None:
    """How often a wrong example scores above a right one (ties half); None without both."""
    w, c = scores[wrong], scores[~wrong]
    if not len(w) or not len(c):
        return None
    return float((w[:, None] > c[None]).mean() + 0.5 * (w[:, None] == c[None]).mean())


def within_auc(scores: np.ndarray, wrong: np.ndarray, groups: np.ndarray) -> float | None:
    """`auc` over pairs of one step only (a wrong and a right region set for the same words): how
    well the head chooses among a correction's candidates."""
    hits, pairs = 0.0, 0
    for g in np.unique(groups):
        m = groups == g
        w, c = scores[m][wrong[m]], scores[m][~wrong[m]]
        hits += float((w[:, None] > c[None]).sum() + 0.5 * (w[:, None] == c[None]).sum())
        pairs += len(w) * len(c)
    return hits / pairs if pairs else None


def padded(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of examples' rows (each R_i x W) as (B, max R, W) zeros-padded, and its mask."""
    most, width = max(len(r) for r in rows), rows[0].shape[1]
    out = torch.zeros(len(rows), most, width)
    mask = torch.zeros(len(rows), most, dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.from_numpy(np.asarray(r, dtype=np.float32))
        mask[i, : len(r)] = True
    return out, mask


def scores_of(head: LayoutCheck, rows: list[np.ndarray], batch: int = 512) -> np.ndarray:
    """The head's score of each example."""
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            out.append(head(*padded(rows[i : i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def fit(
    rows: list[np.ndarray],
    wrong: np.ndarray,
    groups: np.ndarray,
    config: LayoutCheckConfig,
    steps: int = 1500,
    pair_weight: float = 1.0,
    weight_decay: float = 1e-2,
    batch: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> LayoutCheck:
    """The head fitted by class-weighted cross-entropy on every example plus, with `pair_weight`, a
    ranking loss on the wrong/right pairs of one step: each batch is made of whole steps (every
    region set tried for the same words), so that the pairs a correction chooses between are in it."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(rows).astype(np.float32)
    head = LayoutCheck(config)
    head.shift.copy_(torch.from_numpy(stacked.mean(0)))
    head.scale.copy_(torch.from_numpy(stacked.std(0) + 1e-6))
    head.shift[-2:], head.scale[-2:] = 0.0, 1.0  # the flags stay as they are
    share = float(np.clip(wrong.mean(), 1e-3, 1 - 1e-3))
    balance = torch.tensor((1 - share) / share)
    steps_of: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        steps_of.setdefault(g, []).append(i)
    keys = list(steps_of)
    per_batch = max(1, round(batch * len(keys) / len(rows)))  # steps a batch holds, about `batch` examples
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=weight_decay)
    head.train()
    for _ in range(steps):
        idx = [
            i for k in rng.choice(len(keys), size=min(per_batch, len(keys)), replace=False) for i in steps_of[keys[k]]
        ]
        x, mask = padded([rows[i] for i in idx])
        y, g = torch.tensor(wrong[idx], dtype=torch.float32), torch.tensor(groups[idx])
        score = head(x, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(score, y, pos_weight=balance)
        pairs = (g[:, None] == g[None]) & (y[:, None] == 1) & (y[None] == 0)
        if pair_weight and pairs.any():
            loss = loss + pair_weight * torch.nn.functional.softplus(-(score[:, None] - score[None])[pairs]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def threshold_for(scores_right: np.ndarray, false_alarms: float) -> float:
    """The lowest threshold that flags at most `false_alarms` of the right steps' scores."""
    ordered = np.sort(scores_right)[::-1]
    k = int(np.floor(false_alarms * len(ordered)))
    return float(ordered[k]) + 1e-6 if k < len(ordered) else float(ordered[-1])
