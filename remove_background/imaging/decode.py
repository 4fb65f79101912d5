"""Turn any PIL image InvokeAI can hand us into 8-bit RGB plus an optional alpha channel.

Never modifies the caller's image. EXIF orientation is applied, so the mask
lines up with the image as it is displayed.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageOps

from ..errors import InvalidImageError

_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}
ORIENTATION = 0x0112


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    """Map a high-bit-depth or float greyscale array to 0..255."""
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0 and a.dtype.kind == "f":
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = a / 257.0
    else:
        scaled = (a - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def oriented(image: Image.Image) -> Image.Image:
    """The image as displayed: EXIF orientation applied. Returns ``image`` itself when no rotation is needed."""
    try:
        if image.getexif().get(ORIENTATION, 1) in (0, 1):
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not stop background removal
        return image


def to_rgb_alpha(image: Image.Image) -> tuple[Image.Image, Optional[np.ndarray]]:
    """Return (an 8-bit RGB PIL image, H×W uint8 alpha or None) for ``image`` in any PIL mode.

    An RGB input without rotation is returned as is (no copy): callers only read it.
    """
    if not isinstance(image, Image.Image):
        raise InvalidImageError(f"Expected a PIL image, got {type(image).__name__}.")
    if image.width < 1 or image.height < 1:
        raise InvalidImageError(f"The image is empty ({image.width}×{image.height}).")
    image = oriented(image)
    mode = image.mode
    try:
        image.load()  # decode a lazily opened file once, here, before other threads read it
        if mode.startswith("I;16") or mode in ("I", "F"):
            grey = _scale_to_uint8(np.asarray(image))
            return Image.fromarray(grey, "L").convert("RGB"), None
        if mode == "P":
            mode = "RGBA" if "transparency" in image.info else "RGB"
            image = image.convert(mode)
        if mode in _ALPHA_MODES:
            rgba = image.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"))
            if alpha.min() == 255:
                alpha = None
            return rgba.convert("RGB"), alpha
        if mode == "RGB":
            return image, None
        return image.convert("RGB"), None
    except (ValueError, OSError) as e:
        raise InvalidImageError(f"Cannot read the image (PIL mode {mode!r}): {e}") from None


def is_flat(image: Image.Image) -> bool:
    """True when every pixel has the same colour."""
    return all(lo == hi for lo, hi in image.getextrema())
