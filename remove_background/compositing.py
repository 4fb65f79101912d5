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
    """RGB plus an L alpha into a new RGBA image (done in C by PIL: no full-size numpy copies)."""
    return Image.merge("RGBA", (*rgb.split(), alpha))
