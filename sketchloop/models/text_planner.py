"""A small causal transformer that writes plans (nanoGPT-style), and the Planner around it.

The network only maps token ids to logits; `sample` does the decoding; `LMPlanner`
turns prompts and histories into token sequences and back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SketchloopError
from ..loop.roles import PlanStep
from .tokenizer import WordTokenizer


@dataclass
class TextPlannerConfig:
    vocab_size: int = 83
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128


class _Block(nn.Module):
    def __init__(self, cfg: TextPlannerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd))
        self.n_head = cfg.n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class TextPlanner(nn.Module):
    def __init__(self, config: TextPlannerConfig):
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))

    def save_pretrained(self, directory: Path, tokenizer: WordTokenizer) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(asdict(self.config), indent=1))
        tokenizer.save(directory / "tokenizer.json")

    @classmethod
    def from_pretrained(cls, directory: Path) -> tuple["TextPlanner", WordTokenizer]:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise SketchloopError(f"{directory} is not a planner checkpoint (needs config.json and model.safetensors)")
        try:
            config = TextPlannerConfig(**json.loads((directory / "config.json").read_text()))
            model = cls(config)
            model.load_state_dict(load_file(str(directory / "model.safetensors")))
        except Exception as exc:  # corrupt or mismatched files: one clear line
            raise SketchloopError(f"checkpoint {directory} is corrupt or incompatible: {exc}".splitlines()[0]) from None
        return model.eval(), WordTokenizer.load(directory / "tokenizer.json")


@torch.no_grad()
def sample(model: TextPlanner, ids: list[int], max_new: int, stop: set[int], generator: torch.Generator,
           temperature: float = 1.0, allowed: list[int] | None = None) -> list[int]:
    """Sample up to `max_new` tokens after `ids`, stopping after a token in `stop`."""
    out: list[int] = []
    block = model.config.block_size
    for _ in range(max_new):
        context = torch.tensor([(ids + out)[-block:]])
        logits = model(context)[0, -1] / max(temperature, 1e-6)
        if allowed is not None:
            mask = torch.full_like(logits, -math.inf)
            mask[allowed] = 0
            logits = logits + mask
        token = int(torch.multinomial(F.softmax(logits, -1), 1, generator=generator))
        out.append(token)
        if token in stop:
            break
    return out


class LMPlanner:
    """A Planner backed by a TextPlanner: `<prompt> ... </prompt>` then `<ins> ... </ins> <des> ... </des>` steps."""

    def __init__(self, model: TextPlanner, tokenizer: WordTokenizer, seed: int = 0, max_words: int = 24,
                 temperature: float = 1.0):
        self.model, self.tok, self.max_words, self.temperature = model, tokenizer, max_words, temperature
        self.usage = {"text_tokens": 0}
        self.generator = torch.Generator().manual_seed(seed)

    def _context(self, prompt: str, history: list[PlanStep]) -> list[int]:
        text = f"<bos> <prompt> {prompt} </prompt> " + " ".join(
            f"<ins> {h.ins} </ins> <des> {h.des} </des>" for h in history)
        return self.tok.encode(text)

    def plan(self, prompt: str, history: list[PlanStep]) -> PlanStep | None:
        t = self.tok.token_id
        ids = self._context(prompt, history)
        temp = self.temperature
        first = sample(self.model, ids, 1, set(), self.generator, temp, allowed=[t("<ins>"), t("<end>")])
        self.usage["text_tokens"] += 1
        if first[0] == t("<end>"):
            return None
        ins = sample(self.model, ids + first, self.max_words, {t("</ins>")}, self.generator, temp)
        ids = ids + first + ins + ([t("</ins>")] if ins[-1] != t("</ins>") else []) + [t("<des>")]
        des = sample(self.model, ids, self.max_words, {t("</des>")}, self.generator, temp)
        self.usage["text_tokens"] += len(ins) + len(des) + 1
        strip = {t("</ins>"), t("</des>")}
        return PlanStep(self.tok.decode([i for i in ins if i not in strip]),
                        self.tok.decode([i for i in des if i not in strip]))
