"""Build the RGBA cut-out from RGB, the mask and any alpha the input already had.

The cut-out keeps straight (un-premultiplied) colour: RGB is the input's own
colour everywhere, and only alpha changes. rembg's ``remove()`` composites
over transparent black instead, which darkens soft edges.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image


def combine_alpha(mask: np.ndarray, input_alpha: Optional[np.ndarray]) -> np.ndarray:
    """The cut-out's alpha: the mask, times the input's own alpha when it had one."""
    if input_alpha is None:
        return mask
    product = mask.astype(np.uint16) * input_alpha.astype(np.uint16) + 127
    return (product // 255).astype(np.uint8)


def cutout(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """RGB plus an L alpha into a new RGBA image, in C by PIL: one RGBA allocation, no per-channel copies."""
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return out


def over_background(rgb: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int, int]) -> np.ndarray:
    """Composite straight-alpha RGB over a solid RGBA colour ("over" operator); returns H×W×4 uint8."""
    a = alpha.astype(np.float32) / 255.0
    bg_a = colour[3] / 255.0
    out_a = a + bg_a * (1.0 - a)
    safe = np.where(out_a > 0, out_a, 1.0)
    bg = np.asarray(colour[:3], np.float32)
    rgb_out = (rgb.astype(np.float32) * a[..., None] + bg * (bg_a * (1.0 - a))[..., None]) / safe[..., None]
    out = np.empty((*alpha.shape, 4), np.uint8)
    out[..., :3] = np.clip(rgb_out + 0.5, 0, 255)
    out[..., 3] = np.clip(out_a * 255.0 + 0.5, 0, 255)
    out[out_a == 0, :3] = colour[:3]
    return out
