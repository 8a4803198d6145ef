"""The plan check: a verdict head over the planner's own surprise at a plan.

The planner reads the prompt and writes `<ins> ... </ins> <des> ... </des>`; at each word of
a plan it gives every word it could have written a log-probability. A plan that contradicts
the prompt holds a word the planner would not write, but so does a right plan written in an
order the planner did not prefer (the phrase grammar lets it copy the prompt's phrases in
any order). The head learns which surprises count, from the planner's distribution at each
position (`FEATURES`), the word written there, the word before it and the part (`<ins>` or
`<des>`), and its neighbours. It reads no prompt and no scene: the words of the plan itself
and the planner's likelihoods of them. Trained by `scripts/train_plan_check.py` on the model's own plans
(right ones, ones made wrong, right ones reworded as the wrong ones are) from random scenes;
its threshold, and the image check's beside it, are chosen together on a validation set and
stored with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .head_files import load_head, save_head

FEATURES = ("bias", "gap", "category_gap", "entropy")
WEIGHTS_FILE, CONFIG_FILE = "plan_check.safetensors", "plan_check.json"


@dataclass
class PlanCheckConfig:
    vocab_size: int
    threshold: float = 0.0  # a plan whose score reaches it is a plan conflict
    image_threshold: float | None = None  # the image check's, chosen with `threshold` (None: its default)
    features: tuple[str, ...] = FEATURES
    n_embd: int = 16  # the written word, the word before it and the part, each
    hidden: int = 32
    kernel: int = 5  # positions a position's score sees on each side: kernel // 2
    trained_on: dict = field(default_factory=dict)  # how it was trained and where its threshold was chosen


class PlanCheck(nn.Module):
    """Each position of a plan: the written word, the word before it, the part and the planner's
    FEATURES there, mixed with its neighbours' by one convolution, give a score; the plan's
    score is a soft maximum (log-sum-exp) of its positions' scores."""

    def __init__(self, config: PlanCheckConfig):
        super().__init__()
        self.config = config
        d, h = config.n_embd, config.hidden
        self.word, self.previous, self.part = (
            nn.Embedding(config.vocab_size, d),
            nn.Embedding(config.vocab_size, d),
            nn.Embedding(2, d),
        )
        self.inp = nn.Linear(3 * d + len(config.features), h)
        self.mix = nn.Conv1d(h, h, config.kernel, padding=config.kernel // 2)
        self.out = nn.Linear(2 * h, 1)

    def position_scores(
        self,
        words: torch.Tensor,
        previous: torch.Tensor,
        parts: torch.Tensor,
        features: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Each position's score (B, L): words, previous, parts, mask (B, L); features (B, L, F)."""
        x = torch.cat([self.word(words), self.previous(previous), self.part(parts), features], -1)
        a = torch.relu(self.inp(x)) * mask[..., None]
        mixed = self.mix(a.transpose(1, 2)).transpose(1, 2)
        return self.out(torch.relu(torch.cat([a, mixed], -1)))[..., 0].masked_fill(~mask, float("-inf"))

    def forward(
        self,
        words: torch.Tensor,
        previous: torch.Tensor,
        parts: torch.Tensor,
        features: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Each plan's score (B,); `mask` (B, L) marks real positions."""
        return torch.logsumexp(self.position_scores(words, previous, parts, features, mask), -1)

    def save_pretrained(self, directory: Path) -> None:
        """plan_check.safetensors + .json beside the model's checkpoint, written atomically."""
        save_head(self, asdict(self.config), directory, WEIGHTS_FILE, CONFIG_FILE)

    @classmethod
    def from_pretrained(cls, directory: Path) -> "PlanCheck | None":
        """The head saved in `directory`, or None when it holds none."""
        return load_head(
            directory,
            WEIGHTS_FILE,
            CONFIG_FILE,
            lambda raw: cls(PlanCheckConfig(**{**raw, "features": tuple(raw["features"])})),
            "plan check",
            "scripts/train_plan_check.py",
        )
