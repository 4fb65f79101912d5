"""The resizes around the model, on the host: the image down to the model's input, the mask back up, done fast.

rembg resizes with LANCZOS in both directions and composites in PIL, which is
about 1.7× the raw model time on a 4096² image. Here the downscale is an integer
box reduction followed by LANCZOS on the small image (both on two threads), and the
mask upscale is a vectorised bilinear resize into a reused buffer; the result stays
within a fraction of a grey level of rembg's mask (tested against rembg itself).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .buffers import BUFFERS
from .halves import on_two_halves

REDUCING_GAP = 3.0  # 2.0 is faster, but its box pre-filter put some sizes just under 99.9 % agreement with rembg
LANCZOS = Image.Resampling.LANCZOS


def _pil_version() -> tuple[int, int]:
    import PIL

    major, minor = (PIL.__version__.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


PIL_VERSION = _pil_version()


def pil_vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether the installed Pillow's resize of an in_w×in_h image to out_w×out_h runs its vertical pass before its
    horizontal one. Each pass rounds to 8 bits and clips, so the order changes the result by a level here and there.
    Pillow 13 goes vertical first when the height loses more than twice as many pixels as the width (Resample.c,
    ImagingResampleInner); 12.2 and 12.3 (Image.resize) when an image over 100 times taller than wide shrinks in
    height; older ones never."""
    if PIL_VERSION >= (13, 0):
        return in_h - out_h > 0 and in_h - out_h > 2 * (in_w - out_w)
    if PIL_VERSION >= (12, 2):
        return in_h > in_w * 100 and out_h < in_h
    return False


def _downscale_vertical_first(image: Image.Image, side: int) -> np.ndarray:
    """PIL's LANCZOS resize to side×side for an image it resizes vertical pass first (see pil_vertical_first):
    the vertical pass, then the horizontal one, each on two threads, one half of its output rows each."""
    w, h = image.size
    image.load()  # decode a lazily opened file once, before two threads read it

    def tall_rows(top: int, bottom: int) -> np.ndarray:  # rows of the intermediate: side rows at the input's width
        box = (0, h * (top / side), w, h * (bottom / side))  # vertical pass only
        return np.asarray(image.resize((w, bottom - top), LANCZOS, box=box))

    tall = Image.fromarray(np.concatenate(on_two_halves(tall_rows, side)))

    def output_rows(top: int, bottom: int) -> np.ndarray:  # horizontal pass only
        return np.asarray(tall.crop((0, top, w, bottom)).resize((side, bottom - top), LANCZOS))

    return np.concatenate(on_two_halves(output_rows, side))


def downscale(image: Image.Image, side: int) -> np.ndarray:
    """Resize to side×side (H×W×3 uint8) like PIL's LANCZOS with a reducing gap: an integer box reduction (when
    the image is over 2 × REDUCING_GAP × side), then LANCZOS, its horizontal pass first, as PIL does for most
    shapes; without a reduction, in PIL's own order (pil_vertical_first: Pillow 13 resizes a portrait image
    vertically first), so that the result is PIL's resize, bit for bit. Each step runs on two threads, one half of
    its output each; the halves together equal the one-piece computation exactly (tested)."""
    w, h = image.size
    factor = max(1, int(min(w / side, h / side) / REDUCING_GAP))
    if factor == 1 and pil_vertical_first(w, h, side, side):
        return _downscale_vertical_first(image, side)
    extent_w, extent_h = w / factor, h / factor  # a partial last block covers less than one reduced pixel

    def reduce_rows(top: int, bottom: int) -> np.ndarray:  # rows of the input, top a multiple of factor
        rows = (0, top, w, bottom)
        reduced = image.reduce(factor, rows) if factor > 1 else image.crop(rows)
        box = (0, 0, extent_w, reduced.height)  # horizontal pass only
        return np.asarray(reduced.resize((side, reduced.height), Image.Resampling.LANCZOS, box=box))

    narrow = Image.fromarray(np.concatenate(on_two_halves(reduce_rows, h, step=factor)))

    def output_rows(top: int, bottom: int) -> np.ndarray:  # rows of the result
        box = (0, extent_h * (top / side), side, extent_h * (bottom / side))  # vertical pass only
        return np.asarray(narrow.resize((side, bottom - top), Image.Resampling.LANCZOS, box=box))

    return np.concatenate(on_two_halves(output_rows, side))


def upscale_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a uint8 mask to (height, width) with a vectorised bilinear filter."""
    if mask.shape == (height, width):
        return mask
    import cv2

    src_h, src_w = mask.shape
    if width < src_w or height < src_h:  # shrinking (tiny inputs): area average, like a box filter
        return np.asarray(Image.fromarray(mask, "L").resize((width, height), Image.Resampling.LANCZOS))
    return cv2.resize(mask, (width, height), dst=BUFFERS.empty((height, width)), interpolation=cv2.INTER_LINEAR)
