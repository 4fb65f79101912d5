"""Model input and output: the same preprocessing and mask maths as rembg, done fast.

rembg resizes with LANCZOS in both directions and composites in PIL, which is
about 1.7× the raw model time on a 4096² image. Here the downscale is an integer
box reduction (on two threads) followed by LANCZOS on the small image, and the mask
upscale is a vectorised bilinear resize; the result stays within a fraction of a grey
level of rembg's mask (tested against rembg itself).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .catalog import ModelInfo

REDUCING_GAP = 2.0
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remove-background-reduce")


def downscale(image: Image.Image, side: int) -> Image.Image:
    """Resize to side×side like PIL's LANCZOS with a reducing gap: an integer box reduction first (its two
    halves on two threads, together identical to one reduction), then LANCZOS on the small image."""
    w, h = image.size
    factor = int(min(w / side, h / side) / REDUCING_GAP)
    if factor < 2:
        return image.resize((side, side), Image.Resampling.LANCZOS)
    middle = (h // factor) // 2 * factor  # a multiple of factor: the halves reduce exactly as the whole would
    top = _POOL.submit(image.reduce, factor, (0, 0, w, middle))
    bottom = image.reduce(factor, (0, middle, w, h))
    top_image = top.result()
    reduced = Image.new("RGB", (top_image.width, top_image.height + bottom.height))
    reduced.paste(top_image, (0, 0))
    reduced.paste(bottom, (0, top_image.height))
    # a partial last block covers less than one reduced pixel: map exactly the original extent, as PIL does
    return reduced.resize((side, side), Image.Resampling.LANCZOS, box=(0, 0, w / factor, h / factor))


def model_input(image: Image.Image, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """Return (the NCHW float32 tensor the model wants, the resized uint8 RGB it came from)."""
    small = np.asarray(downscale(image, info.input_size))
    scale = 1.0 / max(float(small.max()), 1e-6)
    mean = np.asarray(info.mean, dtype=np.float32)
    std = np.asarray(info.std, dtype=np.float32)
    x = (small.astype(np.float32) * np.float32(scale) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), small


def _minmax(pred: np.ndarray) -> np.ndarray:
    lo, hi = float(pred.min()), float(pred.max())
    if hi - lo < 1e-12:  # constant output: rembg divides by zero here
        return np.clip(pred, 0.0, 1.0)
    return (pred - lo) / (hi - lo)


def small_mask(outputs: list, info: ModelInfo) -> np.ndarray:
    """The model-resolution mask (uint8), computed as rembg computes it."""
    pred = np.asarray(outputs[0])[0, 0].astype(np.float32, copy=False)
    if info.output == "sigmoid_minmax":
        pred = 1.0 / (1.0 + np.exp(-pred))
    pred = np.clip(_minmax(pred), 0.0, 1.0)
    return (pred * 255).astype(np.uint8)


CLOTH_CLASSES = {"upper": (1,), "lower": (2,), "full": (3,), "all": (1, 2, 3)}


def cloth_mask(outputs: list, category: str = "all") -> np.ndarray:
    """One uint8 mask for a u2net_cloth_seg category (upper, lower, full or all), at model resolution."""
    if category not in CLOTH_CLASSES:
        raise ValueError(f"Unknown cloth category {category!r}. Choose one of: {', '.join(CLOTH_CLASSES)}.")
    classes = np.argmax(np.asarray(outputs[0])[0], axis=0)
    return np.isin(classes, CLOTH_CLASSES[category]).astype(np.uint8) * 255


def upscale_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a uint8 mask to (height, width) with a vectorised bilinear filter."""
    if mask.shape == (height, width):
        return mask
    import cv2

    src_h, src_w = mask.shape
    if width < src_w or height < src_h:  # shrinking (tiny inputs): area average, like a box filter
        return np.asarray(Image.fromarray(mask, "L").resize((width, height), Image.Resampling.LANCZOS))
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
