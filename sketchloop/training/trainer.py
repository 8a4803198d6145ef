"""The trainer: AdamW with warmup + cosine decay, EMA weights, resumable checkpoints, and
the same code under `torchrun --nproc_per_node N` (gloo on CPU, nccl on GPU).

Output folder = a checkpoint (the EMA weights, config.json, tokenizer.json), loadable with
`from_pretrained`, plus `trainer/` (raw weights, optimizer state, step) to resume from.
Everything is safetensors or JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import SketchloopError
from ..models.text_planner import TextPlanner, TextPlannerConfig
from ..models.tokenizer import WordTokenizer
from .sequences import batch, load_plan_sequences

STAGES = ("plan",)


@dataclass
class TrainConfig:
    stage: str = "plan"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    save_every: int = 500
    seed: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_state(out: Path, model: TextPlanner, ema: dict, opt: torch.optim.Optimizer, step: int,
                cfg: TrainConfig, tokenizer: WordTokenizer) -> None:
    from safetensors.torch import save_file

    trainer_dir = out / "trainer"
    trainer_dir.mkdir(parents=True, exist_ok=True)
    ema_model = TextPlanner(model.config)
    ema_model.load_state_dict(ema)
    ema_model.save_pretrained(out, tokenizer)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(trainer_dir / "raw.safetensors.tmp"))
    opt_state = opt.state_dict()
    tensors = {f"{i}.{k}": v for i, s in opt_state["state"].items() for k, v in s.items()}
    save_file(tensors, str(trainer_dir / "optim.safetensors.tmp"))
    (trainer_dir / "state.json.tmp").write_text(json.dumps(
        {"step": step, "train": asdict(cfg), "param_groups": opt_state["param_groups"]}))
    for name in ("raw.safetensors", "optim.safetensors", "state.json"):  # state.json last: it marks completeness
        os.replace(trainer_dir / f"{name}.tmp", trainer_dir / name)


def _load_state(out: Path, model: TextPlanner, opt: torch.optim.Optimizer) -> tuple[int, dict]:
    from safetensors.torch import load_file

    trainer_dir = out / "trainer"
    state = json.loads((trainer_dir / "state.json").read_text())
    model.load_state_dict(load_file(str(trainer_dir / "raw.safetensors")))
    ema = {k: v.clone() for k, v in load_file(str(out / "model.safetensors")).items()}
    flat = load_file(str(trainer_dir / "optim.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in flat.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return int(state["step"]), ema


def train(data: Path, out: Path, cfg: TrainConfig, init: Path | None = None,
          model_config: TextPlannerConfig | None = None, progress: bool = True) -> dict:
    """Train (or resume training of) the planner; returns the final step and loss."""
    if cfg.stage not in STAGES:
        raise SketchloopError(f"--stage {cfg.stage!r}: available: {', '.join(STAGES)} (the unified model's "
                              f"plan-sketch/inspect/refine/joint stages are not built yet)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.seed)
    if init is not None:
        model, tokenizer = TextPlanner.from_pretrained(init)
    else:
        tokenizer = WordTokenizer()
        model = TextPlanner(model_config or TextPlannerConfig(vocab_size=len(tokenizer)))
    model.train().to(device)
    sequences = load_plan_sequences(data, tokenizer, model.config.block_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 0
    if (out / "trainer" / "state.json").is_file():
        start, ema = _load_state(out, model, opt)
        if start >= cfg.steps:
            return {"step": start, "loss": None, "resumed": True}
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.stage}", disable=not progress or rank != 0)
    loss_value, t0 = float("nan"), time.time()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, rank, step])  # resumable and different per rank
        picks = [sequences[i] for i in rng.integers(len(sequences), size=cfg.batch_size)]
        x, y = (t.to(device) for t in batch(picks, tokenizer.pad_id))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        logits = wrapped(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    ema[k].copy_(v)
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr_at(step, cfg):.1e}")
        bar.update(1)
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            _save_state(out, model, {k: v.cpu() for k, v in ema.items()}, opt, step + 1, cfg, tokenizer)
    bar.close()
    if world > 1:
        dist.barrier()
    return {"step": cfg.steps, "loss": loss_value, "seconds": time.time() - t0, "world_size": world}
