"""The trainer of the unified model: loss = lambda * text cross-entropy + flow-matching
velocity MSE (the paper's), stages plan-sketch / inspect / refine / joint / image, AdamW with
warmup + cosine decay, EMA weights, resumable checkpoints, and the same code under
`torchrun --nproc_per_node N` (gloo on CPU, nccl on GPU).

Output folder = a checkpoint (the EMA weights, config.json, tokenizer.json), loadable with
`UnifiedModel.from_pretrained`, plus `trainer/` (raw weights, optimizer state, step) to
resume from. Everything is safetensors or JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import SketchloopError
from ..format import OBJECT_ENDS, STEP_STARTS
from ..models.flow import FLOW
from ..models.tokenizer import WordTokenizer
from ..models.unified import UnifiedConfig, UnifiedModel, prompt_memory
from .sequences import PLAN_VIEWS, REGION_ORDERS, collate, load_examples

# The rows each stage trains on (data pipelines 1, 2 and 3, text-only plans, the facts corpus and the
# on-policy region corrections; joint = all of them). The image stage
# trains the image expert alone (IMAGE_EXPERT) on the trajectories' crops; every text weight
# stays as it was, so plans, inspections and the plan check read the same likelihoods. The regions
# stage trains the region map alone (REGION_MAP, models/unified.py `_RegionMap`) on the region
# words of trajectories; every other weight stays as it was.
STAGES: dict[str, set[str]] = {
    "plan-sketch": {"trajectories", "plans", "facts", "corrections"},
    "inspect": {"inspect"},
    "refine": {"refine"},
    "joint": {"trajectories", "plans", "inspect", "refine", "facts", "corrections"},
    "image": {"trajectories"},
    "regions": {"trajectories", "plans", "corrections"},
}
IMAGE_EXPERT = ("reader.", "flow.", "null_cond")  # parameter names of the image expert
REGION_MAP = ("region_map.",)  # parameter names of the region map


@dataclass
class TrainConfig:
    stage: str = "plan-sketch"
    steps: int = 2000
    batch_size: int = 24
    single_per_step: int = 2  # whole-canvas (single-mode) flow examples per step, when trajectories are in
    max_flows: int = 32  # crop flow examples per step (sampled from the batch's regions)
    text_weight: float = 1.0  # lambda
    lr: float = 2e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    save_every: int = 500
    seed: int = 0
    # share of a step's crops drawn among the hard ones, as far as the data holds them: a region
    # drawn over paint already there (the front object of a pair in depth) or an object with a
    # counted number of parts (sequences.FlowItem.hard)
    hard_crops: float = 0.0
    # the regions of a teacher's add step in the order drawn, or in reading order ("raster"): a
    # canonical order, so that a counted group's next region follows from the last one
    region_order: str = "drawn"
    # each trajectory's plans also one by one, each read after the canvas it is drawn on ("canvas"),
    # or the same examples without it ("blind"); sequences.plan_view_examples
    plan_views: str = "off"

    def __post_init__(self) -> None:
        if self.plan_views not in PLAN_VIEWS:
            raise SketchloopError(f"--plan-views {self.plan_views!r}: choose one of {', '.join(PLAN_VIEWS)}")
        if self.plan_views != "off" and self.stage not in ("plan-sketch", "joint"):
            raise SketchloopError(f"--plan-views teaches plans: give --stage plan-sketch or joint, not {self.stage}")
        if self.region_order not in REGION_ORDERS:
            raise SketchloopError(f"--region-order {self.region_order!r}: choose one of {', '.join(REGION_ORDERS)}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_state(
    out: Path,
    model: torch.nn.Module,
    ema: dict,
    opt: torch.optim.Optimizer,
    step: int,
    cfg: TrainConfig,
    tokenizer: WordTokenizer,
) -> None:
    """The EMA weights as a checkpoint in `out` (any model with a config and save_pretrained),
    and the raw weights, optimizer state and step in `out/trainer` to resume from."""
    from safetensors.torch import save_file

    trainer_dir = out / "trainer"
    trainer_dir.mkdir(parents=True, exist_ok=True)
    ema_model: Any = type(model)(model.config)
    ema_model.load_state_dict(ema)
    ema_model.save_pretrained(out, tokenizer)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(trainer_dir / "raw.safetensors.tmp"))
    opt_state = opt.state_dict()
    tensors = {f"{i}.{k}": v for i, s in opt_state["state"].items() for k, v in s.items()}
    save_file(tensors, str(trainer_dir / "optim.safetensors.tmp"))
    (trainer_dir / "state.json.tmp").write_text(
        json.dumps({"step": step, "train": asdict(cfg), "param_groups": opt_state["param_groups"]})
    )
    for name in ("raw.safetensors", "optim.safetensors", "state.json"):  # state.json last: it marks completeness
        os.replace(trainer_dir / f"{name}.tmp", trainer_dir / name)


def _load_state(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, dict]:
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


def optimizer_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, ema: dict, step: int, cfg: TrainConfig
) -> None:
    """Backward, clip the gradient norm to 1, step, and move the EMA weights (decay warming up)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        frozen = {k for k, p in model.named_parameters() if not p.requires_grad}  # kept bit for bit
        for k, v in model.state_dict().items():
            if k in frozen:
                continue
            if v.is_floating_point():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                ema[k].copy_(v)


