"""GenEval on real photos without mmdet: an open-vocabulary detector (OWLv2, through
transformers) for boxes over GenEval's 80 COCO classes, and CLIP zero-shot over GenEval's
ten colours on each box's crop, as GenEval does on its masked crops.

How this differs from GenEval's own scorer (Mask2Former + CLIP ViT-L/14, open_clip):
- boxes come from OWLv2 queried with "a photo of a {class}"; a detection's confidence is
  OWLv2's sigmoid score, which is not calibrated like Mask2Former's, so the defaults
  (0.3, and 0.9 for counting: GenEval's) are a starting point to set on a validation set;
- OWLv2 repeats an object in neighbouring patches, so boxes of one class overlapping with
  IoU >= 0.5 are merged (GenEval keeps Mask2Former's boxes as they are, NMS 1.0); at most
  16 per class, as GenEval;
- colour is read from the box crop (OWLv2 gives no mask; GenEval greys the background
  out with the instance mask), with GenEval's three templates averaged.
Agreement with GenEval's Mask2Former numbers is unmeasured here (docs/shapesworld.md has the command).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image

from ..errors import SketchloopError, first_line
from ..world.detect import Detection
from ..world.vocab import COLORS

COLOR_TEMPLATES = ("a photo of a {color} {cls}", "a photo of a {color}-colored {cls}", "a photo of a {color} object")
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def coco_classes() -> list[str]:
    """GenEval's 80 class names (benchmarks/geneval_object_names.txt, MIT: GENEVAL_LICENSE.md)."""
    text = (resources.files("sketchloop") / "benchmarks" / "geneval_object_names.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class PhotoDetectorSettings:
    threshold: float = 0.3  # GenEval's THRESHOLD
    counting_threshold: float = 0.9  # GenEval's COUNTING_THRESHOLD
    max_objects: int = 16  # per class, GenEval's MAX_OBJECTS
    merge_iou: float = 0.5  # boxes of one class overlapping this much are one object
    device: str | None = None


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box `a` (4,) with boxes `b` (N, 4)."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def merge_boxes(boxes: np.ndarray, scores: np.ndarray, iou: float, keep: int) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best first, at most `keep`."""
    order = list(np.argsort(-scores))
    kept: list[int] = []
    while order and len(kept) < keep:
        i = order.pop(0)
        kept.append(int(i))
        if order:
            overlap = _iou(boxes[i], boxes[order])
            order = [j for j, o in zip(order, overlap) if o < iou]
    return kept


class OpenVocabDetector:
    """A `world.detect.Detector` for real photos: OWLv2 boxes, CLIP colours."""

    def __init__(
        self,
        detector,
        detector_processor,
        clip,
        clip_processor,
        name: str,
        settings: PhotoDetectorSettings | None = None,
        classes: list[str] | None = None,
    ):
        import torch

        self.settings = settings or PhotoDetectorSettings()
        self.device = self.settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.processor = detector.to(self.device).eval(), detector_processor
        self.clip, self.clip_processor = clip.to(self.device).eval(), clip_processor
        self.name = name
        self.threshold, self.counting_threshold = self.settings.threshold, self.settings.counting_threshold
        self.classes = classes or coco_classes()
        self._colour_text: dict[str, Any] = {}

    @classmethod
    def from_spec(
        cls, spec: str, clip: str = DEFAULT_CLIP, settings: PhotoDetectorSettings | None = None
    ) -> "OpenVocabDetector":
        """`owlv2:MODEL_ID_OR_PATH` (e.g. owlv2:google/owlv2-base-patch16-ensemble) and a CLIP model."""
        kind, _, model_id = spec.partition(":")
        if kind != "owlv2" or not model_id:
            raise SketchloopError(
                f"--detector {spec!r}: use shapes (ShapesWorld) or owlv2:MODEL_ID_OR_PATH "
                f"(e.g. owlv2:google/owlv2-base-patch16-ensemble)"
            )
        try:
            from transformers import (
                CLIPModel,
                CLIPProcessor,
                Owlv2ForObjectDetection,
                Owlv2Processor,
            )
        except ImportError:
            raise SketchloopError(
                "real-photo detection needs transformers: pip install 'sketchloop[diffusers]'"
            ) from None
        loaded: list[Any] = []
        for name, loaders in (
            (model_id, (Owlv2ForObjectDetection, Owlv2Processor)),
            (clip, (CLIPModel, CLIPProcessor)),
        ):
            try:
                loaded += [loaders[0].from_pretrained(name), loaders[1].from_pretrained(name)]
            except Exception as exc:  # noqa: BLE001 - a missing or broken model: one clear line
                line = first_line(exc)
                raise SketchloopError(
                    f"cannot load {name!r} ({line[:160]}); give a model id the hub serves or a "
                    f"local folder saved with save_pretrained"
                ) from None
        detector, detector_processor, clip_model, clip_processor = loaded
        return cls(detector, detector_processor, clip_model, clip_processor, name=spec, settings=settings)

    # -------------------------------------------------------------- boxes
    def _boxes(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes in pixels, scores, class indices) of every patch a threshold could keep."""
        import torch

        queries = [f"a photo of a {c}" for c in self.classes]
        inputs = self.processor(text=[queries], images=image, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        logits = out.logits[0].float().sigmoid()  # patches x queries
        scores, labels = logits.max(-1)
        cx, cy, w, h = out.pred_boxes[0].float().unbind(-1)  # normalised to the padded square input
        side = max(image.size)  # OWLv2 pads to a square at the bottom right
        boxes = torch.stack([(cx - w / 2), (cy - h / 2), (cx + w / 2), (cy + h / 2)], -1) * side
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.size[0])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.size[1])
        keep = scores >= min(self.threshold, self.counting_threshold)  # no score below both is ever used
        return boxes[keep].cpu().numpy(), scores[keep].cpu().numpy(), labels[keep].cpu().numpy()

    # -------------------------------------------------------------- colours
    def _colour_embeddings(self, cls: str):
        import torch

        if cls not in self._colour_text:
            texts = [t.format(color=c, cls=cls) for c in COLORS for t in COLOR_TEMPLATES]
            inputs = self.clip_processor(text=texts, return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                emb = self.clip.get_text_features(**inputs)
            emb = getattr(emb, "pooler_output", emb)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1).view(len(COLORS), len(COLOR_TEMPLATES), -1)
            self._colour_text[cls] = torch.nn.functional.normalize(emb.mean(1), dim=-1)
        return self._colour_text[cls]

    def colour(self, crop: Image.Image, cls: str) -> str:
        """CLIP zero-shot over GenEval's ten colours."""
        import torch

        inputs = self.clip_processor(images=crop, return_tensors="pt").to(self.device)
        with torch.no_grad():
            emb = self.clip.get_image_features(**inputs)
        emb = torch.nn.functional.normalize(getattr(emb, "pooler_output", emb).float(), dim=-1)
        return COLORS[int((emb @ self._colour_embeddings(cls).T).argmax())]

    def detect(self, image: Image.Image) -> list[Detection]:
        image = image.convert("RGB")
        boxes, scores, labels = self._boxes(image)
        found: list[Detection] = []
        for c in np.unique(labels):
            mine = np.flatnonzero(labels == c)
            for k in merge_boxes(boxes[mine], scores[mine], self.settings.merge_iou, self.settings.max_objects):
                x0, y0, x1, y1 = (float(v) for v in boxes[mine][k])
                if x1 - x0 < 1 or y1 - y0 < 1:
                    continue
                box = (x0, y0, x1, y1)
                cls = self.classes[int(c)]
                crop = image.crop((round(x0), round(y0), round(x1), round(y1)))
                found.append(Detection(cls, self.colour(crop, cls), box, float(scores[mine][k])))
        return sorted(found, key=lambda d: -d.confidence)
