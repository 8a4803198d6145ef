"""The layout check: a verdict head over the planner's own hidden states at a step's regions.

Most of the learned model's wrong images come from right plans whose regions fail the prompt
(docs/results.md, per stage): a counted group's objects on one spot, a relation turned round.
The plan check (models/plan_check.py) reads the planner's surprise at the words it wrote, and a
greedy region is the planner's likeliest, so it cannot see these. This head reads what the
planner itself computed while writing the step: its hidden states at the step's regions and
at every region before them (`region_rows`), read beside each other by one attention layer,
and gives a score that is high where the regions do not show the `<des>`. It reads no scene
and calls no world code. Trained by `scripts/train_layout_check.py` on the model's own greedy and sampled
regions on random scenes held out of every benchmark, labelled by the exact judge (training
only); its threshold is chosen on a validation split and stored with it. In the loop it flags
a plan conflict, and the planner's correction (backends/unified.py `replan`) writes new
regions for the same words and keeps the set it doubts least.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .head_files import load_head, save_head

WEIGHTS_FILE, CONFIG_FILE = "layout_check.safetensors", "layout_check.json"
FLAGS = 2  # per row: this step's region, the step's end (`</img>`)


def region_rows(hidden: Sequence[torch.Tensor], ids: list[int], img: int, img_end: int) -> torch.Tensor | None:
    """(R, d + FLAGS) rows of what the planner computed at the regions of a trajectory so far: the
    hidden state after each region's last word (its size) in every `<img> ... </img>` of `ids`,
    flagged when it is one of the last step's, and the state after the last `</img>`, flagged as
    the end. `hidden[k]` (d,) is the state after token k of `ids` (only the rows' states are
    read). None without regions in the last step."""
    opens = [k for k, x in enumerate(ids) if x == img]
    rows, flags = [], []
    for start in opens:
        stop = next((k for k in range(start, len(ids)) if ids[k] == img_end), None)
        last = start == opens[-1]
        if stop is None or (last and stop == start + 1):
            return None
        for k in range(start + 3, stop, 3):  # x y s: the state after s has read the region
            rows.append(hidden[k])
            flags.append([1.0 if last else 0.0, 0.0])
        if last:
            rows.append(hidden[stop])
            flags.append([0.0, 1.0])
    if not rows:
        return None
    return torch.cat([torch.stack(rows).float(), torch.tensor(flags, device=rows[0].device)], -1)


@dataclass
class LayoutCheckConfig:
    n_embd: int  # the planner's hidden size
    hidden: int = 64
    n_head: int = 4
    threshold: float = 0.0  # a step whose score reaches it is a plan conflict
    trained_on: dict = field(default_factory=dict)  # how it was trained and where its threshold was chosen


class LayoutCheck(nn.Module):
    """Each row of `region_rows` (normalised) is mapped to `hidden` and mixed with every other
    row by one self-attention layer and an MLP, so that a region is read beside the regions
    drawn before it and beside its own step's; the mean over the last step's rows and the end
    row gives the score (a logit of "wrong")."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, config: LayoutCheckConfig):
        super().__init__()
        self.config = config
        width, h = config.n_embd + FLAGS, config.hidden
        self.register_buffer("shift", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.inp = nn.Linear(width, h)
        self.attn = nn.MultiheadAttention(h, config.n_head, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, 2 * h), nn.ReLU(), nn.Linear(2 * h, h))
        self.out = nn.Linear(h, 1)

    def forward(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores (B,) of rows (B, R, n_embd + FLAGS) padded past `mask` (B, R, True: a real row)."""
        x = self.inp((rows - self.shift) / self.scale)
        x = x + self.attn(x, x, x, key_padding_mask=~mask, need_weights=False)[0]
        x = x + self.mlp(x)
        keep = (mask & (rows[..., -FLAGS:].sum(-1) > 0)).float()[..., None]
        return self.out((x * keep).sum(1) / keep.sum(1).clamp_min(1))[..., 0]

    def score(self, rows: torch.Tensor) -> float:
        """The score of one step's rows (R, n_embd + FLAGS)."""
        with torch.no_grad():
            return float(self(rows[None], torch.ones(1, len(rows), dtype=torch.bool, device=rows.device))[0])

    def save_pretrained(self, directory: Path) -> None:
        """layout_check.safetensors + .json beside the model's checkpoint, written atomically."""
        save_head(self, asdict(self.config), directory, WEIGHTS_FILE, CONFIG_FILE)

    @classmethod
    def from_pretrained(cls, directory: Path) -> "LayoutCheck | None":
        """The head saved in `directory`, or None when it holds none."""
        return load_head(
            directory,
            WEIGHTS_FILE,
            CONFIG_FILE,
            lambda raw: cls(LayoutCheckConfig(**raw)),
            "layout check",
            "scripts/train_layout_check.py",
        )