class _Loss(torch.nn.Module):
    """The training objective as a module, so that DistributedDataParallel syncs it."""

    def __init__(
        self,
        model: UnifiedModel,
        canvas_id: int,
        text_weight: float,
        step_starts: list[int],
        object_ends: list[int],
        prompt_tags: tuple[int, int],
        image_only: bool = False,
        regions_only: bool = False,
        region_open: int = -1,
    ):
        super().__init__()
        self.model, self.canvas_id, self.text_weight = model, canvas_id, text_weight
        self.prompt_tags, self.image_only, self.regions_only = prompt_tags, image_only, regions_only
        self.region_open = region_open
        self.step_starts, self.object_ends = torch.tensor(step_starts), torch.tensor(object_ends)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        ids = batch["ids"]
        if self.image_only:  # the text weights are frozen: their states are only read
            with torch.no_grad():
                hidden = self.model.hidden(ids, batch.get("canvases"), ids == self.canvas_id)
            loss, parts = torch.zeros((), device=ids.device), {}
        elif self.regions_only:  # only the region map learns: the CE of the region words it scores
            with torch.no_grad():
                hidden = self.model.hidden(ids, batch.get("canvases"), ids == self.canvas_id)
                logits = self.model.logits(hidden, prompt_memory(hidden, ids, *self.prompt_tags))
            logits = logits + self.model.region_bias(hidden, ids, self.region_open)
            targets = batch["targets"]
            region_words = self.model.region_axis[targets.clamp(min=0)] >= 0
            targets = torch.where(region_words & (targets >= 0), targets, torch.full_like(targets, -100))
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
            loss, parts = ce, {"ce": ce.item()}  # its batches hold no flow examples (train: `draws`)
        else:
            hidden = self.model.hidden(ids, batch.get("canvases"), ids == self.canvas_id)
            logits = self.model.logits(hidden, prompt_memory(hidden, ids, *self.prompt_tags))
            logits = logits + self.model.region_bias(hidden, ids, self.region_open)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), ignore_index=-100)
            loss, parts = self.text_weight * ce, {"ce": ce.item()}
        drop = self.model.config.cond_dropout
        for name in ("crop", "full"):
            if name not in batch:
                continue
            fb = batch[name]
            target = fb["target"]
            cond = self.model.condition(
                hidden, ids, fb["row"], fb["pos"], self.step_starts, self.object_ends, fb.get("phrases")
            )
            keep = (torch.rand(len(cond), 1, device=cond.device) >= drop).to(cond.dtype)
            cond = keep * cond + (1 - keep) * self.model.null_cond
            noise = torch.randn_like(target)
            t = FLOW.sample_times(len(target), target.device)
            x_t = FLOW.add_noise(target, noise, t)
            mse = F.mse_loss(
                self.model.velocity(x_t, t, fb["context"], fb["coords"], cond), FLOW.velocity_target(target, noise)
            )
            loss, parts[name] = loss + mse, mse.item()
        # Parameters a stage does not use still take part, so that every rank reduces the same set.
        loss = loss + 0.0 * sum(p.sum() for p in self.model.parameters() if p.requires_grad)
        return loss, parts


