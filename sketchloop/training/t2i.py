"""Training of the text-to-image baseline (models/t2i.py): flow matching on the trajectories'
final images given their prompts, with the unified trainer's schedule, EMA and resumable
checkpoints (training/trainer.py). No plans, regions or inspections: what a user would
train instead of the staged model, on the same data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.schema import decode_png
from ..errors import SketchloopError
from ..models.flow import FLOW
from ..models.regions import to_float
from ..models.t2i import TextToImageConfig, TextToImageModel
from ..models.tokenizer import WordTokenizer
from .trainer import TrainConfig, _load_state, _save_state, lr_at, optimizer_step


def load_pairs(
    data_dirs: list[Path], tok: WordTokenizer, max_prompt: int, progress: bool = True
) -> tuple[list[list[int]], np.ndarray]:
    """(prompt token ids, final images (N, H, W, 3) uint8) of the trajectories in `data_dirs`."""
    from ..data.schema import read_dataset

    prompts, images = [], []
    for data_dir in data_dirs:
        table = read_dataset(Path(data_dir))
        rows = [r for r in table.select(["kind", "prompt", "images"]).to_pylist() if r["kind"] == "trajectories"]
        if not rows:
            raise SketchloopError(
                f"{data_dir} holds no trajectories; the text-to-image baseline trains on their "
                f"final images (sketchloop data build --kind trajectories)"
            )
        for row in tqdm(rows, desc=f"read {Path(data_dir).name}", disable=not progress, leave=False):
            prompts.append(tok.encode(row["prompt"])[:max_prompt])
            images.append(decode_png(row["images"][-1]))
    return prompts, np.stack(images)


def _batch(prompts: list[list[int]], pad_id: int, picks: np.ndarray) -> torch.Tensor:
    length = max(len(prompts[i]) for i in picks)
    ids = torch.full((len(picks), length), pad_id, dtype=torch.long)
    for row, i in enumerate(picks):
        ids[row, : len(prompts[i])] = torch.tensor(prompts[i])
    return ids


def train_t2i(
    data: list[Path], out: Path, cfg: TrainConfig, model_config: TextToImageConfig | None = None, progress: bool = True
) -> dict:
    """Train (or resume training of) the text-to-image baseline; returns the final step and loss."""
    state_file = out / "trainer" / "state.json"
    done = json.loads(state_file.read_text())["step"] if state_file.is_file() else 0
    if done >= cfg.steps:
        return {"step": done, "loss": None, "resumed": True}
    torch.manual_seed(cfg.seed)
    tokenizer = WordTokenizer()
    model = TextToImageModel(model_config or TextToImageConfig(vocab_size=len(tokenizer))).train()
    prompts, images = load_pairs(data, tokenizer, model.config.max_prompt, progress)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 0
    if state_file.is_file():
        start, ema = _load_state(out, model, opt)
    bar = tqdm(total=cfg.steps, initial=start, desc="train t2i", disable=not progress)
    loss_value, t0 = float("nan"), time.time()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])  # resumable: a step's batch and noise depend on its index
        torch.manual_seed(int(rng.integers(2**62)))
        picks = rng.integers(len(prompts), size=cfg.batch_size)
        ids = _batch(prompts, tokenizer.pad_id, picks)
        data_x = torch.from_numpy(np.stack([to_float(images[i]) for i in picks]))
        noise = torch.randn_like(data_x)
        t = FLOW.sample_times(len(picks))
        drop = torch.rand(len(picks)) < model.config.cond_dropout
        text, mask = model.encode(ids, tokenizer.pad_id, drop)
        pred = model.velocity(FLOW.add_noise(data_x, noise, t), t, text, mask)
        loss = F.mse_loss(pred, FLOW.velocity_target(data_x, noise))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        optimizer_step(model, opt, loss, ema, step, cfg)
        loss_value = loss.item()
        bar.set_postfix(flow=f"{loss_value:.4f}")
        bar.update(1)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            _save_state(out, model, ema, opt, step + 1, cfg, tokenizer)
    bar.close()
    return {
        "step": cfg.steps,
        "loss": loss_value,
        "seconds": time.time() - t0,
        "examples": len(prompts),
        "parameters": model.num_parameters(),
    }
