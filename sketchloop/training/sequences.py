"""Text sequences for the planner from trajectory datasets.

One sequence per trajectory:
    <bos> <prompt> PROMPT </prompt> <ins> INS </ins> <des> DES </des> ... <end> <eos>
The loss covers every token after </prompt>: what the planner writes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.store import read_dataset
from ..errors import SketchloopError
from ..models.tokenizer import WordTokenizer


def plan_text(prompt: str, steps: list[dict]) -> tuple[str, str]:
    """(context, target) texts of a trajectory example."""
    context = f"<bos> <prompt> {prompt} </prompt>"
    parts = []
    for step in steps:
        if step["type"] == "ins":
            parts.append(f"<ins> {step['text']} </ins>")
        elif step["type"] == "des":
            parts.append(f"<des> {step['text']} </des>")
        elif step["type"] == "end":
            parts.append("<end>")
    return context, " ".join(parts) + " <eos>"


def load_plan_sequences(data_dir: Path, tokenizer: WordTokenizer, block_size: int) -> list[tuple[list[int], int]]:
    """(token ids, index of the first target token) for every trajectory that fits `block_size`."""
    table = read_dataset(data_dir)
    kinds = set(table.column("kind").to_pylist())
    if kinds != {"trajectories"}:
        raise SketchloopError(f"{data_dir} holds {', '.join(sorted(kinds))} examples; the planner trains on "
                              f"trajectories (sketchloop data build --kind trajectories)")
    out = []
    for prompt, steps in zip(table.column("prompt").to_pylist(), table.column("steps").to_pylist()):
        context, target = plan_text(prompt, steps)
        c, t = tokenizer.encode(context), tokenizer.encode(target)
        if len(c) + len(t) <= block_size:
            out.append((c + t, len(c)))
    if not out:
        raise SketchloopError(f"no trajectory in {data_dir} fits the model's {block_size} tokens")
    return out


def batch(seqs: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets (-100 where there is no loss: the prompt and padding)."""
    length = max(len(s) for s, _ in seqs) - 1
    x = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), length), -100, dtype=torch.long)
    for i, (ids, start) in enumerate(seqs):
        ids_t = torch.tensor(ids)
        x[i, : len(ids) - 1] = ids_t[:-1]
        y[i, start - 1: len(ids) - 1] = ids_t[start:]
    return x, y
