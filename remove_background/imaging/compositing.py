"""Build the RGBA cut-out from RGB, the mask and any alpha the input already had.

The cut-out keeps straight (un-premultiplied) colour: RGB is the input's own colour wherever alpha > 0, and only
alpha changes there (rembg's ``remove()`` composites over transparent black instead, which darkens soft edges).
Wherever alpha is 0, RGB is 0: a transparent pixel never carries the background the user removed (drop the alpha
channel and it would all come back), and the PNG is smaller for it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from .buffers import BUFFERS
from .halves import on_two_halves


def combine_alpha(mask: np.ndarray, input_alpha: Optional[np.ndarray]) -> np.ndarray:
    """The cut-out's alpha: the mask, times the input's own alpha when it had one."""
    if input_alpha is None:
        return mask
    product = mask.astype(np.uint16) * input_alpha.astype(np.uint16) + 127
    return (product // 255).astype(np.uint8)


def _copy_rows(band: Image.Image, rgb: Image.Image, top: int) -> None:
    """Copy ``rgb``'s rows from ``top`` on into the RGBA ``band`` with PIL's internal paste, clipped to the band:
    RGB and RGBA are both four bytes a pixel, so each row is one copy."""
    band.im.paste(rgb.im, (0, -top, rgb.width, rgb.height - top))


def cutout(rgb: Image.Image, alpha: np.ndarray) -> Image.Image:
    """RGB plus an H×W uint8 alpha into a new RGBA image (``rgb`` is only read).

    The pixels live in a NumPy array from the buffer pool, PIL's RGB (four bytes a pixel, like RGBA) is copied in
    row by row, then alpha written over the fourth byte, on two threads. PIL's ``convert("RGBA")`` + ``putalpha``
    allocates fresh memory and converts pixel by pixel: about 65 ms against 10-16 ms at 4096². Like any
    ``Image.frombuffer`` image, the result is copied if a caller edits it.
    """
    if rgb.mode != "RGB":
        rgb = rgb.convert("RGB")
    width, height = rgb.size
    pixels = BUFFERS.empty((height, width, 4))
    rgb.load()

    def fill(top: int, bottom: int) -> None:
        _copy_rows(Image.frombuffer("RGBA", (width, bottom - top), pixels[top:bottom], "raw", "RGBA", 0, 1), rgb, top)
        pixels[top:bottom, :, 3] = alpha[top:bottom]
        clear_transparent(pixels[top:bottom], alpha[top:bottom])

    try:
        on_two_halves(fill, height)
    except (AttributeError, TypeError, ValueError):  # a PIL without that internal paste: the public, slower way
        pixels[..., :3] = np.asarray(rgb)
        pixels[..., 3] = alpha
        clear_transparent(pixels, alpha)
    return Image.frombuffer("RGBA", (width, height), pixels, "raw", "RGBA", 0, 1)


def clear_transparent(rgba: np.ndarray, alpha: np.ndarray) -> None:
    """Zero every pixel of the H×W×4 uint8 ``rgba`` (in place) where ``alpha`` is 0: one pass over 32-bit words."""
    words = rgba.view(np.uint32).reshape(alpha.shape)
    np.multiply(words, alpha != 0, out=words, casting="unsafe")


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
    clear_transparent(out, out[..., 3])  # a fully transparent colour: nothing of the old background stays
    return out
