"""The text-to-image baseline (models/t2i.py) as a generator: the whole canvas in one flow."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from ..errors import SketchloopError
from ..world.render import DEFAULT_SIZE
from .base import Generated, device_type, made_by


class TextToImageGenerator:
    """The text-to-image baseline (models/t2i.py): the whole canvas in one flow from the prompt."""

    name = "t2i"

    def __init__(
        self,
        checkpoint: Path | None = None,
        size: int = DEFAULT_SIZE,
        flow_steps: int = 16,
        guidance: float = 1.0,
        device: str | None = None,
    ):
        from ..models.t2i import TextToImageModel
        from ..models.unified import checkpoint_sha256

        if checkpoint is None:
            raise SketchloopError(
                "--generator t2i needs --checkpoint: a folder from 'sketchloop train --stage t2i' "
                "(the text-to-image baseline is not shipped; scripts/paper_table.py trains it)"
            )
        self.model, self.tok = TextToImageModel.from_pretrained(checkpoint)
        if self.model.config.canvas_px != size:
            raise SketchloopError(f"--size {size}: the text-to-image checkpoint draws {self.model.config.canvas_px} px")
        self.flow_steps, self.guidance, self.size = flow_steps, guidance, size
        self.record = made_by(
            self.name,
            size=size,
            checkpoint=str(checkpoint),
            checkpoint_sha256=checkpoint_sha256(checkpoint),
            flow_steps=flow_steps,
            guidance=guidance,
            device=device_type(device),
        )

    def generate(self, prompt: str, seed: int) -> Generated:
        import torch

        from ..models.regions import to_uint8

        start = time.perf_counter()
        ids = torch.tensor([self.tok.encode(prompt)])
        x = self.model.sample(ids, self.tok.pad_id, self.flow_steps, torch.Generator().manual_seed(seed), self.guidance)
        image = Image.fromarray(to_uint8(x[0]))
        return Generated(
            image,
            {
                "flow_steps": self.flow_steps,
                "text_tokens": 0,
                "images": 1,
                "seconds": round(time.perf_counter() - start, 4),
                "ended": True,
            },
        )
