"""Degradations like those of a small generative model: blur and pixel noise."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def degrade(
    image: Image.Image, blur: float = 0.0, noise: float = 0.0, rng: np.random.Generator | None = None
) -> Image.Image:
    """Gaussian blur of `blur` px (sigma) then Gaussian noise of std `noise` (0..1 scale)."""
    rng = rng or np.random.default_rng(0)
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if blur > 0:
        arr = ndimage.gaussian_filter(arr, (blur, blur, 0))
    if noise > 0:
        arr = arr + rng.normal(0.0, noise, arr.shape).astype(np.float32)
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))


def random_degrade(
    image: Image.Image, rng: np.random.Generator, max_blur: float = 1.0, max_noise: float = 0.06
) -> Image.Image:
    """Blur and noise drawn uniformly up to the given maxima (the detector benchmark's setting)."""
    return degrade(image, float(rng.uniform(0, max_blur)), float(rng.uniform(0, max_noise)), rng)