def _pick(by_length: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` examples of similar length (a random window of the length order), so that
    padding stays short (the shortest and longest few are picked somewhat less often)."""
    window = min(len(by_length), 8 * size)
    if window < size:
        return by_length[rng.integers(len(by_length), size=size)]
    start = int(rng.integers(0, len(by_length) - window + 1))
    return by_length[start + rng.choice(window, size=size, replace=False)]


def _to(batch: dict, device: torch.device) -> dict:
    return {k: (_to(v, device) if isinstance(v, dict) else v.to(device)) for k, v in batch.items()}


def train(
    data: list[Path],
    out: Path,
    cfg: TrainConfig,
    init: Path | None = None,
    model_config: UnifiedConfig | None = None,
    progress: bool = True,
    copy_prompt: bool = False,
    region_coords: bool = False,
    n_layer: int | None = None,
    region_map: bool = False,
) -> dict:
    """Train (or resume training of) the unified model; returns the final step and losses.
    `copy_prompt`: the model has the pointer over the prompt (models/unified.py `_Pointer`),
    added to an `init` checkpoint without one (its other weights kept); `region_coords`: region words are
    also read and scored through their lattice value (`UnifiedModel.embed`), added the same way; `n_layer`:
    an `init` checkpoint grown to that many transformer blocks (`UnifiedModel.grown`); `region_map`: the
    spatial head over region words (models/unified.py `_RegionMap`), added the same way."""
    if cfg.stage not in STAGES:
        raise SketchloopError(f"--stage {cfg.stage!r}: choose one of {', '.join(STAGES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.seed)
    state_file = out / "trainer" / "state.json"
    done = json.loads(state_file.read_text())["step"] if state_file.is_file() else 0
    if done >= cfg.steps:  # finished before: return before loading any data
        return {"step": done, "loss": None, "resumed": True}
    if init is not None:
        model, tokenizer = UnifiedModel.from_pretrained(init)
        # words added to the language since (world/knowledge.py), and the pointer if asked for
        model, tokenizer = model.grown(
            tokenizer, copy_prompt=copy_prompt, region_coords=region_coords, n_layer=n_layer, region_map=region_map
        )
    else:
        tokenizer = WordTokenizer()
        config = model_config or UnifiedConfig(vocab_size=len(tokenizer))
        model = UnifiedModel(replace(config, n_layer=n_layer) if n_layer else config)
        model.index_region_words(tokenizer.vocab)
        model, tokenizer = model.grown(
            tokenizer, copy_prompt=copy_prompt, region_coords=region_coords, region_map=region_map
        )
    if cfg.plan_views == "canvas":
        model.config = replace(model.config, plan_view=True)  # its loop then shows the planner the canvas
    model.train().to(device)
    if cfg.stage == "regions" and model.region_map is None:
        raise SketchloopError(
            "--stage regions trains the region map: add --region-map (or --init a checkpoint with one)"
        )
    if cfg.stage in ("image", "regions"):
        trained = IMAGE_EXPERT if cfg.stage == "image" else REGION_MAP
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(trained))
    examples, singles = load_examples(
        [Path(d) for d in data],
        STAGES[cfg.stage],
        tokenizer,
        model.config.block_size,
        model.config.canvas_tokens,
        progress=progress and rank == 0,
        region_order=cfg.region_order,
        plan_views=cfg.plan_views,
    )
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98)
    )
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 0
    if state_file.is_file():
        start, ema = _load_state(out, model, opt)
    by_length = np.argsort([len(e.ids) for e in examples], kind="stable")
    with_hard = np.array(  # read from the pixels: only when asked for
        [i for i, e in enumerate(examples) if cfg.hard_crops and any(f.hard for f in e.flows)], dtype=int
    )
    n_hard = int(round(cfg.batch_size * cfg.hard_crops)) if len(with_hard) else 0
    objective = _Loss(
        model,
        tokenizer.token_id("<canvas>"),
        cfg.text_weight,
        [tokenizer.token_id(t) for t in STEP_STARTS],
        [tokenizer.token_id(t) for t in OBJECT_ENDS],
        (tokenizer.token_id("<prompt>"), tokenizer.token_id("</prompt>")),
        image_only=cfg.stage == "image",
        regions_only=cfg.stage == "regions",
        region_open=tokenizer.token_id("<img>"),
    )
    wrapped = torch.nn.parallel.DistributedDataParallel(objective) if world > 1 else objective
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.stage}", disable=not progress or rank != 0)
    loss_value, parts, t0 = float("nan"), {}, time.time()
    draws = cfg.stage != "regions"  # the regions stage learns no pixels
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, rank, step])  # resumable and different per rank
        torch.manual_seed(int(rng.integers(2**62)))  # flow noise, times and condition dropout too
        picks = [examples[i] for i in _pick(by_length, cfg.batch_size - n_hard, rng)]
        picks += [examples[i] for i in rng.choice(with_hard, size=n_hard)] if n_hard else []
        if singles and cfg.single_per_step and draws:
            picks += [singles[i] for i in rng.integers(len(singles), size=cfg.single_per_step)]
        batch = _to(collate(picks, tokenizer.pad_id, cfg.max_flows if draws else 0, rng, cfg.hard_crops), device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, parts = wrapped(batch)
        optimizer_step(model, opt, loss, ema, step, cfg)
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
        bar.update(1)
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            _save_state(out, model, {k: v.cpu() for k, v in ema.items()}, opt, step + 1, cfg, tokenizer)
    bar.close()
    if world > 1:
        dist.barrier()
    return {
        "step": cfg.steps,
        "loss": loss_value,
        **parts,
        "seconds": time.time() - t0,
        "world_size": world,
        "examples": len(examples),
        "single_examples": len(singles),
        "hard_examples": len(with_hard),
    }
