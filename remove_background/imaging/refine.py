"""Mask refinement, in one fixed order (.readme/options.md). The edge step (alpha matting or ViTMatte), when
asked for, runs between step 1 and step 2, as in rembg (``MaskOptions.split``).

1. ``post_process``: rembg's morphological clean-up (open 3×3, blur, binarise at 127)
2. ``threshold``: 0 keeps the soft mask; t > 0 makes it binary (255 where mask ≥ t)
3. ``grow``: dilate (> 0) or erode (< 0) by that many pixels, with a round structuring element
4. ``blur``: Gaussian feather with that radius in pixels (sigma = radius / 2)
5. ``invert``

Every step works on uint8 H×W arrays and returns a new array.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class MaskOptions:
    """The refine steps' parameters, taken from ``options.RemovalOptions`` (where defaults and bounds live)."""

    post_process: bool
    threshold: int
    grow: int
    blur: float
    invert: bool

    @property
    def is_identity(self) -> bool:
        return not (self.post_process or self.threshold or self.grow or self.blur or self.invert)

    def split(self) -> tuple["MaskOptions", "MaskOptions"]:
        """(step 1 alone, steps 2-5): rembg post-processes the model's mask before its edge step (alpha matting,
        ViTMatte), and our own steps come after it."""
        return (replace(self, threshold=0, grow=0, blur=0.0, invert=False), replace(self, post_process=False))


def post_process(mask: np.ndarray) -> np.ndarray:
    """rembg's ``post_process_mask``: morphological opening, a small blur, then binary at 127."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    out = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    out = cv2.GaussianBlur(out, (5, 5), sigmaX=2, sigmaY=2, borderType=cv2.BORDER_DEFAULT)
    return np.where(out < 127, 0, 255).astype(np.uint8)


def threshold(mask: np.ndarray, t: int) -> np.ndarray:
    return np.where(mask >= t, 255, 0).astype(np.uint8)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grey dilation (pixels > 0) or erosion (pixels < 0) with a disc of radius |pixels|."""
    import cv2

    r = abs(int(pixels))
    if r == 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    op = cv2.dilate if pixels > 0 else cv2.erode
    return op(mask, kernel, borderType=cv2.BORDER_REPLICATE)


def blur(mask: np.ndarray, radius: float) -> np.ndarray:
    import cv2

    if radius <= 0:
        return mask
    sigma = radius / 2.0
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def refine(mask: np.ndarray, options: MaskOptions) -> np.ndarray:
    """Apply the options in the documented order."""
    out = mask
    if options.post_process:
        out = post_process(out)
    if options.threshold > 0:
        out = threshold(out, options.threshold)
    if options.grow:
        out = grow(out, options.grow)
    if options.blur > 0:
        out = blur(out, options.blur)
    if options.invert:
        out = 255 - out
    return out
